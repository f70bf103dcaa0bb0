"""Call sites: which code made each VMA change (traces recorded with ``record -g``).

The trace keeps, per syscall/proc record, the kernel's id of the user stack
(``stack_id``, the ``stacks`` table holds its addresses) and the word at the
user stack pointer (``ret_addr``).  Everything else is done here, after the
fact, with no process alive:

1. **Mapping** (the rebuilt trees): each address of a stack is looked up in
   the VMA tree of its process at the instant of the record
   (:meth:`mmtrace.model.Model.sweep` at syscall entry, or at the fork/exec/
   exit event), which gives the VMA's file (kernel dev_t, inode) and page
   offset, so a frame becomes (file, file offset): libraries mapped and
   unmapped during the recording included, and the same code in a parent and
   its forked child (or in two runs under ASLR) is the same frame.
2. **Files**: (dev, inode) -> path and build id from the recorder's
   ``procfs/files`` (noted while mapped, capture/stacks.py), then the
   ``/proc/PID/maps`` snapshots, then a search by inode of the directories of
   the paths known (a file mapped and unmapped within one drain period).
3. **Symbols** (pyelftools, :class:`mmtrace.events.elf.ElfSymbols`): from
   ``.symtab``/``.dynsym`` and the debuginfo file under
   ``/usr/lib/debug/.build-id`` where installed; with ``symfs`` every path is
   looked up under that directory instead (perf's ``--symfs``).  A file
   whose build id differs from the recorded one is not used.
4. **The caller of the syscall wrapper**: frame-pointer walking starts in the
   wrapper and skips its caller (glibc's wrappers make no frame).  The word
   at the user stack pointer is that caller's return address when the
   wrapper pushed nothing: it is inserted as frame 1 when it lies in a file
   mapping and the bytes before it in the file are a call instruction
   (:func:`mmtrace.events.elf.is_call_before`).  Later frames are kept only
   while they pass the same test: code built without frame pointers (most of
   Debian's) leaves rbp holding data, and the walk then returns junk.

A stack in the tables below is the tuple of its frames as (file, offset):
``stack_id`` numbers those, not the kernel's ids.
"""

from __future__ import annotations

import json
import os
import re
from bisect import bisect_right
from pathlib import Path

import numpy as np
import pandas as pd

from ..events.elf import ElfSymbols, find_by_inode, is_call_before

__all__ = [
    "Stacks",
    "stacks_of",
    "has_stacks",
    "annotate_changes",
    "callsites",
    "folded",
    "speedscope",
    "alive_at_end",
    "write_exports",
    "FRAME_COLUMNS",
    "CALLSITE_COLUMNS",
]

FRAME_COLUMNS = ("stack_id", "depth", "address", "path", "build_id", "offset", "function", "func_offset",
                 "symbol", "binary", "recovered")
CALLSITE_COLUMNS = ("callsite", "function", "binary", "changes", "maps", "unmaps", "splits", "merges",
                    "protects", "other", "vmas_alive", "bytes_mapped", "pids", "stacks")

# The libraries whose frames are the syscall's plumbing, not its call site.
_SYSTEM = re.compile(r"^(libc([.-].*)?\.so.*|ld-linux.*\.so.*|ld\.so.*|libpthread.*\.so.*|libdl.*\.so.*|\[vdso\])$")
_PAGE = 12
_NONE = -1


def has_stacks(trace) -> bool:
    """Was ``trace`` recorded with ``record -g``?"""
    return bool(((getattr(trace, "metadata", None) or {}).get("stacks") or {}).get("enabled"))


def _table(trace, name: str) -> pd.DataFrame:
    try:
        return trace.table(name)
    except Exception:  # noqa: BLE001 - a trace without the table
        return pd.DataFrame()


def _known_files(trace) -> dict[tuple[int, int], tuple[str, str]]:
    """(kernel dev_t, inode) -> (path, build id) from procfs/files and the maps snapshots."""
    out: dict[tuple[int, int], tuple[str, str]] = {}
    f = _table(trace, "procfs/files")
    if len(f):
        for d, i, p, b in zip(f["dev"].tolist(), f["inode"].tolist(), f["path"].astype(str), f["build_id"].astype(str)):
            out.setdefault((int(d), int(i)), (p, b))
    s = _table(trace, "procfs/maps")
    if len(s):
        s = s[s["inode"] != 0]
        for d, i, p in zip(s["dev"].astype(str), s["inode"].tolist(), s["path"].astype(str)):
            ma, mi = (int(x, 16) for x in d.split(":"))
            out.setdefault(((ma << 20) | mi, int(i)), (p, ""))
    return out


class _Files:
    """ELF symbols per (dev, inode), loaded once each (under ``symfs`` if given)."""

    def __init__(self, known: dict, symfs: str | None) -> None:
        self.known = known
        self.symfs = symfs
        self.cache: dict[tuple[int, int], ElfSymbols | None] = {}

    def path(self, key) -> str:
        return self.known.get(key, ("", ""))[0]

    def elf(self, key) -> ElfSymbols | None:
        if key in self.cache:
            return self.cache[key]
        path, bid = self.known.get(key, ("", ""))
        e = None
        if path.startswith("/"):
            real = path[: -len(" (deleted)")] if path.endswith(" (deleted)") else path
            where = os.path.join(self.symfs, real.lstrip("/")) if self.symfs else real
            try:
                e = ElfSymbols.load(where, debug_root=self.symfs or "/")
            except (OSError, ValueError):
                e = None
            if e is not None and bid and e.build_id and e.build_id != bid:
                e.close()
                e = None  # another build of that path: its symbols would lie
        self.cache[key] = e
        return e

    def close(self) -> None:
        for e in self.cache.values():
            if e is not None:
                e.close()


def _lookup(tree, addr: int):
    """(dev, inode, file offset) of ``addr`` in a tree's (starts, ends, vals), or None."""
    starts, ends, vals = tree
    i = bisect_right(starts, addr) - 1
    if i < 0 or addr >= ends[i]:
        return None
    v = vals[i]
    if not v[4]:
        return None  # anonymous memory: JIT code, or a junk frame
    return (int(v[3]), int(v[4]), ((v[2] + (addr >> _PAGE)) << _PAGE) + (addr & 0xFFF))


class Stacks:
    """The stacks of one trace, mapped and symbolized (see the module docstring).

    ``frames``: :data:`FRAME_COLUMNS`, one row per frame (depth 0 innermost);
    ``events``: one row per syscall/proc record with a stack: ``kind``
    ("syscall" or "proc"), ``ts``, ``ts_enter`` (proc: ``ts``), ``tgid``,
    ``tid``, ``what`` (syscall name, or fork/exec/exit), ``stack_id``;
    ``callsite``: stack_id -> "function+0xoff (binary)".
    """

    def __init__(self, trace, symfs: str | os.PathLike | None = None) -> None:
        self.trace = trace
        self.symfs = str(symfs) if symfs else None
        kstacks = _table(trace, "stacks")
        self._kframes: dict[int, list[int]] = (
            {int(k): [int(x) for x in f] for k, f in zip(kstacks["stack_id"].tolist(), kstacks["frames"])}
            if len(kstacks) else {})
        ev = self._records()
        known = _known_files(trace)
        self.files = _Files(known, self.symfs)
        self._resolve(ev)
        self.files.close()

    # -- records with a stack ------------------------------------------------
    def _records(self) -> pd.DataFrame:
        parts = []
        sc = self.trace.raw_events("syscall") if "syscall" in self.trace.kinds else pd.DataFrame()
        if len(sc) and "stack_id" in sc:
            sc = sc[sc["stack_id"].to_numpy() >= 0]
            parts.append(pd.DataFrame({
                "kind": "syscall", "ts": sc["ts"].to_numpy(np.int64), "at": sc["ts_enter"].to_numpy(np.int64),
                "tgid": sc["tgid"].to_numpy(np.int64), "tid": sc["tid"].to_numpy(np.int64),
                "what": sc["syscall"].astype(str).to_numpy(), "kstack": sc["stack_id"].to_numpy(np.int64),
                "ret_addr": sc["ret_addr"].to_numpy(np.uint64)}))
        pr = self.trace.raw_events("proc") if "proc" in self.trace.kinds else pd.DataFrame()
        if len(pr) and "stack_id" in pr:
            pr = pr[pr["stack_id"].to_numpy() >= 0]
            # The tree just before the event: an exit's tree is gone at its ts.
            at = pr["ts"].to_numpy(np.int64) - (pr["what"].astype(str).to_numpy() == "exit")
            parts.append(pd.DataFrame({
                "kind": "proc", "ts": pr["ts"].to_numpy(np.int64), "at": at,
                "tgid": pr["tgid"].to_numpy(np.int64), "tid": pr["tid"].to_numpy(np.int64),
                "what": pr["what"].astype(str).to_numpy(), "kstack": pr["stack_id"].to_numpy(np.int64),
                "ret_addr": pr["ret_addr"].to_numpy(np.uint64)}))
        if not parts:
            return pd.DataFrame(columns=["kind", "ts", "at", "tgid", "tid", "what", "kstack", "ret_addr"])
        return pd.concat(parts, ignore_index=True)

    # -- mapping and symbols ---------------------------------------------------
    def _resolve(self, ev: pd.DataFrame) -> None:
        # One lookup per distinct (process, kernel stack, word at sp), at its
        # first record: the same addresses of one process name the same code
        # unless it was unmapped and something else mapped there meanwhile.
        keys = ev.groupby(["tgid", "kstack", "ret_addr"], sort=False)["at"].min()
        trees: dict[tuple[int, int], tuple] = {}
        queries = sorted({(int(p), int(a)) for (p, _k, _r), a in keys.items()}, key=lambda q: q[1])
        if queries:
            from ..model import model_of

            for pid, at, tree in model_of(self.trace).sweep(queries, frames=False):
                trees[(pid, at)] = tree
        # A file the recorder could not note (unmapped within one drain period)
        # may be found by inode beside the files it did note.
        missing = set()
        for (p, k, r), a in keys.items():
            t = trees.get((int(p), int(a)))
            if t is None:
                continue
            for addr in self._kframes.get(int(k), []) + [int(r)]:
                loc = _lookup(t, addr)
                if loc and (loc[0], loc[1]) not in self.files.known:
                    missing.add((loc[0], loc[1]))
        if missing and not self.symfs:
            dirs = {os.path.dirname(p) for p, _ in self.files.known.values() if p.startswith("/")}
            dirs |= {os.path.dirname(str(f)) for f in self._exec_paths()}
            self.files.known.update(find_by_inode(missing, dirs))

        stack_of: dict[tuple, int] = {}
        rows: list[tuple] = []
        key_stack: dict[tuple[int, int, int], int] = {}
        for (p, k, r), a in keys.items():
            t = trees.get((int(p), int(a)))
            frames = self._frames(t, self._kframes.get(int(k), []), int(r))
            ident = tuple((f[0], f[1], f[2]) if f[0] is not None else (None, None, f[3]) for f in frames)
            sid = stack_of.get(ident)
            if sid is None:
                sid = stack_of[ident] = len(stack_of)
                for depth, f in enumerate(frames):
                    rows.append((sid, depth, *self._describe(f, depth > 0)))
            key_stack[(int(p), int(k), int(r))] = sid
        self.frames = pd.DataFrame(rows, columns=list(FRAME_COLUMNS)) if rows else pd.DataFrame(
            {c: pd.Series([], dtype=object) for c in FRAME_COLUMNS})
        for c in ("stack_id", "depth"):
            self.frames[c] = self.frames[c].astype(np.int64)
        for c in ("address", "offset", "func_offset"):
            self.frames[c] = self.frames[c].astype(np.uint64)
        self.frames["recovered"] = self.frames["recovered"].astype(bool)
        sid = np.array([key_stack[(int(p), int(k), int(r))] for p, k, r in
                        zip(ev["tgid"].tolist(), ev["kstack"].tolist(), ev["ret_addr"].tolist())], dtype=np.int64)
        self.events = ev.drop(columns=["kstack", "ret_addr"]).rename(columns={"at": "ts_enter"}).assign(stack_id=sid)
        where = {s: self._callsite(g) for s, g in self.frames.groupby("stack_id", sort=False)}
        self.callsite = {s: w[0] for s, w in where.items()}
        self.site = {w[0]: (w[1], w[2]) for w in where.values()}  # callsite -> (function, binary)

    def _exec_paths(self) -> list[str]:
        pr = self.trace.raw_events("proc") if "proc" in self.trace.kinds else pd.DataFrame()
        if not len(pr) or "filename" not in pr:
            return []
        return [f for f in pr["filename"].astype(str).unique().tolist() if f.startswith("/")]

    def _frames(self, tree, ips: list[int], ret: int) -> list[tuple]:
        """[(dev, inode, offset, address, recovered)] innermost first; (None, None, None, addr, ...)
        for an address outside any file mapping."""
        def loc(a):
            return _lookup(tree, a) if tree is not None else None

        def plausible(l) -> bool:  # a return address: a call instruction ends just before it
            e = self.files.elf((l[0], l[1]))
            return e is not None and is_call_before(e.read(l[2] - 7, 7))

        out = []
        for depth, a in enumerate(ips):
            l = loc(a)
            if depth == 0:
                out.append((*(l or (None, None, None)), a, False))
                lr = loc(ret) if ret else None
                if lr and plausible(lr) and (len(ips) < 2 or ips[1] != ret):
                    out.append((*lr, ret, True))
                continue
            if not l or not plausible(l):
                break  # past here the walk follows no frame chain (code without frame pointers)
            out.append((*l, a, False))
        return out

    def _describe(self, f: tuple, is_return: bool) -> tuple:
        dev, ino, off, addr, recovered = f
        if dev is None:
            return (addr, "", "", 0, "", 0, f"[unknown] {addr:#x}", "", recovered)
        path, bid = self.files.known.get((dev, ino), ("", ""))
        binary = os.path.basename(path) if path else f"{dev >> 20:x}:{dev & 0xFFFFF:x}:{ino}"
        e = self.files.elf((dev, ino))
        # A return address is one past the call, maybe past the function's
        # end (a noreturn call): look up the call itself, show the address.
        sym = e.symbolize(off - 1 if is_return else off) if e is not None else None
        if sym is not None and is_return:
            sym = (sym[0], sym[1] + 1)
        if e is not None and e.build_id:
            bid = bid or e.build_id
        if sym is None:  # no symbol covers it: the file offset
            return (addr, path, bid, off, "", 0, f"[unknown]+{off:#x} ({binary})", binary, recovered)
        name, fo = sym
        return (addr, path, bid, off, name, fo, f"{name}+{fo:#x} ({binary})", binary, recovered)

    @staticmethod
    def _callsite(g: pd.DataFrame) -> tuple[str, str, str]:
        """(symbol, function, binary) of the innermost frame outside libc/ld.so (the
        syscall's plumbing); when all are (ld.so loading a library), the wrapper's caller."""
        g = g.sort_values("depth")
        rows = list(zip(g["symbol"].tolist(), g["function"].tolist(), g["binary"].tolist()))
        for r in rows:
            if r[2] and not _SYSTEM.match(r[2]):
                return r
        return rows[min(1, len(rows) - 1)] if rows else ("", "", "")


def stacks_of(trace, symfs: str | os.PathLike | None = None) -> Stacks:
    """The :class:`Stacks` of ``trace`` (computed once per ``symfs``; default: ``trace.symfs``)."""
    symfs = symfs if symfs is not None else getattr(trace, "symfs", None)

    def make():
        return Stacks(trace, symfs)

    cached = getattr(trace, "cached", None)
    return cached(f"stacks:{symfs or ''}", make) if cached else make()


def _cause_join(trace, ch: pd.DataFrame, st: Stacks) -> np.ndarray:
    """stack_id of each change (-1 none): the syscall whose call made it (same tid,
    ts_enter <= change ts <= its exit), else for fork_copy the fork that copied the
    tree (the next fork event of that tid), for exit the last exit event of the
    process before its teardown."""
    out = np.full(len(ch), _NONE, dtype=np.int64)
    if not len(ch) or not len(st.events):
        return out
    left = pd.DataFrame({"ts": ch["ts"].to_numpy(np.int64), "tid": ch["tid"].to_numpy(np.int64),
                         "row": np.arange(len(ch))}).sort_values("ts", kind="stable")
    ev = st.events
    sc = ev[ev["kind"] == "syscall"].sort_values("ts_enter", kind="stable")
    if len(sc):
        m = pd.merge_asof(left, sc[["ts_enter", "ts", "tid", "stack_id"]].rename(columns={"ts": "ts_exit"}),
                          left_on="ts", right_on="ts_enter", by="tid", direction="backward")
        ok = m["stack_id"].notna().to_numpy() & (m["ts"].to_numpy() <= m["ts_exit"].fillna(-1).to_numpy())
        out[m["row"].to_numpy()[ok]] = m["stack_id"].to_numpy()[ok].astype(np.int64)
    # The exit teardown has no thread (tid 0): the last exit event of its process.
    left["tgid"] = ch["pid"].to_numpy(np.int64)[left["row"].to_numpy()]
    for what, direction, cause, by in (("fork", "forward", "fork_copy", "tid"), ("exit", "backward", "exit", "tgid")):
        pe = ev[(ev["kind"] == "proc") & (ev["what"] == what)].sort_values("ts", kind="stable")
        sel = (ch["cause"].astype(str).to_numpy() == cause) & (out == _NONE)
        if not len(pe) or not sel.any():
            continue
        lf = left[sel[left["row"].to_numpy()]]
        m = pd.merge_asof(lf, pe[["ts", by, "stack_id"]], on="ts", by=by, direction=direction)
        ok = m["stack_id"].notna().to_numpy()
        out[m["row"].to_numpy()[ok]] = m["stack_id"].to_numpy()[ok].astype(np.int64)
    return out


def annotate_changes(trace, ch: pd.DataFrame, symfs: str | os.PathLike | None = None) -> pd.DataFrame:
    """``ch`` (:func:`mmtrace.model.changes`) plus ``stack_id`` (the :meth:`Stacks.frames`
    stack of the call that made each change, -1 none) and ``callsite`` ("function+0xoff
    (binary)", the innermost frame outside libc/ld.so; "" none).  ``ch`` itself when the
    trace has no stacks (recorded without -g)."""
    if not has_stacks(trace):
        return ch
    st = stacks_of(trace, symfs)
    sid = _cause_join(trace, ch, st)
    out = ch.copy(deep=False)
    out["stack_id"] = sid
    # Columnar: stack_id -> the index of its call site among the distinct ones ("" first).
    sites = [""] + sorted(set(st.callsite.values()) - {""})
    index = {c: i for i, c in enumerate(sites)}
    of_stack = np.zeros(max(st.callsite, default=-1) + 2, dtype=np.int64)
    for k, c in st.callsite.items():
        of_stack[k] = index[c]
    codes = np.where(sid >= 0, of_stack[np.clip(sid, 0, len(of_stack) - 1)], 0)
    out["callsite"] = pd.Categorical.from_codes(codes, categories=sites)
    return out


def alive_at_end(ch: pd.DataFrame) -> np.ndarray:
    """Per change (rows of ``ch`` in time order), how many of the VMAs it made are
    still there at the end: in no later change's ``before_vmas`` of the same
    process, the process's exit teardown aside (so the end of a process that
    exited is its last instant)."""
    counts = np.zeros(len(ch), dtype=np.int64)
    holder: dict[tuple, int] = {}
    kinds = ch["kind"].astype(str).tolist()
    for row, (pid, kind, before, after) in enumerate(zip(ch["pid"].astype(int).tolist(), kinds,
                                                         ch["before_vmas"].tolist(), ch["after_vmas"].tolist())):
        if kind != "exit":
            for v in before or ():
                holder.pop((pid, v[0], v[1], v[2]), None)
        for v in after or ():
            holder[(pid, v[0], v[1], v[2])] = row
    for row in holder.values():
        counts[row] += 1
    return counts


def callsites(trace, kind: str | None = None, *, ch: pd.DataFrame | None = None,
              per_process: bool = False) -> pd.DataFrame:
    """Call sites ranked by the VMA changes they caused (``kind``: only changes of that kind).

    Columns: ``callsite``, ``function``, ``binary``, ``changes`` (count),
    ``maps``, ``unmaps``, ``splits``, ``merges``, ``protects``, ``other``
    (changes of each kind), ``vmas_alive`` (VMAs it created still mapped at
    the end of the trace), ``bytes_mapped`` (bytes of the VMAs its map/expand
    changes added), ``pids`` (processes), ``stacks`` (distinct stacks).
    Sorted by ``changes``, descending.  Empty for a trace without stacks.
    """
    if ch is None:
        ch = trace.changes()
    cols = (["pid"] if per_process else []) + list(CALLSITE_COLUMNS)
    if "stack_id" not in ch or not len(ch):
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in cols})
    ch = ch.sort_values("ts", kind="stable", ignore_index=True)
    ch = ch.assign(_alive=alive_at_end(ch))
    if kind is not None:
        ch = ch[ch["kind"].astype(str) == kind]
    ch = ch[ch["stack_id"] >= 0]
    k = ch["kind"].astype(str)
    grown = (ch["bytes_after"].astype(np.int64) - ch["bytes_before"].astype(np.int64)).clip(lower=0)
    df = pd.DataFrame({
        "callsite": ch["callsite"].astype(str), "one": 1,
        "maps": (k == "map").astype(int), "unmaps": (k == "unmap").astype(int),
        "splits": (k == "split").astype(int), "merges": (k == "merge").astype(int),
        "protects": (k == "protect").astype(int),
        "alive": ch["_alive"], "bytes": np.where(k.isin(["map", "expand"]), grown, 0),
        "pid": ch["pid"], "stack_id": ch["stack_id"],
    })
    g = df.assign(_pid=df["pid"]).groupby((["_pid"] if per_process else []) + ["callsite"], sort=False)
    out = pd.DataFrame({
        "changes": g["one"].sum(), "maps": g["maps"].sum(), "unmaps": g["unmaps"].sum(),
        "splits": g["splits"].sum(), "merges": g["merges"].sum(), "protects": g["protects"].sum(),
        "vmas_alive": g["alive"].sum(), "bytes_mapped": g["bytes"].sum().astype(np.uint64),
        "pids": g["pid"].nunique(), "stacks": g["stack_id"].nunique(),
    }).reset_index().rename(columns={"_pid": "pid"})
    out["other"] = out["changes"] - out[["maps", "unmaps", "splits", "merges", "protects"]].sum(axis=1)
    site = stacks_of(trace).site
    out["function"] = [site.get(c, ("", ""))[0] for c in out["callsite"]]
    out["binary"] = [site.get(c, ("", ""))[1] for c in out["callsite"]]
    keys = (["pid"] if per_process else []) + ["changes", "callsite"]
    out = out.sort_values(keys, ascending=[True] * per_process + [False, True], kind="stable", ignore_index=True)
    return out[cols]


# -- exports -------------------------------------------------------------------
def _stack_symbols(frames: pd.DataFrame) -> dict[int, list[str]]:
    """stack_id -> its frames' symbols, root (outermost) first."""
    out: dict[int, list[str]] = {}
    for sid, g in frames.sort_values(["stack_id", "depth"]).groupby("stack_id", sort=True):
        out[int(sid)] = g["symbol"].astype(str).tolist()[::-1]
    return out


def _weights(ch: pd.DataFrame) -> dict[int, int]:
    s = ch.loc[ch["stack_id"] >= 0, "stack_id"].value_counts()
    return {int(k): int(v) for k, v in s.items()}


def folded(frames: pd.DataFrame, weights: dict[int, int]) -> str:
    """The flame graph tools' folded format (Brendan Gregg's stackcollapse output,
    read by flamegraph.pl, inferno, speedscope): one line per stack, its frames
    root first joined by ``;``, a space and its weight (here: the VMA changes
    it made).  ``frames``: :data:`FRAME_COLUMNS` (``stack_id``, ``depth``,
    ``symbol`` used); ``weights``: stack_id -> count (stacks without one left out)."""
    syms = _stack_symbols(frames)
    lines = []
    for sid in sorted(weights):
        if sid in syms and weights[sid] > 0:
            lines.append(";".join(s.replace(";", ":").replace("\n", " ") for s in syms[sid]) + f" {weights[sid]}")
    return "\n".join(sorted(lines)) + ("\n" if lines else "")


def speedscope(frames: pd.DataFrame, weights: dict[int, int], name: str = "mmtrace") -> dict:
    """A speedscope file (https://www.speedscope.app/file-format-schema.json) of one
    "sampled" profile: each stack one sample (frame indices root first) weighted
    by ``weights`` (the VMA changes it made); ``unit`` "none"."""
    syms = _stack_symbols(frames)
    index: dict[str, int] = {}
    shared = []
    samples, w = [], []
    for sid in sorted(weights):
        if sid not in syms or weights[sid] <= 0:
            continue
        stack = []
        for s in syms[sid]:
            if s not in index:
                index[s] = len(shared)
                shared.append({"name": s})
            stack.append(index[s])
        samples.append(stack)
        w.append(int(weights[sid]))
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "exporter": "mmtrace",
        "name": name,
        "activeProfileIndex": 0,
        "shared": {"frames": shared},
        "profiles": [{"type": "sampled", "name": name, "unit": "none", "startValue": 0, "endValue": sum(w),
                      "samples": samples, "weights": w}],
    }


def write_exports(trace, out: str | os.PathLike, ch: pd.DataFrame | None = None,
                  symfs: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write ``callsites.folded`` and ``callsites.speedscope.json`` (weights: VMA changes)
    into directory ``out``; {} for a trace without stacks."""
    if not has_stacks(trace):
        return {}
    if ch is None:
        ch = trace.changes()
    if "stack_id" not in ch:
        ch = annotate_changes(trace, ch, symfs)
    st = stacks_of(trace, symfs)
    w = _weights(ch)
    out = Path(out)
    f1, f2 = out / "callsites.folded", out / "callsites.speedscope.json"
    f1.write_text(folded(st.frames, w))
    f2.write_text(json.dumps(speedscope(st.frames, w, name=f"{Path(str(getattr(trace, 'path', 'trace'))).name}: VMA changes"),
                             separators=(",", ":")))
    return {"folded": f1, "speedscope": f2}
