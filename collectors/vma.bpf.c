/* SPDX-License-Identifier: GPL-2.0 */
/*
 * maple_tree:ma_write and ma_op, as raw tracepoints: the raw form hands us
 * the struct ma_state *, whose ->tree says WHICH maple tree was written
 * (maple trees also serve tmpfs directories, IRQ descriptors, and munmap's
 * on-stack detach tree).  When the stored entry is a VMA of that same tree's
 * mm, the VMA's fields are copied as they are at the moment of the store.
 */

#ifdef MMT_HAVE_HUGETLB
/* Remember where this mm's hugetlb VMAs are and which hstate counts them. */
static __always_inline void mmt_note_huge(u64 tree, u64 sb, u64 start, u64 end)
{
	struct mmt_huge_mm *hm = huge_mm.lookup(&tree);
	struct mmt_huge_mm n = {};

	if (hm) {
		if (start < hm->lo)
			hm->lo = start;
		if (end > hm->hi)
			hm->hi = end;
		return;
	}
	n.hstate = mmt_read_u64(mmt_read_u64(sb, MMT_OFF_super_block__s_fs_info),
				MMT_OFF_hugetlbfs_sb_info__hstate);
	n.lo = start;
	n.hi = end;
	huge_mm.update(&tree, &n);
}
#endif

static __always_inline void mmt_read_vma(struct mmt_tree_write *e)
{
	u64 vma = e->val;
	u64 file;

	e->vm_start = 0;
	e->vm_end = 0;
	e->vm_flags = 0;
	e->vm_pgoff = 0;
	e->ino = 0;
	e->dev = 0;
	/* Maple tree internal entries (XA_ZERO_ENTRY from fork's DONTCOPY
	 * clearing, value entries) have low bits set: never a VMA. */
	if (!vma || (vma & 7))
		return;
	if (mmt_read_u64(vma, MMT_OFF_vm_area_struct__vm_mm) + MMT_OFF_mm_struct__mm_mt != e->tree)
		return;
	e->flags |= MMT_TW_VAL_IS_VMA;
	e->vm_start = mmt_read_u64(vma, MMT_OFF_vm_area_struct__vm_start);
	e->vm_end = mmt_read_u64(vma, MMT_OFF_vm_area_struct__vm_end);
	e->vm_flags = mmt_read_u64(vma, MMT_OFF_vm_area_struct__vm_flags);
	e->vm_pgoff = mmt_read_u64(vma, MMT_OFF_vm_area_struct__vm_pgoff);
	file = mmt_read_u64(vma, MMT_OFF_vm_area_struct__vm_file);
	if (file) {
		u64 inode = mmt_read_u64(file, MMT_OFF_file__f_inode);
		u64 sb = mmt_read_u64(inode, MMT_OFF_inode__i_sb);

		e->ino = mmt_read_u64(inode, MMT_OFF_inode__i_ino);
		e->dev = mmt_read_u32(sb, MMT_OFF_super_block__s_dev);
		e->flags |= MMT_TW_FILE;
#ifdef MMT_HAVE_HUGETLB
		if (e->vm_flags & MMT_VM_HUGETLB)
			mmt_note_huge(e->tree, sb, e->vm_start, e->vm_end);
#endif
	}
}

static __always_inline int mmt_on_tree(struct bpf_raw_tracepoint_args *ctx, u16 op)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
	struct mmt_tree_write *e;
	u64 fn = ctx->args[0];
	u64 mas = ctx->args[1];

	if (!mmt_is_traced(tgid))
		return 0;
	e = mmt_reserve(sizeof(struct mmt_tree_write), MMT_TREE_WRITE);
	if (!e)
		return 0;
	mmt_fill_hdr(&e->h, MMT_TREE_WRITE, id);
	e->fn = fn;
	e->tree = mmt_read_u64(mas, MMT_OFF_ma_state__tree);
	e->index = mmt_read_u64(mas, MMT_OFF_ma_state__index);
	e->last = mmt_read_u64(mas, MMT_OFF_ma_state__last);
	e->min = mmt_read_u64(mas, MMT_OFF_ma_state__min);
	e->max = mmt_read_u64(mas, MMT_OFF_ma_state__max);
	e->node = mmt_read_u64(mas, MMT_OFF_ma_state__node);
	e->mm = mmt_current_mm();
	e->op = op;
	e->flags = 0;
	if (op == MMT_OP_WRITE) {
		e->piv = ctx->args[2];
		e->val = ctx->args[3];
	} else {
		e->piv = 0;
		e->val = 0;
	}
	if (e->mm && mmt_tree_of(e->mm) == e->tree)
		e->flags |= MMT_TW_CURRENT_MM;
	if (mm_trees.lookup(&e->tree))
		e->flags |= MMT_TW_KNOWN_MM;
	mmt_read_vma(e);
	if ((e->flags & (MMT_TW_VAL_IS_VMA | MMT_TW_KNOWN_MM)) == MMT_TW_VAL_IS_VMA)
		mm_trees.update(&e->tree, &tgid);
	if (!fn_names.lookup(&fn)) {
		struct mmt_fn_name n = {};

		bpf_probe_read_kernel_str(&n.s, sizeof(n.s), (void *)fn);
		fn_names.update(&fn, &n);
	}
	mmt_submit(e);
	return 0;
}

RAW_TRACEPOINT_PROBE(ma_write)
{
	return mmt_on_tree(ctx, MMT_OP_WRITE);
}

#ifdef MMT_HAVE_ma_op
RAW_TRACEPOINT_PROBE(ma_op)
{
	return mmt_on_tree(ctx, MMT_OP_OP);
}
#endif
