"""Every change of every tree, grouped by cause and classified from before/after.

The replay of the model (:class:`mmtrace.model.replay.Engine`, the same
windowed pass as ``vmas()``) with a :class:`ChangeObserver`: the changes a
tree goes through are grouped by their cause (one traced syscall of one
thread, from its first store to its exit-time corrections, possibly across
windows; or a kernel path: ``fork_copy``, ``exec_setup``, ``exit``,
``stack_growth``, other ``kernel`` stores), and each group is classified by
comparing the VMAs around the range it touched before and after it: the
VMAs that went away (``before``) and those that appeared (``after``).

The tree is never copied: before each change the observer keeps the pieces
it will overwrite (an undo log of the group), and at the end of the group
rebuilds the old state of the touched range only, from the tree as it is
and that log.  That is all the Python done per group: the pieces around
the range, before and after, are appended to flat buffers, and per window
numpy joins them into VMAs, cancels the VMAs both sides share, classifies
and counts (:func:`_frame`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import chain
from operator import itemgetter
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..events.flags import PROT_GROWSDOWN, VMA_PERM_BITS
from .replay import Engine, snapshot_trees
from .stream import Source, no_gc
from .vmatree import V_DEV, V_FLAGS, V_INO, V_PTR, VM_GROWSDOWN, VmaTree, join_pieces, perms_column

__all__ = ["changes", "iter_changes", "CHANGE_COLUMNS", "classify", "ChangeObserver", "VmaDelta"]

_NOSPAN = 1 << 65
_WHOLE = 1 << 65  # above every address: "the whole tree"
_SETUP = ("fork_copy", "exec_setup")
_PAGE = 4096  # lengths are rounded up to pages by the kernel: widen spans by one
_NO_ARGS = (0, 0, 0, 0, 0, 0, 0)  # arg0..arg5, ret of a kernel path
_PF, _PFDI = itemgetter(V_PTR, V_FLAGS), itemgetter(V_PTR, V_FLAGS, V_DEV, V_INO)  # of a piece's value

CHANGE_COLUMNS = (
    "ts", "ts_end", "pid", "tid", "tree", "cause", "kind", "syscall",
    "arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "ret",
    "lo", "hi", "n_before", "n_after", "bytes_before", "bytes_after", "before", "after",
    "before_vmas", "after_vmas",
)

# kinds as codes while columnar (index into _KINDS); "" (0): no change
_KINDS = np.array(["", "map", "unmap", "split", "merge", "expand", "shrink", "move", "protect",
                   "fork_copy", "exec_setup", "exit"], dtype=object)
_K = {k: i for i, k in enumerate(_KINDS.tolist())}


def _kinds(nb, na, cb, ca, moved) -> np.ndarray:
    """Kind codes (:data:`_KINDS`) from the VMAs that went away (``nb`` of them,
    ``cb`` bytes) and those that appeared (``na``, ``ca``), per change; the
    rule of :func:`classify`, on arrays."""
    nb, na, cb, ca = (np.asarray(x) for x in (nb, na, cb, ca))
    same = np.where(na > nb, _K["split"], np.where(na < nb, _K["merge"], _K["protect"]))
    more = np.where(na > nb, _K["map"], np.where(na == nb, _K["expand"], _K["merge"]))
    less = np.where(na == nb, _K["shrink"], _K["unmap"])
    k = np.where(ca == cb, same, np.where(ca > cb, more, less))
    k = np.where(np.asarray(moved, bool), _K["move"], k)
    k = np.where(na == 0, _K["unmap"], k)
    k = np.where(nb == 0, np.where(na == 0, 0, _K["map"]), k)
    return k.astype(np.int8)


def classify(before: list[tuple], after: list[tuple], *, moved: bool = False) -> str | None:
    """Kind of a change from the VMAs that went away and those that appeared.

    ``before``/``after`` hold (start, end, ...) tuples; None when both are empty.
    Same bytes covered: more VMAs is a ``split``, fewer a ``merge``, as many a
    ``protect``.  More bytes: a new VMA is a ``map``, one VMA grown an
    ``expand``, VMAs joined a ``merge``.  Fewer bytes: a VMA cut ``shrink``,
    otherwise ``unmap``.  ``moved``: an mremap that relocated (``move``).
    """
    cb = sum(e - s for s, e, *_ in before)
    ca = sum(e - s for s, e, *_ in after)
    k = int(_kinds([len(before)], [len(after)], [cb], [ca], [moved])[0])
    return _KINDS[k] or None


class _Group:
    """An open change group of one tree: its cause, span and undo log."""

    __slots__ = ("key", "ts", "ts_end", "tid", "tgid", "cause", "row", "name", "args", "moved", "lo", "hi", "undo")

    def __init__(self, key, ts, tid, tgid, cause, row, name, args, moved) -> None:
        self.key, self.ts, self.ts_end, self.tid, self.tgid, self.cause = key, ts, ts, tid, tgid, cause
        self.row, self.name, self.args, self.moved = row, name, args, moved
        self.lo, self.hi = _NOSPAN, 0
        # (lo, hi, starts, ends, vals): before a change, the pieces of [lo, hi)
        # (which then hold only pieces inside it): undone newest first.
        self.undo: list[tuple] = []


class _Buffers:
    """Closed change groups not yet made into a frame: one ``meta`` tuple per
    group (``ts``, ``ts_end``, ``pid``, ``tid``, ``tree``, ``cause``,
    ``syscall``, arg0..arg5, ret, ``moved``, forced kind, setup label, pieces
    before, pieces after, tree uid, ``done``: the instant from which the
    tree holds the change) and the pieces themselves, flat, in group order:
    ``bs``/``be``/``bv`` (start, end, value) of the old state around the
    group's span, ``as_``/``ae``/``av`` of the new one.  ``binds``: (groups
    closed before it, ts, tgid, tree uid or 0) of each change of a process's
    tree (:meth:`ChangeObserver.bind`), ``bind_vmas`` the VMAs of that tree
    then."""

    __slots__ = ("meta", "bs", "be", "bv", "as_", "ae", "av", "binds", "bind_vmas")

    def __init__(self) -> None:
        self.meta: list[tuple] = []
        self.bs: list[int] = []
        self.be: list[int] = []
        self.bv: list[tuple] = []
        self.as_: list[int] = []
        self.ae: list[int] = []
        self.av: list[tuple] = []
        self.binds: list[tuple] = []
        self.bind_vmas: list[list[tuple]] = []

    def __len__(self) -> int:
        return len(self.meta) + len(self.binds)


class ChangeObserver:
    """Collects the closed change groups (:class:`_Buffers`, made into frames by
    :func:`_frame`) while an :class:`Engine` replays; ``buf`` is replaced by
    whoever consumes it."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine
        self.sc = engine.sc
        self.open: dict[int, _Group] = {}  # tree uid -> open group
        self.tree: dict[int, VmaTree] = {}  # tree uid -> tree, for the open groups
        self.label: dict[int, str] = {}  # tree uid -> how it was born
        self.owner: dict[int, int] = {}  # tree uid -> tgid
        self.buf = _Buffers()
        self._ts = self._tid = self._tgid = self._cur = self._cause = self._key = ()
        self._args: list[tuple] = []
        self._vis: list | None = None
        # the trees the replay starts from (attach snapshots), as binds before any change
        for tgid, t in engine.bind.items():
            self.bind(tgid, t, -(1 << 63))

    # -- per window ----------------------------------------------------------------
    def load(self, w) -> None:
        """The columns of window ``w`` the hooks read, as lists by record."""
        c = w.cols
        sc = self.sc = self.e.sc
        self._vis = None
        self._args = list(zip(*(sc[k] for k in ("arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "ret")))) \
            if len(w.sc.get("ts", ())) else []
        self._ts = c["ts"].tolist()
        if w.w is not None:
            self._tid, self._tgid, self._cur, self._cause = (c[k].tolist() for k in ("tid", "tgid", "cur", "cause"))
            # a write's group key: its syscall's seq (>= 0), else -1 (a kernel path, keyed by tid)
            cause = c["cause"]
            seq = w.sc.get("seq")
            if seq is not None and len(seq):
                self._key = np.where(cause >= 0, seq[np.maximum(cause, 0)], -1).tolist()
            else:
                self._key = [-1] * len(cause)
        else:
            self._tid = self._tgid = self._cur = self._cause = self._key = ()

    def ts_of(self, k: int) -> int:
        return self._ts[k]

    # -- groups ----------------------------------------------------------------------
    def _pid(self, t: VmaTree, fallback: int) -> int:
        p = self.owner.get(t.uid)
        if p is None:
            for tgid, bt in self.e.bind.items():
                if bt is t:
                    return tgid
            return fallback
        return p

    def _open(self, t: VmaTree, key, ts: int, tid: int, tgid: int, cause: str, row: int) -> _Group:
        g = self.open.get(t.uid)
        if g is not None:
            if g.key == key:
                return g
            self._close(t)
        if row >= 0:
            name = self.sc["syscall"][row]
            args = self._args[row]
            moved = name == "mremap" and args[6] >= 0 and args[6] != args[0]
        else:
            name, args, moved = "", _NO_ARGS, False
        g = self.open[t.uid] = _Group(key, ts, tid, tgid, cause, row, name, args, moved)
        self.tree[t.uid] = t
        return g

    @staticmethod
    def _span(g: _Group, lo: int, hi: int) -> None:
        if lo < g.lo:
            g.lo = lo
        if hi > g.hi:
            g.hi = hi

    @staticmethod
    def _keep(g: _Group, t: VmaTree, lo: int, hi: int) -> None:
        """Log the pieces of ``t`` that a change of [lo, hi) is about to overwrite."""
        starts, ends = t.starts, t.ends
        i = bisect_right(ends, lo)
        j = bisect_left(starts, hi, i)
        if i == j:
            g.undo.append((lo, hi, (), (), ()))
        else:
            s0, e1 = starts[i], ends[j - 1]
            g.undo.append((s0 if s0 < lo else lo, e1 if e1 > hi else hi, starts[i:j], ends[i:j], t.vals[i:j]))

    def _close(self, t: VmaTree, *, force_kind: str = "", ts_end: int | None = None, done: int | None = None) -> None:
        """End the open group of ``t``: buffer its metadata and the pieces around
        its span before and after it.

        The span's pieces plus one neighbour on each side (merges) after the
        group (the tree now: ``[i0, i1)``) and before it (``[j0, j1)`` of the
        tree now with the group's undo log applied there, two pieces beyond
        its reach on each side kept for those neighbours).  :func:`_frame`
        joins each side into VMAs and keeps those not on both sides.  ``done``:
        the instant from which the tree holds the change (default: its ``ts_end``)."""
        g = self.open.pop(t.uid, None)
        if g is None:
            return
        del self.tree[t.uid]
        buf = self.buf
        undo = g.undo
        nb = na = 0
        if undo:
            lo, hi = g.lo, g.hi
            S, E, V = t.starts, t.ends, t.vals
            if lo == _NOSPAN or lo >= hi:
                lo, hi = 0, _WHOLE  # no span known: compare whole trees
            L, H = lo, hi
            for u in undo:
                if u[0] < L:
                    L = u[0]
                if u[1] > H:
                    H = u[1]
            x0 = bisect_left(E, L) - 2
            if x0 < 0:
                x0 = 0
            x1 = bisect_right(S, H) + 2
            bs, be, bv = S[x0:x1], E[x0:x1], V[x0:x1]
            for a, b, os_, oe, ov in reversed(undo):
                i = bisect_right(be, a)
                j = bisect_left(bs, b, i)
                bs[i:j] = os_
                be[i:j] = oe
                bv[i:j] = ov
            i0 = bisect_left(E, lo) - 1
            if i0 < 0:
                i0 = 0
            i1 = bisect_right(S, hi) + 1
            j0 = bisect_left(be, lo) - 1
            if j0 < 0:
                j0 = 0
            j1 = bisect_right(bs, hi) + 1
            if j1 > len(bs):
                j1 = len(bs)
            nb = j1 - j0
            if nb > 0:
                buf.bs += bs[j0:j1]
                buf.be += be[j0:j1]
                buf.bv += bv[j0:j1]
            a_s = S[i0:i1]
            na = len(a_s)
            if na:
                buf.as_ += a_s
                buf.ae += E[i0:i1]
                buf.av += V[i0:i1]
        lbl = self.label.get(t.uid)
        setup = lbl if lbl in _SETUP and t.uid not in self.owner else ""
        te = g.ts_end if ts_end is None else ts_end
        buf.meta.append((
            g.ts, te, self._pid(t, g.tgid), g.tid, t.ptr or 0, g.cause, g.name,
            *g.args, g.moved, force_kind, setup, nb, na, t.uid, te if done is None else done,
        ))

    # -- engine hooks ----------------------------------------------------------
    def born(self, t: VmaTree, ts: int, tgid: int, label: str) -> None:
        self.label[t.uid] = label

    def write(self, t: VmaTree, k: int, lo: int, hi: int, val) -> None:
        """Record ``k`` of the window, a store of ``val`` (None: a clear) over [lo, hi), is about to be applied."""
        key = self._key[k]
        lbl = self.label.get(t.uid)
        if lbl is not None and lbl in _SETUP and t.ptr != self._cur[k]:
            key = ("k", lbl)
        elif key < 0:
            key = ("k", self._tid[k])
        g = self.open.get(t.uid)
        if g is None or g.key != key:
            ts, tid = self._ts[k], self._tid[k]
            if key.__class__ is int:
                row = self._cause[k]
                g = self._open(t, key, ts, tid, self._tgid[k], self.sc["syscall"][row], row)
            else:
                g = self._open(t, key, ts, tid, self._tgid[k], lbl if key[1] == lbl else "kernel", -1)
        g.ts_end = self._ts[k]
        if lo < g.lo:
            g.lo = lo
        if hi > g.hi:
            g.hi = hi
        # the pieces this store overwrites (ChangeObserver._keep, inlined)
        starts, ends = t.starts, t.ends
        i = bisect_right(ends, lo)
        j = bisect_left(starts, hi, i)
        if i == j:
            if val is not None:
                g.undo.append((lo, hi, (), (), ()))
        else:
            s0, e1 = starts[i], ends[j - 1]
            g.undo.append((s0 if s0 < lo else lo, e1 if e1 > hi else hi, starts[i:j], ends[i:j], t.vals[i:j]))

    def before(self, t: VmaTree, lo: int, hi: int) -> None:
        """An exit-time correction is about to overwrite [lo, hi) of ``t``."""
        g = self.open.get(t.uid)
        if g is not None:
            self._keep(g, t, lo, hi)

    def before_whole(self, t: VmaTree) -> None:
        """``t`` is about to lose pieces anywhere (fork: VM_DONTCOPY pieces dropped)."""
        g = self.open.get(t.uid)
        if g is not None:
            g.undo.append((0, _WHOLE, t.starts[:], t.ends[:], t.vals[:]))

    def syscall_exit_begin(self, t: VmaTree, row: int) -> None:
        sc = self.sc
        name = sc["syscall"][row]
        g = self._open(t, sc["seq"][row], sc["ts_enter"][row], sc["tid"][row], sc["tgid"][row], name, row)
        g.ts_end = sc["ts"][row]
        # What the exit-time fix-up may touch (see mmtrace.model.rules).
        a0, a1, ret = sc["arg0"][row], sc["arg1"][row], sc["ret"][row]
        if name in ("mprotect", "pkey_mprotect") and sc["arg2"][row] & PROT_GROWSDOWN:
            self._span(g, 0, a0 + a1 + _PAGE)  # from the stack VMA's start (Engine._protect_walk)
        elif name in ("munmap", "mprotect", "pkey_mprotect", "madvise", "mseal"):
            self._span(g, a0, a0 + a1 + _PAGE)
        elif name == "mremap":
            self._span(g, a0, a0 + a1 + _PAGE)
            if 0 <= ret < (1 << 63):
                self._span(g, ret, ret + sc["arg2"][row] + _PAGE)
        elif name == "mmap" and 0 <= ret < (1 << 63):
            self._span(g, ret, ret + a1 + _PAGE)
        else:
            self._span(g, 0, 1 << 64)  # brk and the rest: compare whole trees

    def syscall_exit_end(self, t: VmaTree, row: int) -> None:
        # The exit's correction is in the tree from the instant its record was
        # placed at (stream._placed_instants: "vis"), which may precede the exit.
        vis = self._vis
        if vis is None:
            vis = self._vis = self.sc.get("vis") or self.sc["ts"]
        self._close(t, done=vis[row])

    def bind(self, tgid: int, t: VmaTree | None, ts: int) -> None:
        """From ``ts`` on, process ``tgid``'s mm is tree ``t`` (None: none).

        Buffered with the tree's VMAs now: a group of ``t`` still open (a
        vfork parent's last change) is in them before its row is made."""
        buf = self.buf
        buf.binds.append((len(buf.meta), ts, tgid, 0 if t is None else t.uid))
        buf.bind_vmas.append([] if t is None else
                             [(s, e, v[V_PTR], v[V_FLAGS], v[V_DEV], v[V_INO]) for s, e, v in join_pieces(t.starts, t.ends, t.vals)])

    def touch(self, t: VmaTree, lo: int, hi: int, ts: int, tgid: int) -> None:
        g = self.open.get(t.uid)
        if g is None:
            g = self._open(t, ("k", "fork_copy"), ts, tgid, tgid, "fork_copy", -1)
        self._span(g, lo, hi)

    def fork_done(self, t: VmaTree, ts: int, child: int) -> None:
        self.owner[t.uid] = child
        if t.uid in self.open:
            self._close(t, force_kind="fork_copy", ts_end=ts)

    def exec_done(self, t: VmaTree, ts: int, tgid: int) -> None:
        self.owner[t.uid] = tgid
        if t.uid in self.open:
            self._close(t, force_kind="exec_setup", ts_end=ts)

    def exit(self, t: VmaTree, ts: int) -> None:
        self._close(t)
        had = len(t) > 0
        g = self._open(t, ("k", "exit"), ts, 0, self._pid(t, 0), "exit", -1)
        self._span(g, 0, 1 << 64)
        if had:
            g.undo.append((0, _WHOLE, t.starts, t.ends, t.vals))
        t.starts, t.ends, t.vals = [], [], []  # what exit_mmap leaves; the engine drops it too
        self._close(t, force_kind="exit" if had else "", ts_end=ts)

    def finish(self) -> None:
        """Close the groups still open at the end of the trace (trees still live)."""
        live = {id(x) for x in self.e.trees.values()}
        for uid in list(self.open):
            t = self.tree[uid]
            if id(t) in live:
                self._close(t)
            else:
                self.open.pop(uid)
                del self.tree[uid]


_INT64 = ("ts", "ts_end", "pid", "tid", "ret", "n_before", "n_after")
_UINT64 = ("tree", "arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "lo", "hi", "bytes_before", "bytes_after")
_U64 = np.uint64


def _u64(x: list) -> np.ndarray:
    return np.fromiter(x, dtype=_U64, count=len(x))


def _empty() -> pd.DataFrame:
    cols = {c: np.zeros(0, np.int64 if c in _INT64 else np.uint64) if c in _INT64 + _UINT64
            else pd.Series([], dtype=object) for c in CHANGE_COLUMNS}
    return pd.DataFrame(cols, columns=list(CHANGE_COLUMNS))


def _join(gid: np.ndarray, s: np.ndarray, e: np.ndarray, p: np.ndarray, f: np.ndarray, *more: np.ndarray):
    """Pieces (sorted within each group) joined into VMAs: adjacent pieces of one
    VMA pointer and flags are one VMA (the rule of
    :func:`mmtrace.model.vmatree.join_pieces`, on arrays); ``more``: other
    columns of the pieces, the first piece's value kept."""
    n = len(s)
    if n == 0:
        return (gid, s, e, p, f, *more)
    cont = np.zeros(n, bool)
    cont[1:] = (p[1:] != 0) & (p[1:] == p[:-1]) & (f[1:] == f[:-1]) & (s[1:] == e[:-1]) & (gid[1:] == gid[:-1])
    first = np.flatnonzero(~cont)
    last = np.empty_like(first)
    last[:-1] = first[1:] - 1
    last[-1] = n - 1
    return (gid[first], s[first], e[last], p[first], f[first], *(m[first] for m in more))


def _segments(gid: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """[start, stop) row range of each group in ``gid`` (sorted)."""
    g = np.arange(n_groups)
    return np.searchsorted(gid, g, "left"), np.searchsorted(gid, g, "right")


def _rows_of(offs: np.ndarray, items: list, keep: np.ndarray) -> list[list]:
    """Per kept group, its slice of ``items`` (offsets ``offs``, one more than groups)."""
    o = offs.tolist()
    return [items[o[k]:o[k + 1]] for k in np.flatnonzero(keep).tolist()]


class VmaDelta(NamedTuple):
    """What the rows of a change frame did to the trees, columnar; given to the
    ``sink`` of :func:`iter_changes`.

    Per VMA each row removed or added (what ``before_vmas`` / ``after_vmas``
    hold, with the file): ``row`` (its row in the frame; sorted), ``side``
    (0: went away, 1: appeared), ``start``, ``end``, ``vma`` (pointer),
    ``vm_flags``, ``dev`` (kernel dev_t), ``ino`` (0: anonymous).  Per row:
    ``uid`` (the tree's incarnation: pointers are reused), ``done`` (the
    instant from which the tree holds the change: its ``ts_end``, or for an
    exit-time correction placed earlier that instant).  ``binds``: int64
    rows (before, ts, tgid, uid) of each change of which tree a process has
    (``uid`` 0: none), in replay order; ``before``: the frame rows completed
    before it (the trees the replay starts from: ts -2**63);
    ``bind_vmas``: per bind, the VMAs of the tree then, as (start, end,
    vma, vm_flags, dev, ino)."""

    row: np.ndarray
    side: np.ndarray
    start: np.ndarray
    end: np.ndarray
    vma: np.ndarray
    vm_flags: np.ndarray
    dev: np.ndarray
    ino: np.ndarray
    uid: np.ndarray
    done: np.ndarray
    binds: np.ndarray
    bind_vmas: list


def _frame(buf: _Buffers, sink=None) -> pd.DataFrame:
    """The closed groups of ``buf`` as change rows with :data:`CHANGE_COLUMNS`
    (unsorted: in the order the groups closed).

    Columnar: each side's pieces are joined into VMAs (:func:`_join`), the
    VMAs found on both sides cancel (a lexsort by group and (start, end,
    pointer, flags), equal neighbours dropped), and what remains is
    classified (:func:`_kinds`) and counted per group.  Groups whose change
    is empty (no forced kind) give no row.  ``sink``: called as
    ``sink(frame, VmaDelta)`` when the frame has rows (the files of the
    VMAs are read from the pieces only then)."""
    G = len(buf.meta)
    if G == 0:
        df = _empty()
        if sink is not None and buf.binds:
            z = np.zeros(0, _U64)
            sink(df, VmaDelta(z.astype(np.int64), z.astype(np.int8), z, z, z, z, z, z, z.astype(np.int64),
                              z.astype(np.int64), np.array(buf.binds, np.int64).reshape(-1, 4), buf.bind_vmas))
        return df
    meta = list(zip(*buf.meta))
    nbp = np.array(meta[17], dtype=np.int64)
    nap = np.array(meta[18], dtype=np.int64)
    # the pieces, each side joined into VMAs
    sides = []
    fields, nf = (_PFDI, 4) if sink else (_PF, 2)
    for side, (S, E, V, npc) in enumerate(((buf.bs, buf.be, buf.bv, nbp), (buf.as_, buf.ae, buf.av, nap))):
        gid = np.repeat(np.arange(G), npc)
        # pointer, flags (and the file) of every piece in one pass
        pf = np.fromiter(chain.from_iterable(map(fields, V)), _U64, nf * len(V)).reshape(len(V), nf)
        j = _join(gid, _u64(S), _u64(E), *(pf[:, k] for k in range(nf)))
        sides.append(j + (np.full(len(j[0]), side, np.int8),))
    gid, s, e, p, f, *files, side = (np.concatenate(x) for x in zip(*(x for x in sides)))
    # VMAs on both sides (equal in start, end, pointer and flags) did not change
    o = np.lexsort((side, f, p, e, s, gid))
    gid, s, e, p, f, side = gid[o], s[o], e[o], p[o], f[o], side[o]
    same = (gid[1:] == gid[:-1]) & (s[1:] == s[:-1]) & (e[1:] == e[:-1]) & (p[1:] == p[:-1]) & (f[1:] == f[:-1])
    drop = np.zeros(len(gid), bool)
    drop[1:] |= same
    drop[:-1] |= same
    keep = ~drop
    gid, s, e, p, f, side = gid[keep], s[keep], e[keep], p[keep], f[keep], side[keep]
    files = [x[o][keep] for x in files]
    ln = e - s
    out = {}
    for name, m in (("before", side == 0), ("after", side == 1)):
        g_ = gid[m]
        a, b = _segments(g_, G)
        c = np.zeros(len(g_) + 1, _U64)
        np.cumsum(ln[m], out=c[1:])
        out[name] = (m, g_, (b - a).astype(np.int64), c[b] - c[a], a, b)
    (mb, gb, nb, cb, _, _), (ma, ga, na, ca, _, _) = out["before"], out["after"]
    moved = np.array(meta[14], dtype=bool)
    kind = _kinds(nb, na, cb, ca, moved)
    forced = np.array([_K[k] if k else 0 for k in meta[15]], dtype=np.int8)
    kind = np.where(forced > 0, forced, kind)
    setup = np.array([_K[k] if k else 0 for k in meta[16]], dtype=np.int8)
    over = (setup > 0) & (kind > 0) & (kind != _K["exit"])
    # same ranges and perms, new VMAs: a mapping replaced in place (protect has
    # as many VMAs before as after: the i-th before pairs with the i-th after)
    prot = ~over & (kind == _K["protect"])
    if prot.any():
        rb = np.flatnonzero(prot[gb])
        ra = np.flatnonzero(prot[ga])
        fb, fa = f[mb][rb], f[ma][ra]
        perm_diff = np.bincount(gb[rb], weights=((fb ^ fa) & _U64(VMA_PERM_BITS)) != 0, minlength=G)
        ptr_diff = np.bincount(gb[rb], weights=p[mb][rb] != p[ma][ra], minlength=G)
        kind = np.where(prot & (perm_diff == 0) & (ptr_diff > 0), _K["map"], kind)
    kind = np.where(over, setup, kind)
    cause = np.array(meta[5], dtype=object)
    # a kernel path growing a VM_GROWSDOWN VMA: the stack
    grows = np.bincount(ga, weights=(f[ma] & _U64(VM_GROWSDOWN)) != 0, minlength=G) > 0
    cause = np.where((cause == "kernel") & (kind == _K["expand"]) & grows, "stack_growth", cause)
    # the span of the VMAs that changed
    lo = np.zeros(G, _U64)
    hi = np.zeros(G, _U64)
    a, b = _segments(gid, G)
    has = b > a
    if has.any():
        lo[has] = s[a[has]]
        hi[has] = np.maximum.reduceat(e, a[has])
    rows = kind > 0
    data = {
        "ts": np.array(meta[0], np.int64)[rows], "ts_end": np.array(meta[1], np.int64)[rows],
        "pid": np.array(meta[2], np.int64)[rows], "tid": np.array(meta[3], np.int64)[rows],
        "tree": _u64(meta[4])[rows], "cause": cause[rows], "kind": _KINDS[kind[rows]],
        "syscall": np.array(meta[6], dtype=object)[rows],
    }
    for k, c in enumerate(("arg0", "arg1", "arg2", "arg3", "arg4", "arg5")):
        data[c] = _u64(meta[7 + k])[rows]
    data["ret"] = np.array(meta[13], np.int64)[rows]
    data.update(lo=lo[rows], hi=hi[rows], n_before=nb[rows], n_after=na[rows], bytes_before=cb[rows], bytes_after=ca[rows])
    for name, m, g_, n_ in (("before", mb, gb, nb), ("after", ma, ga, na)):
        offs = np.zeros(G + 1, np.int64)
        np.cumsum(n_, out=offs[1:])
        s_, e_, p_, f_ = s[m].tolist(), e[m].tolist(), p[m], f[m]
        perms = perms_column(f_).tolist()
        data[name] = _rows_of(offs, list(zip(s_, e_, perms)), rows)
        data[f"{name}_vmas"] = _rows_of(offs, list(zip(s_, e_, p_.tolist(), f_.tolist())), rows)
    for c in ("cause", "kind", "syscall"):
        data[c] = data[c].tolist()  # as str columns, like every other text column of a frame
    df = pd.DataFrame(data, columns=list(CHANGE_COLUMNS))
    if sink is not None and (len(df) or buf.binds):
        before = np.zeros(G + 1, np.int64)  # groups -> the rows among them
        np.cumsum(rows, out=before[1:])
        m = rows[gid]
        binds = np.array(buf.binds, np.int64).reshape(-1, 4)
        binds[:, 0] = before[binds[:, 0]]
        sink(df, VmaDelta(before[gid[m]], side[m], s[m], e[m], p[m], f[m], files[0][m], files[1][m],
                          np.array(meta[19], np.int64)[rows], np.array(meta[20], np.int64)[rows], binds, buf.bind_vmas))
    return df


def iter_changes(trace, *, window: int | None = None, sink=None, probe=None) -> Iterator[pd.DataFrame]:
    """The change rows of ``trace`` window by window (memory: live VMAs + one window).

    One :meth:`Engine.run_lists` pass over :meth:`Source.windows` with a
    :class:`ChangeObserver`; yields, after each window, the changes completed
    in it (columns as :func:`changes`, in completion order: a group still
    open at a window's end is yielded with the window that ends it).
    ``window``: tree writes per window (default: the model's).  ``sink``:
    called as ``sink(frame, delta)`` before each frame is yielded, ``delta``
    the frame's :class:`VmaDelta` (e.g. :class:`mmtrace.model.timeline.VmaTimeline.add`).
    ``probe``: ``(at, fn)``, sorted instants and a function called as
    ``fn(engine, k)`` when the trees are as they were at ``at[k]``
    (:meth:`Engine.apply_probed`; e.g. the unmapped-area check, fed by this
    same pass).
    """
    from .model import DEFAULT_CHECKPOINT_EVERY

    src = Source(trace, with_causes=True)
    try:
        snaps = trace.snapshots()
    except Exception:  # a trace without procfs tables
        snaps = None
    e = Engine(src, snapshot_trees(snaps))
    obs = ChangeObserver(e)
    e.observer = obs
    at, fn = probe if probe is not None else ((), None)
    k = 0
    look = (lambda i: fn(e, i)) if fn is not None else None
    with no_gc():
        for w in src.windows(window or DEFAULT_CHECKPOINT_EVERY):
            if look is not None:
                k = e.apply_probed(w, at, k, look)
            else:
                e.apply(w)
            if len(obs.buf):
                buf, obs.buf = obs.buf, _Buffers()
                df = _frame(buf, sink)
                if len(df):
                    yield df
        obs.finish()
        if len(obs.buf):
            df = _frame(obs.buf, sink)
            obs.buf = _Buffers()
            if len(df):
                yield df


def changes(trace, pid: int | None = None, *, window: int | None = None) -> pd.DataFrame:
    """One row per change of a tree, grouped by cause; all processes, or tgid ``pid``.

    Columns: ``ts``, ``ts_end`` (first and last event of the group), ``pid``
    (tgid owning the tree), ``tid``, ``tree`` (maple tree pointer), ``cause``
    (the syscall name, or ``fork_copy``, ``exec_setup``, ``exit``,
    ``stack_growth``, ``kernel``), ``kind`` (map, unmap, split, merge,
    expand, shrink, move, protect, fork_copy, exec_setup, exit),
    ``syscall`` and ``arg0``..``arg5``, ``ret`` (empty/0 for kernel paths),
    ``lo``/``hi`` (the span of the VMAs that changed), ``n_before``,
    ``n_after``, ``bytes_before``, ``bytes_after``, ``before``/``after``
    (lists of (start, end, perms) of the VMAs that went away / appeared),
    ``before_vmas``/``after_vmas`` (the same VMAs as (start, end, vma
    pointer, vm_flags)).  Sorted by ``ts`` (stable).  See :func:`iter_changes`
    for the same rows window by window.
    """
    parts = list(iter_changes(trace, window=window))
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0] if parts else _empty()
    df = df.sort_values("ts", kind="stable", ignore_index=True)
    if pid is not None:
        df = df[df["pid"] == int(pid)].reset_index(drop=True)
    return df
