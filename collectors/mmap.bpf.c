/* SPDX-License-Identifier: GPL-2.0 */
/* Every mmap:* tracepoint this kernel has (see compat.h). */

#ifdef MMT_HAVE_vm_unmapped_area
TRACEPOINT_PROBE(mmap, vm_unmapped_area)
{
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
	return mmt_emit_vma_store((u64)args->mt, (u64)args->vma, args->vm_start, args->vm_end, MMT_VS_STORE);
}
#endif

#ifdef MMT_HAVE_vma_mas_szero
TRACEPOINT_PROBE(mmap, vma_mas_szero)
{
	return mmt_emit_vma_store((u64)args->mt, 0, args->start, args->end, MMT_VS_SZERO);
}
#endif
