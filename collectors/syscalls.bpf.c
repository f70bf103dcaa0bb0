/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The syscalls that change an address space, so that every tree change can
 * be attributed to its cause.  Arguments are kept at entry (per thread) and
 * one record is emitted at exit, carrying both.  Per-syscall tracepoints, not
 * raw_syscalls: an untraced or idle system runs none of this.
 */

/* The call in progress, per task: task-local storage (v5.11+) costs less
 * than a hash keyed by tid, and goes away with the task. */
BPF_TASK_STORAGE(pending, struct mmt_syscall);

static __always_inline int mmt_sc_enter(void *args, u16 sc, u32 nargs_bytes)
{
	u64 id = bpf_get_current_pid_tgid();
	struct mmt_syscall *s;

	if (!mmt_is_traced(id >> 32))
		return 0;
	s = pending.task_storage_get(bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return 0;
	s->ts_enter = bpf_ktime_get_ns();
	s->sc = sc;
	s->flags = 0;
	/* Format of every syscalls:sys_enter_*: int __syscall_nr at 8, then
	 * one 8-byte field per argument from 16. */
	bpf_probe_read_kernel(&s->nr, sizeof(s->nr), args + 8);
	__builtin_memset(s->args, 0, sizeof(s->args));
	bpf_probe_read_kernel(&s->args, nargs_bytes, args + 16);
	s->mm = mmt_current_mm();
	s->brk_enter = s->mm ? mmt_read_u64(s->mm, MMT_OFF_mm_struct__brk) : 0;
	return 0;
}

static __always_inline int mmt_sc_exit(void *args)
{
	u64 id = bpf_get_current_pid_tgid();
	struct mmt_syscall *s = pending.task_storage_get(bpf_get_current_task_btf(), 0, 0);
	struct mmt_syscall *e;
	u64 mm;

	if (!s || !s->ts_enter)
		return 0;
	e = mmt_reserve(sizeof(struct mmt_syscall), MMT_SYSCALL);
	if (e) {
		__builtin_memcpy(e, s, sizeof(*e));
		mmt_fill_hdr(&e->h, MMT_SYSCALL, id);
		bpf_probe_read_kernel(&e->ret, sizeof(e->ret), args + 16);
		mm = mmt_current_mm();
		e->brk_exit = mm ? mmt_read_u64(mm, MMT_OFF_mm_struct__brk) : 0;
		mmt_submit(e);
		mmt_emit_huge(id, mmt_tree_of(mm), MMT_HC_SYSCALL, s->sc, 0);
	}
	s->ts_enter = 0;
	return 0;
}

#define MMT_SYSCALL(name)                                                  \
	TRACEPOINT_PROBE(syscalls, sys_enter_##name)                      \
	{                                                                  \
		return mmt_sc_enter(args, MMT_SC_##name, 8 * MMT_SC_NARGS_##name); \
	}                                                                  \
	TRACEPOINT_PROBE(syscalls, sys_exit_##name)                       \
	{                                                                  \
		return mmt_sc_exit(args);                                  \
	}

#ifdef MMT_SC_mmap
MMT_SYSCALL(mmap)
#endif
#ifdef MMT_SC_munmap
MMT_SYSCALL(munmap)
#endif
#ifdef MMT_SC_mprotect
MMT_SYSCALL(mprotect)
#endif
#ifdef MMT_SC_pkey_mprotect
MMT_SYSCALL(pkey_mprotect)
#endif
#ifdef MMT_SC_mremap
MMT_SYSCALL(mremap)
#endif
#ifdef MMT_SC_brk
MMT_SYSCALL(brk)
#endif
#ifdef MMT_SC_madvise
MMT_SYSCALL(madvise)
#endif
#ifdef MMT_SC_shmat
MMT_SYSCALL(shmat)
#endif
#ifdef MMT_SC_shmdt
MMT_SYSCALL(shmdt)
#endif
#ifdef MMT_SC_execve
MMT_SYSCALL(execve)
#endif
#ifdef MMT_SC_execveat
MMT_SYSCALL(execveat)
#endif
#ifdef MMT_SC_mseal
MMT_SYSCALL(mseal)
#endif
#ifdef MMT_SC_remap_file_pages
MMT_SYSCALL(remap_file_pages)
#endif
