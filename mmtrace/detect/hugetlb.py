"""hugetlb reservation accounting: a model of mm/hugetlb.c, checked against the kernel.

The model replays the traced processes' hugetlb VMAs (``trace.changes()``),
their hugetlb faults and their madvise calls, page by page, with the rules of
mm/hugetlb.c (v6.18; each rule names its function, and the commit where it
changed).  It predicts two counters:

- ``resv_huge_pages`` of the hstate (global, /sys/kernel/mm/hugepages/), and
- the traced command's hugetlb cgroup counter ``hugetlb.<size>.rsvd.current``
  (read in the kernel at every sample when the recorder gave the command a
  cgroup of its own, capture/cgroup.py).

Rules (``R1``..; ``_RULES`` lists them, ``hugetlb_accounting`` applies them):

R1 ``hugetlb_reserve_pages``: a private mapping without VM_NORESERVE gets a
   resv_map of its own (HPAGE_RESV_OWNER) and reserves every page; a shared
   one reserves the file pages its inode's region map lacks (``region_chg``)
   and adds them; VM_NORESERVE reserves nothing.  The cgroup is charged the
   same pages (``hugetlb_cgroup_charge_cgroup_rsvd``, "hugetlb_cgroup: add
   reservation accounting for private mappings", v5.7).
R2 ``hugetlb_dup_vma_private``: a fork child's private VMAs have no resv_map;
   split pieces share their VMA's (``hugetlb_vm_op_open``).  The child maps
   the parent's faulted pages: one folio, two mappings
   (``copy_hugetlb_page_range``).
R3 ``alloc_hugetlb_folio`` / ``vma_needs_reservation``: a fault that finds a
   reservation (private owner: the page has no entry in the resv_map, whose
   meaning is inverted for private mappings; shared: the file page has a
   region entry) consumes it (``resv_huge_pages--``); one without (child,
   VM_NORESERVE, a page whose reservation was consumed, a punched file page)
   takes a free page no one reserved, and fails (SIGBUS) when there is none
   (``dequeue_hugetlb_folio_vma``: free - resv == 0), and charges the folio
   to the cgroup's reservation counter until it is freed
   (``hugetlb_cgroup_commit_charge_rsvd`` / ``free_huge_folio``).
   A write to a page shared with another mapping copies it (``hugetlb_wp``);
   to a page mapped once, it reuses it.
R4 ``__unmap_hugepage_range`` ("mm/hugetlb: restore the reservation if
   needed", 2024): unmapping (MADV_DONTNEED, munmap, exit) an anonymous folio of the
   reservation owner while ``surplus_huge_pages`` is 0 restores the page's
   reservation in the resv_map at once (``vma_add_reservation``) and flags
   the folio; ``free_huge_folio`` gives ``resv_huge_pages`` its +1 when the
   folio's last mapping goes, which may be a fork child's, later.
R5 ``hugetlb_vm_op_close``: closing an owner's VMA (munmap, exit, the piece
   a partial munmap cuts off) releases its pages without a resv_map entry
   (``(end - start) - region_count``) and uncharges all its pages from the
   cgroup (``hugetlb_cgroup_uncharge_counter``).  After R4 that includes the
   pages just unmapped.
R6 ``hugetlbfs_punch_hole`` (MADV_REMOVE, fallocate(PUNCH_HOLE)): the pages
   are unmapped from every mapping (``hugetlb_vmdelete_list``), then each page
   in the page cache is removed with its region entry
   (``remove_inode_single_folio`` -> ``hugetlb_unreserve_pages(index, index
   + 1, 1)``: no global change, the cgroup uncharged); reserved pages of the
   hole that no fault backed keep their reservation.  Truncation and inode
   eviction (``remove_inode_hugepages`` with ``truncate_op``) release every
   entry not backed by a page (``chg - freed``).
R7 a shared file's reservations outlive its mappings: they go when its inode
   is evicted, at the last ``fput`` (deferred to the task's return to user
   space or exit, or done by an untraced process): an optional change the
   check accepts at any later sample.
R8 a SysV segment's pages are reserved when it is made, not when it is
   attached: ``shmget(SHM_HUGETLB)`` -> ``newseg()`` (ipc/shm.c) ->
   ``hugetlb_file_setup()`` -> ``hugetlb_reserve_pages(inode, 0, size, NULL,
   acctflag)``, none with SHM_NORESERVE; ``shmat()`` then maps the file and
   ``region_chg`` finds every page reserved.  shmget is not traced (nor is
   who made the segment, nor when): the reservation of each segment the
   trace first sees at a shmat is an optional change from the start of the
   trace, taken when the counters show it (as R7's), and the shmat itself
   reserves nothing.

Evidence.  The counters are read in the kernel at syscall entry and exit of
every traced syscall of an mm holding hugetlb VMAs, at its hugetlb faults
(before they are handled) and at its ``exit_mmap``.  A sample's counters are
read at some instant between its stamp and the end of the reads
(``_read_ends``: microseconds apart at times, when the vCPU stops between the
two).  A sample is *exact* when no other traced thread had a syscall, fault
or exit in progress during that interval and no optional change is pending:
the model's value then has no freedom.  The cgroup counter cannot be moved by untraced processes; the
global one can, so global samples are exact only in a trace that says the
pool was the traced processes' alone (``hugetlb_evidence.exclusive_pool``).

Levels.  A kernel counter below zero and the kernel's own warning are errors.
A model/kernel disagreement is an error at an exact sample, otherwise a note
saying why it could not be decided.  "Released twice" is claimed only when
the kernel's own counter went below zero.
"""

from __future__ import annotations

import bisect
import copy
import os
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import accumulate, combinations

import numpy as np
import pandas as pd

from ..events.flags import VM_HUGETLB, VM_MAYSHARE, VM_NORESERVE

__all__ = ["hugetlb_accounting", "hugetlb_anomalies", "hugetlb_evidence", "KMSG_HUGETLB", "RULES"]

# The kernel's own alarm (mm/hugetlb.c, hugetlb_fix_reserve_counts()).
KMSG_HUGETLB = "Huge Page Reserved count may go negative"
_U63 = 1 << 63
_NOCG = (1 << 64) - 1
_VM_READ, _VM_WRITE = 0x1, 0x2
_MADV_DONTNEED, _MADV_REMOVE = 4, 9
_ENOMEM = 12
_FALLOC_PUNCH_HOLE = 0x2
_PAGE = 4096

RULES = {
    "R1": "hugetlb_reserve_pages",
    "R2": "hugetlb_dup_vma_private / copy_hugetlb_page_range",
    "R3": "alloc_hugetlb_folio / vma_needs_reservation / hugetlb_wp",
    "R4": "__unmap_hugepage_range restore reserve",
    "R5": "hugetlb_vm_op_close",
    "R6": "hugetlb_unreserve_pages (punch hole)",
    "R7": "inode eviction of a shared file",
    "R8": "a SysV segment reserved at shmget",
}
# Test-only: a deliberately wrong rule, to show the check catches it
# (tests/live/test_hugetlb_live.py).  "child_owns": a fork child's private
# VMAs reserve their pages, as if hugetlb_dup_vma_private() kept the resv_map.
_WRONG_RULE_ENV = "MMTRACE_TEST_HUGETLB_WRONG_RULE"


@dataclass
class _Folio:
    maps: set = field(default_factory=set)  # (tree, page address)
    anon: bool = True
    restore: bool = False  # R4: free_huge_folio gives resv_huge_pages +1
    charged: bool = False  # R3: holds a cgroup reservation charge
    cached: object = None  # (dev, ino, file page) while in a shared file's page cache
    pins: int = 0  # references of COW faults in progress (hugetlb_wp: folio_get(old_folio))


@dataclass
class _Vma:
    start: int
    end: int
    flags: int
    file: tuple  # (dev, ino, base): file page of addr = (addr // 4096 + base) * 4096 // hpage
    owner: int  # resv_map id (R1) or 0
    unmapped: bool = False  # HPAGE_RESV_UNMAPPED: the owner took its page back (R3)


class _Model:
    """The page-level state of the traced processes' hugetlb mappings."""

    def __init__(self, hpage: int, wrong: str = "") -> None:
        self.h = hpage
        self.wrong = wrong
        self.vmas: dict[int, list[_Vma]] = defaultdict(list)
        self.consumed: dict[int, set] = defaultdict(set)  # owner -> pages with a resv_map entry
        self.region: dict[tuple, dict] = defaultdict(dict)  # (dev, ino) -> file page -> charged
        self.cache: dict[tuple, dict] = defaultdict(dict)  # (dev, ino) -> file page -> _Folio
        self.pte: dict[tuple, _Folio] = {}  # (tree, page) -> folio mapped there
        self.next_owner = 1
        self.resv = 0  # change of resv_huge_pages since the start
        self.cg = 0  # change of the cgroup counter, in huge pages
        self.optional: dict[tuple, str] = {}  # file -> why: R7, its eviction may come at any time
        # R8: (dev, ino) of a SysV segment -> its file pages, reserved by a shmget the
        # trace does not show; optional as (_SHMGET, dev, ino) until the counters show it
        self.shmget: dict[tuple, list[int]] = {}
        self.log: list[str] = []
        self.unsure = ""  # why the model lost track (then no sample is exact)
        self.parent_pid: dict[int, int] = {}  # child tgid -> parent tgid (proc fork events)
        self.tree_of_pid: dict[int, int] = {}  # tgid -> its mm's tree, as of now in the replay
        self.steps: list[tuple[int, int]] = []  # (resv, cg) of each change of the event being applied
        self.pinned: dict[int, list] = defaultdict(list)  # tid -> folios its COW fault in progress holds
        self.fault_tid = 0  # the thread of the fault being applied
        self.deltas: list[tuple[int, int, int, int]] = []  # (ts applied, tid, resv, cg) of every modeled change
        # _Branches: ((tree, page), until, folio) the order this model follows
        # assumed was unmapped from that folio by ``until``
        self.expect: list[tuple] = []
        self.impossible = False  # the trace refuted this model's order (_Branches drops it)
        self.at: dict[int, tuple[int, int]] = {}  # sample index -> (resv, cg) there, until _Branches.settle

    def signature(self) -> tuple:
        """What two models must share to predict the same from now on (``_Branches`` merges them)."""
        return (self.resv, self.cg, self.unsure, tuple(sorted(self.optional)),
                tuple(sorted((k, f.anon, f.restore, f.charged, f.pins, tuple(sorted(f.maps)), f.cached is not None)
                             for k, f in self.pte.items())),
                tuple(sorted((t, len(fs)) for t, fs in self.pinned.items() if fs)),
                tuple((k, u, self.pte.get(k) is f) for k, u, f in self.expect),
                tuple(sorted((o, tuple(sorted(c))) for o, c in self.consumed.items() if c)),
                tuple((t, tuple((v.start, v.end, v.owner, v.unmapped) for v in vs)) for t, vs in sorted(self.vmas.items())),
                tuple(sorted(self.tree_of_pid.items())))

    # -- helpers -------------------------------------------------------
    def _add(self, resv: int, cg: int, what: str) -> None:
        self.resv += resv
        self.cg += cg
        if resv or cg:
            self.log.append(what)
            # in the kernel's order: another thread may see any prefix (_inflight)
            self.steps.append((resv, cg))

    def vma_at(self, tree: int, addr: int) -> _Vma | None:
        for v in self.vmas.get(tree, ()):
            if v.start <= addr < v.end:
                return v
        return None

    def fpage(self, v: _Vma, page: int) -> tuple:
        dev, ino, base = v.file
        return dev, ino, ((page // _PAGE + base) * _PAGE) // self.h

    def _pages(self, s: int, e: int):
        return range(s - s % self.h, e, self.h)

    def _drop(self, tree: int, page: int) -> None:
        """A mapping of a folio goes (zap); free it with its last mapping."""
        f = self.pte.pop((tree, page), None)
        if f is None:
            return
        f.maps.discard((tree, page))
        self._free_unused(f)

    def _free_unused(self, f: _Folio) -> None:
        if not f.maps and not f.pins and f.cached is None:
            # free_huge_folio(): the restore flag gives the reservation back (R4)
            self._add(1 if f.restore else 0, -1 if f.charged else 0, "free_huge_folio")

    def zap(self, tree: int, v: _Vma, s: int, e: int, surplus: int) -> None:
        """__unmap_hugepage_range() over [s, e) of VMA v (R4)."""
        for p in self._pages(max(s, v.start), min(e, v.end)):
            f = self.pte.get((tree, p))
            if f is None:
                continue
            if v.owner and not v.flags & VM_MAYSHARE and f.anon and surplus == 0:
                f.restore = True
                self.consumed[v.owner].discard(p)  # vma_add_reservation()
            self._drop(tree, p)

    def close(self, tree: int, v: _Vma, s: int, e: int) -> None:
        """hugetlb_vm_op_close() of the piece [s, e) of v (R5)."""
        if not v.owner or v.flags & VM_MAYSHARE:
            return
        pages = list(self._pages(max(s, v.start), min(e, v.end)))
        free = sum(1 for p in pages if p not in self.consumed[v.owner])
        for p in pages:
            self.consumed[v.owner].discard(p)
        # hugetlb_cgroup_uncharge_counter() first, then hugetlb_acct_memory()
        self._add(0, -len(pages), "hugetlb_vm_op_close")
        self._add(-free, 0, "hugetlb_vm_op_close")

    def reserve(self, v: _Vma) -> None:
        """hugetlb_reserve_pages() for a new VMA (R1)."""
        if v.flags & VM_NORESERVE:
            return
        if v.flags & VM_MAYSHARE:
            key = v.file[:2]
            self.optional.pop(key, None)  # mapped again: the inode lives on
            n = 0
            pre = (_SHMGET, *key) in self.optional  # R8: reserved by its shmget (not seen yet)
            for p in self._pages(v.start, v.end):
                fp = self.fpage(v, p)[2]
                if fp not in self.region[key]:
                    self.region[key][fp] = True
                    n += 0 if pre and fp in self.shmget[key] else 1
            self._add(0, n, "hugetlb_reserve_pages (shared)")
            self._add(n, 0, "hugetlb_reserve_pages (shared)")
            return
        v.owner = self.next_owner
        self.next_owner += 1
        n = len(self._pages(v.start, v.end))
        # the cgroup is charged first (hugetlb_cgroup_charge_cgroup_rsvd), the
        # hstate after (hugetlb_acct_memory)
        self._add(0, n, "hugetlb_reserve_pages")
        self._add(n, 0, "hugetlb_reserve_pages")

    def cow_others(self, tree: int, addr: int, write: bool, failed: bool | None = None) -> set[int]:
        """The other trees mapping the folio a write fault at ``addr`` would copy
        (``hugetlb_wp()``: copy when the folio is mapped more than once); empty
        when the fault is no such decision."""
        v = self.vma_at(tree, addr)
        if failed or not write or v is None or not v.flags & _VM_WRITE or v.flags & VM_MAYSHARE:
            return set()
        f = self.pte.get((tree, addr - addr % self.h))
        if f is None or not f.anon or len(f.maps) <= 1:
            return set()
        return {t for t, _ in f.maps if t != tree}

    def owner_cow(self, tree: int, addr: int, write: bool, failed: bool | None = None) -> bool:
        """Whether a write fault at ``addr`` is the owner's COW of a shared folio
        (:meth:`cow_others`): ``hugetlb_wp()`` with cow_from_owner, which copies
        if ``alloc_hugetlb_folio()`` finds an unreserved page and else takes the
        page from the other mappings (``unmap_ref_private()``)."""
        return bool(self.cow_others(tree, addr, write, failed)) and bool(self.vma_at(tree, addr).owner)

    def dry_owner_cow(self, tree: int, addr: int, write: bool, free: int, resv: int,
                      failed: bool | None = None) -> bool:
        """Whether a write fault at ``addr`` is the owner's COW of a shared folio
        (:meth:`owner_cow`) started with no unreserved page (``_Branches``:
        whether one was freed before ``alloc_hugetlb_folio()`` looked, the
        counters cannot say)."""
        return free - resv <= 0 and self.owner_cow(tree, addr, write, failed)

    def fault(self, tree: int, addr: int, write: bool, free: int, resv: int, failed: bool | None = None,
              order: str = "") -> None:
        """A user fault at addr (R3); free/resv: the global counters just before
        it; failed: whether it ended in SIGBUS (None: not recorded); ``order``
        (an order of concurrent work the trace cannot tell, ``_Branches``):
        ``"reuse"``, the folio's other mappings were gone when ``hugetlb_wp()``
        looked; ``"copy"``, the owner's COW found a free page after all;
        ``"unmap"``, the owner's COW found none, though there was one when it
        started (another allocation took it first)."""
        v = self.vma_at(tree, addr)
        if v is None or not v.flags & (_VM_WRITE if write else _VM_READ):
            return  # no VMA, or access_error(): SIGSEGV before any allocation
        if failed:
            # VM_FAULT_SIGBUS: alloc_hugetlb_folio() found no page and undid
            # its charges (out_uncharge_cgroup_reservation): nothing changed
            return
        page = addr - addr % self.h
        if order == "reuse" and (tree, page) in self.pte:
            self.log.append("hugetlb_wp reuses the folio (its other mappings were gone first)")
            return
        # an unreserved page was there when the fault allocated (no SIGBUS),
        # whatever the counters said when it started (_fault_outcomes)
        pool = free - resv > 0
        avail = pool if failed is None else True
        f = self.pte.get((tree, page))
        if f is not None:
            # hugetlb_wp(): reuse an anonymous folio mapped once, else copy it
            if not write or v.flags & VM_MAYSHARE or (f.anon and len(f.maps) <= 1):
                return
            # the owner's copy of its own anonymous folio is cow_from_owner
            # (alloc_hugetlb_folio(): MAP_CHG_ENFORCED, from Peter Xu's 2025
            # rework of avoid_reserve): it never takes the resv_map's reservation
            # (no SIGBUS either way: the counters at the fault's start decide)
            if v.owner and f.anon and (not pool or order == "unmap") and order != "copy":
                # hugetlb_wp() -> unmap_ref_private(): the owner cannot copy, so
                # the page is taken from the other (non-owner) mappings, which
                # are marked HPAGE_RESV_UNMAPPED, and the owner reuses it
                for m in list(f.maps):
                    other = self.vma_at(*m) if m != (tree, page) else None
                    if other is not None and not other.owner:
                        other.unmapped = True
                        self._drop(*m)
                return
            self._alloc_private(tree, v, page, avail or order == "copy", replace=True,
                                enforced=bool(v.owner and f.anon))
            return
        key, fp = self.fpage(v, page)[:2], self.fpage(v, page)[2]
        cf = self.cache[key].get(fp) if v.file[1] else None
        if v.flags & VM_MAYSHARE:
            if cf is not None:
                cf.maps.add((tree, page))
                self.pte[(tree, page)] = cf
                return
            cf = self.shmem_alloc(key, fp, avail, "fault")
            if cf is not None:
                cf.maps.add((tree, page))
                self.pte[(tree, page)] = cf
            return
        if v.unmapped:
            # hugetlb_no_page(): "killed due to inadequate hugepage pool", SIGBUS;
            # a fault known to have returned without one refutes this model's order
            if failed is False:
                self.impossible = True
            return
        if cf is not None and not write:
            # hugetlb_no_page(): a private read maps the file's page itself
            cf.maps.add((tree, page))
            self.pte[(tree, page)] = cf
            return
        self._alloc_private(tree, v, page, avail)

    def shmem_alloc(self, key, fp, avail: bool, why: str) -> _Folio | None:
        """A new page of a shared hugetlb file (fault or fallocate): consumes the
        region entry's reservation, or takes an unreserved page (R3)."""
        if fp in self.region[key]:
            self._add(-1, 0, f"{why} consumes the file page's reservation")
            cf = _Folio(anon=False, charged=False)
        elif avail:
            self.region[key][fp] = False  # vma_commit_reservation(): an uncharged entry
            cf = _Folio(anon=False, charged=True)
            self._add(0, 1, f"{why} without a reservation (shared)")
        else:
            return None
        cf.cached = (key, fp)
        self.cache[key][fp] = cf
        return cf

    def _alloc_private(self, tree, v: _Vma, page: int, avail: bool, replace: bool = False,
                       enforced: bool = False) -> bool:
        """alloc_hugetlb_folio() for a private page: the owner's reservation if
        the resv_map has no entry for it, else an unreserved page (R3)."""
        if enforced:
            if not avail:
                return False
            self._add(0, 1, "hugetlb_wp copy (cow_from_owner)")
            self._replace(tree, page, charged=True)
            return True
        if v.owner and page not in self.consumed[v.owner]:
            charged, what = False, "first fault consumes the page's reservation"
            resv = -1
        elif avail:
            charged, what, resv = True, "fault without a reservation", 0
        else:
            return False  # VM_FAULT_SIGBUS (or the owner's COW unmaps the child's: not modeled)
        if v.owner:
            self.consumed[v.owner].add(page)
        self._add(resv, 1 if charged else 0, what)
        if replace:
            self._replace(tree, page, charged)
        else:
            self._new_folio(tree, page, charged=charged)
        return True

    def _replace(self, tree, page, charged: bool) -> None:
        """hugetlb_wp() breaks COW: the new folio replaces the old one in the
        page table (hugetlb_remove_rmap), but the fault holds its own
        reference on the old folio until it returns (folio_get() before
        alloc_hugetlb_folio(), folio_put() at out_release_all): if another
        process unmaps the last other mapping meanwhile, the old folio is
        freed only when the fault ends (``fault_end``)."""
        old = self.pte.get((tree, page))
        if old is not None:
            old.maps.discard((tree, page))
            old.pins += 1
            self.pinned[self.fault_tid].append(old)
        self._new_folio(tree, page, charged=charged)

    def fault_end(self, tid: int) -> None:
        """The fault of ``tid`` returned: its references go (``_replace``)."""
        for f in self.pinned.pop(tid, ()):
            f.pins -= 1
            self._free_unused(f)

    def _region_used(self, key, fp) -> bool:
        return fp in self.cache[key]

    def _new_folio(self, tree, page, charged, anon=True) -> _Folio:
        f = _Folio(maps={(tree, page)}, anon=anon, charged=charged)
        self.pte[(tree, page)] = f
        return f

    def punch(self, key: tuple, f0: int, f1: int, surplus: int) -> None:
        """hugetlbfs_punch_hole() of file pages [f0, f1) (R6)."""
        for tree, vs in self.vmas.items():
            for v in vs:
                if v.file[:2] != key:
                    continue
                for p in self._pages(v.start, v.end):
                    if f0 <= self.fpage(v, p)[2] < f1:
                        self.zap(tree, v, p, p + self.h, surplus)
        # remove_inode_single_folio(): only pages in the page cache are
        # unreserved, one by one (hugetlb_unreserve_pages(index, index + 1,
        # freed = 1): chg - freed = 0 globally); a hole's reserved pages
        # without a page keep their reservation until truncate or eviction.
        cg = 0
        for fp in [x for x in self.cache[key] if f0 <= x < f1]:
            cf = self.cache[key].pop(fp)
            cg -= 1 if cf.charged else 0
            cg -= 1 if self.region[key].pop(fp, False) else 0
            for m in list(cf.maps):
                self.pte.pop(m, None)
        self._add(0, cg, "remove_inode_single_folio (punch hole)")

    def _release_file(self, key, f0, f1, why) -> None:
        resv = cg = 0
        for fp in [x for x in self.region[key] if f0 <= x < f1]:
            charged = self.region[key].pop(fp)
            cf = self.cache[key].pop(fp, None)
            if cf is None:
                resv -= 1  # a reservation no page consumed: chg - freed
            elif cf.charged:
                cg -= 1  # the page's own charge goes with it
            if charged:
                cg -= 1  # file_region's reservation_counter
            if cf is not None:
                for m in list(cf.maps):
                    self.pte.pop(m, None)
        for fp in [x for x in self.cache[key] if f0 <= x < f1]:
            cf = self.cache[key].pop(fp)
            if cf.charged:
                cg -= 1
        self._add(resv, cg, why)

    def eviction(self, key) -> tuple[int, int]:
        """What evicting the file's inode would change: (resv, cg); for an R8 key
        (``(_SHMGET, dev, ino)``), what the segment's unseen shmget reserved."""
        if key[0] == _SHMGET:
            n = len(self.shmget[key[1:]])
            return n, n
        resv = -sum(1 for fp in self.region[key] if fp not in self.cache[key])
        cg = -sum(1 for c in self.region[key].values() if c) - sum(1 for f in self.cache[key].values() if f.charged)
        return resv, cg

    def remove_file(self, key) -> None:
        """No traced mapping of the file is left: its eviction may come at any time (R7)."""
        if key in self.optional:
            return
        resv, cg = self.eviction(key)
        if resv or cg:
            self.optional[key] = f"the reservations of hugetlb file {key[1]} went with its inode (evicted)"

    def evict(self, key) -> None:
        why = self.optional.pop(key)
        if key[0] == _SHMGET:
            # hugetlb_file_setup() -> hugetlb_reserve_pages(): cgroup first, then the hstate
            fps = self.shmget[key[1:]]
            for fp in fps:
                self.region[key[1:]].setdefault(fp, True)
            self._add(0, len(fps), why)
            self._add(len(fps), 0, why)
            return
        self._release_file(key, 0, 1 << 62, why)

    def unseen_shmget(self, v: _Vma) -> None:
        """R8: segment ``v`` (its first shmat in the trace) was reserved by a shmget
        made before, at an instant the trace does not show."""
        key = v.file[:2]
        if key in self.shmget or self.region.get(key) or v.flags & VM_NORESERVE:
            return
        self.shmget[key] = [self.fpage(v, p)[2] for p in self._pages(v.start, v.end)]
        self.optional[(_SHMGET, *key)] = (f"hugetlb_file_setup() reserved SysV segment {key[1]}'s "
                                          f"{len(self.shmget[key])} page(s) at its shmget (not traced)")


def _vma_files(trace) -> dict[tuple[int, int], list[tuple[int, int, int, int]]]:
    """(tree, vma pointer) -> [(ts, dev, ino, vm_pgoff - vm_start/PAGE)] of its stores, from tree writes."""
    tw = trace.raw_events("tree_write")
    if len(tw) == 0:
        return {}
    f = tw[((tw["flags"] & 0x1) != 0) & ((tw["vm_flags"] & VM_HUGETLB) != 0)]
    out: dict = defaultdict(list)
    for ts, tree, val, dev, ino, pgoff, start in zip(
        f["ts"].tolist(), f["tree"].tolist(), f["val"].tolist(), f["dev"].tolist(), f["ino"].tolist(),
        f["vm_pgoff"].tolist(), f["vm_start"].tolist()
    ):
        out[(tree, val)].append((ts, dev, ino, pgoff - start // _PAGE))
    return out


# R8's optional keys: (_SHMGET, dev, ino) beside R7's (dev, ino) (dev >= 0: they sort apart)
_SHMGET = -1


def _unseen_shmgets(st: _Model, evs: list[tuple], files) -> None:
    """R8 for every SysV hugetlb segment a shmat of the trace attaches: its
    reservation, made by a shmget before, is optional from the start."""
    for _, _, kind, pl, _ in evs:
        if kind != "change":
            continue
        cr, hb, ha = pl
        if str(cr.cause) != "shmat":
            continue
        before = {(v[0], v[1], v[2]) for v in hb}
        for a in ha:
            if a[3] & VM_MAYSHARE and (a[0], a[1], a[2]) not in before:
                dev, ino, base = _file_of(files, int(cr.tree), a[2], int(cr.ts_end))
                st.unseen_shmget(_Vma(a[0], a[1], a[3], (dev, ino, base), 0))


def _file_of(files, tree: int, ptr: int, ts: int) -> tuple[int, int, int]:
    best = (0, 0, 0)
    for t, dev, ino, base in files.get((tree, ptr), ()):
        if t <= ts:
            best = (dev, ino, base)
    return best


def hugetlb_evidence(trace) -> dict:
    """What the trace's hugetlb samples can prove: ``{"cgroup": path or None,
    "exclusive_pool": bool, "counters": str, ...}`` from its metadata (older
    traces: global counters at syscall exit only)."""
    ev = dict(trace.metadata.get("hugetlb_evidence") or {})
    ev.setdefault("cgroup", None)
    ev.setdefault("exclusive_pool", False)
    ev.setdefault("counters", "hstate (global)")
    return ev


def _timeline(trace, hs: pd.DataFrame, ends: dict | None = None) -> list[tuple]:
    """Model inputs in time order: (ts, order, kind, payload)."""
    evs: list[tuple] = []
    ch = trace.changes()
    for r in ch.itertuples(index=False):
        hb = [v for v in r.before_vmas if v[3] & VM_HUGETLB]
        ha = [v for v in r.after_vmas if v[3] & VM_HUGETLB]
        if hb or ha:
            # exit-time changes have no thread (tid 0): they are the process's,
            # as its exit span in _windows
            evs.append((int(r.ts_end), 1, "change", (r, hb, ha), int(r.tid) or int(r.pid)))
    sc = trace.raw_events("syscall")
    if len(sc):
        # madvise_walk_vmas(): a range with unmapped parts is -ENOMEM, but the
        # VMAs in it were still advised
        m = sc[(sc["syscall"] == "madvise") & sc["ret"].isin([0, -_ENOMEM])
               & sc["arg2"].isin([_MADV_DONTNEED, _MADV_REMOVE])]
        for r in m.itertuples(index=False):
            evs.append((int(r.ts), 0, "madvise", (int(r.tgid), int(r.arg0), int(r.arg1), int(r.arg2)), int(r.tid)))
    if len(sc):
        fa = sc[(sc["syscall"] == "fallocate") & (sc["ret"] == 0)]
        if len(fa):
            files = _fd_files(trace, sc)
            for r in fa.itertuples(index=False):
                cands = files.get((int(r.tgid), int(r.arg0) & 0xFFFFFFFF), [])
                key = min(cands, key=lambda c: abs(c[0] - int(r.ts)))[1] if cands else None
                evs.append((int(r.ts), 0, "fallocate", (int(r.tgid), key, int(r.arg1), int(r.arg2), int(r.arg3)),
                            int(r.tid)))
    faults = trace.raw_events("fault")
    if len(faults) and len(hs):
        # The fault's sample reads the counters before the fault is handled:
        # the fault's effect comes just after it.
        fs = hs[hs["cause"] == 2][["ts", "tid", "address", "free_huge_pages", "resv_huge_pages"]]
        left = faults[["ts", "tid", "tgid", "address", "error_code"]].astype("int64").sort_values("ts")
        right = fs.rename(columns={"ts": "sample_ts"}).astype("int64").sort_values("sample_ts")
        mm = pd.merge_asof(left, right, left_on="ts", right_on="sample_ts", by=["tid", "address"], direction="forward")
        mm["sample_ts"] = mm["sample_ts"].fillna(mm["ts"]).astype("int64")
        failed = _fault_outcomes(trace, hs)
        ends = _fault_ends(trace, hs) if ends is None else ends
        for r in mm.itertuples(index=False):
            free = int(r.free_huge_pages) if r.free_huge_pages == r.free_huge_pages else 1 << 40
            resv = int(r.resv_huge_pages) if r.resv_huge_pages == r.resv_huge_pages else 0
            out = failed.get((int(r.tid), int(r.sample_ts))) if failed is not None else None
            end = ends.get((int(r.tid), int(r.sample_ts)))
            evs.append((int(r.sample_ts) + 1, 2, "fault", (int(r.tgid), int(r.address), bool(int(r.error_code) & 2),
                                                          free, resv - (1 << 64) if resv >= _U63 else resv, out,
                                                          int(r.tid), 1 << 62 if end is None else end), int(r.tid)))
            if end is not None:
                # the fault returned before the thread's next sample
                evs.append((end - 1, 0, "fault_end", int(r.tid), int(r.tid)))
    evs.sort(key=lambda e: (e[0], e[1]))
    return evs


def _fault_outcomes(trace, hs: pd.DataFrame) -> dict[tuple[int, int], bool] | None:
    """(tid, fault sample ts) -> whether that fault ended in SIGBUS, None when
    the trace cannot tell (recorded without ``signal:signal_generate``).

    Whether a fault finds a page is decided in ``alloc_hugetlb_folio()``, not
    when the fault starts: the task may first wait on ``hugetlb_fault_mutex``
    (every process that inherited a private mapping faults its page under the
    same mutex: ``hugetlb_fault_mutex_hash()`` of the mapping and index) or
    be preempted, while other tasks free or take pages.  A fault that found
    none returns VM_FAULT_SIGBUS (``hugetlb_no_page()``, ``hugetlb_wp()``)
    and the fault handler sends SIGBUS to the task (x86 ``do_sigbus()``),
    which the collector samples (cause 5) before the task runs again, so the
    thread's next sample after its fault tells the outcome."""
    plan = (trace.metadata.get("probe_plan") or {}) if hasattr(trace, "metadata") else {}
    if "signal:signal_generate" not in (plan.get("tracepoints") or ()):
        return None
    x = hs[["ts", "tid", "cause"]].astype("int64").sort_values(["tid", "ts"], kind="stable")
    nxt = x.groupby("tid")["cause"].shift(-1)
    f = x[x["cause"] == 2]
    return {(int(t), int(ts)): bool(c == 5) for t, ts, c in zip(f["tid"], f["ts"], nxt.loc[f.index])}


def _fault_ends(trace, hs: pd.DataFrame) -> dict[tuple[int, int], int]:
    """(tid, fault sample ts) -> a time before which the fault has returned:
    the thread's next sample, its next fork or exit (sched events, which
    user code between faults may do without a sampled syscall), its next
    user page fault (``exceptions:page_fault_user``: it is back in user
    space) or the entry of its next followed syscall, whichever comes
    first."""
    x = hs[["ts", "tid", "cause"]].astype("int64")
    parts = [x]
    if hasattr(trace, "raw_events"):
        proc = trace.raw_events("proc")
        if len(proc):
            parts.append(proc[proc["what"].isin(["fork", "exit"])][["ts", "tid"]].astype("int64").assign(cause=0))
        uf = trace.raw_events("fault")
        if len(uf):
            # the fault's own exception is stamped before its sample: only later ones count
            parts.append(uf[["ts", "tid"]].astype("int64").assign(cause=0))
        sc = trace.raw_events("syscall")
        if len(sc):
            parts.append(sc[["ts_enter", "tid"]].rename(columns={"ts_enter": "ts"}).astype("int64").assign(cause=0))
    if len(parts) > 1:
        x = pd.concat(parts, ignore_index=True)
    x = x.sort_values(["tid", "ts"], kind="stable")
    nxt = x.groupby("tid")["ts"].shift(-1)
    f = x[(x["cause"] == 2) & nxt.notna()]
    return {(int(t), int(ts)): int(n) for t, ts, n in zip(f["tid"], f["ts"], nxt.loc[f.index])}


def _fd_files(trace, sc: pd.DataFrame) -> dict[tuple[int, int], list[tuple[int, tuple]]]:
    """(tgid, fd) -> [(ts, (dev, ino))]: the file an fd names, learnt from the
    hugetlb VMAs that mmap calls of that process with that fd created."""
    tw = trace.raw_events("tree_write")
    mm = sc[(sc["syscall"] == "mmap") & (sc["ret"] > 0)]
    if len(tw) == 0 or len(mm) == 0:
        return {}
    f = tw[((tw["flags"] & 0x1) != 0) & ((tw["vm_flags"] & VM_HUGETLB) != 0) & (tw["ino"] != 0)]
    at = {(int(t), int(s)): (int(d), int(i)) for t, s, d, i in zip(f["tgid"], f["vm_start"], f["dev"], f["ino"])}
    out: dict = defaultdict(list)
    for r in mm.itertuples(index=False):
        fd = int(r.arg4) & 0xFFFFFFFF
        key = at.get((int(r.tgid), int(r.ret)))
        if key is not None and fd != 0xFFFFFFFF:
            out[(int(r.tgid), fd)].append((int(r.ts), key))
    return out


def _apply_change(st: _Model, files, r, hb, ha, ts: int, surplus: int) -> None:
    tree = int(r.tree)
    old = {v[2]: v for v in hb}
    cur = st.vmas[tree]
    gone = [v for v in cur if any(v.start < b[1] and b[0] < v.end for b in hb)]
    keep = [v for v in cur if v not in gone]
    new: list[_Vma] = []
    for a in ha:
        dev, ino, base = _file_of(files, tree, a[2], ts)
        parent = next((g for g in gone if g.start < a[1] and a[0] < g.end), None)
        if r.kind == "fork_copy":
            owner = st.next_owner if st.wrong == "child_owns" and not a[3] & (VM_MAYSHARE | VM_NORESERVE) else 0
            if owner:
                st.next_owner += 1
                n = len(st._pages(a[0], a[1]))
                st._add(n, n, "WRONG RULE: the fork child reserves its pages")
            new.append(_Vma(a[0], a[1], a[3], (dev, ino, base), owner))
        elif parent is not None and r.kind != "map" and (dev, ino) == parent.file[:2]:
            new.append(_Vma(a[0], a[1], a[3], parent.file, parent.owner, parent.unmapped))  # a piece keeps its resv_map
        else:
            v = _Vma(a[0], a[1], a[3], (dev, ino, base), 0)
            new.append(v)
            st.reserve(v)
    del old
    if r.kind == "fork_copy":
        # copy_hugetlb_page_range(): the child maps the parent's folios
        # (tree pointers are reused: the parent's tree is the one it has now)
        ptree = st.tree_of_pid.get(st.parent_pid.get(int(r.pid), -1))
        for v in new:
            for p in st._pages(v.start, v.end):
                f = st.pte.get((ptree, p))
                if f is not None and ptree != tree:
                    f.maps.add((tree, p))
                    st.pte[(tree, p)] = f
        st.vmas[tree] = sorted(keep + new, key=lambda v: v.start)
        return
    # what went away: unmapped first (R4), then closed (R5)
    # munmap (vms_clear_ptes() then remove_vma() of each) and exit_mmap
    # (unmap_vmas(), tlb_finish_mmu(), then remove_vma()) zap every page
    # before they close any VMA: the frees come before the releases
    cut = []
    for g in gone:
        covered = [(n.start, n.end) for n in new if n.owner == g.owner and n.file[:2] == g.file[:2]]
        cut += [(g, p) for p in st._pages(g.start, g.end) if not any(s <= p < e for s, e in covered)]
    for g, p in cut:
        st.zap(tree, g, p, p + st.h, surplus)
    for g, p in cut:
        st.close(tree, g, p, p + st.h)
    st.vmas[tree] = sorted(keep + new, key=lambda v: v.start)
    for g in gone:
        if g.flags & VM_MAYSHARE and not any(v.file[:2] == g.file[:2] for vs in st.vmas.values() for v in vs):
            st.remove_file(g.file[:2])


class _Branches:
    """The models of every order of concurrent work the trace cannot tell apart.

    ``hugetlb_wp()`` copies a private folio mapped more than once and reuses
    one mapped once (``folio_mapcount(old_folio) == 1``).  When another
    process that maps the folio had something in progress while the fault
    was handled (an munmap, MADV_DONTNEED or exit that zaps its mapping, or
    its own COW fault on the same folio: both take ``hugetlb_fault_mutex``,
    so the kernel serializes them in an order no timestamp shows), the
    fault may have found the folio mapped once.  Each such fault forks the
    model: one branch copies (the order of the timestamps), one reuses.
    Likewise the owner's COW that starts with no unreserved page: whether
    one was freed before ``alloc_hugetlb_folio()`` looked decides between
    the copy and ``unmap_ref_private()`` (which marks the other mappings
    HPAGE_RESV_UNMAPPED); a later fault of such a mapping that returns
    without SIGBUS refutes the second.  And the owner's COW that starts with
    one while some sample during it shows none (another process's fault
    took it): both again.  At
    every sample where nothing traced is in progress the kernel's counters
    decide: branches that disagree are dropped (unless none agrees: then
    the disagreement is reported from the first), equal ones merged.
    Beyond ``limit`` branches every model is marked unsure (no sample is
    then exact) rather than following some orders and not others."""

    limit = 64

    def __init__(self, st: _Model, busy: _Busy, transient: dict | None = None, dry=None) -> None:
        self.models = [st]
        self.busy = busy
        # dry(lo, hi): whether a sample in [lo, hi] saw no unreserved page (_pool_dry)
        self.dry = dry or (lambda lo, hi: False)
        self.transient = transient or {}
        # samples taken while something was in progress, to be decided once
        # all of it has ended: (index, last end, spans, ts, agrees)
        self.pending: list[tuple] = []

    def __iter__(self):
        return iter(self.models)

    def __getitem__(self, i: int) -> _Model:
        return self.models[i]

    def __len__(self) -> int:
        return len(self.models)

    def rest(self) -> list[_Model]:
        return self.models[1:]

    def _in_doubt(self, b: _Model, t_ev: int, pl: tuple) -> list[tuple]:
        """The other mappings of the folio a COW fault decides on that a process
        in progress may have dropped first: [((tree, page), until)]."""
        tgid, addr, write, _free, _resv, failed, _tid, end = pl
        tree = b.tree_of_pid.get(tgid)
        others = b.cow_others(tree, addr, write, failed) if tree is not None else set()
        if not others:
            return []
        page = addr - addr % b.h
        out = []
        for p, t in list(b.tree_of_pid.items()):
            if t in others and p != tgid:
                until = self.busy.during(p, page, t_ev, end)
                if until:
                    out.append(((t, page), until))
        return out

    @staticmethod
    def _possible(b: _Model, now: int) -> bool:
        """A reuse branch stays possible only if, once what was in progress at its
        fault is done, the other mappings it assumed gone are gone."""
        left = []
        for key, until, folio in b.expect:
            if now <= until:
                left.append((key, until, folio))
            elif b.pte.get(key) is folio:
                return False
        b.expect = left
        return True

    def apply(self, t_ev: int, kind: str, pl: tuple, ev_tid: int, fn) -> None:
        """Apply one model input to every branch (``fn(model, order)``, ``_Model.fault``),
        forking at a COW fault in doubt."""
        if any(b.expect or b.impossible for b in self.models):
            self.models = [b for b in self.models if not b.impossible and self._possible(b, t_ev)] \
                or self.models[:1]
        if len(self.models) > self.limit // 2 and kind == "fault":
            self._merge_equal()
        out = []
        for b in self.models:
            orders = [""]
            if kind == "fault":
                doubt = self._in_doubt(b, t_ev, pl)
                tree = b.tree_of_pid.get(pl[0])
                if doubt:
                    orders.append("reuse")
                if tree is not None and b.owner_cow(tree, pl[1], pl[2], pl[5]):
                    if pl[3] - pl[4] <= 0:
                        orders.append("copy")
                    elif self.dry(t_ev - 1, pl[7]):
                        # a page there at its start, none at some sample while
                        # it ran (another allocation may have taken the last
                        # one before alloc_hugetlb_folio() looked), or its own
                        # sample may have shown a page that never was (_pool_dry:
                        # a read torn by an allocation in progress)
                        orders.append("unmap")
            if len(orders) > 1 and len(self.models) + len(out) + len(orders) - 1 > self.limit:
                # the orders followed are no longer all the possible ones: none is exact
                for m in (*self.models, *out):
                    m.unsure = m.unsure or (f"at ts {t_ev}, more than {self.limit} orders of concurrent "
                                            "faults and unmaps were possible, more than the model follows")
                orders = [""]
            if len(orders) > 1:
                forks = [copy.deepcopy(b) for _ in orders[1:]]  # before b is changed
            for order in orders:
                m = forks.pop(0) if order else b
                if order == "reuse":
                    m.expect = m.expect + [(key, until, m.pte.get(key)) for key, until in doubt]
                m.steps = []
                fn(m, order)
                m.deltas += [(t_ev, ev_tid, dr, dc) for dr, dc in m.steps]
                out.append(m)
        self.models = out

    def _merge_equal(self) -> None:
        """Models that predict the same from now on become one (the first not
        refuted).  Their pasts may differ: another value at a sample still
        to be decided (``defer``), other changes in the spans it reads: the
        one kept then no longer answers for those samples (an order is
        dropped only when every past that leads to it is refuted)."""
        seen: dict = {}
        for b in self.models:
            k = b.signature()
            a = seen.get(k)
            if a is None or a.impossible and not b.impossible:
                if a is not None and (a.at != b.at or a.deltas != b.deltas):
                    b.at = {}
                seen[k] = b
            elif a.at and (a.at != b.at or a.deltas != b.deltas):
                a.at = {}
        self.models = list(seen.values())

    def defer(self, i: int, ts: int, spans: list, agrees) -> None:
        """Sample ``i`` was read while ``spans`` (start, end, tid) were in
        progress: once they have all ended, the changes each order made in
        them are known, and an order whose value at ``i`` no prefix of those
        changes brings to the kernel's is refuted (:meth:`settle`;
        ``agrees(model, (resv, cg) at i, adjustments)``)."""
        if len(self.models) == 1:
            return
        for b in self.models:
            b.at[i] = (b.resv, b.cg)
        # a fault's changes are applied at its start (_timeline) and the
        # transient ones it may pass through are allowed (_states): it is
        # known once started, but for the old folio a COW fault holds until
        # it returns (settle: the orders holding one are not judged)
        known = max(s0 + 1 if kind == _SPAN_FAULT else e0 for s0, e0, _, kind in spans)
        self.pending.append((i, known, spans, ts, agrees))

    def settle(self, now: int) -> None:
        """Decide the deferred samples whose spans ended before ``now`` (every
        change in them applied): drop the orders they refute, merge equal ones."""
        ready = [p for p in self.pending if p[1] < now]
        if not ready:
            return
        self.pending = [p for p in self.pending if p[1] >= now]
        for i, _, spans, ts, agrees in ready:
            if len(self.models) > 1:
                running = {tid for _, e0, tid, kind in spans if kind == _SPAN_FAULT and e0 >= now}
                self.models = [b for b in self.models if i not in b.at or any(b.pinned.get(t) for t in running)
                               or agrees(b, b.at[i], _states(b.deltas, spans, ts, self.transient))] or self.models
            for b in self.models:
                b.at.pop(i, None)
        self._merge_equal()
        if len(self.models) == 1:
            self.pending = []
            self.models[0].at.clear()

    def keep(self, agrees) -> None:
        """Drop the branches the kernel's counters refute (``agrees(model)``), merge equal ones."""
        if len(self.models) == 1:
            return
        self.models = [b for b in self.models if agrees(b)] or self.models
        self._merge_equal()


def _pool_dry(hs: pd.DataFrame, windows: dict[int, list] | None = None):
    """dry(lo, hi): whether a sample stamped in [lo, hi] may have been taken
    with no unreserved page (free_huge_pages <= resv_huge_pages).

    The collector reads the two counters with two loads, without
    ``hugetlb_lock`` (collectors/huge.bpf.c: free, then resv), so the pair is
    not a snapshot when another traced thread allocates meanwhile:
    ``alloc_hugetlb_folio()`` takes the page off the free list
    (``dequeue_hugetlb_folio_vma()`` -> ``dequeue_hugetlb_folio_node_exact()``:
    ``free_huge_pages--``) before it consumes the reservation
    (``h->resv_huge_pages--``), both under the lock: free read before and resv
    after show one unreserved page more than the hstate ever had.  A sample
    read while ``n`` other traced threads had something in progress
    (``windows``) may so overstate the unreserved pages by ``n`` (one page in
    flight per thread between the loads)."""
    ts = hs["ts"].astype("int64").to_numpy()
    free = hs["free_huge_pages"].to_numpy(np.uint64).astype(np.float64)
    resv = hs["resv_huge_pages"].to_numpy(np.uint64).astype(np.float64)
    busy = np.zeros(len(ts))
    for i, sp in (windows or {}).items():
        busy[i] = len({x[2] for x in sp})
    dry = np.concatenate(([0], np.cumsum(free - resv <= busy)))

    def during(lo: int, hi: int) -> bool:
        a, b = np.searchsorted(ts, lo, "left"), np.searchsorted(ts, hi, "right")
        return bool(dry[b] - dry[a])
    return during


def _take_evictions(st: _Model, base_g: int, cg_k: int, k_signed: int) -> None:
    """R7, R8: an optional change (a shared file's eviction, an unseen shmget's
    reservation) the kernel's counter shows has happened (and only then): take it.

    With the cgroup's counter, it decides; when it already agrees, optional
    changes that leave it as it is (an eviction and a new segment's
    reservation at once: 'shmdt, IPC_RMID, shmget') are taken only if they
    explain the global counter exactly."""
    model = base_g + st.resv
    if not st.optional:
        return
    keys = list(st.optional)
    if cg_k >= 0 and st.cg != cg_k or cg_k < 0 and model != k_signed:
        def fits(dr: int, dc: int) -> bool:
            return (cg_k >= 0 and st.cg + dc == cg_k) or (cg_k < 0 and model + dr == k_signed)
    elif cg_k >= 0 and model != k_signed:
        def fits(dr: int, dc: int) -> bool:
            return dc == 0 and model + dr == k_signed
    else:
        return
    for n in range(1, min(len(keys), 4) + 1):
        for combo in combinations(keys, n):
            d = [st.eviction(k) for k in combo]
            if fits(sum(x[0] for x in d), sum(x[1] for x in d)):
                for key in combo:
                    st.evict(key)
                return


def _apply_event(st: _Model, kind: str, pl: tuple, files, tid_of_tree: dict, hpage: int, surplus: int,
                 last_free: int, last_resv: int, order: str = "") -> None:
    """Apply one model input (a VMA change, a madvise, a fallocate, a fault) to
    ``st``; ``order``: the outcome of a COW fault in doubt (``_Model.fault``, ``_Branches``)."""
    if kind == "change":
        cr, hb, ha = pl
        tid_of_tree[int(cr.pid)] = int(cr.tree)
        _apply_change(st, files, cr, hb, ha, int(cr.ts_end), surplus)
    elif kind == "madvise":
        tgid, a0, a1, adv = pl
        tree = tid_of_tree.get(tgid)
        if tree is None:
            return
        for v in list(st.vmas.get(tree, ())):
            if not (v.start < a0 + a1 and a0 < v.end):
                continue
            s0, e0 = max(a0, v.start), min(a0 + a1, v.end)
            if adv == _MADV_DONTNEED:
                # madvise_dontneed_free_valid_vma(): an unaligned start is
                # -EINVAL; the end is rounded down to a huge page
                if s0 % hpage == 0 and e0 - e0 % hpage > s0:
                    st.zap(tree, v, s0, e0 - e0 % hpage, surplus)
            elif v.flags & VM_MAYSHARE:
                # madvise_remove() -> vfs_fallocate(PUNCH_HOLE) of the file range
                f0 = st.fpage(v, s0)[2] + (1 if s0 % hpage else 0)
                f1 = st.fpage(v, e0 - 1)[2] + (1 if e0 % hpage == 0 else 0)
                st.punch(v.file[:2], f0, f1, surplus)
    elif kind == "fault_end":
        st.fault_end(pl)
    elif kind == "fallocate":
        tgid, key, mode, off, ln = pl
        free_, resv_ = last_free, last_resv
        if key is None:
            st.unsure = "fallocate on a file the trace cannot name"
        elif mode & _FALLOC_PUNCH_HOLE:
            st.punch(key, -(-off // hpage), (off + ln) // hpage, surplus)
        else:
            # hugetlbfs_fallocate(): each missing page of the range is allocated
            avail = free_ - resv_
            for fp in range(off // hpage, -(-(off + ln) // hpage)):
                if fp not in st.cache[key]:
                    had = fp in st.region[key]
                    st.shmem_alloc(key, fp, had or avail > 0, "fallocate")
                    avail -= 0 if had else 1
    else:
        tgid, addr, write, free, resv, failed = pl[:6]
        tree = tid_of_tree.get(tgid)
        st.fault_end(pl[6])  # a thread has one fault at a time: a retried one ends the last
        if tree is not None:
            st.fault_tid = pl[6]
            st.fault(tree, addr, write, free, resv, failed, order=order)


def hugetlb_accounting(trace) -> pd.DataFrame:
    """The modeled reservations against the kernel's counters, one row per kernel sample.

    Columns: ``ts``, ``pid`` (tgid of the sampled event), ``tid``, ``cause``
    (syscall, syscall_enter, fault, exit_mmap, sigbus, wait: the entry of
    wait4/waitid), ``syscall``, ``arg0``..``arg2``,
    ``ret`` (of that syscall), ``nr_huge_pages``, ``free_huge_pages``,
    ``resv_huge_pages``, ``surplus_huge_pages`` (the kernel's hstate
    counters, read in the kernel), ``model_resv`` (the baseline plus the
    modeled changes since), ``kernel_delta`` and ``model_delta`` (of
    ``resv_huge_pages`` since the previous sample), ``pending`` (modeled
    changes that may happen at any time: shared files' inode eviction),
    ``cg_rsvd`` (the command's hugetlb cgroup counter in huge pages, -1
    without one) and ``model_cg``, ``evidence`` ("cgroup" or "global"),
    ``exact`` (no other traced thread had a syscall, fault or exit in
    progress while the counters were read, :func:`_read_ends`, and nothing
    optional was pending: the model has no freedom),
    ``open`` (tids with something in progress), ``inflight`` (the
    (resv, cg) adjustments of the model's values that what those threads had
    in progress allows), ``what`` (the modeled changes
    since the previous sample), ``alternatives`` ((model_resv, model_cg) of
    the other orders of concurrent faults and unmaps still possible, which
    the next sample with nothing in progress decides: :class:`_Branches`),
    ``unsure`` (why the model lost track, from then on: no sample is exact;
    "" while it has not).
    """
    hs = trace.raw_events("hugetlb")
    cols = ["ts", "pid", "tid", "cause", "syscall", "arg0", "arg1", "arg2", "ret", "nr_huge_pages", "free_huge_pages",
            "resv_huge_pages", "surplus_huge_pages", "model_resv", "kernel_delta", "model_delta", "pending",
            "cg_rsvd", "model_cg", "evidence", "exact", "open", "inflight", "what", "alternatives", "unsure"]
    if len(hs) == 0:
        return pd.DataFrame(columns=cols)
    hs = hs.sort_values("ts", kind="stable").reset_index(drop=True)
    order = int(hs["order"].iloc[0])
    hpage = _PAGE << order
    ev = hugetlb_evidence(trace)
    has_cg = bool(ev.get("cgroup")) and "cg_rsvd" in hs.columns
    st = _Model(hpage, os.environ.get(_WRONG_RULE_ENV, ""))
    proc = trace.raw_events("proc")
    if len(proc):
        fk = proc[proc["what"] == "fork"]
        # a fork's child tgid -> its parent's (threads share the mm: not a fork of an mm)
        st.parent_pid = {int(c): int(p) for p, c in zip(fk["tgid"], fk["child_tgid"]) if int(c) != int(p)}
    files = _vma_files(trace)
    ends = _fault_ends(trace, hs)  # once: the timeline, the spans and _Busy read it
    evs = _timeline(trace, hs, ends)
    _unseen_shmgets(st, evs, files)
    spans = _spans(trace, hs, ends, hpage)
    windows = _windows(trace, hs, spans, _read_ends(trace, hs))
    by_id = {v: k for k, v in (trace.metadata.get("probe_plan", {}).get("syscalls") or {}).items()}
    sc = trace.raw_events("syscall")
    call = {}
    if len(sc):
        left = hs[["ts", "tid"]].astype("int64").reset_index().sort_values("ts")
        right = sc[["ts", "tid", "arg0", "arg1", "arg2", "ret"]].rename(columns={"ts": "sc_ts"})
        right = right.astype({"sc_ts": "int64", "tid": "int64"}).sort_values("sc_ts")
        # an exit sample closes the thread's last record; an entry sample opens the next
        m = pd.merge_asof(left, right, left_on="ts", right_on="sc_ts", by="tid", direction="backward")
        fw = pd.merge_asof(left, right, left_on="ts", right_on="sc_ts", by="tid", direction="forward")
        entry = (hs["cause"].to_numpy() == 4)
        fw = fw.set_index("index").reindex(m["index"]).reset_index()
        for col in ("arg0", "arg1", "arg2", "ret"):
            m[col] = np.where(entry[m["index"].to_numpy()], fw[col].to_numpy(), m[col].to_numpy())
        call = {int(i): (a0, a1, a2, rt) for i, a0, a1, a2, rt in
                zip(m["index"], m["arg0"], m["arg1"], m["arg2"], m["ret"]) if a0 == a0}
    pool = trace.hugepages() if hasattr(trace, "hugepages") else pd.DataFrame()
    pool = pool[(pool["size_kb"] == hpage // 1024) & (pool["ts"] < int(hs["ts"].iloc[0]))] if len(pool) else pool
    resv_k = hs["resv_huge_pages"].to_numpy(np.uint64).astype(object)
    first = int(resv_k[0]) - (1 << 64) if int(resv_k[0]) >= _U63 else int(resv_k[0])
    base_g = int(pool["resv_hugepages"].iloc[-1]) if len(pool) else None
    pages_per = hpage // _PAGE
    rows = []
    j = 0
    surplus = 0
    last_free, last_resv = 1 << 40, 0
    prev_k = prev_m = base_g
    transient = _transient(trace, hpage)
    # a fault may pass through the charge of a page it does not keep: one
    # that ends in SIGBUS charged the cgroup before it found no page
    # (alloc_hugetlb_folio(): hugetlb_cgroup_charge_cgroup_rsvd(), then
    # dequeue fails and out_uncharge_cgroup_reservation undoes it); one that
    # found its page table entry changed once it had a folio backs out
    # (hugetlb_no_page(): backout; hugetlb_wp(): out_release_all) with
    # restore_reserve_on_error() and folio_put(): the unreserved folio's
    # charge, or the reservation it consumed, comes back
    for ts0, tid0 in zip(hs.loc[hs["cause"] == 2, "ts"].astype("int64").tolist(),
                         hs.loc[hs["cause"] == 2, "tid"].astype("int64").tolist()):
        transient[(tid0, ts0)] = [(0, 1), (-1, 0)]
    branches = _Branches(st, _Busy.of(spans), transient, _pool_dry(hs, windows))
    for i, r in enumerate(hs.itertuples(index=False)):
        ts = int(r.ts)
        for b in branches:
            b.log = []
        while j < len(evs) and evs[j][0] <= ts:
            t_ev, _, kind, pl, ev_tid = evs[j]
            j += 1
            branches.apply(t_ev, kind, pl, ev_tid,
                           lambda b, order: _apply_event(b, kind, pl, files, b.tree_of_pid, hpage, surplus,
                                                         last_free, last_resv, order))
        branches.settle(ts)
        surplus = int(r.surplus_huge_pages)
        k = int(resv_k[i])
        last_free, last_resv = int(r.free_huge_pages), (k - (1 << 64) if k >= _U63 else k)
        k_signed = k - (1 << 64) if k >= _U63 else k
        if base_g is None:
            base_g = first - branches[0].resv  # no pool sample before: the first sample is the baseline
            prev_k = prev_m = first
        cg_k = -1
        if has_cg and int(r.cg_rsvd) != _NOCG:
            cg_k = int(r.cg_rsvd) // pages_per
        for b in branches:
            _take_evictions(b, base_g, cg_k, k_signed)
        open_ = {sp[2] for sp in windows.get(i, ())}
        if not open_:
            # nothing in progress: the kernel's counters say which order it took
            branches.keep(lambda b: (cg_k < 0 or b.cg == cg_k)
                          and (cg_k >= 0 and not ev.get("exclusive_pool") or base_g + b.resv == k_signed))
        else:
            # something in progress: they say it once that is done
            branches.defer(i, ts, windows[i], lambda b, at, adj, cg_k=cg_k, k_signed=k_signed, base_g=base_g: any(
                (cg_k < 0 or at[1] + y == cg_k)
                and (cg_k >= 0 and not ev.get("exclusive_pool") or base_g + at[0] + x == k_signed) for x, y in adj))
        st = branches[0]
        model = base_g + st.resv
        exact = not open_ and not st.optional and not st.unsure
        a0, a1, a2, rt = call.get(i, (0, 0, 0, 0)) if int(r.cause) in (1, 4) else (0, 0, 0, 0)
        what = list(dict.fromkeys(st.log))
        if len(branches) > 1:
            what.append(f"{len(branches)} orders of concurrent faults and unmaps still possible")
        rows.append({
            "ts": ts, "pid": int(r.tgid), "tid": int(r.tid),
            "cause": {1: "syscall", 2: "fault", 3: "exit_mmap", 4: "syscall_enter", 5: "sigbus",
                      6: "wait"}.get(int(r.cause), "?"),
            "syscall": by_id.get(int(r.sc), "") if int(r.cause) in (1, 4) else "",
            "arg0": int(a0), "arg1": int(a1), "arg2": int(a2), "ret": int(rt) if int(r.cause) == 1 else 0,
            "nr_huge_pages": int(r.nr_huge_pages), "free_huge_pages": int(r.free_huge_pages),
            "resv_huge_pages": k, "surplus_huge_pages": int(r.surplus_huge_pages),
            "model_resv": model, "kernel_delta": k_signed - prev_k, "model_delta": model - prev_m,
            "pending": -sum(st.eviction(k)[0] for k in st.optional if k[0] != _SHMGET),
            "cg_rsvd": cg_k, "model_cg": st.cg if cg_k >= 0 else -1,
            "evidence": "cgroup" if cg_k >= 0 else "global", "exact": exact,
            "open": ",".join(str(t) for t in sorted(open_)), "what": "; ".join(what),
            "alternatives": [(base_g + b.resv, b.cg if cg_k >= 0 else -1) for b in branches.rest()],
            "unsure": st.unsure,
        })
        prev_k, prev_m = k_signed, model
    _inflight(rows, windows, branches[0].deltas, transient)
    return pd.DataFrame(rows, columns=cols)


# Calls that may zap a private folio's mapping in their own mm (munmap, a
# MAP_FIXED mmap or mremap over it, MADV_DONTNEED, a brk shrink, shmdt);
# mprotect, mlock, mseal and the rest split or flag VMAs but keep the pages.
_ZAPPING = ("munmap", "mmap", "mremap", "madvise", "brk", "shmdt")
# _spans' kinds
_SPAN_CALL, _SPAN_ZAP, _SPAN_EXIT, _SPAN_FAULT = 0, 1, 2, 3


def _spans(trace, hs: pd.DataFrame, ends: dict | None = None, hpage: int = 0) -> np.ndarray:
    """What the traced threads had in progress: rows (start, end, tid, tgid,
    kind, page) of every syscall (kind ``_SPAN_ZAP`` for ``_ZAPPING`` calls,
    else ``_SPAN_CALL``), every exit (``_SPAN_EXIT``: from its sched_process_exit,
    else the process's last sample, to its ``exit_mmap``; keyed by the tgid,
    as the exit's changes are) and every hugetlb fault (``_SPAN_FAULT``: from its sample until it
    returned, :func:`_fault_ends`; ``page``, its huge page when ``hpage`` is
    given).  :func:`_windows` and :class:`_Busy` read them."""
    spans: list[tuple[int, int, int, int, int, int]] = []
    sc = trace.raw_events("syscall")
    if len(sc):
        kind = np.where(sc["syscall"].isin(_ZAPPING).to_numpy(), _SPAN_ZAP, _SPAN_CALL).tolist()
        spans += list(zip(sc["ts_enter"].astype("int64").tolist(), sc["ts"].astype("int64").tolist(),
                          sc["tid"].astype("int64").tolist(), sc["tgid"].astype("int64").tolist(), kind,
                          [0] * len(kind)))
    ts = hs["ts"].astype("int64").to_numpy()
    tid = hs["tid"].astype("int64").to_numpy()
    cause = hs["cause"].astype("int64").to_numpy()
    tgid = hs["tgid"].astype("int64").to_numpy()
    addr = hs["address"].astype("int64").to_numpy() if "address" in hs.columns else np.zeros(len(ts), np.int64)
    # do_exit(): sched_process_exit fires before exit_mm() where the event
    # still names the mm (collectors/proc.bpf.c), and the mm's teardown
    # (exit_mmap) comes after: the exit is in progress from then, not from
    # the process's last sample (which may be long before: a parent waiting
    # for its children in a call not followed)
    exits: dict[int, list[int]] = defaultdict(list)
    proc = trace.raw_events("proc") if hasattr(trace, "raw_events") else ()
    if len(proc):
        pe = proc[(proc["what"] == "exit") & (proc["mm"] != 0)]
        for g, t in zip(pe["tgid"].astype("int64").tolist(), pe["ts"].astype("int64").tolist()):
            exits[g].append(t)
    last_of_tgid: dict[int, int] = {}
    for i in range(len(ts)):
        g = int(tgid[i])
        if cause[i] == 3 and g in last_of_tgid:
            lo = int(ts[last_of_tgid[g]])
            lo = max([t for t in exits.get(g, ()) if lo < t <= int(ts[i])], default=lo)
            spans.append((lo, int(ts[i]), g, g, _SPAN_EXIT, 0))
        last_of_tgid[g] = i
    ends = _fault_ends(trace, hs) if ends is None else ends
    for i in np.flatnonzero(cause == 2):
        page = int(addr[i]) - int(addr[i]) % hpage if hpage else 0
        spans.append((int(ts[i]), ends.get((int(tid[i]), int(ts[i])), 1 << 62), int(tid[i]), int(tgid[i]),
                      _SPAN_FAULT, page))
    return np.array(spans, dtype=np.int64).reshape(-1, 6)


class _Busy:
    """Whether a process could have dropped its mapping of a page during an
    interval: a zapping call (``_ZAPPING``) or its exit in progress, or a
    fault of its own on that page (``hugetlb_wp()`` replacing the mapping).
    ``spans``: (start, end, key) with key a tgid or (tgid, huge page)."""

    def __init__(self, spans) -> None:
        by: dict = defaultdict(list)
        for s0, e0, key in spans:
            by[key].append((s0, e0))
        self._by: dict = {}
        for key, lst in by.items():
            a = np.array(sorted(lst), dtype=np.int64)
            # sorted by start; the running maximum of the ends answers "does
            # any span that starts before hi end after lo"
            self._by[key] = (a[:, 0], np.maximum.accumulate(a[:, 1]))

    @classmethod
    def of(cls, spans: np.ndarray) -> _Busy:
        """From :func:`_spans` (with pages): zapping calls and exits by tgid, faults by (tgid, page)."""
        return cls([(s0, e0, g if kind != _SPAN_FAULT else (g, page))
                    for s0, e0, _tid, g, kind, page in spans.tolist() if kind != _SPAN_CALL])

    def during(self, tgid: int, page: int, lo: int, hi: int) -> int:
        """The end of the last such span of ``tgid`` overlapping [lo, hi), 0 if none."""
        out = 0
        for key in (tgid, (tgid, page)):
            x = self._by.get(key)
            if x is None:
                continue
            k = int(np.searchsorted(x[0], hi, side="left"))
            if k > 0 and int(x[1][k - 1]) > lo:
                out = max(out, int(x[1][k - 1]))
        return out


def _read_ends(trace, hs: pd.DataFrame) -> np.ndarray:
    """Per sample, a time by which its counters had been read: they were read
    at some instant of [ts, read end], not at ``ts`` itself.

    The sample's ``ts`` is stamped before the reads (``mmt_fill_hdr()``), and
    the CPU may stop between the two for an interrupt, or the host may
    deschedule the vCPU (seen: a task's syscall-entry sample read the +1
    that another CPU's fault charged in ``alloc_hugetlb_folio()``
    (``hugetlb_cgroup_charge_cgroup_rsvd()``, then undone at
    ``out_uncharge_cgroup_reservation`` as the fault found no page), a fault
    whose own sample was stamped 0.6-0.8 us after the first one's).
    Traces that stamp the end of the reads (``ts_read``,
    collectors/huge.bpf.c) say when; older ones only bound it by the
    sampling thread's next stamped event (its program had returned by then)."""
    ts = hs["ts"].astype("int64").to_numpy()
    if "ts_read" in hs.columns:
        rd = hs["ts_read"].astype("int64").to_numpy()
        if len(rd) and (rd > 0).all():
            return np.maximum(rd, ts)
    tid = hs["tid"].astype("int64").to_numpy()
    parts = [(ts, tid)]
    if hasattr(trace, "raw_events"):
        for kind, col in (("syscall", "ts_enter"), ("syscall", "ts"), ("fault", "ts"), ("proc", "ts"),
                          ("tree_write", "ts")):
            e = trace.raw_events(kind)
            if len(e):
                parts.append((e[col].astype("int64").to_numpy(), e["tid"].astype("int64").to_numpy()))
    t_all = np.concatenate([p[0] for p in parts])
    k_all = np.concatenate([p[1] for p in parts])
    o = np.lexsort((t_all, k_all))  # by thread, then time
    t_all, k_all = t_all[o], k_all[o]
    # the first stamp of the same thread after the sample's own; the last
    # sample of a thread (its exit_mmap) keeps its stamp
    lo = np.searchsorted(k_all, tid, "left")
    n = np.searchsorted(k_all, tid, "right") - lo
    out = ts.copy()
    for i in range(len(ts)):
        seg = t_all[lo[i]:lo[i] + n[i]]
        k = int(np.searchsorted(seg, ts[i], "right"))
        if k < len(seg):
            out[i] = int(seg[k])
    return out


def _windows(trace, hs: pd.DataFrame, spans: np.ndarray | None = None,
             read_ends: np.ndarray | None = None) -> dict[int, list]:
    """Sample index -> [(start, end, tid, kind)] of the spans of threads (other
    than the sampling one) with a syscall, a fault or an exit in progress
    while that sample's counters were read, [ts, read end) (:func:`_spans`,
    :func:`_read_ends`)."""
    ts = hs["ts"].astype("int64").to_numpy()
    tid = hs["tid"].astype("int64").to_numpy()
    spans = _spans(trace, hs) if spans is None else spans
    rd = ts if read_ends is None else read_ends
    out: dict[int, list] = {}
    if not len(spans):
        return out
    # (start, end, tid, kind): the kind tells _Branches.defer when a span's changes are all known
    sp = spans[:, [0, 1, 2, 4]] if spans.shape[1] > 4 else np.column_stack([spans[:, :3], np.full(len(spans), -1)])
    order = np.argsort(sp[:, 0], kind="stable")
    sp = sp[order]
    starts = sp[:, 0]
    for i in range(len(ts)):
        k = int(np.searchsorted(starts, rd[i], side="left"))
        seg = sp[max(0, k - 4096):k]
        hit = seg[(seg[:, 1] > ts[i]) & (seg[:, 2] != tid[i])]
        if len(hit):
            out[i] = [tuple(int(x) for x in h) for h in hit]
    return out


_MAP_SHARED, _MAP_HUGETLB = 0x1, 0x40000


def _transient(trace, hpage: int) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """(tid, syscall entry ts) -> the (resv, cg) states a call that changed
    nothing may show while it is in progress.

    A hugetlb mmap that fails with -ENOMEM: ``hugetlb_reserve_pages()``
    charges the cgroup first (``hugetlb_cgroup_charge_cgroup_rsvd()`` of
    ``chg`` pages: every page of a private mapping, the pages a shared file's
    region map lacks), then finds the pool short (``hugetlb_acct_memory()``)
    and uncharges (``out_uncharge_cgroup``): meanwhile the cgroup holds them."""
    sc = trace.raw_events("syscall")
    out: dict = {}
    if not len(sc):
        return out
    m = sc[(sc["syscall"] == "mmap") & (sc["ret"] == -_ENOMEM)]
    if not len(m):
        return out
    files = _fd_files(trace, sc)
    for r in m.itertuples(index=False):
        hugetlb = int(r.arg3) & _MAP_HUGETLB or (int(r.tgid), int(r.arg4) & 0xFFFFFFFF) in files
        if not hugetlb:
            continue
        n = -(-int(r.arg1) // hpage)
        shared = int(r.arg3) & _MAP_SHARED
        out[(int(r.tid), int(r.ts_enter))] = [(0, k) for k in (range(1, n + 1) if shared else (n,))]
    return out


def _states(deltas: list[tuple], spans: list[tuple[int, int, int]], now: int,
            transient: dict) -> set[tuple[int, int]]:
    """What the kernel may already have done (or not yet done) of the
    operations in ``spans`` (start, end, tid[, kind]) at ``now``: the (resv, cg)
    adjustments to the model's value (which applied its changes up to
    ``now``).  ``deltas``: the model's changes (ts applied, tid, resv, cg) in
    time order (``_Model.deltas``).

    A thread makes its changes in order (each ``_Model._add`` step), so its
    spans together allow any prefix of its changes in them, or the state a
    call that changes nothing passes through (``_transient``) on top of those
    before it; threads combine in every way: a set of sums, which grows with
    the values reachable, not with the number of operations in progress."""
    by: dict[int, list] = defaultdict(list)
    for s0, e0, tid, *_ in spans:
        by[tid].append((s0, e0))
    opts = {(0, 0)}
    for tid, sp in by.items():
        lo, hi = min(s0 for s0, _ in sp) - 1, max(e0 for _, e0 in sp) + 1
        tr = [(s0, x) for s0, _ in sp for x in transient.get((tid, s0), ())]
        i0 = bisect.bisect_right(deltas, min(lo, now), key=_ts_of)
        i1 = bisect.bisect_right(deltas, hi, key=_ts_of)
        mine = [d for d in deltas[i0:i1] if d[1] == tid]
        t = [d[0] for d in mine]
        cr = list(accumulate((d[2] for d in mine), initial=0))
        cc = list(accumulate((d[3] for d in mine), initial=0))
        a, d = bisect.bisect_right(t, lo), bisect.bisect_right(t, now)
        steps = {(cr[k] - cr[d], cc[k] - cc[d]) for k in range(a, len(mine) + 1)} | {(0, 0)}
        for s0, (x, y) in tr:
            k = bisect.bisect_right(t, s0)
            steps.add((cr[k] - cr[d] + x, cc[k] - cc[d] + y))
        if steps != {(0, 0)}:
            opts = {(a0 + x, b0 + y) for a0, b0 in opts for x, y in steps}
    return opts


def _ts_of(d: tuple) -> int:
    return d[0]


def _inflight(rows: list[dict], windows: dict[int, list], deltas: list[tuple],
              transient: dict | None = None) -> None:
    """Per sample, what the kernel may already have done (or not yet done) of
    the operations other traced threads had in progress (:func:`_states`):
    the (resv, cg) adjustments to the model's value that still agree
    (``inflight``)."""
    transient = transient or {}
    deltas = sorted(deltas, key=_ts_of)  # stable: one event's steps keep the kernel's order
    for i, row in enumerate(rows):
        row["inflight"] = sorted(_states(deltas, windows.get(i, []), row["ts"], transient))


def errno_name(n: int) -> str:
    import errno

    return f"-{errno.errorcode.get(n, str(n))}: {os.strerror(n)}"


def _disagreement(r, exact: bool, explanation: str) -> dict:
    """A model/kernel disagreement: an error at an exact sample, else a note."""
    return {"ts": r.ts, "pid": r.pid, "severity": "error" if exact else "note",
            "kind": "model_kernel_disagree" if exact else "model_kernel_undecided", "explanation": explanation}


def hugetlb_anomalies(trace, acc: pd.DataFrame | None = None) -> list[dict]:
    """Findings about hugetlb accounting (see :func:`mmtrace.api.Trace.anomalies` for columns).

    ``severity``: ``error`` (the kernel's counter below zero, its warning in
    kmsg, a disagreement at an exact sample), ``note`` (a disagreement that
    could not be decided, and why)."""
    acc = hugetlb_accounting(trace) if acc is None else acc
    ev = hugetlb_evidence(trace)
    out: list[dict] = []
    off_cg = 0  # after a reported cgroup disagreement: compare from the kernel's value on
    off_g = 0  # likewise for the global counter, which untraced processes move too
    for r in acc.itertuples(index=False):
        what = r.syscall or r.cause
        if r.syscall:
            what = f"{r.syscall}({int(r.arg0):#x}, {int(r.arg1):#x}, {int(r.arg2):#x})"
            if r.cause == "syscall":
                what += f" = {int(r.ret)}"
            else:
                what = "entry of " + what
        if r.resv_huge_pages >= _U63:
            out.append({
                "ts": r.ts, "pid": r.pid, "severity": "error", "kind": "kernel_counter_underflow",
                "explanation": (
                    f"resv_huge_pages read {r.resv_huge_pages} (= {int(r.resv_huge_pages) - (1 << 64)} as signed) "
                    f"at {what} of pid {r.pid}: the kernel's unsigned counter went below zero, so "
                    "reservations were released more times than they were made"
                    + (f" (the model, following mm/hugetlb.c, expected {int(r.model_resv)})" if r.model_resv < 0 else "")
                ),
            })
        detail = f"({r.what or 'no modeled hugetlb change since the previous sample'})"
        infl = r.inflight if isinstance(r.inflight, (list, tuple)) else None
        alts = list(getattr(r, "alternatives", None) or ())  # other orders still possible (_Branches)
        unsure = getattr(r, "unsure", "") or ""

        def unexplained(diffs, pick):
            return all(d and (r.exact or infl is None or not any(pick(x) == d for x in infl)) for d in diffs)

        if r.evidence == "cgroup":
            diff = int(r.cg_rsvd) - (int(r.model_cg) + off_cg)
            if unexplained([diff] + [int(r.cg_rsvd) - (c + off_cg) for _, c in alts], lambda x: x[1]):
                exact = bool(r.exact)
                out.append(_disagreement(r, exact, (
                        f"at {what} of pid {r.pid}, the command's hugetlb cgroup holds {int(r.cg_rsvd)} reserved "
                        f"page(s) (hugetlb.*.rsvd.current) but the model of mm/hugetlb.c has "
                        f"{int(r.model_cg) + off_cg} {detail}"
                        + ("; the sample is exact: no other traced thread was in a syscall, fault or exit"
                           if exact else f"; not decided: the model lost track earlier ({unsure})" if unsure
                           else f"; not decided: thread(s) {r.open} had a syscall, fault or exit in "
                           "progress at that instant, and no order of their changes gives the kernel's value"
                           if r.open else "; not decided: a shared file's reservations may be released at any "
                           "time (inode eviction)" if r.pending else "; not decided: the model lost track earlier")
                )))
                if exact:
                    off_cg += diff  # reported once: compare from the kernel's value on
        kd, md = int(r.kernel_delta), int(r.model_delta)
        gdiff = r.model_resv + off_g
        k_signed = int(r.resv_huge_pages) - (1 << 64) if r.resv_huge_pages >= _U63 else int(r.resv_huge_pages)
        gdiff = k_signed - gdiff
        if unexplained([gdiff] + [k_signed - (g + off_g) for g, _ in alts], lambda x: x[0]):
            exact = bool(r.exact) and bool(ev.get("exclusive_pool"))
            hint = ""
            if gdiff < 0 and r.cause == "syscall" and r.ret < 0 and r.syscall in (
                    "mprotect", "pkey_mprotect", "munmap", "mremap", "madvise"):
                hint = (
                    f" The call failed ({errno_name(-int(r.ret))}) and changed no VMA: the signature of a failed "
                    "__split_vma whose half-built copy of a hugetlb VMA was closed with its range intact, so "
                    "hugetlb_vm_op_close() released the reservations of that half while the original VMA still "
                    "owned them (the bug fixed with \"mm: start tracking VMAs with maple tree\")."
                )
            if exact:
                why = "; the sample is exact: the pool was the traced processes' alone and no other traced " \
                      "thread was in a syscall, fault or exit"
            elif unsure:
                why = f"; not decided: the model lost track earlier ({unsure})"
            elif r.open:
                why = f"; not decided: thread(s) {r.open} had a syscall, fault or exit in progress"
            else:
                why = "; not decided: resv_huge_pages is global, and processes not traced may have " \
                      "reserved or released huge pages meanwhile"
            if r.evidence != "cgroup" or exact:
                out.append(_disagreement(r, exact, (
                    f"between the previous sample and {what} of pid {r.pid}, resv_huge_pages changed by "
                    f"{kd:+d} but the model of the traced mappings explains {kd - gdiff:+d} {detail}"
                    + why + "." + hint
                )))
            if not r.open:
                off_g += gdiff  # nothing traced in flight: take the kernel's value as the new baseline
    # "Released twice": only on the kernel's own word, its counter below zero
    # after a release the model did not expect.
    seen_release = [o for o in out if o["kind"] == "model_kernel_disagree" and "changed by -" in o["explanation"]]
    for u in [o for o in out if o["kind"] == "kernel_counter_underflow"][:1]:
        if seen_release:
            first = seen_release[0]
            signed = int(acc.loc[acc["ts"] == u["ts"], "resv_huge_pages"].iloc[0]) - (1 << 64)
            out.append({
                "ts": u["ts"], "pid": u["pid"], "severity": "error", "kind": "negative_reservation",
                "explanation": (
                    f"the kernel's reservations are now {signed:+d}, below zero, after it had released "
                    f"reservations no VMA change accounted for (at ts {first['ts']} of pid {first['pid']}): "
                    "those reservations were released twice (the kernel's own counter says so)"
                ),
            })
    kmsg = trace.kmsg() if hasattr(trace, "kmsg") else pd.DataFrame()
    if len(kmsg):
        for r in kmsg[kmsg["msg"].astype(str).str.contains(KMSG_HUGETLB, regex=False)].itertuples(index=False):
            out.append({
                "ts": int(r.ts), "pid": -1, "severity": "error", "kind": "kernel_warning",
                "explanation": f"the kernel logged: {r.msg!r} (hugetlb_fix_reserve_counts)",
            })
    return out
