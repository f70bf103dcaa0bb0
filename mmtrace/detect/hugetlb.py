"""hugetlb reservation accounting: a model from the stream, checked against the kernel.

The model follows mm/hugetlb.c at huge-page granularity:

- private mappings reserve one page per huge page at mmap
  (``hugetlb_reserve_pages``), none with MAP_NORESERVE (VM_NORESERVE);
- shared mappings reserve per file page, once per file (the inode's region
  map), whoever maps it;
- the first fault of a reserved page consumes its reservation;
- unmapping or tearing down a private mapping releases its reservations not
  yet consumed (``hugetlb_vm_op_close``); a split divides nothing: each piece
  keeps its pages' reservations;
- a forked child's private hugetlb VMAs own no reservation
  (``hugetlb_dup_vma_private``);
- a shared file's reservations outlive its mappings; when the last traced
  mapping of it goes, the kernel may release them (inode eviction), which
  the check accepts.

The kernel's own counters (``resv_huge_pages`` ...) are sampled in the
kernel at the exit of every traced syscall of an mm holding hugetlb VMAs, at
its hugetlb faults and at its ``exit_mmap`` (events kind ``hugetlb``).
Between two consecutive samples the kernel's change must equal the modeled
change of the traced processes; a difference is an anomaly unless untraced
processes used huge pages at that moment.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from ..events.flags import VM_HUGETLB, VM_MAYSHARE, VM_NORESERVE

__all__ = ["hugetlb_accounting", "hugetlb_anomalies", "KMSG_HUGETLB"]

# The kernel's own alarm (mm/hugetlb.c, hugetlb_fix_reserve_counts()).
KMSG_HUGETLB = "Huge Page Reserved count may go negative"
_U63 = 1 << 63


class _Reservations:
    """Page states: private (tree, page) and shared (dev, ino, file page) -> 'R' reserved, 'F' faulted, 'N' none."""

    def __init__(self, hpage: int) -> None:
        self.h = hpage
        self.private: dict[tuple[int, int], str] = {}
        self.shared: dict[tuple[int, int, int], str] = {}
        self.mapped: dict[tuple[int, int], set] = defaultdict(set)  # file -> {(tree, start)}
        self.vmas: dict[int, list[tuple]] = defaultdict(list)  # tree -> hugetlb (start, end, flags, dev, ino, pgoff)
        self.owed: dict[tuple[int, int], int] = defaultdict(int)  # (pid, vma start) -> released by the kernel unexplained

    def pages(self, start: int, end: int) -> range:
        return range(start - start % self.h, end, self.h)

    def resv(self) -> int:
        return sum(1 for s in self.private.values() if s == "R") + sum(1 for s in self.shared.values() if s == "R")

    def mapping_resv(self, tree: int, start: int, end: int) -> int:
        return sum(1 for p in self.pages(start, end) if self.private.get((tree, p)) == "R")


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
        out[(tree, val)].append((ts, dev, ino, pgoff - start // 4096))
    return out


def _file_of(files, tree: int, ptr: int, ts: int) -> tuple[int, int, int]:
    best = (0, 0, 0)
    for t, dev, ino, base in files.get((tree, ptr), ()):
        if t <= ts:
            best = (dev, ino, base)
    return best


def _file_page(dev: int, ino: int, base: int, vm_start: int, addr: int, hpage: int) -> tuple[int, int, int]:
    """(dev, ino, huge page index in the file) of ``addr`` in a VMA at ``vm_start``;
    ``base`` is vm_pgoff - vm_start/4096 (vm_pgoff counts 4 KiB pages, also for hugetlb)."""
    return dev, ino, ((base + vm_start // 4096) * 4096 + (addr - vm_start)) // hpage


def _model_deltas(trace, hpage: int) -> tuple[list[tuple], list[dict]]:
    """Modeled reservation deltas over time: [(ts, delta, pid, what, lo, hi, pending)].

    ``pending``: reservations of shared files left without a traced mapping,
    which the kernel may release at any later time (inode eviction).
    """
    ch = trace.changes()
    files = _vma_files(trace)
    st = _Reservations(hpage)
    out: list[tuple] = []
    faults = trace.raw_events("fault")
    evs = []
    for r in ch.itertuples(index=False):
        hb = [v for v in r.before_vmas if v[3] & VM_HUGETLB]
        ha = [v for v in r.after_vmas if v[3] & VM_HUGETLB]
        if hb or ha:
            evs.append((int(r.ts_end), 0, r, hb, ha))
    hs = trace.raw_events("hugetlb")
    if len(faults):
        # The fault's sample reads the counters before the fault is handled:
        # its consumption belongs just after that sample (the first sample of
        # the same thread and address at or after the fault event).
        fs = hs[hs["cause"] == 2][["ts", "tid", "address"]] if len(hs) else pd.DataFrame(columns=["ts", "tid", "address"])
        left = faults[["ts", "tid", "tgid", "address"]].astype("int64").sort_values("ts")
        right = fs.rename(columns={"ts": "sample_ts"}).astype("int64").sort_values("sample_ts")
        m = pd.merge_asof(left, right, left_on="ts", right_on="sample_ts", by=["tid", "address"], direction="forward")
        m["sample_ts"] = m["sample_ts"].fillna(m["ts"]).astype("int64")
        for sts, tgid, addr in zip(m["sample_ts"].tolist(), m["tgid"].tolist(), m["address"].tolist()):
            evs.append((sts + 1, 1, (tgid, addr), None, None))
    evs.sort(key=lambda e: (e[0], e[1]))
    tree_of_pid: dict[int, int] = {}
    for ts, typ, r, hb, ha in evs:
        if typ == 1:
            tgid, addr = r
            tree = tree_of_pid.get(tgid)
            if tree is None:
                continue
            page = addr - addr % hpage
            for (s, e, fl, dev, ino, base) in st.vmas[tree]:
                if s <= addr < e:
                    if fl & VM_MAYSHARE:
                        key = _file_page(dev, ino, base, s, page, hpage)
                        if st.shared.get(key) == "R":
                            st.shared[key] = "F"
                            out.append((ts, -1, tgid, "fault consumes a shared file page's reservation", page, page + hpage, 0))
                        elif key not in st.shared:
                            st.shared[key] = "F"
                    else:
                        k = (tree, page)
                        if st.private.get(k) == "R":
                            st.private[k] = "F"
                            out.append((ts, -1, tgid, "first fault consumes the page's reservation", page, page + hpage, 0))
                        elif k not in st.private:
                            st.private[k] = "F"
                    break
            continue
        tree = int(r.tree)
        pid = int(r.pid)
        tree_of_pid[pid] = tree
        old = {p: v for v in hb for p in st.pages(v[0], v[1])}
        new = {p: v for v in ha for p in st.pages(v[0], v[1])}
        # refresh this tree's hugetlb VMA list
        keep = [v for v in st.vmas[tree] if not any(v[0] < b[1] and b[0] < v[1] for b in hb)]
        for v in ha:
            dev, ino, base = _file_of(files, tree, v[2], ts)
            keep.append((v[0], v[1], v[3], dev, ino, base))
        st.vmas[tree] = sorted(keep)
        if r.kind == "fork_copy":
            for p, v in new.items():
                if not v[3] & VM_MAYSHARE:
                    st.private[(tree, p)] = "N"  # the child owns no reservation
            continue
        delta = 0
        for p, v in old.items():
            if p in new:
                continue
            if not v[3] & VM_MAYSHARE:
                s = st.private.pop((tree, p), None)
                if s == "R":
                    delta -= 1
        for p, v in new.items():
            if p in old:
                continue
            if v[3] & VM_MAYSHARE:
                dev, ino, base = _file_of(files, tree, v[2], ts)
                key = _file_page(dev, ino, base, v[0], p, hpage)
                st.mapped[(dev, ino)].add((tree, v[0]))
                if key not in st.shared and not v[3] & VM_NORESERVE:
                    st.shared[key] = "R"
                    delta += 1
            elif v[3] & VM_NORESERVE:
                st.private[(tree, p)] = "N"
            else:
                st.private[(tree, p)] = "R"
                delta += 1
        pending = 0
        for v in hb:
            if v[3] & VM_MAYSHARE and not any(v[0] <= p < v[1] for p in new):
                dev, ino, base = _file_of(files, tree, v[2], ts)
                st.mapped[(dev, ino)].discard((tree, v[0]))
                if not st.mapped[(dev, ino)]:
                    # No traced mapping left: the file's reservations go when
                    # its inode is evicted, at the last fput, which may be
                    # deferred or come from an untraced close.
                    for k in [k for k in st.shared if k[:2] == (dev, ino)]:
                        if st.shared.pop(k) == "R":
                            pending += 1
        if delta or pending:
            what = f"{r.cause} {r.kind}"
            out.append((ts, delta, pid, what, int(r.lo), int(r.hi), pending))
    return out, []


def errno_name(n: int) -> str:
    import errno
    import os

    return f"-{errno.errorcode.get(n, str(n))}: {os.strerror(n)}"


def hugetlb_accounting(trace) -> pd.DataFrame:
    """The modeled reservations against the kernel's counters, one row per kernel sample.

    Columns: ``ts``, ``pid`` (tgid of the sampled event), ``cause``
    (syscall/fault/exit_mmap), ``syscall``, ``nr_huge_pages``,
    ``arg0``..``arg2``, ``ret`` (of that syscall), ``nr_huge_pages``,
    ``free_huge_pages``, ``resv_huge_pages``, ``surplus_huge_pages`` (the
    kernel's, read in the kernel), ``model_resv`` (the first sample's
    ``resv_huge_pages`` plus the modeled changes since), ``kernel_delta`` and
    ``model_delta`` (change since the previous sample), ``pending``
    (reservations of shared hugetlb files left with no traced mapping, which
    the kernel releases when it evicts the inode, at a time we do not see),
    ``what`` (the modeled changes in the window).
    """
    hs = trace.raw_events("hugetlb")
    cols = ["ts", "pid", "cause", "syscall", "arg0", "arg1", "arg2", "ret", "nr_huge_pages", "free_huge_pages", "resv_huge_pages",
            "surplus_huge_pages", "model_resv", "kernel_delta", "model_delta", "pending", "what"]
    if len(hs) == 0:
        return pd.DataFrame(columns=cols)
    hs = hs.sort_values("ts", kind="stable").reset_index(drop=True)
    order = int(hs["order"].iloc[0])
    hpage = 4096 << order
    deltas, _ = _model_deltas(trace, hpage)
    deltas.sort(key=lambda d: d[0])
    d_ts = np.array([d[0] for d in deltas], dtype=np.int64)
    by_id = {v: k for k, v in (trace.metadata.get("probe_plan", {}).get("syscalls") or {}).items()}
    # The syscall each sample closes: the same thread's last syscall record before it.
    sc = trace.raw_events("syscall")
    call = {}
    if len(sc):
        left = hs[["ts", "tid"]].astype("int64").reset_index().sort_values("ts")
        right = sc[["ts", "tid", "arg0", "arg1", "arg2", "ret"]].rename(columns={"ts": "sc_ts"})
        right = right.astype({"sc_ts": "int64", "tid": "int64"}).sort_values("sc_ts")
        m = pd.merge_asof(left, right, left_on="ts", right_on="sc_ts", by="tid", direction="backward")
        call = {int(i): (a0, a1, a2, rt) for i, a0, a1, a2, rt in
                zip(m["index"], m["arg0"], m["arg1"], m["arg2"], m["ret"]) if a0 == a0}
    resv = hs["resv_huge_pages"].to_numpy(np.uint64).astype(object)
    rows = []
    # Baseline: the pool as sampled before the command started, when there is one.
    pool = trace.hugepages() if hasattr(trace, "hugepages") else pd.DataFrame()
    pool = pool[(pool["size_kb"] == hpage // 1024) & (pool["ts"] < int(hs["ts"].iloc[0]))] if len(pool) else pool
    baseline = len(pool) > 0
    prev_k = int(pool["resv_hugepages"].iloc[0]) if baseline else int(resv[0])
    model = prev_k
    j = 0
    pending = 0
    for i, r in enumerate(hs.itertuples(index=False)):
        ts = int(r.ts)
        md, what = 0, []
        while j < len(deltas) and d_ts[j] <= ts:
            md += deltas[j][1]
            pending += deltas[j][6]
            if deltas[j][1]:
                what.append(deltas[j][3])
            j += 1
        k = int(resv[i])
        k_signed = k - (1 << 64) if k >= _U63 else k
        if i == 0 and not baseline:
            md = 0  # no pool sample before: the first kernel sample is the baseline
        kd = k_signed - prev_k
        explained = ""
        if kd < md and pending and md - kd <= pending:
            # A shared file with no mapping left was evicted: its reservations went.
            pending -= md - kd
            explained = f"{md - kd} reservation(s) of unmapped shared hugetlb files released (inode evicted)"
            md = kd
        model += md
        a0, a1, a2, rt = call.get(i, (0, 0, 0, 0)) if int(r.cause) == 1 else (0, 0, 0, 0)
        rows.append({
            "arg0": int(a0), "arg1": int(a1), "arg2": int(a2), "ret": int(rt),
            "ts": ts, "pid": int(r.tgid), "cause": {1: "syscall", 2: "fault", 3: "exit_mmap"}.get(int(r.cause), "?"),
            "syscall": by_id.get(int(r.sc), "") if int(r.cause) == 1 else "",
            "nr_huge_pages": int(r.nr_huge_pages), "free_huge_pages": int(r.free_huge_pages),
            "resv_huge_pages": k, "surplus_huge_pages": int(r.surplus_huge_pages),
            "model_resv": model, "kernel_delta": kd, "model_delta": md,
            "pending": pending, "what": "; ".join(what + ([explained] if explained else [])),
        })
        prev_k = k_signed
    return pd.DataFrame(rows, columns=cols)


def hugetlb_anomalies(trace, acc: pd.DataFrame | None = None) -> list[dict]:
    """Findings about hugetlb accounting (see :func:`mmtrace.api.Trace.anomalies` for columns)."""
    acc = hugetlb_accounting(trace) if acc is None else acc
    out: list[dict] = []
    owed: dict[int, int] = defaultdict(int)  # pid -> reservations the kernel dropped unexplained
    for r in acc.itertuples(index=False):
        if r.resv_huge_pages >= _U63:
            out.append({
                "ts": r.ts, "pid": r.pid, "severity": "error", "kind": "kernel_counter_underflow",
                "explanation": (
                    f"resv_huge_pages read {r.resv_huge_pages} (= {int(r.resv_huge_pages) - (1 << 64)} as signed) "
                    f"at {r.syscall or r.cause} of pid {r.pid}: the unsigned counter went below zero, so "
                    "reservations were released more times than they were made"
                ),
            })
        if r.kernel_delta != r.model_delta:
            diff = r.kernel_delta - r.model_delta
            what = r.syscall or r.cause
            if r.syscall:
                what = f"{r.syscall}({int(r.arg0):#x}, {int(r.arg1):#x}, {int(r.arg2):#x}) = {int(r.ret)}"
            hint = ""
            if diff < 0 and r.ret < 0 and r.syscall in ("mprotect", "pkey_mprotect", "munmap", "mremap", "madvise"):
                hint = (
                    f" The call failed ({errno_name(-int(r.ret))}) and changed no VMA: the signature of a failed "
                    "__split_vma whose half-built copy of a hugetlb VMA was closed with its range intact, so "
                    "hugetlb_vm_op_close() released the reservations of that half while the original VMA still "
                    "owned them (the bug fixed with \"mm: start tracking VMAs with maple tree\")."
                )
            out.append({
                "ts": r.ts, "pid": r.pid, "severity": "error" if diff < 0 else "warning",
                "kind": "model_kernel_disagree",
                "explanation": (
                    f"between the previous sample and {what} of pid {r.pid}, "
                    f"resv_huge_pages changed by {r.kernel_delta:+d} but the traced mappings explain "
                    f"{r.model_delta:+d} ({r.what or 'no hugetlb change in the rebuilt trees'}): "
                    + ("the kernel released reservations that no VMA change accounts for"
                       if diff < 0 else "the kernel reserved pages that no traced mapping asked for")
                    + " (only untraced processes using huge pages at that moment could explain it)."
                    + hint
                ),
            })
            if diff < 0:
                owed[r.pid] += -diff
        elif owed.get(r.pid) and r.model_delta < 0 and r.model_resv - owed[r.pid] < 0:
            # The kernel releases again, at unmap/exit, what it already dropped.
            out.append({
                "ts": r.ts, "pid": r.pid, "severity": "error", "kind": "negative_reservation",
                "explanation": (
                    f"{r.syscall or r.cause} of pid {r.pid} releases {-r.model_delta} reservation(s) of its "
                    f"hugetlb mapping, {owed[r.pid]} of which the kernel had already released without any VMA "
                    f"change: the mapping's reservations are now {r.model_resv - owed[r.pid]:+d}, below zero "
                    "(released twice)"
                ),
            })
            owed[r.pid] = 0
    kmsg = trace.kmsg() if hasattr(trace, "kmsg") else pd.DataFrame()
    if len(kmsg):
        for r in kmsg[kmsg["msg"].astype(str).str.contains(KMSG_HUGETLB, regex=False)].itertuples(index=False):
            out.append({
                "ts": int(r.ts), "pid": -1, "severity": "error", "kind": "kernel_warning",
                "explanation": f"the kernel logged: {r.msg!r} (hugetlb_fix_reserve_counts)",
            })
    return out
