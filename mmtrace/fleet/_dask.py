"""Dask, imported only when a fleet is used: the core install works without it."""

from __future__ import annotations

import logging
import os

__all__ = ["FleetError", "require", "connect"]

EXTRA_HINT = "mmtrace fleet needs Dask: pip install 'mmtrace[fleet]' (./setup.sh installs it)"


class FleetError(Exception):
    """A fleet cannot be analysed as asked (Dask missing, no trace found,
    schemas that differ, a scheduler that cannot be reached); the message says why."""


def require():
    """(dask, dask.dataframe, distributed), or FleetError naming the extra to install."""
    try:
        import dask
        import dask.dataframe as dd
        import distributed
    except ImportError as e:
        raise FleetError(f"{EXTRA_HINT} ({e})") from None
    return dask, dd, distributed


def connect(scheduler: str | None = None, n_workers: int | None = None):
    """A ``distributed.Client``: to the cluster at ``scheduler`` (``tcp://HOST:PORT``),
    else to a new ``LocalCluster`` sized for this machine.

    The local cluster has one single-threaded worker process per core (or
    ``n_workers``): replay and detectors are Python that holds the GIL, so
    processes, not threads, run traces in parallel; memory is shared out
    evenly (Dask's ``memory_limit="auto"``).  Its dashboard listens on a free
    port (``client.dashboard_link``), so that several fleets can run at once.
    """
    _, _, distributed = require()
    if scheduler:
        try:
            return distributed.Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as e:
            raise FleetError(f"cannot reach the Dask scheduler at {scheduler} ({e})") from None
    n = n_workers or len(os.sched_getaffinity(0)) or 1
    cluster = distributed.LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
        # Our tasks never raise for a bad trace (they return the reason), so
        # the workers' own logs are noise on the user's terminal (e.g. heartbeats at shutdown).
        silence_logs=logging.CRITICAL,
    )
    return distributed.Client(cluster)
