"""What of a trace could not be read, and what that means for the analyses.

A trace is evidence: when a part of it is unreadable (truncated, corrupted,
deleted, a write the recorder never finished) the reader keeps going with
the rest, and says so here.  :class:`Damage` is one such fact;
:func:`check_metadata` turns a ``metadata.json`` document into a dict the
rest of mmtrace can trust, or raises :class:`TraceError`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Damage", "TraceError", "DamagedTraceWarning", "check_metadata", "critical", "MODEL_KINDS", "RECORDER_KEYS"]


class TraceError(Exception):
    """The path is not a readable mmtrace trace; the message says why (one line)."""


class DamagedTraceWarning(UserWarning):
    """Part of the trace could not be read; see ``trace.damage``."""


# Kinds the VMA model replays: a gap in any of them leaves the rebuilt trees
# unknown after it (like lost events), so model findings stop there.
MODEL_KINDS = ("tree_write", "syscall", "proc", "exit_mmap", "vma_store", "unmapped_area", "hugetlb", "fault",
               "mmap_lock")

# Fields the model and findings depend on: damage there withholds every model
# finding.  Every trace ``mmtrace record`` writes (one with "mmtrace_version")
# has them: missing there, the file was edited or damaged.
CRITICAL = frozenset({"start_ns", "page_size", "probe_plan", "mmap_min_addr", "stack_guard_gap_pages"})
# ... and what tells a damaged trace from an empty one: its event counts.
RECORDER_KEYS = (*sorted(CRITICAL), "complete", "events", "lost")


@dataclass(frozen=True)
class Damage:
    """One thing of the trace that could not be read.

    ``what``: ``metadata`` (a field of metadata.json ignored), ``unreadable_part``
    (a Parquet part truncated or corrupted), ``missing_part`` (a hole in a
    table's part numbers), ``missing_rows`` (fewer rows than metadata.json
    counted), ``missing_table`` (a kind counted but with no rows at all),
    ``leftover_tmp`` (a part the recorder never finished writing; ignored).
    ``table``: e.g. ``events/tree_write`` ("" for metadata).  ``ts_from``,
    ``ts_to``: CLOCK_MONOTONIC ns between which events may be missing (from
    the neighbouring parts' ts statistics), None when no time is concerned.
    ``field``: the metadata.json key of ``metadata`` damage.
    """

    what: str
    table: str
    path: str
    detail: str
    ts_from: int | None = None
    ts_to: int | None = None
    field: str = ""  # the metadata.json key, for ``metadata`` damage

    @property
    def kind(self) -> str:
        """The event kind of an ``events/KIND`` table, else ""."""
        return self.table.split("/", 1)[1] if self.table.startswith("events/") else ""

    def __str__(self) -> str:
        span = ""
        if self.ts_from is not None and self.ts_to is not None:
            span = f"; {self.kind or self.table} events between ts {self.ts_from} and {self.ts_to} may be missing"
        return f"{self.path}: {self.detail}{span}"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _non_negative_int(v) -> bool:
    return _is_int(v) and 0 <= v < 1 << 64


def _counts(v) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and _non_negative_int(n) for k, n in v.items())


def _str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _opt_str(v) -> bool:
    return v is None or isinstance(v, str)


def _number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


# Known fields and the test their value must pass; a field failing it is
# dropped (and reported), so the analyses see only well-typed values.
_FIELDS = {
    "complete": lambda v: isinstance(v, bool),
    "stop_reason": _opt_str,
    "start_ns": _non_negative_int,
    "stop_ns": _non_negative_int,
    "start_wall": _number,
    "stop_wall": _number,
    "events": _counts,
    "lost": _counts,
    "command_line": _str_list,
    "target": lambda v: isinstance(v, dict),
    "probe_plan": lambda v: isinstance(v, dict) and all(
        isinstance(v.get(k, {}), dict) for k in ("offsets", "syscalls", "features", "syscall_nargs")),
    "page_size": lambda v: _is_int(v) and v > 0 and v & (v - 1) == 0,
    "mmap_min_addr": _non_negative_int,
    "stack_guard_gap_pages": _non_negative_int,
    "exit_status": lambda v: v is None or _is_int(v),
    "buffer_mb": _is_int,
    "folded_inner_stores": _non_negative_int,
    "other_tree_writes": _non_negative_int,
    "synthetic": _opt_str,
    # what the hugetlb samples can prove (detect/hugetlb.py hugetlb_evidence)
    "hugetlb_evidence": lambda v: isinstance(v, dict) and _opt_str(v.get("cgroup")) and isinstance(
        v.get("exclusive_pool", False), bool) and _opt_str(v.get("counters")),
    **{k: _opt_str for k in ("kernel_release", "kernel_version", "machine", "host", "boot_id", "clock",
                             "mmtrace_version", "inner_stores", "other_trees")},
}



_RESTORE = "restore metadata.json from the recording host (the events alone cannot be interpreted)"
_JSON_TYPES = {type(None): "null", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def check_metadata(path: Path, fmt: str, version: int) -> tuple[dict, list[Damage]]:
    """Read ``path/metadata.json``: (metadata, damage found in it).

    Raises :class:`TraceError` when the file is missing, unreadable, not a
    JSON object, of another format or of an unknown format version; fields
    of the wrong type are dropped and reported as ``metadata`` damage.
    """
    meta_path = path / "metadata.json"
    if not path.is_dir():
        raise TraceError(f"{path}: no such trace directory")
    if not meta_path.exists():
        raise TraceError(f"{path}: not an mmtrace trace (no metadata.json)")
    if not meta_path.is_file():
        raise TraceError(f"{meta_path}: not a file: {_RESTORE}")
    try:
        meta = json.loads(meta_path.read_bytes())
    except PermissionError as e:
        raise TraceError(f"{meta_path}: permission denied ({e.strerror}): read it as its owner or with sudo") from e
    except OSError as e:
        raise TraceError(f"{meta_path}: cannot read ({e.strerror or e})") from e
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise TraceError(f"{meta_path}: corrupted metadata ({str(e)[:120]}): {_RESTORE}") from e
    if not isinstance(meta, dict):
        raise TraceError(f"{meta_path}: corrupted metadata (a JSON {_JSON_TYPES.get(type(meta), 'value')}, "
                         f"not an object): {_RESTORE}")
    if meta.get("format") != fmt:
        raise TraceError(f"{meta_path}: not an mmtrace trace (format is {str(meta.get('format'))[:40]!r})")
    v = meta.get("format_version", 0)
    if not _is_int(v) or v < 0:
        raise TraceError(f"{meta_path}: corrupted metadata (format_version is {json.dumps(v)[:40]}, not a whole "
                         f"number): {_RESTORE}")
    if v > version:
        raise TraceError(f"{path}: trace format {v} is newer than this mmtrace ({version}): upgrade mmtrace")
    damage = []
    for key, ok in _FIELDS.items():
        if key in meta and not ok(meta[key]):
            bad = json.dumps(meta.pop(key), default=str)
            damage.append(Damage("metadata", "", str(meta_path),
                                 f"'{key}' is {bad[:40]}, not a valid value: ignored", field=key))
    if isinstance(meta.get("mmtrace_version"), str) and "synthetic" not in meta:
        for key in RECORDER_KEYS:
            if key not in meta and not any(d.field == key for d in damage):
                damage.append(Damage("metadata", "", str(meta_path),
                                     f"'{key}' is missing (every recording writes it): the file was edited",
                                     field=key))
    return meta, damage


def critical(damage: list[Damage]) -> bool:
    """True when metadata fields the model needs are damaged."""
    return any(d.what == "metadata" and d.field in CRITICAL for d in damage)
