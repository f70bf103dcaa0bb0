"""The replay: one sequential pass over the merged stream keeps one VmaTree per live mm.

Rules (see /work/shared/kernel-notes.md and mm/vma.c, mm/mmap.c, mm/mremap.c,
mm/mprotect.c, kernel/fork.c of 6.12+):

- A store event is the truth for the range -> VMA mapping it writes.  A
  store of NULL or of a non-VMA entry (XA_ZERO_ENTRY) clears the range.
- Some stores fire no event (exact-fit gfp stores; flags edited in place), so
  at each syscall's exit its arguments and result fill the gaps: the rules are
  in :mod:`mmtrace.model.rules` (decided per window, vectorised); the engine
  applies them (:meth:`Engine._on_syscall`).
- Which tree is which: a fork child's tree is written (in the parent's
  context, before the fork event) as a silent ``__mt_dup`` copy of the
  parent's tree followed by one ``mas_store`` per copied VMA; VM_DONTCOPY
  VMAs are cleared silently, so at the fork event the pieces not re-stored
  are dropped.  An exec's new tree is written before the exec event, while
  current->mm is still the old mm: the tree pointer, not ``current``, names
  it.  A process already running at attach starts from its snapshot and
  adopts the tree pointer of its first write or syscall on its own mm.
- ``exit_mmap`` ends a tree; the pointer may then be reused for a new mm.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import count

import numpy as np
import pandas as pd

from ..events.decode import decode_dev
from ..events.flags import PROT_BITS, PROT_GROWSDOWN, VM_SEALED
from .rules import EACCES, ENOMEM, EPERM, ERRNO_MAX
from .stream import (
    K_CLEAR,
    K_EXIT_MMAP,
    K_PROC,
    K_SC_CLEAR,
    K_SC_PROT,
    K_SC_SEAL,
    K_SC_WALK,
    K_SYSCALL,
    Source,
    Window,
    no_gc,
)
from .vmatree import (
    PAGE_SHIFT,
    V_FLAGS,
    V_WTID,
    V_WTS,
    VmaTree,
    flags_of_perms,
    join_pieces,
    perms_of,
)

__all__ = ["Engine", "VMA_COLUMNS", "tree_frame", "ERRNO_MAX"]


VMA_COLUMNS = ("start", "end", "perms", "vm_flags", "pgoff", "dev", "inode", "path", "file", "vma")


class Engine:
    """The replay state and its step function.

    State: ``trees`` (live tree pointer -> VmaTree), ``bind`` (tgid -> the
    VmaTree of its mm now), ``unadopted`` (tgid -> snapshot-made tree whose
    pointer is not known yet).  Records come one :class:`Window` at a time
    (:meth:`load`, then :meth:`run`); ``sc`` is the loaded window's syscall
    table.  ``observer``, when set, is told about every change before it
    is made, with the range it touches and its cause (see
    :class:`mmtrace.model.changes.ChangeObserver`): ``load(window)``,
    ``write(tree, record, lo, hi)``, ``before(tree, lo, hi)`` (an exit-time
    correction), ``before_whole(tree)``, ``syscall_exit_begin/end(tree, row)``,
    ``born``, ``touch``, ``fork_done``, ``exec_done``, ``exit``, ``ts_of(record)``,
    ``bind(tgid, tree or None, ts)`` (the process's mm is now that tree).
    """

    def __init__(self, source: Source, initial: dict[int, VmaTree] | None = None) -> None:
        self.src = source
        self.forks, self.execs, self.proc, self.em_mt = source.forks, source.execs, source.proc, source.em_mt
        self.sc: dict[str, list] = {}
        self.win: Window | None = None
        self.trees: dict[int, VmaTree] = {}
        self.bind: dict[int, VmaTree] = {}
        self.unadopted: dict[int, VmaTree] = {}
        self.next_uid = 0
        self.observer = None
        self.pos = -(1 << 63)  # streaming (run): every record with ts <= pos applied
        self.chunk = 1 << 14
        self._windows = None
        self._cur: list | None = None
        for tgid, t in (initial or {}).items():
            t = t.copy(uid=self._uid())
            self.bind[tgid] = t
            self.unadopted[tgid] = t

    def _uid(self) -> int:
        self.next_uid += 1
        return self.next_uid

    # -- state copies (checkpoints) ----------------------------------------
    def snapshot(self) -> dict:
        """A copy of the whole state; memory is O(live VMAs)."""
        copies: dict[int, VmaTree] = {}

        def cp(t: VmaTree) -> VmaTree:
            c = copies.get(id(t))
            if c is None:
                c = copies[id(t)] = t.copy()
            return c

        return {
            "next_uid": self.next_uid,
            "trees": {k: cp(t) for k, t in self.trees.items()},
            "bind": {k: cp(t) for k, t in self.bind.items()},
            "unadopted": {k: cp(t) for k, t in self.unadopted.items()},
        }

    def restore(self, snap: dict) -> None:
        """Make the state a (private) copy of ``snap``."""
        s = snap
        copies: dict[int, VmaTree] = {}

        def cp(t: VmaTree) -> VmaTree:
            c = copies.get(id(t))
            if c is None:
                c = copies[id(t)] = t.copy()
            return c

        self.next_uid = s["next_uid"]
        self.trees = {k: cp(t) for k, t in s["trees"].items()}
        self.bind = {k: cp(t) for k, t in s["bind"].items()}
        self.unadopted = {k: cp(t) for k, t in s["unadopted"].items()}

    def tree_of(self, tgid: int) -> VmaTree | None:
        """The tree of process ``tgid`` now (None if unknown or gone)."""
        t = self.bind.get(tgid)
        return None if t is None or t.dead else t

    # -- trees ---------------------------------------------------------------
    def _new_tree(self, ptr: int, ts: int, tgid: int, cur_tree: int, is_current: bool) -> VmaTree:
        """A write hit a tree not live yet: adopt, fork copy, or a fresh (exec) tree."""
        if is_current:
            t = self.unadopted.pop(tgid, None)
            if t is not None:  # an attached process: its snapshot tree is this one
                t.ptr = ptr
                self.trees[ptr] = t
                return t
        t = VmaTree(ptr, self._uid(), ts)
        if self._fork_pending(ptr, ts):
            parent = self.trees.get(cur_tree)
            if parent is None:
                parent = self.unadopted.get(tgid)
            if parent is not None:
                # __mt_dup: a silent copy of the parent's tree; dup_mmap then
                # stores each copied VMA (events) and clears DONTCOPY ones (silent).
                t.starts, t.ends, t.vals = parent.starts[:], parent.ends[:], parent.vals[:]
            t.dup_ts = ts
        self.trees[ptr] = t
        if is_current and self.tree_of(tgid) is None:
            # current->mm of a process we knew nothing of (no attach snapshot)
            self._bind(tgid, t, ts)
        if self.observer is not None:
            self.observer.born(t, ts, tgid, "fork_copy" if t.dup_ts >= 0 else "exec_setup" if not is_current else "kernel")
        return t

    def _fork_pending(self, ptr: int, ts: int) -> bool:
        """Is a fork event naming tree ``ptr`` still to come (before any exec naming it)?"""
        fl = self.forks.get(ptr)
        if not fl:
            return False
        k = bisect_right(fl, ts - 1)  # forks at/after ts
        if k == len(fl):
            return False
        el = self.execs.get(ptr)
        if el:
            e = bisect_right(el, ts - 1)
            if e < len(el) and el[e] < fl[k]:
                return False
        return True

    def _syscall_tree(self, row: int) -> VmaTree | None:
        sc = self.sc
        ptr = sc["tree"][row]
        t = self.trees.get(ptr)
        if t is None and ptr:
            t = self.unadopted.pop(sc["tgid"][row], None)
            if t is not None:
                t.ptr = ptr
                self.trees[ptr] = t
        return t

    # -- exit-time corrections -------------------------------------------------
    @staticmethod
    def _guard(v: tuple, ts_enter: int, tid: int) -> bool:
        # The syscall may correct a piece unless another thread wrote it after
        # the syscall began (the kernel serialised both under mmap_lock).
        return v[V_WTS] < ts_enter or v[V_WTID] == tid

    def _assign(self, t: VmaTree, lo: int, hi: int, val: tuple | None) -> None:
        if self.observer is not None:
            self.observer.before(t, lo, hi)
        t.assign(lo, hi, val)

    def _clear(self, t: VmaTree, lo: int, hi: int, ts_enter: int, tid: int) -> None:
        if lo >= hi:
            return
        r = t.overlapping(lo, hi)
        if len(r) == 0:
            return
        vals = t.vals
        if all(vals[k][V_WTS] < ts_enter or vals[k][V_WTID] == tid for k in r):
            self._assign(t, lo, hi, None)
            return
        for s, e, v in t.pieces(lo, hi):
            if self._guard(v, ts_enter, tid):
                self._assign(t, max(s, lo), min(e, hi), None)

    def _protect(self, t: VmaTree, lo: int, hi: int, prot: int, ts: int, tid: int, ts_enter: int,
                 contiguous: bool = False) -> None:
        pieces = t.pieces(lo, hi)
        if contiguous:
            # -ENOMEM: either a hole in the range (mprotect_fixup() changed the
            # VMAs before it) or a failed allocation in __split_vma/vma_modify
            # (nothing changed, whatever the range).  With no hole in the
            # range, only the latter is possible.
            covered, at = True, lo
            for s, e, _ in pieces:
                if s > at:
                    covered = False
                    break
                at = e
            if covered and at >= hi:
                return
        prev_end = lo
        for s, e, v in pieces:
            if contiguous and s > prev_end:
                break  # mprotect stops at the first hole (ENOMEM)
            prev_end = e
            nf = (v[V_FLAGS] & ~PROT_BITS) | (prot & PROT_BITS)
            if nf != v[V_FLAGS] and self._guard(v, ts_enter, tid):
                nv = (v[0], nf, v[2], v[3], v[4], ts, tid)
                self._assign(t, max(s, lo), min(e, hi), nv)

    @staticmethod
    def _refuses(v: tuple, prot: int) -> bool:
        """Would ``do_mprotect_pkey`` stop at this VMA (``prot``: the new PROT_* bits)?

        -EACCES: ``(newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS``, a bit
        asked for whose VM_MAY* bit is clear (a read-only MAP_SHARED file has
        no VM_MAYWRITE); -EPERM: ``mprotect_fixup`` -> ``can_modify_vma``, a
        sealed VMA (checked even when the flags would not change).  A VMA
        known only from a snapshot (pointer 0) has no VM_MAY*/VM_SEALED bits
        known: the walk stops there, changing no more than before.
        Not modelled: READ_IMPLIES_EXEC, MDWE (``map_deny_write_exec``),
        LSM refusals (``security_file_mprotect``).
        """
        f = v[V_FLAGS]
        if not v[0] or f & VM_SEALED:
            return True
        return bool(prot & ~(f >> 4) & PROT_BITS)

    def _protect_walk(self, t: VmaTree, row: int, lo: int, hi: int) -> None:
        """mprotect's VMA walk (``do_mprotect_pkey`` in mm/mprotect.c), for a call
        that failed part-way (-EPERM/-EACCES) or had PROT_GROWSDOWN.

        GROWSDOWN: the range starts at the ``vm_start`` of the first VMA in
        [lo, hi) (``start = vma->vm_start``).  Then each VMA from there, while
        they are contiguous, gets the new prot, up to the first hole (-ENOMEM)
        or the first VMA refused (:meth:`_refuses`; -EPERM/-EACCES).  When
        the tree does not show the refusal the result names (a hole before
        any refused VMA, or none refused), the model changes nothing: it
        cannot tell where the walk stopped.
        """
        sc = self.sc
        arg = int(sc["arg2"][row])
        ret = sc["ret"][row]
        prot = arg & PROT_BITS
        if arg & PROT_GROWSDOWN:
            r = t.overlapping(lo, hi)
            if len(r) == 0:
                return
            k = r.start
            S, E, V = t.starts, t.ends, t.vals
            while k > 0 and S[k] == E[k - 1] and V[k][0] and V[k - 1][0] == V[k][0]:
                k -= 1  # pieces of one VMA: back to its vm_start
            lo = S[k]
        at, stop, todo = lo, "end", []
        for s, e, v in t.pieces(lo, hi):
            if s > at:
                stop = "hole"
                break
            if ret and self._refuses(v, prot):
                stop = "refused"
                break
            todo.append((s, e, v))
            at = e
        if stop == "end" and at < hi:
            stop = "hole"
        if (ret == -ENOMEM and stop != "hole") or (ret in (-EPERM, -EACCES) and stop != "refused"):
            return
        ts, tid, te = sc.get("vis", sc["ts"])[row], sc["tid"][row], sc.get("guard", sc["ts_enter"])[row]
        for s, e, v in todo:
            nf = (v[V_FLAGS] & ~PROT_BITS) | prot
            if nf != v[V_FLAGS] and self._guard(v, te, tid):
                self._assign(t, max(s, lo), min(e, hi), (v[0], nf, v[2], v[3], v[4], ts, tid))

    def _seal(self, t: VmaTree, row: int, lo: int, hi: int) -> None:
        """mseal succeeded: every VMA of [lo, hi) gets VM_SEALED (``mseal_apply``:
        ``vm_flags_set`` in place, after the splits, which were stored)."""
        sc = self.sc
        ts, tid, te = sc.get("vis", sc["ts"])[row], sc["tid"][row], sc.get("guard", sc["ts_enter"])[row]
        for s, e, v in t.pieces(lo, hi):
            if not v[V_FLAGS] & VM_SEALED and self._guard(v, te, tid):
                self._assign(t, max(s, lo), min(e, hi), (v[0], v[V_FLAGS] | VM_SEALED, v[2], v[3], v[4], ts, tid))

    def _on_syscall(self, row: int, kind: int, lo: int, hi: int) -> None:
        """Apply the exit-time correction of syscall ``row`` (``kind``, ``[lo, hi)``:
        decided by :func:`mmtrace.model.rules.corrections`)."""
        t = self._syscall_tree(row)
        if t is None:
            return
        sc = self.sc
        obs = self.observer
        if obs is not None:
            obs.syscall_exit_begin(t, row)
        if kind == K_SC_CLEAR:
            self._clear(t, lo, hi, sc.get("guard", sc["ts_enter"])[row], sc["tid"][row])
        elif kind == K_SC_PROT:
            ret = sc["ret"][row]
            # vis/guard: the instant the change became visible (stream._placed_instants)
            self._protect(t, lo, hi, sc["arg2"][row], sc.get("vis", sc["ts"])[row], sc["tid"][row],
                          sc.get("guard", sc["ts_enter"])[row], contiguous=ret != 0)
        elif kind == K_SC_WALK:
            self._protect_walk(t, row, lo, hi)
        elif kind == K_SC_SEAL:
            self._seal(t, row, lo, hi)
        if obs is not None:
            obs.syscall_exit_end(t, row)

    # -- proc events -----------------------------------------------------------
    def _bind(self, tgid: int, t: VmaTree | None, ts: int) -> None:
        """From ``ts`` on, process ``tgid``'s mm is tree ``t`` (None: it has none)."""
        if t is None:
            if self.bind.pop(tgid, None) is None:
                return
        else:
            self.bind[tgid] = t
        if self.observer is not None:
            self.observer.bind(tgid, t, ts)

    def _on_proc(self, row: int) -> None:
        p = self.proc
        what, tgid, fl, ptr = p["what"][row], p["tgid"][row], p["flags"][row], p["tree"][row]
        ts = p["ts"][row]
        if what == "fork":
            if fl & 0x1:  # a thread: same mm
                return
            child = p["child_tgid"][row]
            if fl & 0x2:  # CLONE_VM (vfork, posix_spawn): the parent's tree
                pt = self.bind.get(tgid)
                if pt is not None:
                    self._bind(child, pt, ts)
                return
            t = self.trees.get(ptr) if ptr else None
            if t is None:
                # No store reached the child's tree: every VMA was VM_DONTCOPY
                # (or there were none).
                t = VmaTree(ptr, self._uid(), ts)
                if ptr:
                    self.trees[ptr] = t
                if self.observer is not None:
                    self.observer.born(t, ts, tgid, "fork_copy")
            elif t.dup_ts >= 0:
                dup = t.dup_ts
                before = len(t)
                if self.observer is not None and any(v[V_WTS] < dup for v in t.vals):
                    self.observer.before_whole(t)
                t.keep_if(lambda v: v[V_WTS] >= dup)  # silently cleared VM_DONTCOPY pieces
                if self.observer is not None and len(t) != before:
                    self.observer.touch(t, 0, 1 << 64, ts, tgid)
                t.dup_ts = -1
            self._bind(child, t, ts)
            if self.observer is not None:
                self.observer.fork_done(t, ts, child)
        elif what == "exec":
            t = self.trees.get(ptr) if ptr else None
            if t is None:
                t = VmaTree(ptr, self._uid(), ts)
                if ptr:
                    self.trees[ptr] = t
            self.unadopted.pop(tgid, None)
            self._bind(tgid, t, ts)
            if self.observer is not None:
                self.observer.exec_done(t, ts, tgid)
        elif what == "exit":
            if fl & 0x4:  # group dead
                self.unadopted.pop(tgid, None)
                t = self.bind.get(tgid)
                self._bind(tgid, None, ts)
                if t is not None and t.ptr is None:
                    t.dead = True

    def _on_exit_mmap(self, mt: int, ts: int) -> None:
        t = self.trees.pop(mt, None)
        if t is not None:
            if self.observer is not None:
                self.observer.exit(t, ts)
            t.dead = True
            t.starts, t.ends, t.vals = [], [], []

    # -- the loop --------------------------------------------------------------
    def load(self, w: Window) -> None:
        """Make ``w`` the window :meth:`run` applies records of."""
        self.win = w
        self.sc = w.sc_lists()
        if self.observer is not None:
            self.observer.load(w)

    def apply(self, w: Window, stop: int | None = None) -> None:
        """Load ``w`` and apply its first ``stop`` records (all by default)."""
        self.load(w)
        self.run_lists(w.lists(0, stop), 0)

    def apply_probed(self, w: Window, at, k: int, fn) -> int:
        """Load ``w`` and apply all its records, stopping at instants to look at the trees.

        ``at``: sorted instants (ns); for each ``at[k], at[k+1], ...`` up to
        ``w.hi``, ``fn(k)`` is called once every record with ``ts <= at[k]``
        is applied (and none after: the state :meth:`run` ``(at[k])`` gives).
        Returns the first ``k`` not answered (the next window's first)."""
        self.load(w)
        lists = w.lists()
        n = len(w)
        k1 = int(np.searchsorted(at, w.hi, side="right")) if w.hi != np.inf else len(at)
        i = 0
        with no_gc():
            if k1 > k:
                stops = np.searchsorted(w.cols["ts"], np.asarray(at[k:k1], np.int64), side="right").tolist()
                for j in stops:
                    if j > i:
                        self._run(*(x[i:j] for x in lists), i)
                        i = j
                    fn(k)
                    k += 1
            if i < n:
                self._run(*(lists if i == 0 else (x[i:] for x in lists)), i)
        return k

    def run_lists(self, lists: tuple, base: int) -> None:
        """Apply records given as :meth:`Window.lists` of the loaded window from record ``base`` on
        (cyclic GC paused: values are acyclic tuples)."""
        with no_gc():
            self._run(*lists, base)

    def run(self, stop: int) -> None:
        """Streaming use: apply every record of the trace with ts <= ``stop`` not applied yet.

        ``pos`` is the ts bound applied so far (:meth:`mmtrace.model.Model._pos`
        turns an instant into one); only for an engine that started at the
        beginning of the trace (:meth:`mmtrace.model.Model.engine`).
        """
        if stop <= self.pos:
            return
        with no_gc():
            while True:
                if self._cur is None:
                    if self._windows is None:
                        self._windows = self.src.windows(self.chunk)
                    w = next(self._windows, None)
                    if w is None:
                        break
                    self.load(w)
                    self._cur = [w, w.lists(), 0]
                w, lists, i = self._cur
                j = len(w) if stop >= w.hi else w.stop_at(stop)
                if j > i:
                    part = lists if i == 0 and j == len(w) else tuple(x[i:j] for x in lists)
                    self._run(*part, i)
                    self._cur[2] = j
                if stop < w.hi:
                    break
                self._cur = None
        self.pos = stop

    def _write_tree(self, k: int) -> VmaTree | None:
        """The tree record ``k`` (a write to a tree not live) goes to, or None to skip it."""
        win = self.win
        c = win.w
        r = win.write_row(k)
        flags = int(c["flags"][r])
        if not flags & 0x3:  # neither a VMA of it nor current's: not an mm tree we know
            return None
        ptr = win.uptr[int(c["code"][r])]
        cur = int(c["cur"][r])
        return self._new_tree(ptr, int(c["ts"][r]), int(c["tgid"][r]), cur, cur == ptr)

    def _run(self, kinds: list, args: list, los: list, his: list, vals: list, base: int) -> None:
        trees = self.trees
        uptr = self.win.uptr
        tget = trees.get
        br, bl = bisect_right, bisect_left
        sct = self.sc.get("tree", ())
        prots = self.sc.get("arg2", ())
        sc_te = self.sc.get("ts_enter", ())
        sc_gt = self.sc.get("guard", sc_te)  # clears: see stream._clear_instants
        sc_tid = self.sc.get("tid", ())
        sc_ret = self.sc.get("ret", ())
        sc_ts = self.sc.get("vis", None) or self.sc.get("ts", ())  # where the change became visible
        obs = self.observer
        last = -1
        starts = ends = tv = t = None
        for k, kind, a, lo, hi, v in zip(count(base), kinds, args, los, his, vals):
            if kind <= K_CLEAR:
                if a != last:
                    t = tget(uptr[a])
                    if t is None:
                        t = self._write_tree(k)
                        if t is None:
                            last = -1
                            continue
                        trees = self.trees
                        tget = trees.get
                    last = a
                    starts, ends, tv = t.starts, t.ends, t.vals
                if obs is not None:
                    obs.write(t, k, lo, hi, v)
                # VmaTree.assign, inlined
                i = br(ends, lo)
                # j: the first piece starting at/after hi (a write touches 0 to 2
                # pieces as a rule: probe before searching)
                try:
                    if starts[i] >= hi:
                        j = i
                    elif starts[i + 1] >= hi:
                        j = i + 1
                    else:
                        j = bl(starts, hi, i + 2)
                except IndexError:
                    j = len(starts)
                if i == j:  # nothing overlaps
                    if v is not None:
                        starts.insert(i, lo)
                        ends.insert(i, hi)
                        tv.insert(i, v)
                    continue
                s0 = starts[i]
                e1 = ends[j - 1]
                if v is None:
                    if s0 < lo:
                        if e1 > hi:
                            starts[i:j] = (s0, hi)
                            ends[i:j] = (lo, e1)
                            tv[i:j] = (tv[i], tv[j - 1])
                        else:
                            starts[i:j] = (s0,)
                            ends[i:j] = (lo,)
                            tv[i:j] = (tv[i],)
                    elif e1 > hi:
                        starts[i:j] = (hi,)
                        ends[i:j] = (e1,)
                        tv[i:j] = (tv[j - 1],)
                    else:
                        del starts[i:j], ends[i:j], tv[i:j]
                elif j == i + 1 and s0 == lo and e1 == hi:  # the same range: a new value
                    tv[i] = v
                elif s0 < lo:
                    if e1 > hi:
                        starts[i:j] = (s0, lo, hi)
                        ends[i:j] = (lo, hi, e1)
                        tv[i:j] = (tv[i], v, tv[j - 1])
                    else:
                        starts[i:j] = (s0, lo)
                        ends[i:j] = (lo, hi)
                        tv[i:j] = (tv[i], v)
                elif e1 > hi:
                    starts[i:j] = (lo, hi)
                    ends[i:j] = (hi, e1)
                    tv[i:j] = (v, tv[j - 1])
                else:
                    starts[i:j] = (lo,)
                    ends[i:j] = (hi,)
                    tv[i:j] = (v,)
            elif obs is not None:
                # observed: every exit is told (it ends its change group), no shortcuts
                last = -1
                if kind == K_PROC:
                    self._on_proc(a)
                elif kind == K_EXIT_MMAP:
                    self._on_exit_mmap(self.em_mt[a], obs.ts_of(k))
                else:
                    self._on_syscall(a, kind, lo, hi)
                trees = self.trees
                tget = trees.get
            elif kind == K_SC_CLEAR:
                # munmap & co: usually their stores already cleared the range
                t = tget(sct[a])
                if t is not None:
                    e_ = t.ends
                    i = br(e_, lo)
                    if i == len(e_):
                        continue
                    s_ = t.starts
                    s0 = s_[i]
                    if s0 >= hi:
                        continue
                    # a silent exact-fit clear: drop the pieces unless another
                    # thread wrote one after the syscall began (Engine._clear)
                    j = bl(s_, hi, i)
                    v_ = t.vals
                    te = sc_gt[a]
                    tid = sc_tid[a]
                    for x in range(i, j):
                        vx = v_[x]
                        if vx[5] >= te and vx[6] != tid:
                            break
                    else:
                        # VmaTree.assign(lo, hi, None), inlined (in place: cached lists stay valid)
                        e1 = e_[j - 1]
                        if s0 < lo:
                            if e1 > hi:
                                s_[i:j] = (s0, hi)
                                e_[i:j] = (lo, e1)
                                v_[i:j] = (v_[i], v_[j - 1])
                            else:
                                s_[i:j] = (s0,)
                                e_[i:j] = (lo,)
                                v_[i:j] = (v_[i],)
                        elif e1 > hi:
                            s_[i:j] = (hi,)
                            e_[i:j] = (e1,)
                            v_[i:j] = (v_[j - 1],)
                        else:
                            del s_[i:j], e_[i:j], v_[i:j]
                        continue
                last = -1
                self._on_syscall(a, kind, lo, hi)
            elif kind == K_SC_PROT:
                # mprotect: usually its stores already put the new perms
                t = tget(sct[a])
                if t is not None:
                    s_ = t.starts
                    e_ = t.ends
                    i = br(e_, lo)
                    j = bl(s_, hi, i)
                    p7 = prots[a] & PROT_BITS
                    v_ = t.vals
                    for x in range(i, j):
                        if v_[x][1] & PROT_BITS != p7:
                            break
                    else:
                        continue
                    if not sc_ret[a]:
                        # Engine._protect (ret 0), inlined: from the first piece
                        # whose perms differ, set them unless another thread
                        # wrote the piece after the syscall began
                        ts_ = sc_ts[a]
                        te = sc_gt[a]
                        tid = sc_tid[a]
                        while x < j:
                            vx = v_[x]
                            f = vx[1]
                            nf = (f & ~PROT_BITS) | p7
                            if nf != f and (vx[5] < te or vx[6] == tid):
                                nv = (vx[0], nf, vx[2], vx[3], vx[4], ts_, tid)
                                s0 = s_[x]
                                e1 = e_[x]
                                if s0 < lo:
                                    if e1 > hi:
                                        s_[x:x + 1] = (s0, lo, hi)
                                        e_[x:x + 1] = (lo, hi, e1)
                                        v_[x:x + 1] = (vx, nv, vx)
                                        break
                                    s_[x:x + 1] = (s0, lo)
                                    e_[x:x + 1] = (lo, e1)
                                    v_[x:x + 1] = (vx, nv)
                                    x += 2
                                    j += 1
                                    continue
                                if e1 > hi:
                                    s_[x:x + 1] = (s0, hi)
                                    e_[x:x + 1] = (hi, e1)
                                    v_[x:x + 1] = (nv, vx)
                                    break
                                v_[x] = nv
                            x += 1
                        continue
                last = -1
                self._on_syscall(a, kind, lo, hi)
            elif kind == K_SYSCALL:
                if tget(sct[a]) is None:
                    last = -1
                    self._on_syscall(a, kind, lo, hi)
            else:
                last = -1
                if kind == K_PROC:
                    self._on_proc(a)
                elif kind == K_EXIT_MMAP:
                    self._on_exit_mmap(self.em_mt[a], 0)
                else:
                    self._on_syscall(a, kind, lo, hi)
                trees = self.trees
                tget = trees.get


def snapshot_trees(snaps: pd.DataFrame) -> dict[int, VmaTree]:
    """Initial trees of attached processes from their ``attach`` snapshots (tgid -> VmaTree)."""
    out: dict[int, VmaTree] = {}
    if snaps is None or len(snaps) == 0:
        return out
    att = snaps[snaps["when"].astype(str) == "attach"]
    for pid, g in att.groupby("pid", sort=False):
        t = VmaTree(None, 0)
        dev = g["dev"].astype(str).tolist()
        for s, e, perms, pgoff, d, ino, path in zip(
            g["start"].tolist(), g["end"].tolist(), g["perms"].astype(str).tolist(), g["pgoff"].tolist(),
            dev, g["inode"].tolist(), g["path"].astype(str).tolist(),
        ):
            if path == "[vsyscall]":
                continue  # not a VMA of the mm's tree (gate area)
            ma, mi = (int(x, 16) for x in d.split(":"))
            pgb = (pgoff >> PAGE_SHIFT) - (s >> PAGE_SHIFT)
            t.assign(s, e, (0, flags_of_perms(perms), pgb, (ma << 20) | mi, ino, 0, 0))
        out[int(pid)] = t
    return out


def tree_frame(t: VmaTree | None, paths: dict | None = None) -> pd.DataFrame:
    """The VMAs of ``t`` as a DataFrame with columns :data:`VMA_COLUMNS`.

    ``start``, ``end`` (uint64, end exclusive), ``perms`` (as /proc/PID/maps),
    ``vm_flags`` (uint64; only the perms bits are known for VMAs seen only in
    a snapshot), ``pgoff`` (uint64, bytes, as maps shows it), ``dev``
    ("MM:mm"), ``inode``, ``path`` (from snapshots, "" when unknown), ``file``
    ("MM:mm:inode path", "" for anonymous memory), ``vma`` (kernel pointer, 0
    when known only from a snapshot).  Adjacent pieces of one VMA pointer
    are shown as one VMA.
    """
    if t is None or len(t) == 0:
        return pd.DataFrame({c: pd.Series([], dtype=np.uint64 if c in ("start", "end", "vm_flags", "pgoff", "inode", "vma") else object) for c in VMA_COLUMNS})
    joined = join_pieces(t.starts, t.ends, t.vals)
    starts = [x[0] for x in joined]
    ends = [x[1] for x in joined]
    vals = [x[2] for x in joined]
    flags = [v[1] for v in vals]
    devs = np.array([v[3] for v in vals], dtype=np.uint64)
    inos = [v[4] for v in vals]
    dev_s = decode_dev(devs)
    paths = paths or {}
    path = [paths.get((int(d), i), "") if i else "" for d, i in zip(devs.tolist(), inos)]
    file = [f"{ds}:{i}" + (f" {p}" if p else "") if i else "" for ds, i, p in zip(dev_s, inos, path)]
    return pd.DataFrame(
        {
            "start": np.array(starts, dtype=np.uint64),
            "end": np.array(ends, dtype=np.uint64),
            "perms": [perms_of(f) for f in flags],
            "vm_flags": np.array(flags, dtype=np.uint64),
            "pgoff": np.array([((v[2] + (s >> PAGE_SHIFT)) << PAGE_SHIFT) & ((1 << 64) - 1) for s, v in zip(starts, vals)], dtype=np.uint64),
            "dev": dev_s,
            "inode": np.array(inos, dtype=np.uint64),
            "path": path,
            "file": file,
            "vma": np.array([v[0] for v in vals], dtype=np.uint64),
        },
        columns=list(VMA_COLUMNS),
    )
