"""mmtrace.report: what people read.

- :func:`summarize`: a short text summary of a trace (``mmtrace summary``);
- :func:`write_report`: tables (CSV or Parquet), plots (PNG) and a
  self-contained ``index.html`` into a directory (``mmtrace report``);
- :func:`export` / :func:`table`: the report tables alone;
- :class:`ReportData`: the tables as DataFrames, computed once per trace;
- :mod:`mmtrace.report.plots`: the figures, each returning its Axes;
- :func:`report_text`: the terminal summary of ``mmtrace report``.

Every function takes a trace path, an opened trace (``mmtrace.open``) or a
:class:`ReportData`.
"""

from .build import ReportResult, default_output, write_report
from .export import TABLES, arrow_table, csv_frame, export, table
from .frames import ReportData, format_call, report_data
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
]
