"""The exit-time syscall rules: what a syscall did to its mm's tree that its stores did not show.

The one home of these rules (the replay, :mod:`mmtrace.model.replay`, only
applies what :func:`corrections` decides).  Why they are needed (lib/maple_tree.c,
mm/vma.c of 6.12-6.18, see /work/shared/kernel-notes.md): ``mas_store_gfp`` has
no outer tracepoint and exact-fit stores (``mas_wr_store_entry`` ->
``wr_exact_fit``) no inner one, and flags edited in place make no store at
all.  So at each syscall's exit its arguments and result say what the range
must look like:

- ``munmap(addr, len)`` = 0: ``[addr, addr + PAGE_ALIGN(len))`` holds no VMA
  (``__vm_munmap`` -> ``do_vmi_munmap`` -> ``do_vmi_align_munmap`` in mm/vma.c;
  the exact-fit ``vma_iter_clear_gfp`` of a whole VMA is silent).
- ``mprotect``/``pkey_mprotect(addr, len, prot)`` = 0: every piece of the range
  has ``prot`` (``do_mprotect_pkey`` -> ``mprotect_fixup`` in mm/mprotect.c;
  ``vm_flags_reset`` of a whole VMA makes no store).  -ENOMEM: the same up to
  the first hole (``do_mprotect_pkey`` returns -ENOMEM at a hole after fixing
  up the VMAs before it), unless the range has no hole, when -ENOMEM came from
  a failed allocation in ``__split_vma``/``vma_modify`` and nothing changed
  (the engine decides that from the tree: :meth:`Engine._protect`).
- ``mremap(old, old_len, new_len, flags)``: in place and shrinking,
  ``[old + new_len, old + old_len)`` is empty (``mremap_to``/``vma_shrink`` ->
  ``do_vmi_munmap``); moved (ret != old) and neither ``old_len == 0`` (a
  shared-mapping duplicate) nor ``MREMAP_DONTUNMAP``: the old range is empty
  (``move_vma`` -> ``do_vmi_munmap``).
- ``brk`` shrinking (``brk_exit < brk_enter``): ``[PAGE_ALIGN(new), PAGE_ALIGN(old))``
  is empty (``SYSCALL_DEFINE1(brk)`` -> ``do_vmi_align_munmap``).
- ``mprotect`` failing part-way: ``do_mprotect_pkey`` walks the range VMA by
  VMA and stops at the first it refuses: -EACCES when the new prot asks for
  what the VMA may not have (``(newflags & ~(newflags >> 4)) &
  VM_ACCESS_FLAGS``: a read-only MAP_SHARED file lacks VM_MAYWRITE) and
  -EPERM from ``mprotect_fixup`` -> ``can_modify_vma`` on a sealed VMA.  The
  VMAs before it keep their new protection (``mprotect_fixup`` already ran
  for them).  Which VMA refused is read from the tree
  (:meth:`Engine._protect_walk`): kind :data:`C_PROT_WALK`.
- ``mprotect(addr, len, prot | PROT_GROWSDOWN)``: the range starts at the
  ``vm_start`` of the first VMA in it (the growsdown branch of
  ``do_mprotect_pkey``), known only from the tree: :data:`C_PROT_WALK` too.
- ``mseal(addr, len, 0)`` = 0: every VMA of the range is VM_SEALED
  (``do_mseal`` -> ``mseal_apply`` -> ``vm_flags_set``, silent in place):
  :data:`C_SEAL`.
- A failed call (-4095 <= ret < 0; mprotect: but the cases above) changed
  nothing the stores do not show.  Other calls that fail part-way change only
  what their stores show: ``munmap`` and ``mremap`` on a sealed VMA
  (``vms_gather_munmap_vmas`` checks ``can_modify_vma`` per VMA and, on
  -EPERM, reattaches the detached VMAs: the tree clear comes only after the
  gather succeeded; a split done before the refusal stays, and was stored),
  ``madvise``/``mlock`` (their per-VMA edits are vm_flags bits maps does not
  show, VM_LOCKED, VM_DONTCOPY...; their splits are stores).

When another thread sees what the exit-time rules apply
(:func:`visible_instants`): at the instant the call's mmap_lock stops being
held for write, not at its exit.  ``vms_complete_munmap_vmas`` (mm/vma.c)
calls ``mmap_write_downgrade`` right after ``vma_iter_clear_gfp`` emptied the
range, then zaps the pages before returning (hundreds of microseconds for a
large faulted range); mprotect/mseal edit flags under ``vma_start_write`` and
``mmap_write_unlock`` before returning.  A reader without mmap_lock (page
faults, /proc/PID/maps since v6.17: ``lock_next_vma`` in mm/mmap_lock.c)
either walks the tree under RCU (the clear shows at once) or meets a VMA
the writer write-locked and falls back to ``mmap_read_lock``, which returns
after the downgrade/unlock; nothing else can change the tree in between
(the writer holds mmap_lock).  Both fire an ``mmap_lock`` tracepoint before
``vma_end_write_all`` (include/linux/mmap_lock.h), recorded as the
``mmap_lock`` kind (collectors/mmap_lock.bpf.c).  Without those records (an
older trace, a kernel without the tracepoints) a clear is placed 1 ns after
the call's own last tree write, anything else at the exit
(:func:`mmtrace.model.stream._clear_instants`).

Fork, exec and exit are handled where the trees are (``Engine._on_proc``,
``Engine._new_tree``, ``Engine._on_exit_mmap``): they are not per-range rules.
"""

from __future__ import annotations

import numpy as np

from ..events.flags import MREMAP_DONTUNMAP, PROT_GROWSDOWN

__all__ = ["CORRECTING", "C_NONE", "C_CLEAR", "C_PROT", "C_PROT_WALK", "C_SEAL", "corrections", "ERRNO_MAX",
           "ENOMEM", "EPERM", "EACCES", "visible_instants"]

#: Syscalls whose effect on the tree is not all in their stores.
CORRECTING = ("munmap", "mprotect", "pkey_mprotect", "mremap", "brk", "mseal")

#: Correction kinds: nothing to correct (the exit may still adopt a tree),
#: [start, end) must be empty, [start, end) gets the prot bits of arg2,
#: mprotect's VMA walk decided from the tree (failed part-way, or
#: PROT_GROWSDOWN), [start, end) becomes VM_SEALED.
C_NONE, C_CLEAR, C_PROT, C_PROT_WALK, C_SEAL = 0, 1, 2, 3, 4

ERRNO_MAX = 4095
EPERM, EACCES, ENOMEM = 1, 13, 12
_PAGE_MASK = np.uint64(4095)
# User addresses are below 2**47 (x86_64 4-level) or 2**56 (5-level): an
# argument at or above 2**62 fails the kernel's range checks (-EINVAL/-ENOMEM
# from ``do_vmi_munmap``/``do_mprotect_pkey``/``mremap``), so such a call can
# correct nothing, and ranges fit int64.
_BIG = np.uint64(1 << 62)


def corrections(sc: dict, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kind, start, end) of the exit-time correction of syscalls ``rows`` of ``sc``.

    ``sc``: numpy columns ``code`` (index into :data:`CORRECTING`; others are
    larger), ``arg0``..``arg3``, ``ret``, ``brk_enter``, ``brk_exit``.
    ``kind``: :data:`C_NONE`, :data:`C_CLEAR` or :data:`C_PROT` (int8);
    ``start``/``end``: int64, the range (0 for C_NONE).
    """
    n = len(rows)
    kind = np.full(n, C_NONE, np.int8)
    lo = np.zeros(n, np.int64)
    hi = np.zeros(n, np.int64)
    if n == 0:
        return kind, lo, hi
    code = sc["code"][rows]
    nc = len(CORRECTING)
    by = np.argsort(code, kind="stable")
    cuts = np.searchsorted(code[by], np.arange(nc + 1))
    groups = {name: by[cuts[k]:cuts[k + 1]] for k, name in enumerate(CORRECTING)}

    def col(c, g):
        return sc[c][rows[g]]

    def palign(x):
        return (x + _PAGE_MASK) & ~_PAGE_MASK

    def put(g, sel, k, a_, b_):
        g = g[sel]
        kind[g] = k
        lo[g] = a_[sel].astype(np.int64)
        hi[g] = b_[sel].astype(np.int64)

    with np.errstate(over="ignore"):
        for name in ("munmap", "mprotect", "pkey_mprotect"):
            g = groups[name]
            if not len(g):
                continue
            a0, a1, ret = col("arg0", g), col("arg1", g), col("ret", g)
            # len 0: do_mprotect_pkey returns 0 before looking at the tree
            # ("if (!len) return 0"); munmap fails with -EINVAL
            ok = (a0 < _BIG) & (a1 < _BIG) & (a1 != 0)
            if name == "munmap":
                put(g, ok & (ret == 0), C_CLEAR, a0, a0 + palign(a1))
                continue
            put(g, ok & ((ret == 0) | (ret == -ENOMEM)), C_PROT, a0, a0 + palign(a1))
            grows = (col("arg2", g) & np.uint64(PROT_GROWSDOWN)) != 0
            walk = ok & (grows & ((ret == 0) | (ret == -ENOMEM)) | (ret == -EPERM) | (ret == -EACCES))
            put(g, walk, C_PROT_WALK, a0, a0 + palign(a1))
        g = groups["mremap"]
        if len(g):
            a0, a1, a2, a3, ret = (col(c, g) for c in ("arg0", "arg1", "arg2", "arg3", "ret"))
            ok = ~((ret >= -ERRNO_MAX) & (ret < 0)) & (a0 < _BIG) & (a1 < _BIG) & (a2 < _BIG)
            old_len, new_len = palign(a1), palign(a2)
            inplace = ret.astype(np.uint64) == a0
            put(g, ok & inplace & (new_len < old_len), C_CLEAR, a0 + new_len, a0 + old_len)
            moved = ok & ~inplace & (old_len != 0) & ((a3 & np.uint64(MREMAP_DONTUNMAP)) == 0)
            put(g, moved, C_CLEAR, a0, a0 + old_len)
        g = groups["brk"]
        if len(g):
            b0, b1 = palign(col("brk_enter", g)), palign(col("brk_exit", g))
            put(g, (b0 < _BIG) & (b1 < _BIG) & (b1 < b0), C_CLEAR, b1, b0)
        g = groups["mseal"]
        if len(g):
            a0, a1, ret = col("arg0", g), col("arg1", g), col("ret", g)
            put(g, (a0 < _BIG) & (a1 < _BIG) & (a1 != 0) & (ret == 0), C_SEAL, a0, a0 + palign(a1))
    return kind, lo, hi


def visible_instants(tid: np.ndarray, ts_enter: np.ndarray, ts_exit: np.ndarray,
                     lk_tid: np.ndarray, lk_ts: np.ndarray) -> np.ndarray:
    """When each call's changes become visible to the other threads (see the module doc).

    ``tid``, ``ts_enter``, ``ts_exit``: the calls; ``lk_tid``, ``lk_ts``: the
    ``mmap_lock`` records (a write unlock or a read acquisition inside a
    followed syscall, any order).  Returns int64 per call: the ts of the
    first record of the same thread in ``[ts_enter, ts_exit]``, -1 when none.
    The first is the right one: these calls take mmap_lock for write first
    (``mmap_write_lock_killable``), so a read acquisition after it is the
    downgrade (an rwsem does not nest), and the unlock ends the changes.
    """
    n = len(tid)
    out = np.full(n, -1, np.int64)
    if n == 0 or len(lk_ts) == 0:
        return out
    lk_tid = np.asarray(lk_tid)
    lk_ts = np.asarray(lk_ts).astype(np.int64)
    tid = np.asarray(tid)
    te = np.asarray(ts_enter).astype(np.int64)
    tx = np.asarray(ts_exit).astype(np.int64)
    for t in np.intersect1d(np.unique(tid), np.unique(lk_tid)).tolist():
        m = np.flatnonzero(tid == t)
        lt = np.sort(lk_ts[lk_tid == t])
        k = np.searchsorted(lt, te[m], side="left")
        ok = k < len(lt)
        kk = np.where(ok, k, 0)
        ok &= lt[kk] <= tx[m]
        out[m[ok]] = lt[kk[ok]]
    return out
