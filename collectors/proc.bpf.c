/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Process life: fork/clone (the traced set grows in the kernel, so a child
 * is traced from its first instruction), exec (a new mm and tree) and exit.
 */

static __always_inline void mmt_zero_proc(struct mmt_proc *e)
{
	e->flags = 0;
	__builtin_memset(e->comm, 0, sizeof(e->comm));
	__builtin_memset(e->filename, 0, sizeof(e->filename));
}

RAW_TRACEPOINT_PROBE(sched_process_fork)
{
	MMT_EMPTY_RETURN_IN(proc);
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
	u64 child = ctx->args[1];
	u32 ctgid = mmt_read_u32(child, MMT_OFF_task_struct__tgid);
	u64 cmm = mmt_read_u64(child, MMT_OFF_task_struct__mm);
	u64 ctree = mmt_tree_of(cmm);
	struct mmt_proc *e;

	if (!mmt_is_traced(tgid)) {
#ifndef MMT_TRACE_ALL
		/* A tgid left from a traced process that died: pid reuse must
		 * not make an unrelated process traced. */
		if (ctgid != tgid && mmt_is_traced(ctgid))
			mmt_trace_del(ctgid);
#endif
		return 0;
	}
#ifndef MMT_TRACE_ALL
	mmt_trace_add(ctgid);
#endif
	if (ctree)
		mm_trees.update(&ctree, &ctgid);
	e = mmt_reserve(sizeof(struct mmt_proc), MMT_PROC);
	if (!e)
		return 0;
	mmt_fill_hdr(&e->h, MMT_PROC, id);
	mmt_zero_proc(e);
	e->what = MMT_PROC_FORK;
	e->mm = cmm;
	e->tree = ctree;
	e->pid = mmt_read_u32(child, MMT_OFF_task_struct__pid);
	e->child_tgid = ctgid;
	if (ctgid == tgid)
		e->flags |= MMT_PF_THREAD;
	if (cmm && cmm == mmt_current_mm())
		e->flags |= MMT_PF_SHARED_MM;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), (void *)(child + MMT_OFF_task_struct__comm));
	mmt_stack(ctx, &e->stack_id, &e->ret_addr);	/* the parent's, at clone() */
	mmt_submit(e);
	return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
	MMT_EMPTY_RETURN_IN(proc);
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
	u64 mm, tree;
	unsigned short loc;
	struct mmt_proc *e;

	if (!mmt_is_traced(tgid))
		return 0;
	mm = mmt_current_mm();	/* already the new mm */
	tree = mmt_tree_of(mm);
	if (tree)
		mm_trees.update(&tree, &tgid);
	e = mmt_reserve(sizeof(struct mmt_proc), MMT_PROC);
	if (!e)
		return 0;
	mmt_fill_hdr(&e->h, MMT_PROC, id);
	mmt_zero_proc(e);
	e->what = MMT_PROC_EXEC;
	e->mm = mm;
	e->tree = tree;
	e->pid = args->pid;
	e->child_tgid = args->old_pid;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	loc = args->data_loc_filename & 0xffff;
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), (void *)args + loc);
	mmt_stack(args, &e->stack_id, &e->ret_addr);	/* the new image's entry (the execve record has the caller's) */
	mmt_submit(e);
	return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
	MMT_EMPTY_RETURN_IN(proc);
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
	u64 mm;
	struct mmt_proc *e;

	if (!mmt_is_traced(tgid))
		return 0;
	mm = mmt_current_mm();
	e = mmt_reserve(sizeof(struct mmt_proc), MMT_PROC);
	if (!e)
		return 0;
	mmt_fill_hdr(&e->h, MMT_PROC, id);
	mmt_zero_proc(e);
	e->what = MMT_PROC_EXIT;
	e->mm = mm;
	e->tree = mmt_tree_of(mm);
	e->pid = (u32)id;
	e->child_tgid = 0;
#ifdef MMT_HAVE_exit_group_dead
	if (args->group_dead)
		e->flags |= MMT_PF_GROUP_DEAD;
#endif
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	mmt_stack(args, &e->stack_id, &e->ret_addr);
	mmt_submit(e);
	return 0;
}
