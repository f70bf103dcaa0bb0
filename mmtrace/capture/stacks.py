"""``record -g``: the stack table and the files the frames point into.

The collectors give each syscall/proc record a ``stack_id`` (an entry of the
BPF stack map "stacks", collectors/stacks.bpf.c) and the word at the user
stack pointer (``ret_addr``).  The recorder writes:

- ``stacks`` (one row per distinct stack id: ``stack_id``, ``frames``, the
  user addresses innermost first).  Stack map entries are never replaced
  (no BPF_F_REUSE_STACKID), so each id is read once, when a drained record
  first names it.
- ``procfs/files`` (one row per file a traced process mapped: ``ts``,
  ``pid``, ``dev`` (kernel dev_t, as tree_write's), ``inode``, ``path``,
  ``build_id``).  Frames are symbolized after the fact from (file, offset),
  the mapping of each address coming from the rebuilt trees, which know
  dev/inode but not paths, and a library may be unmapped long before the
  stop snapshot.  So each new (dev, inode) a ``tree_write`` shows is looked
  up while the drain thread still sees it mapped: its line of
  /proc/PID/maps gives the path, and /proc/PID/map_files (the mapped file
  itself, even if deleted or replaced since) its build id.  A file mapped
  and unmapped within one drain period (5 ms), or by a process that exited
  by then, is looked for by inode in the directories of the files known
  (the exec'ed binaries' included) at the next flush; what is still not
  found is searched again by the analysis (mmtrace/detect/callsites.py).
"""

from __future__ import annotations

import os
import platform
import threading

import numpy as np
import pyarrow as pa

from ..events.decode import _arrow_array, columns_to_arrow  # Arrow from buffers, no pandas
from ..events.elf import build_id, find_by_inode
from ..events.schema import TW_FILE, stack_errors

__all__ = ["StackTable", "FileNotes", "STACK_ENTRIES", "STACK_DEPTH", "stack_cflags"]

# The BPF stack map (preallocated): frames kept per stack, and buckets.  Two
# distinct stacks in one bucket lose the second (-EEXIST, counted lost): about
# n^2 / (2 * buckets) of n distinct stacks (495 stacks of a python3 start-up
# lost 25 with 8192 buckets).  64 frames x 32768 buckets: 16 MiB; such a
# stack goes to a second map instead ("stacks2", collectors/stacks.bpf.c),
# which holds only those: lost when both buckets are taken.
STACK_DEPTH = 64
STACK_ENTRIES = 32768
STACK_ENTRIES2 = 4096


def stack_cflags() -> list[str]:
    """The -D flags of record -g (collectors/stacks.bpf.c), beside the plan's
    ``-DMMT_OFF_PT_REGS_SP`` (``plan.features["pt_regs_sp"]``, which -g needs)."""
    return ["-DMMT_STACKS", f"-DMMT_STACK_ENTRIES={STACK_ENTRIES}", f"-DMMT_STACK_DEPTH={STACK_DEPTH}",
            f"-DMMT_STACK_ENTRIES2={STACK_ENTRIES2}"]
_LIB_DIRS = tuple(f"{p}/{platform.machine()}-linux-gnu" for p in ("/lib", "/usr/lib")) + ("/lib64", "/usr/lib64")


class StackTable:
    """Read new stack ids out of the BPF stack maps (``m``, ``m2``: loader ``_Map``s;
    ids from STACK_ENTRIES on are ``m2``'s)."""

    def __init__(self, m, m2=None) -> None:
        self.map = m
        self.map2 = m2
        self.seen: set[int] = set()
        self.errors: dict[str, int] = {}
        self.captured = 0

    def note(self, ids: np.ndarray) -> pa.Table | None:
        """Count ``ids`` (of drained records) and return the stacks not written yet."""
        ids = np.asarray(ids, dtype=np.int64)
        self.captured += int((ids >= 0).sum())
        for k, v in stack_errors(ids).items():
            self.errors[k] = self.errors.get(k, 0) + v
        new = sorted(set(np.unique(ids[ids >= 0]).tolist()) - self.seen)
        if not new:
            return None
        sids, frames = [], []
        for sid in new:
            m, key = (self.map, sid) if sid < STACK_ENTRIES or self.map2 is None else (self.map2, sid - STACK_ENTRIES)
            raw = m.get(int(key).to_bytes(4, "little"))
            self.seen.add(sid)
            if raw is None:
                self.errors["ENOENT"] = self.errors.get("ENOENT", 0) + 1
                continue
            ips = np.frombuffer(raw, dtype="<u8")
            nz = np.flatnonzero(ips == 0)
            sids.append(sid)
            frames.append(ips[: nz[0] if len(nz) else len(ips)].tolist())
        # From buffers: pyarrow.array() of Python objects imports pandas (not while recording).
        offsets = np.zeros(len(frames) + 1, dtype=np.int32)
        np.cumsum([len(f) for f in frames], out=offsets[1:])
        values = np.array([a for f in frames for a in f], dtype=np.uint64)
        return pa.Table.from_arrays([_arrow_array(np.array(sids, dtype=np.int32)),
                                     pa.ListArray.from_arrays(_arrow_array(offsets), _arrow_array(values))],
                                    names=["stack_id", "frames"])

    def stats(self) -> dict:
        """What the trace's metadata says about stacks (``stacks``)."""
        return {"enabled": True, "map_entries": self.map.max_entries + (self.map2.max_entries if self.map2 else 0),
                "distinct": len(self.seen),
                "captured": self.captured, "lost": dict(self.errors)}


def _maps_files(pid: int) -> dict[tuple[int, int], tuple[str, str]]:
    """(kernel dev_t, inode) -> (path, "start-end" of one mapping) from /proc/PID/maps."""
    out: dict[tuple[int, int], tuple[str, str]] = {}
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) < 6 or parts[4] == "0":
                    continue
                ma, mi = (int(x, 16) for x in parts[3].split(":"))
                out.setdefault(((ma << 20) | mi, int(parts[4])), (parts[5].rstrip("\n"), parts[0]))
    except (OSError, ValueError):
        pass
    return out


class FileNotes:
    """Path and build id of each (dev, inode) the traced processes map, noted at drain time."""

    def __init__(self) -> None:
        # note_tree_writes() runs on the drain thread, the rest on the recorder's
        self.lock = threading.Lock()
        self.known: set[tuple[int, int]] = set()
        self.rows: list[dict] = []
        self.missed: dict[tuple[int, int], tuple[int, int]] = {}  # (dev, inode) -> (ts, tgid)
        # Where to look for them: the directories of the files noted, of the
        # exec'ed binaries, and the dynamic loader's default ones.
        self.dirs: set[str] = set(_LIB_DIRS)
        self.gone: set[tuple[int, int]] = set()  # searched for and not found

    def note_exec(self, filenames) -> None:
        """Exec'ed binaries' paths (proc records): their directories are searched too.
        A relative one is taken from the recorder's directory, where a recorded
        command starts (a process that changed directory before exec is missed)."""
        for f in filenames:
            f = f.decode(errors="replace") if isinstance(f, bytes) else str(f)
            if f:
                self.dirs.add(os.path.dirname(os.path.abspath(f)))

    def search_missed(self) -> None:
        """Find the files that were gone before their maps line could be read, by
        inode in :attr:`dirs` (each searched for once)."""
        with self.lock:
            self._search_missed()

    def _search_missed(self) -> None:
        if not self.missed:
            return
        missing = set(self.missed)
        for key, (path, _) in find_by_inode(missing, self.dirs).items():
            ts, tgid = self.missed[key]
            self.known.add(key)
            self.rows.append({"ts": ts, "pid": tgid, "dev": key[0], "inode": key[1], "path": path,
                              "build_id": build_id(path)})
        self.gone |= missing
        self.missed = {}

    def note_tree_writes(self, arr: np.ndarray) -> None:
        """Look up the files of new file VMAs in a drained batch of tree_write records."""
        sel = (arr["flags"] & TW_FILE) != 0
        if not sel.any():
            return
        with self.lock:
            self._note(arr, sel)

    def _note(self, arr: np.ndarray, sel: np.ndarray) -> None:
        keys = np.unique(np.stack([arr["dev"][sel].astype(np.uint64), arr["ino"][sel],
                                   arr["tgid"][sel].astype(np.uint64)], axis=1), axis=0)
        want: dict[int, list[tuple[int, int]]] = {}
        for dev, ino, tgid in keys.tolist():
            if (dev, ino) not in self.known:
                want.setdefault(tgid, []).append((dev, ino))
        ts = int(arr["ts"][sel][0])
        for tgid, files in want.items():
            maps = _maps_files(tgid)
            for key in files:
                if key in self.known:
                    continue
                if key not in maps:  # gone already: search_missed() looks for it (once)
                    if key not in self.gone:
                        self.missed.setdefault(key, (ts, tgid))
                    continue
                path, rng = maps[key]
                bid = build_id(f"/proc/{tgid}/map_files/{rng}") or (build_id(path) if path.startswith("/") else "")
                self.known.add(key)
                self.missed.pop(key, None)
                if path.startswith("/"):
                    self.dirs.add(os.path.dirname(path))
                self.rows.append({"ts": ts, "pid": tgid, "dev": key[0], "inode": key[1], "path": path,
                                  "build_id": bid})

    def take(self) -> pa.Table | None:
        """Rows noted since the last call, as the ``procfs/files`` table."""
        with self.lock:
            rows, self.rows = self.rows, []
        if not rows:
            return None
        types = {"ts": np.uint64, "pid": np.uint32, "dev": np.uint64, "inode": np.uint64, "path": object, "build_id": object}
        return columns_to_arrow({c: np.array([r[c] for r in rows], dtype=t) for c, t in types.items()})
