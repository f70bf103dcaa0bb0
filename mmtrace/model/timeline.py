"""VMAs over time, from the change rows: each process's VMA count after each of
its changes, and every VMA's lifetime, without a second replay.

:class:`VmaTimeline` is the ``sink`` of :func:`mmtrace.model.iter_changes`:
it is given each frame of change rows with what they did to the trees
(:class:`mmtrace.model.changes.VmaDelta`: the VMAs each row removed and
added, with their files, and which tree each process has from when, as the
replay engine binds them: the attach snapshots, forks, vforks, execs,
exits).  It keeps the live VMAs of every tree (start, end, pointer,
vm_flags, dev, inode) and, per process, the answer a model query
(``Model.vmas(pid, at)``: the VMAs of the tree bound to the process) would
give at each of its instants: its start (fork, or attach), the ``ts_end``
of each of its changes, and the end of the recording while it is alive.
Memory: the live VMAs and the output rows.

A change is in the tree from its ``done`` instant (its ``ts_end``, or where
an exit-time correction was placed before the exit), and a query at ``at``
sees every change done at or before ``at``: within a frame they are taken
in that order.  A bind carries the tree's VMAs as the replay has them then,
so a group still open (the last change of a vfork parent, whose row comes
with a later window) is in the child's answer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..events.flags import MAPS_PERM_BITS

__all__ = ["VmaTimeline", "COUNT_COLUMNS", "LIFE_COLUMNS"]


_ALIVE = (1 << 64) - 1  # died_ts of a VMA alive at the end: -1 as int64

#: Columns of :meth:`VmaTimeline.counts`.
COUNT_COLUMNS = ("ts", "pid", "vmas", "mapped")
#: Columns of :meth:`VmaTimeline.lifetimes`.
LIFE_COLUMNS = ("pid", "start", "end", "vma", "vm_flags", "dev", "ino", "born_ts", "died_ts")


class _Tree:
    """The live VMAs of one tree, {(start, end, vma, vm_flags, dev, ino): None},
    and the processes bound to it."""

    __slots__ = ("vmas", "pids")

    def __init__(self) -> None:
        self.vmas: dict[tuple, None] = {}
        self.pids: set[int] = set()


class _Answer:
    """What a model query of one process answers: ``vmas`` {key: born ts, None
    while not yet seen by a query}, ``mapped`` (bytes); the changes since its
    last query (``gone``: {key: born ts} of VMAs seen then and gone since,
    ``snap`` if one of them has no pointer; ``came``: keys not seen then),
    and ``at``, the instant of its pending query (None: none pending)."""

    __slots__ = ("pid", "vmas", "mapped", "gone", "came", "snap", "at")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.vmas: dict[tuple, int | None] = {}
        self.mapped = 0
        self.gone: dict[tuple, int] = {}
        self.came: set[tuple] = set()
        self.snap = False
        self.at: int | None = None


class VmaTimeline:
    """Counts and lifetimes of VMAs, fed by :meth:`add` (see the module doc).

    ``starts``: (pid, ts) of each process's start (fork or attach), queried
    there; ``alive``: pids alive at ``end`` (the end of the recording; None:
    the last change's ``ts_end``), queried there too (not when it is 0).
    After the last :meth:`add`, :meth:`counts` and :meth:`lifetimes` give
    the tables.
    """

    def __init__(self, starts=(), alive=(), end: int | None = 0) -> None:
        self.trees: dict[int, _Tree] = {}  # tree uid -> tree
        self.bound: dict[int, _Tree] = {}  # tgid -> its tree
        self.ans: dict[int, _Answer] = {}
        # the start queries, latest first (popped as the changes pass them)
        self._q = sorted(((int(ts), int(p)) for p, ts in starts), reverse=True)
        self._alive = [int(p) for p in alive]
        self.end = None if end is None else int(end)
        self._last = 0  # the last ts_end seen
        # output rows of the window (tuples), then numpy chunks (all fields >= 0: uint64)
        self._cnt: list[tuple] = []  # COUNT_COLUMNS
        self._life: list[tuple] = []  # LIFE_COLUMNS
        self._chunks: dict[str, list[np.ndarray]] = {"cnt": [], "life": []}
        self._done = False

    @classmethod
    def for_trace(cls, trace, end: int | None = None) -> VmaTimeline:
        """The timeline of ``trace``: its processes' starts, and those without an
        exit queried at ``end`` (as the constructor's)."""
        procs = trace.processes(counts=False)
        st, ex = procs["start_ts"].to_numpy(np.float64), procs["exit_ts"].to_numpy(np.float64)
        pid = procs["pid"].to_numpy(np.int64)
        has = ~np.isnan(st)
        alive = pid[np.isnan(ex)]
        return cls(zip(pid[has].tolist(), st[has].astype(np.int64).tolist()), alive.tolist(), end)

    # -- per process -------------------------------------------------------------
    def _answer(self, pid: int) -> _Answer:
        a = self.ans.get(pid)
        if a is None:
            a = self.ans[pid] = _Answer(pid)
        return a

    @staticmethod
    def _change(a: _Answer, gone, came) -> None:
        """Apply to ``a`` the VMAs that went away and appeared (kept net since its last query)."""
        v = a.vmas
        for k in gone:
            if k in v:
                born = v.pop(k)
                a.mapped -= k[1] - k[0]
                if born is None:
                    a.came.discard(k)
                else:
                    a.gone[k] = born
                    if not k[2]:
                        a.snap = True
        for k in came:
            if k not in v:
                a.mapped += k[1] - k[0]
                born = a.gone.pop(k, None)
                v[k] = born
                if born is None:
                    a.came.add(k)

    def _flush(self, a: _Answer) -> None:
        """Answer ``a``'s pending query: a count row; its VMAs gone since the last
        query die, those that came are born, at that instant."""
        at = a.at
        a.at = None
        self._cnt.append((at, a.pid, len(a.vmas), a.mapped))
        gone, came = a.gone, a.came
        if gone:
            if a.snap:
                # A VMA first known from a /proc snapshot (no pointer) that the
                # trace then names with its pointer and flags is the same VMA.
                a.snap = False
                v = a.vmas
                named = {(k[0], k[1], k[3] & MAPS_PERM_BITS): k for k in came}
                for k in [k for k in gone if not k[2]]:
                    twin = named.get((k[0], k[1], k[3] & MAPS_PERM_BITS))
                    if twin is not None and twin in came:
                        v[twin] = gone.pop(k)
                        came.discard(twin)
            pid = a.pid
            app = self._life.append
            for k, born in gone.items():
                app((pid, *k, born, at))
            gone.clear()
        if came:
            v = a.vmas
            for k in came:
                v[k] = at
            came.clear()

    def _query(self, pid: int, at: int) -> None:
        """A model query of ``pid`` at ``at``: answered (:meth:`_flush`) when its
        answer changes at a later instant, or at the end."""
        a = self._answer(pid)
        if a.at is not None and a.at != at:
            self._flush(a)
        a.at = at

    def _bind(self, pid: int, t: _Tree | None, at: int) -> None:
        """From ``at`` on, ``pid``'s mm is tree ``t`` (None: none): its answer becomes ``t``'s VMAs."""
        old = self.bound.pop(pid, None)
        if old is t and t is not None:
            self.bound[pid] = t
            return
        a = self._answer(pid)
        if a.at is not None and a.at < at:
            self._flush(a)
        if old is not None:
            old.pids.discard(pid)
        cur = {} if t is None else t.vmas
        if t is not None:
            t.pids.add(pid)
            self.bound[pid] = t
        self._change(a, [k for k in a.vmas if k not in cur], [k for k in cur if k not in a.vmas])

    def _tree(self, uid: int) -> _Tree:
        t = self.trees.get(uid)
        if t is None:
            t = self.trees[uid] = _Tree()
        return t

    def _spill(self) -> None:
        """The window's output rows into numpy chunks (less memory than tuples)."""
        for name, rows, w in (("cnt", self._cnt, len(COUNT_COLUMNS)), ("life", self._life, len(LIFE_COLUMNS))):
            if rows:
                self._chunks[name].append(np.array(rows, dtype=np.uint64).reshape(-1, w))
                rows.clear()

    # -- the feed ------------------------------------------------------------------
    def add(self, df: pd.DataFrame, d) -> None:
        """One frame of :func:`mmtrace.model.iter_changes` and its
        :class:`~mmtrace.model.changes.VmaDelta` (the ``sink`` signature).

        The frame's changes and binds are applied, and the queries answered,
        in the order of their instants (a query at ``at`` sees every change
        from ``at`` on or before); at one instant changes before queries, and
        changes in replay order."""
        n = len(df)
        nb = len(d.binds)
        # each row's VMAs gone [o[2r], o[2r+1]) and come [o[2r+1], o[2r+2])
        code = d.row.astype(np.int64) * 2 + d.side
        order = np.argsort(code, kind="stable")
        o = np.searchsorted(code[order], np.arange(2 * n + 1)).tolist()
        keys = list(zip(*(x[order].tolist() for x in (d.start, d.end, d.vma, d.vm_flags, d.dev, d.ino))))
        ts_end = df["ts_end"].to_numpy(np.int64)
        if n:
            self._last = max(self._last, int(ts_end.max()))
        # items: binds (0), changes (1), queries at ts_end (2), starts (3)
        inst = [d.binds[:, 1], d.done, ts_end]
        typ = [np.zeros(nb, np.int8), np.ones(n, np.int8), np.full(n, 2, np.int8)]
        idx = [np.arange(nb), np.arange(n), np.arange(n)]
        pos = [2 * d.binds[:, 0], 2 * np.arange(n) + 1, 2 * np.arange(n) + 1]
        q = self._q
        top = max(int(x.max()) for x in inst if len(x)) if n or nb else None
        starts = []
        while q and top is not None and q[-1][0] <= top:
            starts.append(q.pop())
        if starts:
            inst.append(np.array([s[0] for s in starts], np.int64))
            typ.append(np.full(len(starts), 3, np.int8))
            idx.append(np.arange(len(starts)))
            pos.append(np.zeros(len(starts), np.int64))
        inst, typ, idx, pos = (np.concatenate(x) for x in (inst, typ, idx, pos))
        seq = np.lexsort((pos, typ >= 2, inst))
        pid = df["pid"].tolist()
        uid = d.uid.tolist()
        kind = df["kind"].tolist()
        binds = d.binds.tolist()
        bind_vmas = d.bind_vmas
        trees, ans, change, flush, query = self.trees, self.ans, self._change, self._flush, self._query
        for ty, i, at in zip(typ[seq].tolist(), idx[seq].tolist(), inst[seq].tolist()):
            if ty == 1:
                t = trees.get(uid[i]) or self._tree(uid[i])
                j = 2 * i
                gone, came = keys[o[j]:o[j + 1]], keys[o[j + 1]:o[j + 2]]
                vm = t.vmas
                for k in gone:
                    vm.pop(k, None)
                for k in came:
                    vm[k] = None
                for p in t.pids:
                    a = ans[p]
                    # a query pending at a later instant (a change that completed
                    # in an earlier window than its row) sees this change too
                    if a.at is not None and a.at < at:
                        flush(a)
                    change(a, gone, came)
                if kind[i] == "exit":
                    trees.pop(uid[i], None)  # the tree's last change
            elif ty == 2:
                query(pid[i], at)
            elif ty == 0:
                _, _, tgid, u = binds[i]
                if u == 0:
                    self._bind(tgid, None, at)
                    continue
                t = self._tree(u)
                # the tree as the replay has it: with the changes of a group
                # still open (their row comes later, and then changes nothing)
                t.vmas = dict.fromkeys(bind_vmas[i])
                self._bind(tgid, t, at)
            else:
                ts, p = starts[i]
                query(p, ts)
        self._spill()

    def finish(self) -> None:
        """Answer the queries left: the starts not passed, the end, every one pending."""
        if self._done:
            return
        self._done = True
        while self._q:
            ts, p = self._q.pop()
            self._query(p, ts)
        end = self._last if self.end is None else self.end
        if end:
            for p in self._alive:
                self._query(p, end)
        for a in self.ans.values():
            if a.at is not None:
                self._flush(a)
        # what each process's last query showed: the VMAs seen then still there, and those gone since
        for a in self.ans.values():
            for k, born in a.vmas.items():
                if born is not None:
                    self._life.append((a.pid, *k, born, _ALIVE))
            for k, born in a.gone.items():
                self._life.append((a.pid, *k, born, _ALIVE))
        self._spill()
        for name in ("cnt", "life"):
            ch = self._chunks[name]
            if len(ch) > 1:
                self._chunks[name] = [np.concatenate(ch)]

    def _table(self, name: str, width: int) -> np.ndarray:
        self.finish()
        ch = self._chunks[name]
        return ch[0] if ch else np.zeros((0, width), np.uint64)

    # -- the tables ------------------------------------------------------------------
    def counts(self) -> pd.DataFrame:
        """VMAs of each process at each of its instants: ``ts``, ``pid``, ``vmas``
        (count), ``mapped`` (bytes); sorted by (ts, pid), one row per instant
        (the last answer of a process at an instant), instants with no
        address space (before a fork's copy, inside an exec) left out but the last."""
        c = self._table("cnt", len(COUNT_COLUMNS))
        ts, pid, n, mapped = c[:, 0].view(np.int64), c[:, 1].view(np.int64), c[:, 2].view(np.int64), c[:, 3]
        # one row per (pid, ts): the last answered
        o = np.lexsort((np.arange(len(ts)), ts, pid))
        last = np.ones(len(o), bool)
        last[:-1] = (pid[o][1:] != pid[o][:-1]) | (ts[o][1:] != ts[o][:-1])
        o = o[last]
        # No address space: before a fork's copy, or for an instant of an exec
        # (old tree gone, new one not yet bound); keep only the final teardown.
        p_o = pid[o]
        final = np.ones(len(o), bool)
        final[:-1] = p_o[1:] != p_o[:-1]
        o = o[(n[o] > 0) | final]
        o = o[np.lexsort((pid[o], ts[o]))]
        return pd.DataFrame({"ts": ts[o], "pid": pid[o], "vmas": n[o], "mapped": mapped[o]}, columns=list(COUNT_COLUMNS))

    def lifetimes(self) -> pd.DataFrame:
        """Every VMA's lifetime per process: ``pid``, ``start``, ``end``, ``vma``,
        ``vm_flags``, ``dev``, ``ino``, ``born_ts`` (the instant a query first
        showed it), ``died_ts`` (the first instant it was no longer shown; -1
        if still shown by the process's last query); unsorted."""
        return pd.DataFrame(self.lifetime_columns(), columns=list(LIFE_COLUMNS), copy=True)  # one copy of each column

    def lifetime_columns(self) -> dict[str, np.ndarray]:
        """:meth:`lifetimes` as views of the timeline's own table (no copy: they
        live as long as it does): ``pid``, ``born_ts``, ``died_ts`` int64, the rest uint64."""
        c = self._table("life", len(LIFE_COLUMNS))
        out = {name: c[:, k] for k, name in enumerate(LIFE_COLUMNS)}
        for name in ("pid", "born_ts", "died_ts"):
            out[name] = out[name].view(np.int64)
        return out
