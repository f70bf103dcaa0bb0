"""Process names over time: which ``comm`` a process had at an instant."""

from __future__ import annotations

import numpy as np

__all__ = ["comm_at"]


def comm_at(trace, pid, ts) -> list[str]:
    """The name (``comm``) of each process ``pid`` at CLOCK_MONOTONIC ``ts`` (sequences of equal length).

    The last name the process got at or before ``ts`` (attach snapshot, fork,
    exec); before its first name, that first name; "" for a process never
    named.  From the trace's naming instants (``TraceFile._comm_lookup``),
    vectorised; any order of the queries.
    """
    pid = np.asarray(pid, dtype=np.int64).reshape(-1)
    ts = np.asarray(ts, dtype=np.int64).reshape(-1)
    n = len(ts)
    look = getattr(trace, "_comm_lookup", None) if n else None
    if look is None:
        return [""] * n
    order = np.argsort(ts, kind="stable")
    codes = np.asarray(look.codes(ts[order], pid[order]), dtype=np.int64)
    names = np.array([str(c) for c in look.dtype.categories] + [""], dtype=object)
    out = np.empty(n, dtype=object)
    out[order] = names[codes]  # code -1 (never named): the "" at the end
    return out.tolist()
