"""The tables of a report, as DataFrames (integers, lists: ready for pandas).

:class:`ReportData` computes each table once per trace and keeps it; every
function of :mod:`mmtrace.report` accepts a trace path, a trace, or a
``ReportData``.  The tables:

- :meth:`ReportData.processes`: one row per process with its VMA counts;
- :meth:`ReportData.changes`, :meth:`~ReportData.splits`,
  :meth:`~ReportData.merges`, :meth:`~ReportData.anomalies`,
  :meth:`~ReportData.hugetlb`: the trace's frames plus a readable ``call``;
- :meth:`ReportData.vma_counts`: VMAs of each process after each of its changes;
- :meth:`ReportData.vmas`: every VMA's lifetime (what the address-space
  timeline draws).

The last two answer "which VMAs does process P have right after change C"
for every change, from the change rows themselves
(:class:`mmtrace.model.timeline.VmaTimeline`, fed by the same pass as the
changes table).
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pandas as pd


__all__ = ["ReportData", "report_data", "format_call", "ADDRESS_ARGS", "RETURNS_ADDRESS"]

# Which syscall arguments are user addresses (hex in CSV), by syscall name.
ADDRESS_ARGS: dict[str, tuple[int, ...]] = {
    "mmap": (0,), "munmap": (0,), "mprotect": (0,), "pkey_mprotect": (0,), "mremap": (0, 4), "brk": (0,),
    "madvise": (0,), "shmat": (1,), "shmdt": (0,), "execve": (0, 1, 2), "execveat": (1, 2, 3), "mseal": (0,),
    "remap_file_pages": (0,),
}
# Syscalls whose non-negative return value is an address.
RETURNS_ADDRESS = frozenset({"mmap", "mremap", "brk", "shmat"})

_PROT = [(0x1, "PROT_READ"), (0x2, "PROT_WRITE"), (0x4, "PROT_EXEC"), (0x8, "PROT_SEM"),
         (0x01000000, "PROT_GROWSDOWN"), (0x02000000, "PROT_GROWSUP")]
_MAP = [(0x10, "MAP_FIXED"), (0x20, "MAP_ANONYMOUS"), (0x40, "MAP_32BIT"), (0x100, "MAP_GROWSDOWN"),
        (0x800, "MAP_DENYWRITE"), (0x1000, "MAP_EXECUTABLE"), (0x2000, "MAP_LOCKED"), (0x4000, "MAP_NORESERVE"),
        (0x8000, "MAP_POPULATE"), (0x10000, "MAP_NONBLOCK"), (0x20000, "MAP_STACK"), (0x40000, "MAP_HUGETLB"),
        (0x80000, "MAP_SYNC"), (0x100000, "MAP_FIXED_NOREPLACE"), (0x4000000, "MAP_UNINITIALIZED")]
_MREMAP = [(1, "MREMAP_MAYMOVE"), (2, "MREMAP_FIXED"), (4, "MREMAP_DONTUNMAP")]
_MADV = {0: "MADV_NORMAL", 1: "MADV_RANDOM", 2: "MADV_SEQUENTIAL", 3: "MADV_WILLNEED", 4: "MADV_DONTNEED",
         8: "MADV_FREE", 9: "MADV_REMOVE", 10: "MADV_DONTFORK", 11: "MADV_DOFORK", 12: "MADV_MERGEABLE",
         13: "MADV_UNMERGEABLE", 14: "MADV_HUGEPAGE", 15: "MADV_NOHUGEPAGE", 16: "MADV_DONTDUMP",
         17: "MADV_DODUMP", 18: "MADV_WIPEONFORK", 19: "MADV_KEEPONFORK", 20: "MADV_COLD", 21: "MADV_PAGEOUT",
         22: "MADV_POPULATE_READ", 23: "MADV_POPULATE_WRITE", 24: "MADV_DONTNEED_LOCKED", 25: "MADV_COLLAPSE",
         100: "MADV_HWPOISON", 101: "MADV_SOFT_OFFLINE", 102: "MADV_GUARD_INSTALL", 103: "MADV_GUARD_REMOVE"}


def _bits(v: int, table: list[tuple[int, str]], base: str = "") -> str:
    names = [base] if base else []
    rest = v
    for bit, name in table:
        if v & bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names) or "0"


def _map_flags(v: int) -> str:
    typ = {1: "MAP_SHARED", 2: "MAP_PRIVATE", 3: "MAP_SHARED_VALIDATE"}.get(v & 0x3, "")
    huge = (v >> 26) & 0x3F
    s = _bits(v & ~0x3 & ~(0x3F << 26), _MAP, typ)
    if huge:
        s += f"|MAP_HUGE_{(1 << huge) >> 20}MB" if huge >= 20 else f"|MAP_HUGE_SHIFT({huge})"
    return s


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _ret_text(sc: str, ret: int) -> str:
    if -4096 < ret < 0:
        return f"-{errno.errorcode.get(-ret, str(-ret))}"
    if sc in RETURNS_ADDRESS:
        return f"{ret & (1 << 64) - 1:#x}"
    return str(ret)


def format_call(syscall: str, args, ret: int) -> str:
    """A syscall as strace shows it: ``mprotect(0x7f0000400000, 4194304, PROT_READ) = -ENOMEM``.

    ``args``: the integers known (up to six; a table that keeps only the
    first three shows ``...`` for the rest); "" for kernel paths (no syscall).
    """
    if not syscall:
        return ""
    known = len(args)
    a = [int(x) & (1 << 64) - 1 for x in args] + [0] * 6
    hx = lambda v: "NULL" if v == 0 else f"{v:#x}"  # noqa: E731
    prot = lambda v: _bits(v, _PROT) if v else "PROT_NONE"  # noqa: E731
    if syscall == "mmap":
        s = [hx(a[0]), str(a[1]), prot(a[2]), _map_flags(a[3]), str(_s32(a[4])), f"{a[5]:#x}"]
    elif syscall == "munmap":
        s = [hx(a[0]), str(a[1])]
    elif syscall == "mseal":
        s = [hx(a[0]), str(a[1]), f"{a[2]:#x}"]
    elif syscall == "mprotect":
        s = [hx(a[0]), str(a[1]), prot(a[2])]
    elif syscall == "pkey_mprotect":
        s = [hx(a[0]), str(a[1]), prot(a[2]), str(_s32(a[3]))]
    elif syscall == "mremap":
        s = [hx(a[0]), str(a[1]), str(a[2]), _bits(a[3], _MREMAP)] + ([hx(a[4])] if a[3] & 2 else [])
    elif syscall in ("brk", "shmdt"):
        s = [hx(a[0])]
    elif syscall == "madvise":
        s = [hx(a[0]), str(a[1]), _MADV.get(a[2], str(a[2]))]
    elif syscall == "shmat":
        s = [str(_s32(a[0])), hx(a[1]), f"{a[2]:#o}"]
    elif syscall == "execve":
        s = [hx(a[0]), hx(a[1]), hx(a[2])]
    elif syscall == "execveat":
        s = [str(_s32(a[0])), hx(a[1]), hx(a[2]), hx(a[3]), f"{a[4]:#x}"]
    elif syscall == "remap_file_pages":
        s = [hx(a[0]), str(a[1]), f"{a[2]:#x}", str(a[3]), f"{a[4]:#x}"]
    else:
        s = [f"{v:#x}" for v in a[:6]]
    if len(s) > known:
        s = s[:known] + ["..."]
    return f"{syscall}({', '.join(s)}) = {_ret_text(syscall, int(ret))}"


def _calls(df: pd.DataFrame, nargs: int, memo: dict | None = None) -> list[str]:
    """``call`` of each row; ``memo``: {(syscall, args, ret): text} kept across
    calls (a loop repeats its calls: one string per distinct call, shared)."""
    if len(df) == 0:
        return []
    memo = {} if memo is None else memo
    cols = [df[f"arg{i}"].tolist() for i in range(nargs)]
    out = []
    for sc, r, *args in zip(df["syscall"].tolist(), df["ret"].tolist(), *cols):
        key = (sc, r, *args)
        text = memo.get(key)
        if text is None:
            if len(memo) > 200_000:  # bounded: distinct calls of a long trace
                memo.clear()
            text = memo[key] = format_call(str(sc) if sc == sc else "", args, int(r))
        out.append(text)
    return out


class ReportData:
    """Everything a report shows, computed lazily and once.

    ``trace``: a path or an opened trace (``mmtrace.open``).  ``progress``:
    an optional :class:`mmtrace.report.progress.Progress` updated during the
    long replay.  ``errors`` maps a table name to the message of the
    exception that kept it from being computed (the table is then empty),
    filled by :meth:`safe`.
    """

    def __init__(self, trace, progress=None) -> None:
        if isinstance(trace, (str, Path)):
            from ..api import open as mm_open

            trace = mm_open(trace)
        elif not hasattr(trace, "changes"):  # a bare TraceFile: reopen with the analysis API
            from ..api import open as mm_open

            trace = mm_open(trace.path)
        self.trace = trace
        self.progress = progress
        self.errors: dict[str, str] = {}
        self._c: dict[str, object] = {}
        m = trace.metadata
        self.t0 = int(m.get("start_ns") or 0)
        self.t1 = int(getattr(trace, "end_ns", 0) or m.get("stop_ns") or 0)  # a killed trace: its last event

    def safe(self, name: str):
        """Table ``name`` (a method name), or None after recording the error in ``errors``."""
        try:
            return getattr(self, name)()
        except Exception as e:  # noqa: BLE001 - one broken table must not lose the others
            self.errors[name] = f"{type(e).__name__}: {e}"
            return None

    def skipped(self) -> dict[str, str]:
        """{analysis: why it was not computed} for the analyses this trace cannot feed
        (no hugetlb samples, no vm_unmapped_area tracepoint...): a report says so
        instead of showing an empty table as if nothing happened."""
        from ..detect.analyses import skipped

        return self._cached("skipped", lambda: skipped(self.trace))

    def _cached(self, key, fn):
        if key not in self._c:
            self._c[key] = fn()
        return self._c[key]

    # -- the trace's frames, with a readable call ------------------------------------------
    def changes(self) -> pd.DataFrame:
        """``trace.changes()`` plus ``comm`` and ``call`` (columns: see README)."""
        def build():
            ch = self.trace.changes()
            ch = ch.copy()
            ch.insert(4, "comm", _comm(self.trace, ch))
            ch.insert(ch.columns.get_loc("ret") + 1, "call", _calls(ch, 6))
            return ch
        return self._cached("changes", build)

    def splits(self) -> pd.DataFrame:
        """``trace.splits()`` plus ``call``: one row per change that split VMAs."""
        def build():
            s = self.trace.splits().copy()
            s.insert(s.columns.get_loc("ret") + 1, "call", _calls(s, 4))
            return s
        return self._cached("splits", build)

    def merges(self) -> pd.DataFrame:
        """``trace.merges()`` plus ``call``: one row per change that merged VMAs."""
        def build():
            s = self.trace.merges().copy()
            s.insert(s.columns.get_loc("ret") + 1, "call", _calls(s, 4))
            return s
        return self._cached("merges", build)

    def anomalies(self) -> pd.DataFrame:
        """``trace.anomalies()``: ts, pid, comm, severity, kind, explanation."""
        return self._cached("anomalies", lambda: self.trace.anomalies().copy())

    def hugetlb(self) -> pd.DataFrame:
        """``trace.hugetlb()`` plus ``comm``, ``call`` and ``kernel_resv`` (resv_huge_pages as a signed number)."""
        def build():
            h = self.trace.hugetlb().copy()
            h.insert(2, "comm", _comm(self.trace, h))
            if len(h):
                h.insert(h.columns.get_loc("ret") + 1, "call", _calls(h, 3))
                k = h["resv_huge_pages"].map(int)
                h["kernel_resv"] = [v - (1 << 64) if v >= 1 << 63 else v for v in k]
                for c in ("arg0", "arg1", "arg2"):
                    h[c] = h[c].astype(np.uint64)
                h["resv_huge_pages"] = h["resv_huge_pages"].astype(np.uint64)
                for c in ("ts", "pid", "ret", "nr_huge_pages", "free_huge_pages", "surplus_huge_pages",
                          "model_resv", "kernel_delta", "model_delta", "pending", "kernel_resv"):
                    h[c] = h[c].astype(np.int64)
                if "alternatives" in h.columns:
                    # text, as the page and CSV show it ("resv/cg" of each other
                    # order): one type in every trace, empty or not
                    h["alternatives"] = [" ".join(f"{r}/{c}" for r, c in x) for x in h["alternatives"]]
            else:
                h.insert(h.columns.get_loc("ret") + 1, "call", pd.Series([], dtype=object))
                h["kernel_resv"] = pd.Series([], dtype=np.int64)
                if "alternatives" in h.columns:
                    h["alternatives"] = pd.Series([], dtype=object)
            return h
        return self._cached("hugetlb", build)

    # -- light views of the big tables (all the text summary and the page read) --------------------
    def change_index(self) -> pd.DataFrame:
        """Every change, light: ``ts``, ``ts_end``, ``pid``, ``tid``, ``kind``,
        ``cause``, ``syscall``, ``ret``, ``call`` (what the summary and the
        page's labels read).  Kept by the streamed report
        (:func:`mmtrace.report.stream.stream_changes`) instead of the frame."""
        from .stream import CHANGE_INDEX

        return self._cached("change_index", lambda: self.changes()[CHANGE_INDEX])

    def split_index(self) -> pd.DataFrame:
        """Every split, light: ``ts``, ``ts_end``, ``pid``, ``kind``, ``cause``, ``count``."""
        from .stream import SM_INDEX

        return self._cached("split_index", lambda: self.splits()[SM_INDEX])

    def merge_index(self) -> pd.DataFrame:
        """Every merge, light: columns as :meth:`split_index`."""
        from .stream import SM_INDEX

        return self._cached("merge_index", lambda: self.merges()[SM_INDEX])

    def change_sample(self, cap: int) -> tuple[pd.DataFrame, int]:
        """(at most ``cap`` rows of :meth:`changes` spread over every process/kind/cause
        (:func:`mmtrace.report.views.sample_rows`), the number of changes)."""
        if "change_sample" in self._c:
            return self._c["change_sample"]
        from .views import sample_rows

        ch = self.changes().drop(columns=["before_vmas", "after_vmas"])
        return ch.iloc[sample_rows(ch, cap)], len(ch)

    def sm_sample(self, cap: int) -> tuple[pd.DataFrame, int]:
        """(at most ``cap`` rows of :meth:`splits` and :meth:`merges` together, in
        ts order, spread over every process/kind/cause, their number)."""
        if "sm_sample" in self._c:
            return self._c["sm_sample"]
        from .views import sample_rows

        sm = [d for d in (self.safe("splits"), self.safe("merges")) if d is not None and len(d)]
        if not sm:
            return pd.DataFrame(), 0
        both = pd.concat(sm, ignore_index=True).sort_values("ts", kind="stable", ignore_index=True)
        return both.iloc[sample_rows(both, cap)].reset_index(drop=True), len(both)

    # -- the model: VMAs over time --------------------------------------------------------
    def _sweep(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(vma_counts, vmas) from the VMA timeline the changes pass fed
        (:class:`mmtrace.model.timeline.VmaTimeline`): the streamed report's
        (:func:`mmtrace.report.stream.stream_changes`), else one pass of
        :func:`mmtrace.model.iter_changes` made here."""
        if "sweep" in self._c:
            return self._c["sweep"]
        tl = self._c.get("timeline")
        if tl is None:
            from ..model import iter_changes

            tl = self.timeline()
            for _ in iter_changes(self.trace, sink=tl.add):
                pass
        from ..model.vmatree import perms_column

        vc = tl.counts()
        # Sorted by (pid, start, born_ts) as the table is written, each column gathered
        # once in that order from the timeline's own table: no unsorted frame, no
        # second copy (the lifetimes are the report's biggest table).
        c = tl.lifetime_columns()
        o = np.lexsort((c["born_ts"], c["start"], c["pid"]))  # stable, as sort_values on several keys
        flags = c["vm_flags"][o]
        paths = _paths_of(getattr(_model(self.trace), "paths", {}) or {}, c["dev"][o], c["ino"][o])
        lt = pd.DataFrame({"pid": c["pid"][o], "start": c["start"][o], "end": c["end"][o], "perms": perms_column(flags),
                           "vma": c["vma"][o], "vm_flags": flags, "inode": c["ino"][o], "born_ts": c["born_ts"][o],
                           "died_ts": c["died_ts"][o], "path": paths}, copy=False)
        del c
        self._c["sweep"] = (vc, lt)
        self._c.pop("timeline", None)
        return vc, lt

    def timeline(self):
        """A fresh :class:`mmtrace.model.timeline.VmaTimeline` of the trace, to feed
        with :func:`mmtrace.model.iter_changes` (``sink=timeline.add``)."""
        from ..model.timeline import VmaTimeline

        # the end of the recording, else the last change's end (as the queries of Model.sweep had it)
        return VmaTimeline.for_trace(self.trace, self.t1 or None)

    def vma_counts(self) -> pd.DataFrame:
        """VMAs per process over time: ``ts``, ``pid``, ``vmas`` (count, as
        /proc/PID/maps would list), ``mapped`` (bytes), one row at each
        process's start, right after each of its changes (``ts_end``), and at
        the end of the recording for processes still alive.  Instants with
        no address space (before a fork's copy, inside an exec) are left out,
        except the last (0 after the exit)."""
        return self._sweep()[0]

    def vmas(self) -> pd.DataFrame:
        """Every VMA's lifetime: ``pid``, ``start``, ``end``, ``perms``, ``vma``
        (kernel pointer, 0 when known only from a /proc snapshot),
        ``vm_flags``, ``born_ts`` (when it appeared: created, or the process's
        first sight), ``died_ts`` (when it went away: unmapped, split,
        merged, changed; -1 if alive when recording stopped).  Both are the
        ``ts_end`` of the change responsible; ``path`` (mapped file, where the
        /proc snapshots named it), ``inode`` (0: anonymous)."""
        return self._sweep()[1]

    def processes(self) -> pd.DataFrame:
        """One row per process: ``pid``, ``ppid``, ``comm``, ``start_ts``,
        ``exit_ts`` (<NA> if alive at the end), ``exec``, ``threads``,
        ``trees``, ``attached``, ``changes``, ``splits``, ``merges``,
        ``vmas_start`` (VMAs when first seen with an address space; for the
        command ``record -c`` started, right after its exec),
        ``vmas_end`` (before its address space was torn down, or at stop),
        ``vmas_peak``, ``peak_ts``, ``mapped_peak`` (bytes)."""
        def build():
            p = self.trace.processes(counts=False).copy()
            for c in ("start_ts", "exit_ts"):
                p[c] = pd.array([int(v) if v == v else pd.NA for v in p[c]], dtype="Int64")
            ch = self.change_index()
            p["changes"] = p["pid"].map(ch.groupby("pid").size()).fillna(0).astype(np.int64)
            for name in ("split_index", "merge_index"):
                f = self.safe(name)
                cnt = f.groupby("pid")["count"].sum() if f is not None and len(f) else pd.Series(dtype="int64")
                p[name.split("_")[0] + "s"] = p["pid"].map(cnt).fillna(0).astype(np.int64)
            vc = self.vma_counts_shown()
            nz = vc[vc["vmas"] > 0]
            g = nz.groupby("pid")
            p["vmas_start"] = p["pid"].map(g["vmas"].first()).fillna(0).astype(np.int64)
            p["vmas_end"] = p["pid"].map(g["vmas"].last()).fillna(0).astype(np.int64)
            p["vmas_peak"] = p["pid"].map(g["vmas"].max()).fillna(0).astype(np.int64)
            peak_ts = nz.loc[g["vmas"].idxmax()].set_index("pid")["ts"] if len(nz) else pd.Series(dtype="int64")
            p["peak_ts"] = pd.array([int(v) if v == v else pd.NA for v in p["pid"].map(peak_ts)], dtype="Int64")
            p["mapped_peak"] = p["pid"].map(g["mapped"].max()).fillna(0).astype(np.uint64)
            return p
        return self._cached("processes", build)

    def launcher_until(self) -> dict[int, int]:
        """{pid: ts} for the process ``mmtrace record -c CMD`` started: until the
        end of its first exec (``ts``) it is mmtrace's own launcher (a fork of
        the recorder waiting for the probes), not CMD.  Report views start
        there; the tables keep everything."""
        def build():
            if not (self.trace.metadata.get("target") or {}).get("command"):
                return {}
            p = self.trace.processes(counts=False)
            ch = self.change_index()
            ex = ch[ch["cause"].isin(["execve", "execveat"]) & (ch["ret"] == 0)]
            out = {}
            for r in p[p["attached"] & (p["exec"].map(len) > 0)].itertuples(index=False):
                e = ex[ex["pid"] == r.pid]
                if len(e):
                    out[int(r.pid)] = int(e["ts_end"].min())
            return out
        return self._cached("launcher", build)

    def vma_counts_shown(self) -> pd.DataFrame:
        """:meth:`vma_counts` without the launcher part (see :meth:`launcher_until`)."""
        vc = self.vma_counts()
        cut = self.launcher_until()
        if not cut:
            return vc
        lim = vc["pid"].map(cut).fillna(np.iinfo(np.int64).min).astype(np.int64)
        return vc[vc["ts"] >= lim].reset_index(drop=True)

    def vmas_shown(self) -> pd.DataFrame:
        """:meth:`vmas` without the launcher's VMAs (see :meth:`launcher_until`)."""
        v = self.vmas()
        cut = self.launcher_until()
        if not cut:
            return v
        lim = v["pid"].map(cut).fillna(np.iinfo(np.int64).min).astype(np.int64)
        keep = (v["died_ts"] < 0) | (v["died_ts"] > lim)
        v = v[keep]  # a new frame already (copy-on-write): no second copy
        v["born_ts"] = np.maximum(v["born_ts"].to_numpy(np.int64), lim[keep].to_numpy(np.int64))
        return v.reset_index(drop=True)

    # -- small helpers for the views ------------------------------------------------------------
    def comm_of(self, pid: int) -> str:
        p = self.processes()
        r = p[p["pid"] == pid]
        return str(r["comm"].iloc[0]) if len(r) else ""

    def busiest(self, n: int) -> list[int]:
        """The ``n`` processes with the most changes (ties: most VMAs)."""
        p = self.processes().sort_values(["changes", "vmas_peak", "start_ts"], ascending=[False, False, True])
        return [int(x) for x in p["pid"].head(n)]


def _model(trace):
    from ..model.model import model_of

    return model_of(trace)


def _paths_of(paths: dict, dev: np.ndarray, ino: np.ndarray) -> np.ndarray:
    """The path of each (kernel dev_t, inode) from ``paths`` ("" when unknown or anonymous),
    looked up once per distinct file."""
    out = np.full(len(ino), "", dtype=object)
    f = np.flatnonzero(ino != 0)
    if len(f):
        files, inv = np.unique(np.stack([dev[f], ino[f]], axis=1), axis=0, return_inverse=True)
        names = np.array([paths.get((int(d), int(i)), "") for d, i in files.tolist()] + [""], dtype=object)
        out[f] = names[inv.reshape(-1)]
    return out


def _EMPTY_CHANGES() -> pd.DataFrame:  # noqa: N802 - a constant's maker
    """The header of a changes table without rows (as :meth:`ReportData.changes` of no change)."""
    from ..model.changes import CHANGE_COLUMNS

    cols = [c for c in CHANGE_COLUMNS if c not in ("before_vmas", "after_vmas")]
    cols.insert(4, "comm")
    cols.insert(cols.index("ret") + 1, "call")
    return pd.DataFrame(columns=cols)


def _comm(trace, df: pd.DataFrame) -> list[str]:
    from ..model.names import comm_at

    return comm_at(trace, df["pid"], df["ts"])


def report_data(trace, progress=None) -> ReportData:
    """A :class:`ReportData` for a path, a trace or a ReportData (returned as is); cached on the trace."""
    if isinstance(trace, ReportData):
        return trace
    if isinstance(trace, (str, Path)):
        return ReportData(trace, progress)
    rd = getattr(trace, "_mmtrace_report", None)
    if rd is None:
        rd = ReportData(trace, progress)
        try:
            trace._mmtrace_report = rd
        except AttributeError:
            pass
    return rd
