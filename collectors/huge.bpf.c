/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hugetlb accounting evidence.  Reservations have no tracepoint, so the
 * hstate counters (nr/free/resv/surplus, as in /sys/kernel/mm/hugepages/)
 * are read in the kernel right where they can change for a traced mm: at the
 * exit of its syscalls, at its faults in hugetlb ranges, and when its mm is
 * torn down.  vma.bpf.c fills huge_mm when a hugetlb VMA is stored.
 * Syscalls are sampled at entry too, so that a change of these global
 * counters is attributed only to the calls and faults that overlapped it.
 *
 * With MMT_HAVE_HUGETLB_CGROUP each sample also reads the sampling task's
 * hugetlb cgroup reservation counter (hugetlb_cgroup.rsvd_hugepage[idx],
 * charged by hugetlb_cgroup_charge_cgroup_rsvd() in mm/hugetlb_cgroup.c):
 * the recorder puts the command in a cgroup of its own
 * (mmtrace/capture/cgroup.py), so untraced processes cannot move it.
 */

#ifdef MMT_HAVE_HUGETLB_CGROUP
/* hstate_index(): the position of the hstate in hstates[], which BPF cannot
 * see; capture/kernel.py passes the order of each position
 * (MMT_HS_ORDERS, from the creation order of /sys/kernel/mm/hugepages/). */
static __always_inline u64 mmt_cg_rsvd(u32 order)
{
	const u32 orders[MMT_HS_N] = MMT_HS_ORDERS;
	u64 idx = ~0ULL, cgs, css;

#pragma unroll
	for (int i = 0; i < MMT_HS_N; i++)
		if (orders[i] == order)
			idx = i;
	if (idx == ~0ULL)
		return ~0ULL;
	cgs = mmt_read_u64((u64)bpf_get_current_task(), MMT_OFF_task_struct__cgroups);
	css = mmt_read_u64(cgs, MMT_OFF_css_set__subsys + 8 * MMT_HUGETLB_CGRP_ID);
	if (!css)
		return ~0ULL;
	return mmt_read_u64(css - MMT_OFF_hugetlb_cgroup__css,
			    MMT_OFF_hugetlb_cgroup__rsvd_hugepage + idx * MMT_SIZEOF_page_counter +
			    MMT_OFF_page_counter__usage);
}
#endif

#ifdef MMT_HAVE_HUGETLB
static __always_inline void mmt_emit_huge(u64 id, u64 tree, u16 cause, u16 sc, u64 address)
{
	struct mmt_huge_mm *hm;
	struct mmt_hugetlb *e;
	u64 hs;

	if (!mmt_huge_seen())
		return;
	hm = huge_mm.lookup(&tree);
	if (!hm || !hm->hstate)
		return;
	hs = hm->hstate;
	e = mmt_reserve(sizeof(struct mmt_hugetlb), MMT_HUGETLB);
	if (!e)
		return;
	mmt_fill_hdr(&e->h, MMT_HUGETLB, id);
	e->hstate = hs;
	e->nr_huge_pages = mmt_read_u64(hs, MMT_OFF_hstate__nr_huge_pages);
	e->free_huge_pages = mmt_read_u64(hs, MMT_OFF_hstate__free_huge_pages);
	e->resv_huge_pages = mmt_read_u64(hs, MMT_OFF_hstate__resv_huge_pages);
	e->surplus_huge_pages = mmt_read_u64(hs, MMT_OFF_hstate__surplus_huge_pages);
	e->order = mmt_read_u32(hs, MMT_OFF_hstate__order);
	e->tree = tree;
	e->address = address;
	e->cause = cause;
	e->sc = sc;
#ifdef MMT_HAVE_HUGETLB_CGROUP
	e->cg_rsvd = mmt_cg_rsvd(e->order);
#else
	e->cg_rsvd = ~0ULL;
#endif
	e->ts_read = bpf_ktime_get_ns();
	mmt_submit(e);
}
#else
static __always_inline void mmt_emit_huge(u64 id, u64 tree, u16 cause, u16 sc, u64 address)
{
}
#endif

#if defined(MMT_HAVE_HUGETLB) && defined(MMT_HAVE_page_fault_user)
TRACEPOINT_PROBE(exceptions, page_fault_user)
{
	MMT_EMPTY_RETURN_IN(hugetlb);
	u64 id = bpf_get_current_pid_tgid();
	u64 tree, addr = args->address;
	struct mmt_huge_mm *hm;
	struct mmt_fault *e;

	if (!mmt_huge_seen() || !mmt_is_traced(id >> 32))
		return 0;
	tree = mmt_tree_of(mmt_current_mm());
	hm = huge_mm.lookup(&tree);
	if (!hm || addr < hm->lo || addr >= hm->hi)
		return 0;
	e = mmt_reserve(sizeof(struct mmt_fault), MMT_FAULT);
	if (e) {
		mmt_fill_hdr(&e->h, MMT_FAULT, id);
		e->address = addr;
		e->ip = args->ip;
		e->error_code = args->error_code;
		mmt_submit(e);
	}
	mmt_emit_huge(id, tree, MMT_HC_FAULT, 0, addr);
	return 0;
}
#endif

#if defined(MMT_HAVE_HUGETLB) && defined(MMT_HAVE_signal_generate)
/* The outcome of a fault: whether it found a page is decided when
 * alloc_hugetlb_folio() runs, which may be long after the fault's sample
 * (the task can wait on hugetlb_fault_mutex while other tasks fault the same
 * page, or be preempted), so the counters at the fault's start cannot tell.
 * A fault that found no page ends in VM_FAULT_SIGBUS, and the x86 fault
 * handler sends SIGBUS with BUS_ADRERR to the faulting task itself
 * (do_sigbus() -> force_sig_fault(), arch/x86/mm/fault.c): a sample here
 * marks the thread's last fault as failed, with the counters as they are
 * after it. */
TRACEPOINT_PROBE(signal, signal_generate)
{
	MMT_EMPTY_RETURN_IN(hugetlb);
	u64 id;

	if (args->sig != 7 /* SIGBUS */ || args->code != 2 /* BUS_ADRERR */)
		return 0;
	id = bpf_get_current_pid_tgid();
	if ((u32)id != (u32)args->pid || !mmt_huge_seen() || !mmt_is_traced(id >> 32))
		return 0;
	mmt_emit_huge(id, mmt_tree_of(mmt_current_mm()), MMT_HC_SIGBUS, 0, 0);
	return 0;
}
#endif

#if defined(MMT_HAVE_HUGETLB) && (defined(MMT_HAVE_sys_enter_wait4) || defined(MMT_HAVE_sys_enter_waitid))
/* A parent waiting for its children enters wait4/waitid, which are not
 * followed (they change no address space): without a sample here its last
 * hugetlb fault would seem in progress until it next does something traced,
 * which may be long after, and every sample meanwhile inexact.  The entry of
 * a syscall is back from every fault of the thread (detect/hugetlb.py
 * _fault_ends); the counters are one more sample. */
static __always_inline void mmt_huge_wait(void)
{
	u64 id = bpf_get_current_pid_tgid();

	if (!mmt_huge_seen() || !mmt_is_traced(id >> 32))
		return;
	mmt_emit_huge(id, mmt_tree_of(mmt_current_mm()), MMT_HC_WAIT, 0, 0);
}
#endif

#if defined(MMT_HAVE_HUGETLB) && defined(MMT_HAVE_sys_enter_wait4)
TRACEPOINT_PROBE(syscalls, sys_enter_wait4)
{
	MMT_EMPTY_RETURN_IN(hugetlb);
	mmt_huge_wait();
	return 0;
}
#endif

#if defined(MMT_HAVE_HUGETLB) && defined(MMT_HAVE_sys_enter_waitid)
TRACEPOINT_PROBE(syscalls, sys_enter_waitid)
{
	MMT_EMPTY_RETURN_IN(hugetlb);
	mmt_huge_wait();
	return 0;
}
#endif
