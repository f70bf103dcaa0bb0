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
	u32 zero = 0;
	u8 *seen = huge_seen.lookup(&zero);

	if (seen)
		*seen = 1;
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

/* MMT_WIN_U64, MMT_WIN_LOAD: common.bpf.c */

/* Is ``vma`` a VMA of the mm whose tree is ``tree``?  Reads the VMA's
 * window into ``w`` (zeroed when not).  Maple tree internal entries
 * (XA_ZERO_ENTRY from fork's DONTCOPY clearing, value entries) have low bits
 * set: never a VMA. */
static __always_inline int mmt_vma_of(u64 vma, u64 tree, u64 *w)
{
	if (!vma || (vma & 7))
		return 0;
#ifdef MMT_KF_rdonly_cast
	/* Direct loads through a read-only BTF pointer: no helper call. */
	vma = mmt_rdonly_cast(vma, MMT_BTF_vm_area_struct);
	MMT_WIN_LOAD(w, vm_area_struct, vm_mm, vma);
	MMT_WIN_LOAD(w, vm_area_struct, vm_start, vma);
	MMT_WIN_LOAD(w, vm_area_struct, vm_end, vma);
	MMT_WIN_LOAD(w, vm_area_struct, vm_flags, vma);
	MMT_WIN_LOAD(w, vm_area_struct, vm_pgoff, vma);
	MMT_WIN_LOAD(w, vm_area_struct, vm_file, vma);
#else
	bpf_probe_read_kernel(w, MMT_WIN_vm_area_struct_LEN, (void *)(vma + MMT_WIN_vm_area_struct_LO));
#endif
	return MMT_WIN_U64(w, vm_area_struct, vm_mm) + MMT_OFF_mm_struct__mm_mt == tree;
}

/* Copy the VMA's fields (window ``w``) into the record, and its file identity. */
static __always_inline void mmt_fill_vma(struct mmt_tree_write *e, u64 *w)
{
	u64 file = MMT_WIN_U64(w, vm_area_struct, vm_file);

	e->flags |= MMT_TW_VAL_IS_VMA;
	e->vm_start = MMT_WIN_U64(w, vm_area_struct, vm_start);
	e->vm_end = MMT_WIN_U64(w, vm_area_struct, vm_end);
	e->vm_flags = MMT_WIN_U64(w, vm_area_struct, vm_flags);
	e->vm_pgoff = MMT_WIN_U64(w, vm_area_struct, vm_pgoff);
	e->ino = 0;
	e->dev = 0;
	if (file) {
#ifdef MMT_KF_rdonly_cast
		/* file came typed from the cast VMA: direct loads all the way. */
		u64 inode = *(u64 *)(file + MMT_OFF_file__f_inode);
		u64 sb = *(u64 *)(inode + MMT_OFF_inode__i_sb);

		e->ino = *(u64 *)(inode + MMT_OFF_inode__i_ino);
		e->dev = *(u32 *)(sb + MMT_OFF_super_block__s_dev);
#else
		u64 inode = mmt_read_u64(file, MMT_OFF_file__f_inode);
		u64 sb = mmt_read_u64(inode, MMT_OFF_inode__i_sb);

		e->ino = mmt_read_u64(inode, MMT_OFF_inode__i_ino);
		e->dev = mmt_read_u32(sb, MMT_OFF_super_block__s_dev);
#endif
		e->flags |= MMT_TW_FILE;
#ifdef MMT_HAVE_HUGETLB
		if (e->vm_flags & MMT_VM_HUGETLB)
			mmt_note_huge(e->tree, sb, e->vm_start, e->vm_end);
#endif
	}
}

/* Per CPU: the last outer store (mas_store_prealloc, mas_store, ...) seen,
 * and a few fn strings already classified.  One logical store fires an
 * outer event and then, for the same ma_state, entry and range, an inner
 * mas_wr_* event (lib/maple_tree.c): that inner event carries nothing new and
 * is folded away here.  An inner event whose range differs (a NULL store
 * widened over a gap) or that has no outer event (mas_store_gfp since v6.12)
 * is kept. */
#define MMT_FN_CACHE 4
struct mmt_last_store {
	u64 mas;
	u64 val;
	u64 index;
	u64 last;
	u64 tid;
	u64 fn[MMT_FN_CACHE];	/* fn pointers classified on this CPU ... */
	u8 inner[MMT_FN_CACHE];	/* ... and whether each is a mas_wr_* one */
	u32 next;		/* round-robin slot to replace */
};
BPF_PERCPU_ARRAY(last_store, struct mmt_last_store, 1);

/* Counters that are not losses (capture/loader.py reads them). */
#define MMT_STAT_FOLDED 0	/* inner stores folded into their outer one */
#define MMT_STAT_OTHER_TREE 1	/* writes to maple trees that are not a traced mm's */
BPF_PERCPU_ARRAY(stats, u64, 4);

static __always_inline void mmt_stat_inc(u32 slot)
{
	u64 *n = stats.lookup(&slot);

	if (n)
		(*n)++;
}

/* Is fn a mas_wr_* (inner) store?  Also names fn for user space once. */
static __always_inline u8 mmt_fn_is_inner(u64 fn)
{
	struct mmt_fn_name *known = fn_names.lookup(&fn);
	struct mmt_fn_name n = {};

	if (known)
		return known->inner;
	bpf_probe_read_kernel_str(&n.s, sizeof(n.s), (void *)fn);
	n.inner = n.s[0] == 'm' && n.s[1] == 'a' && n.s[2] == 's' && n.s[3] == '_' &&
		  n.s[4] == 'w' && n.s[5] == 'r' && n.s[6] == '_';
	fn_names.update(&fn, &n);
	return n.inner;
}

/* The same, through the per-CPU cache: a handful of fn strings fire at all,
 * and a compare costs nothing next to a hash lookup. */
static __always_inline u8 mmt_fn_is_inner_cached(struct mmt_last_store *ls, u64 fn)
{
	u32 slot;
	u8 inner;

#pragma unroll
	for (int i = 0; i < MMT_FN_CACHE; i++) {
		if (ls->fn[i] == fn)
			return ls->inner[i];
	}
	inner = mmt_fn_is_inner(fn);
	slot = ls->next & (MMT_FN_CACHE - 1);
	ls->fn[slot] = fn;
	ls->inner[slot] = inner;
	ls->next = slot + 1;
	return inner;
}

static __always_inline int mmt_on_tree(struct bpf_raw_tracepoint_args *ctx, u16 op)
{
	/* tgid, pid and mm by direct loads from one BTF task pointer: one
	 * helper call instead of three (see mmt_current_mm). */
	struct task_struct *task = bpf_get_current_task_btf();
	u64 id = mmt_task_id(task);
	u32 tgid = id >> 32;
	struct mmt_tree_write *e;
	struct mmt_last_store *ls;
	u64 m[MMT_WIN_ma_state_LEN / 8];
	u64 w[MMT_WIN_vm_area_struct_LEN / 8] = {};
	u64 fn = ctx->args[0];
	u64 mas = ctx->args[1];
	u64 val = op == MMT_OP_WRITE ? ctx->args[3] : 0;
	u64 tree, mm;
	u32 zero = 0;
	u16 flags = 0;
	int is_vma;
	u8 inner;

	if (!mmt_is_traced(tgid))
		return 0;
	ls = last_store.lookup(&zero);
	if (!ls)
		return 0;
	inner = mmt_fn_is_inner_cached(ls, fn);
#ifdef MMT_TP_BTF
	/* Loaded as a BTF-typed raw tracepoint (tp_btf, capture/kernel.py
	 * _tp_btf): mas is a struct ma_state * the verifier knows, read by
	 * direct loads where a raw tracepoint needs one helper call per event
	 * (~35 ns here: the most expensive step of this program). */
	MMT_WIN_LOAD(m, ma_state, tree, mas);
	MMT_WIN_LOAD(m, ma_state, index, mas);
	MMT_WIN_LOAD(m, ma_state, last, mas);
	MMT_WIN_LOAD(m, ma_state, min, mas);
	MMT_WIN_LOAD(m, ma_state, max, mas);
	MMT_WIN_LOAD(m, ma_state, node, mas);
#else
	bpf_probe_read_kernel(m, sizeof(m), (void *)(mas + MMT_WIN_ma_state_LO));
#endif
	tree = MMT_WIN_U64(m, ma_state, tree);
	if (op == MMT_OP_WRITE) {
#ifndef MMT_KEEP_ALL
		if (inner) {
			if (ls->tid == id && ls->mas == mas && ls->val == val &&
			    ls->index == MMT_WIN_U64(m, ma_state, index) &&
			    ls->last == MMT_WIN_U64(m, ma_state, last)) {
				ls->tid = 0;
				mmt_stat_inc(MMT_STAT_FOLDED);
				return 0;
			}
		} else {
			ls->tid = id;
			ls->mas = mas;
			ls->val = val;
			ls->index = MMT_WIN_U64(m, ma_state, index);
			ls->last = MMT_WIN_U64(m, ma_state, last);
		}
#endif
	}
#if !defined(MMT_KEEP_ALL) && defined(MMT_THREAD_SIZE)
	/* A maple tree on this task's kernel stack is never an mm's: munmap's
	 * detach tree (struct maple_tree mt_detach in do_vmi_align_munmap(),
	 * mm/vma.c) gets one write per VMA unmapped.  Told by its address, it
	 * costs neither the mm_trees lookup nor the VMA read below.  MMT_THREAD_SIZE
	 * is at most the stack's size, so nothing but the stack is in range. */
	if (tree - *(u64 *)((char *)task + MMT_OFF_task_struct__stack) < MMT_THREAD_SIZE) {
		mmt_stat_inc(MMT_STAT_OTHER_TREE);
		return 0;
	}
#endif
	mm = mmt_task_mm(task);
	if (mm && mmt_tree_of(mm) == tree)
		flags = MMT_TW_CURRENT_MM | MMT_TW_KNOWN_MM;
	else if (mm_trees.lookup(&tree))
		flags = MMT_TW_KNOWN_MM;
	is_vma = mmt_vma_of(val, tree, w);
#ifndef MMT_KEEP_ALL
	/* Not an mm's tree: munmap's on-stack detach tree, tmpfs directories...
	 * A traced mm's tree is current, known (fork, exec, an earlier store),
	 * or shows itself by storing one of its own VMAs. */
	if (!flags && !is_vma) {
		mmt_stat_inc(MMT_STAT_OTHER_TREE);
		return 0;
	}
#endif
	e = mmt_reserve(sizeof(struct mmt_tree_write), MMT_TREE_WRITE);
	if (!e)
		return 0;
	mmt_fill_hdr(&e->h, MMT_TREE_WRITE, id);
	e->fn = fn;
	e->tree = tree;
	e->index = MMT_WIN_U64(m, ma_state, index);
	e->last = MMT_WIN_U64(m, ma_state, last);
	e->min = MMT_WIN_U64(m, ma_state, min);
	e->max = MMT_WIN_U64(m, ma_state, max);
	e->node = MMT_WIN_U64(m, ma_state, node);
	e->mm = mm;
	e->op = op;
	e->flags = flags;
	e->piv = op == MMT_OP_WRITE ? ctx->args[2] : 0;
	e->val = val;
	if (is_vma) {
		mmt_fill_vma(e, w);
	} else {
		e->vm_start = 0;
		e->vm_end = 0;
		e->vm_flags = 0;
		e->vm_pgoff = 0;
		e->ino = 0;
		e->dev = 0;
	}
	if (is_vma && !(flags & MMT_TW_KNOWN_MM))
		mm_trees.update(&tree, &tgid);
	mmt_submit(e);
	return 0;
}

RAW_TRACEPOINT_PROBE(ma_write)
{
	MMT_EMPTY_RETURN_IN(tree);
	return mmt_on_tree(ctx, MMT_OP_WRITE);
}

#ifdef MMT_HAVE_ma_op
RAW_TRACEPOINT_PROBE(ma_op)
{
	MMT_EMPTY_RETURN_IN(tree);
	return mmt_on_tree(ctx, MMT_OP_OP);
}
#endif
