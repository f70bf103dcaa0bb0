/* SPDX-License-Identifier: GPL-2.0 */
/*
 * When a syscall's tree changes become visible to the other threads of the
 * process: the instant its mmap_lock stops being held for write.
 *
 * Some changes make no maple tree event: the exact-fit clear of a whole VMA
 * by munmap (do_vmi_align_munmap() -> vma_iter_clear_gfp(), mm/vma.c) and
 * flags changed in place by mprotect/mseal (vm_flags_reset()/vm_flags_set()
 * under vma_start_write()).  A reader that does not hold mmap_lock (the
 * per-VMA-lock readers: page faults, and /proc/PID/maps since "fs/proc/
 * task_mmu: read proc/pid/maps under per-vma lock", v6.17, lock_next_vma()
 * in mm/mmap_lock.c) either walks the tree under RCU, where the clear shows
 * at once, or finds a VMA the writer write-locked and falls back to
 * mmap_read_lock(), which returns only after the writer's
 * mmap_write_downgrade() (munmap, brk shrink, mremap shrink:
 * vms_complete_munmap_vmas()) or mmap_write_unlock().  Both fire their
 * tracepoint before vma_end_write_all() (include/linux/mmap_lock.h), and the
 * tree holds the call's result by then: that instant is when the model
 * applies the call's silent changes (mmtrace/model/rules.py
 * visible_instants), instead of the exit, which comes after the pages are
 * zapped (hundreds of microseconds for a large faulted range).
 *
 * Stateless: a read acquisition inside a call that already holds the lock
 * for write can only be mmap_write_downgrade() (rwsems do not nest), and the
 * model takes the call's first record.  Raw tracepoints: the TP_PROTO
 * arguments, without the trace record (its memcg id lookup) the
 * tracepoint form builds first.
 */

/*
 * TP_PROTO is (mm, [memcg_path,] write[, success]) depending on the kernel:
 * MMT_ML_ARG_* say where write and success are (capture/kernel.py
 * _mmap_lock_args, from BTF's btf_trace_<name>).
 */
#if defined(MMT_HAVE_mmap_lock_acquire_returned) && defined(MMT_HAVE_mmap_lock_released) && \
	defined(MMT_ML_ARG_acquire_write) && defined(MMT_ML_ARG_acquire_success) && defined(MMT_ML_ARG_released_write)

static __always_inline int mmt_on_mmap_lock(u64 mm, u16 op)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u64 id = mmt_task_id(task);
	struct mmt_mmap_lock *e;
	struct mmt_syscall *s;
	u64 cur;
	u32 users;

	if (!mmt_is_traced(id >> 32))
		return 0;
	/*
	 * An address space no one else holds (mm_users == 1: no other thread,
	 * no CLONE_VM sharer, no /proc/PID/maps reader or ptracer, which take
	 * mmget() first) has no one to show the call's silent changes to before
	 * its exit, where the model then applies them: the record, most of this
	 * hook's cost on a single-threaded process, is not needed.  No thread
	 * can appear before the exit (the only one is in this call); an outside
	 * reader that takes mmget() after this instant and reads before the exit
	 * sees the change up to the zap's duration before the model places it,
	 * as on a kernel without these tracepoints.
	 */
	cur = mmt_task_mm(task);
	/* read through the BTF-typed pointer (a direct load), before comparing */
	users = cur ? *(u32 *)(cur + MMT_OFF_mm_struct__mm_users) : 2;
	if (cur == mm && users <= 1)
		return 0;
	/* only inside a followed syscall (syscalls.bpf.c keeps it per task) */
	s = pending.task_storage_get(task, 0, 0);
	if (!s || !s->ts_enter)
		return 0;
	e = mmt_reserve(sizeof(struct mmt_mmap_lock), MMT_MMAP_LOCK);
	if (!e)
		return 0;
	mmt_fill_hdr(&e->h, MMT_MMAP_LOCK, id);
	e->mm = mm;
	e->sc = s->sc;
	e->op = op;
	e->_pad = 0;
	mmt_submit(e);
	return 0;
}

/* TP_PROTO(struct mm_struct *mm, [const char *memcg_path,] bool write, bool success) */
RAW_TRACEPOINT_PROBE(mmap_lock_acquire_returned)
{
	MMT_EMPTY_RETURN_IN(mmap_lock);
	if ((u8)ctx->args[MMT_ML_ARG_acquire_write] || !(u8)ctx->args[MMT_ML_ARG_acquire_success])
		return 0;	/* a write acquisition, or a failed (killed) one */
	return mmt_on_mmap_lock(ctx->args[0], MMT_ML_READ_LOCKED);
}

/* TP_PROTO(struct mm_struct *mm, [const char *memcg_path,] bool write) */
RAW_TRACEPOINT_PROBE(mmap_lock_released)
{
	MMT_EMPTY_RETURN_IN(mmap_lock);
	if (!(u8)ctx->args[MMT_ML_ARG_released_write])
		return 0;
	return mmt_on_mmap_lock(ctx->args[0], MMT_ML_WRITE_UNLOCK);
}

#endif
