/* SPDX-License-Identifier: GPL-2.0 */
/* Every mmap:* tracepoint this kernel has (see compat.h). */

#if defined(MMT_HAVE_vm_unmapped_area) && defined(MMT_RAW_vm_unmapped_area)
#define MMT_UA(w, m) MMT_WIN_U64(w, vm_unmapped_area_info, m)

/* TP_PROTO(unsigned long addr, struct vm_unmapped_area_info *info).  The raw
 * form fills the same record as the tracepoint's fields (TP_fast_assign in
 * include/trace/events/mmap.h) without the trace record the tracepoint
 * builds before a BPF program runs. */
RAW_TRACEPOINT_PROBE(vm_unmapped_area)
{
	MMT_EMPTY_RETURN_IN(mmap);
	struct task_struct *task = bpf_get_current_task_btf();
	u64 id = mmt_task_id(task);
	u64 w[MMT_WIN_vm_unmapped_area_info_LEN / 8];
	struct mmt_unmapped_area *e;
	u64 mm;

	if (!mmt_is_traced(id >> 32))
		return 0;
	e = mmt_reserve(sizeof(struct mmt_unmapped_area), MMT_UNMAPPED_AREA);
	if (!e)
		return 0;
#ifdef MMT_TP_BTF
	/* tp_btf (see vma.bpf.c): info is a BTF pointer, read by direct loads. */
	{
		u64 info = ctx->args[1];

		MMT_WIN_LOAD(w, vm_unmapped_area_info, flags, info);
		MMT_WIN_LOAD(w, vm_unmapped_area_info, length, info);
		MMT_WIN_LOAD(w, vm_unmapped_area_info, low_limit, info);
		MMT_WIN_LOAD(w, vm_unmapped_area_info, high_limit, info);
		MMT_WIN_LOAD(w, vm_unmapped_area_info, align_mask, info);
		MMT_WIN_LOAD(w, vm_unmapped_area_info, align_offset, info);
	}
#else
	bpf_probe_read_kernel(w, sizeof(w), (void *)(ctx->args[1] + MMT_WIN_vm_unmapped_area_info_LO));
#endif
	mm = mmt_task_mm(task);
	mmt_fill_hdr(&e->h, MMT_UNMAPPED_AREA, id);
	e->addr = ctx->args[0];
	e->total_vm = mm ? *(u64 *)(mm + MMT_OFF_mm_struct__total_vm) : 0;
	e->flags = MMT_UA(w, flags);
	e->length = MMT_UA(w, length);
	e->low_limit = MMT_UA(w, low_limit);
	e->high_limit = MMT_UA(w, high_limit);
	e->align_mask = MMT_UA(w, align_mask);
	e->align_offset = MMT_UA(w, align_offset);
	e->mm = mm;
	mmt_submit(e);
	return 0;
}
#elif defined(MMT_HAVE_vm_unmapped_area)
TRACEPOINT_PROBE(mmap, vm_unmapped_area)
{
	MMT_EMPTY_RETURN_IN(mmap);
	u64 id = bpf_get_current_pid_tgid();
	struct mmt_unmapped_area *e;

	if (!mmt_is_traced(id >> 32))
		return 0;
	e = mmt_reserve(sizeof(struct mmt_unmapped_area), MMT_UNMAPPED_AREA);
	if (!e)
		return 0;
	mmt_fill_hdr(&e->h, MMT_UNMAPPED_AREA, id);
	e->addr = args->addr;
	e->total_vm = args->total_vm;
	e->flags = args->flags;
	e->length = args->length;
	e->low_limit = args->low_limit;
	e->high_limit = args->high_limit;
	e->align_mask = args->align_mask;
	e->align_offset = args->align_offset;
	e->mm = mmt_current_mm();
	mmt_submit(e);
	return 0;
}
#endif

#ifdef MMT_HAVE_exit_mmap
TRACEPOINT_PROBE(mmap, exit_mmap)
{
	MMT_EMPTY_RETURN_IN(mmap);
	u64 id = bpf_get_current_pid_tgid();
	u64 mt = (u64)args->mt;
	struct mmt_exit_mmap *e;

	/* The last mmput may run in another task (a /proc reader): the tree
	 * being known is enough. */
	if (!mmt_is_traced(id >> 32) && !mm_trees.lookup(&mt))
		return 0;
	mm_trees.delete(&mt);
	e = mmt_reserve(sizeof(struct mmt_exit_mmap), MMT_EXIT_MMAP);
	if (e) {
		mmt_fill_hdr(&e->h, MMT_EXIT_MMAP, id);
		e->mm = (u64)args->mm;
		e->mt = mt;
		mmt_submit(e);
	}
	mmt_emit_huge(id, mt, MMT_HC_EXIT_MMAP, 0, 0);
	huge_mm.delete(&mt);
	return 0;
}
#endif

#if defined(MMT_HAVE_vma_store) || defined(MMT_HAVE_vma_mas_szero)
static __always_inline int mmt_emit_vma_store(u64 mt, u64 vma, u64 start, u64 end, u32 op)
{
	u64 id = bpf_get_current_pid_tgid();
	struct mmt_vma_store *e;

	if (!mmt_is_traced(id >> 32))
		return 0;
	e = mmt_reserve(sizeof(struct mmt_vma_store), MMT_VMA_STORE);
	if (!e)
		return 0;
	mmt_fill_hdr(&e->h, MMT_VMA_STORE, id);
	e->mt = mt;
	e->vma = vma;
	e->start = start;
	e->end = end;
	e->op = op;
	e->_pad = 0;
	mmt_submit(e);
	return 0;
}
#endif

#ifdef MMT_HAVE_vma_store
TRACEPOINT_PROBE(mmap, vma_store)
{
	MMT_EMPTY_RETURN_IN(mmap);
	return mmt_emit_vma_store((u64)args->mt, (u64)args->vma, args->vm_start, args->vm_end, MMT_VS_STORE);
}
#endif

#ifdef MMT_HAVE_vma_mas_szero
TRACEPOINT_PROBE(mmap, vma_mas_szero)
{
	MMT_EMPTY_RETURN_IN(mmap);
	return mmt_emit_vma_store((u64)args->mt, 0, args->start, args->end, MMT_VS_SZERO);
}
#endif
