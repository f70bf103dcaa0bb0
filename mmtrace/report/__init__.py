"""mmtrace.report: what people read.

- :func:`summarize`: a short text summary of a trace (``mmtrace summary``);
- :func:`write_report`: tables (CSV or Parquet), a self-contained
  interactive ``index.html`` (:mod:`mmtrace.report.html`, Bokeh) and, with
  ``png``, static plots into a directory (``mmtrace report``);
- :func:`write_perfetto`: the trace in Perfetto's format (``mmtrace export``);
- :func:`export` / :func:`table`: the report tables alone;
- :class:`ReportData`: the tables as DataFrames, computed once per trace;
- :mod:`mmtrace.report.plots`: the static figures, each returning its Axes;
- :mod:`mmtrace.report.views`: what the figures show, decimated, as DataFrames;
- :func:`report_text`: the terminal summary of ``mmtrace report``.

Every function takes a trace path, an opened trace (``mmtrace.open``) or a
:class:`ReportData`.
"""

from .build import ReportResult, default_output, write_report
from .export import TABLES, arrow_table, csv_frame, export, table
from .frames import ReportData, format_call, report_data
from .perfetto import write_perfetto
from .summary import summarize
from .text import report_text

__all__ = [
    "summarize",
    "write_report",
    "ReportResult",
    "default_output",
    "export",
    "table",
    "TABLES",
    "csv_frame",
    "arrow_table",
    "ReportData",
    "report_data",
    "format_call",
    "report_text",
    "write_perfetto",
]
