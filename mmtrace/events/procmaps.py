"""/proc/PID/maps as DataFrames: live reads and the workloads' checkpoints.

The ground truth a rebuilt VMA tree is compared with.  Parsing is one regex
pass over the whole text plus vectorised column conversions: no Python object
per line.

Checkpoint files (written by the bundled workloads, one per pid, see
:mod:`mmtrace.workloads`) hold records of the form::

    # checkpoint pid=<pid> seq=<n> op=<opname> t_before=<ns> t_after=<ns>
    <the /proc/self/maps text verbatim>
    # end

where ``t_before``/``t_after`` are CLOCK_MONOTONIC nanoseconds taken just
before opening and just after closing /proc/self/maps.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
# pandas is imported where a frame is built: the recorder parses /proc/PID/maps
# with maps_columns() and never imports it.

__all__ = [
    "MAPS_COLUMNS",
    "CHECKPOINT_COLUMNS",
    "parse_maps",
    "maps_columns",
    "read_maps",
    "parse_checkpoints",
    "read_checkpoints",
]

MAPS_COLUMNS = ("start", "end", "perms", "pgoff", "dev", "inode", "path")
CHECKPOINT_COLUMNS = ("pid", "seq", "op", "t_before", "t_after") + MAPS_COLUMNS

# One maps line: "start-end perms pgoff MM:mm inode", then (padded) the path.
# The kernel escapes '\n' in paths (as \012), so a line is a line.
_LINE = re.compile(
    r"^([0-9a-f]{1,16})-([0-9a-f]{1,16}) ([-r][-w][-x][-ps]) ([0-9a-f]{1,16}) "
    r"([0-9a-f]+:[0-9a-f]+) ([0-9]+)(?: +([^\n]*))?$",
    re.M,
)
_HEADER = re.compile(
    r"# checkpoint pid=([0-9]+) seq=([0-9]+) op=(\S+) t_before=([0-9]+) t_after=([0-9]+)"
)
_END = "# end\n"


def _hex_u64(col: list[str]) -> np.ndarray:
    """Hex strings (at most 16 digits) -> uint64, via one bytes.fromhex."""
    if not col:
        return np.zeros(0, dtype=np.uint64)
    padded = np.char.zfill(np.asarray(col, dtype="U16"), 16)
    raw = bytes.fromhex("".join(padded.tolist()))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)


def _dec_u64(col) -> np.ndarray:
    return np.asarray(col, dtype=object).astype(np.uint64) if len(col) else np.zeros(0, np.uint64)


def _str_col(values) -> np.ndarray:
    return np.asarray(values, dtype=object)


def _parse_columns(text: str, where: str) -> dict[str, np.ndarray]:
    """The maps columns of ``text``; every line of it must be a maps line."""
    rows = _LINE.findall(text)
    nlines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    if len(rows) != nlines:
        for i, line in enumerate(text.split("\n")):
            if (line or i < nlines) and not _LINE.fullmatch(line):
                raise ValueError(f"{where}: line {i + 1} is not a maps line: {line!r}")
        raise ValueError(f"{where}: {nlines} lines but {len(rows)} maps lines")
    if rows:
        start, end, perms, pgoff, dev, inode, path = zip(*rows)
    else:
        start = end = perms = pgoff = dev = inode = path = ()
    return {
        "start": _hex_u64(list(start)),
        "end": _hex_u64(list(end)),
        "perms": _str_col(perms),
        "pgoff": _hex_u64(list(pgoff)),
        "dev": _str_col(dev),
        "inode": _dec_u64(inode),
        "path": _str_col(path),
    }


def maps_columns(text: str) -> dict[str, np.ndarray]:
    """:func:`parse_maps` as a dict of numpy columns (no pandas)."""
    return _parse_columns(text.strip("\n"), "maps")


def parse_maps(text: str) -> pd.DataFrame:
    """Parse the text of a /proc/PID/maps file, one row per VMA, in file order.

    Columns:

    - ``start``, ``end`` (uint64): the VMA's address range [start, end);
    - ``perms`` (str): the 4 characters as shown, e.g. ``"rw-p"``, ``"r-xs"``;
    - ``pgoff`` (uint64): the offset field (hex in the file), in bytes;
    - ``dev`` (str): ``"MM:mm"`` in hex as shown, e.g. ``"fe:01"``;
    - ``inode`` (uint64);
    - ``path`` (str): file path, ``[heap]``/``[stack]``/``[vdso]``/...,
      including any ``" (deleted)"`` suffix and inner spaces; ``""`` when none.

    Leading and trailing blank lines are ignored; any other line that is not
    a maps line raises ``ValueError``.
    """
    import pandas as pd

    return pd.DataFrame(maps_columns(text), columns=list(MAPS_COLUMNS))


def read_maps(pid: int | str) -> pd.DataFrame:
    """Read and parse ``/proc/<pid>/maps`` now (``pid`` may be ``"self"``).

    Columns as :func:`parse_maps`.  Raises ``ProcessLookupError`` when the
    process does not exist (any more); a zombie gives an empty frame.
    """
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except FileNotFoundError:
        raise ProcessLookupError(f"no process {pid}") from None
    return parse_maps(text)


def _empty_checkpoints() -> pd.DataFrame:
    import pandas as pd

    cols = {c: np.zeros(0, dtype=np.uint64) for c in CHECKPOINT_COLUMNS}
    for c in ("op", "perms", "dev", "path"):
        cols[c] = _str_col([])
    return pd.DataFrame(cols, columns=list(CHECKPOINT_COLUMNS))


def parse_checkpoints(text: str, source: str = "<checkpoints>") -> pd.DataFrame:
    """Parse checkpoint records (see the module doc) from ``text``.

    Returns one row per VMA line of every complete checkpoint, in order, with
    columns ``pid``, ``seq``, ``t_before``, ``t_after`` (uint64), ``op`` (str)
    followed by the :func:`parse_maps` columns.  A checkpoint without its
    ``# end`` line (a process killed mid-write) or with a damaged header is
    dropped with a ``RuntimeWarning``; a damaged maps line raises ``ValueError``.
    """
    bodies: list[str] = []
    meta: list[tuple[str, ...]] = []
    dropped = 0
    for chunk in re.split(r"(?m)^(?=# checkpoint )", text):
        if not chunk.startswith("# checkpoint "):
            if chunk.strip():
                warnings.warn(f"{source}: ignored text before the first checkpoint", RuntimeWarning, stacklevel=3)
            continue
        nl = chunk.find("\n")
        m = _HEADER.fullmatch(chunk[:nl]) if nl >= 0 else None
        if m is None or not (chunk.endswith("\n" + _END) or chunk[nl + 1:] == _END):
            dropped += 1
            continue
        bodies.append(chunk[nl + 1 : len(chunk) - len(_END)])
        meta.append(m.groups())
    if dropped:
        warnings.warn(
            f"{source}: dropped {dropped} incomplete checkpoint(s) (no '# end': process killed mid-write?)",
            RuntimeWarning,
            stacklevel=3,
        )
    if not bodies:
        return _empty_checkpoints()

    cols = _parse_columns("".join(bodies), source)
    counts = np.fromiter((b.count("\n") for b in bodies), dtype=np.int64, count=len(bodies))
    if counts.sum() != len(cols["start"]):  # only blank lines can cause this
        raise ValueError(f"{source}: blank line inside a checkpoint")
    pid, seq, op, t_before, t_after = zip(*meta)
    out = {
        "pid": np.repeat(_dec_u64(pid), counts),
        "seq": np.repeat(_dec_u64(seq), counts),
        "op": np.repeat(_str_col(op), counts),
        "t_before": np.repeat(_dec_u64(t_before), counts),
        "t_after": np.repeat(_dec_u64(t_after), counts),
    }
    out.update(cols)
    import pandas as pd

    return pd.DataFrame(out, columns=list(CHECKPOINT_COLUMNS))


def read_checkpoints(path: str | os.PathLike) -> pd.DataFrame:
    """Read one checkpoint file, or every ``*.txt`` of a checkpoint directory.

    Columns (one row per VMA line of every complete checkpoint):

    - ``pid``, ``seq`` (uint64): the process and its checkpoint number (0, 1,
      ... per pid, in the order taken);
    - ``op`` (str): the workload op just done (``start`` and ``end`` too);
    - ``t_before``, ``t_after`` (uint64): CLOCK_MONOTONIC ns bracketing the
      read of /proc/self/maps;
    - then ``start``, ``end``, ``perms``, ``pgoff``, ``dev``, ``inode``,
      ``path`` as in :func:`parse_maps`.

    Files are taken in numeric pid order.  A truncated last checkpoint is
    dropped with a warning (see :func:`parse_checkpoints`).
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.txt"), key=lambda f: (not f.stem.isdigit(), int(f.stem) if f.stem.isdigit() else 0, f.name))
    else:
        files = [p]
    frames = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="surrogateescape")
        frames.append(parse_checkpoints(text, str(f)))
    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty_checkpoints()
    if len(frames) <= 1:
        return frames[0]
    import pandas as pd

    return pd.concat(frames, ignore_index=True)
