"""mmtrace.fleet: many traces (hosts, or one host over time) analysed on Dask.

    fl = mmtrace.fleet.open("/traces/*/web.trace")     # LocalCluster sized for this machine
    fl.summary()                 # pandas: one row per trace, failed ones with their reason
    fl.processes().compute()     # Dask DataFrames: trace, host, boot_id, kernel + the per-trace columns
    fl.anomalies().groupby("kernel").size().compute()
    fl.events("syscall")         # lazy Dask DataFrame over every trace's Parquet parts (no replay)
    fl.write_report("out/")      # Parquet dataset (by host), summary.csv, cross-host plots, index.html

One Dask task per trace runs the per-trace API (open, replay, detectors:
:func:`mmtrace.fleet.tasks.analyse`); workers need mmtrace installed and
read access to the traces at the same paths.  Dask is the ``fleet`` extra
(``pip install 'mmtrace[fleet]'``), imported only here.
"""

from ._dask import FleetError, connect
from .fleet import EVENT_ROWS_PER_PARTITION, Fleet, open  # noqa: A004
from .tasks import ID_COLUMNS, TABLES, analyse, find_traces

__all__ = ["open", "Fleet", "FleetError", "connect", "TABLES", "ID_COLUMNS", "analyse", "find_traces",
           "EVENT_ROWS_PER_PARTITION", "write_fleet_report"]


def write_fleet_report(fleet, out_dir, progress=None):
    """See :func:`mmtrace.fleet.report.write_fleet_report`."""
    from .report import write_fleet_report as write

    return write(fleet, out_dir, progress=progress)
