"""mmtrace.model: every traced process's VMA tree rebuilt at any instant from a trace.

- :func:`vmas` (trace, pid, at) -> DataFrame of the VMAs of tgid ``pid`` at CLOCK_MONOTONIC ``at``;
- :func:`changes` (trace, pid=None) -> DataFrame, one row per tree change grouped by cause;
- :class:`Model` for many queries (checkpointed replay, :meth:`Model.sweep`);
- :class:`VmaTree`, the interval map, and :class:`Engine`, the replay step.
"""

from .changes import CHANGE_COLUMNS, ChangeObserver, changes, classify, iter_changes
from .model import Model, model_of, vmas
from .replay import VMA_COLUMNS, Engine, tree_frame
from .stream import Source, Window
from .names import comm_at
from .tables import changes_arrow, write_changes_csv
from .vmatree import Vma, VmaTree, join_pieces, perms_of

__all__ = [
    "vmas",
    "comm_at",
    "changes_arrow",
    "write_changes_csv",
    "changes",
    "classify",
    "Model",
    "model_of",
    "Engine",
    "VmaTree",
    "Vma",
    "join_pieces",
    "iter_changes",
    "ChangeObserver",
    "Source",
    "Window",
    "tree_frame",
    "perms_of",
    "VMA_COLUMNS",
    "CHANGE_COLUMNS",
]
