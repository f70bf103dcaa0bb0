/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The syscalls that change an address space, so that every tree change can
 * be attributed to its cause.  Arguments are kept at entry (per thread) and
 * one record is emitted at exit, carrying both.
 *
 * Two hooks, one record (capture/kernel.py picks, see _HOOK_ENV there):
 *  default           syscalls:sys_enter_<name>/sys_exit_<name> tracepoints:
 *                    only the syscalls we follow run a program.
 *  MMT_SYSCALLS_RAW  raw_syscalls:sys_enter/sys_exit as raw tracepoints
 *                    (MMTRACE_SYSCALL_HOOK=raw): the program sees every
 *                    syscall of the host and keeps ours by number (MMT_NR_*);
 *                    arguments come from pt_regs.
 */

/* The call in progress, per task: task-local storage (v5.11+) costs less
 * than a hash keyed by tid, and goes away with the task. */
BPF_TASK_STORAGE(pending, struct mmt_syscall);

/* Fill what both hooks know at entry; the arguments are the caller's. */
static __always_inline struct mmt_syscall *mmt_sc_begin(struct task_struct *task, u16 sc, u32 nr)
{
	struct mmt_syscall *s;
	u64 mm;

	if (!mmt_is_traced(mmt_task_id(task) >> 32))
		return NULL;
	s = pending.task_storage_get(task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return NULL;
	s->ts_enter = bpf_ktime_get_ns();
	s->sc = sc;
	s->nr = nr;
	s->flags = 0;
	mm = mmt_task_mm(task);
	s->mm = mm;
	/* The heap's end matters to brk() only: its shrink is a silent clear. */
	s->brk_enter = 0;
#ifdef MMT_SC_brk
	if (sc == MMT_SC_brk && mm)
		s->brk_enter = mmt_read_u64(mm, MMT_OFF_mm_struct__brk);
#endif
	/* The counters before the call: with the sample at exit they bound
	 * what this call changed (detect/hugetlb.py). */
	mmt_emit_huge(mmt_task_id(task), mmt_tree_of(mm), MMT_HC_SYSCALL_ENTER, sc, 0);
	return s;
}

static __always_inline int mmt_sc_end(s64 ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u64 id = mmt_task_id(task);
	struct mmt_syscall *s, *e;
	u64 mm;

	/* The raw hook runs at every syscall exit on the host: untraced tasks
	 * leave at the bitmap test, before the task storage lookup. */
	if (!mmt_is_traced(id >> 32))
		return 0;
	s = pending.task_storage_get(task, 0, 0);
	if (!s || !s->ts_enter)
		return 0;
	e = mmt_reserve(sizeof(struct mmt_syscall), MMT_SYSCALL);
	if (e) {
		__builtin_memcpy(e, s, sizeof(*e));
		mmt_fill_hdr(&e->h, MMT_SYSCALL, id);
		e->ret = ret;
		mm = mmt_task_mm(task);
		e->brk_exit = 0;
#ifdef MMT_SC_brk
		if (s->sc == MMT_SC_brk && mm)
			e->brk_exit = mmt_read_u64(mm, MMT_OFF_mm_struct__brk);
#endif
		mmt_submit(e);
		mmt_emit_huge(id, mmt_tree_of(mm), MMT_HC_SYSCALL, s->sc, 0);
	}
	s->ts_enter = 0;
	return 0;
}

#ifdef MMT_TS_COMPAT
/* The raw hooks (MMT_SYSCALLS_RAW, MMT_COMPAT_SYSCALLS): is the task in an
 * ia32 syscall (TS_COMPAT, see below), and a register of pt_regs' window. */
static __always_inline int mmt_is_compat(struct task_struct *task)
{
	return *(u32 *)((char *)task + MMT_OFF_task_struct__thread_info + MMT_OFF_thread_info__status) & MMT_TS_COMPAT;
}

#define MMT_REG(w, r) MMT_WIN_U64(w, pt_regs, r)
#endif

#ifdef MMT_COMPAT_SYSCALLS
/*
 * ia32 (compat) syscalls of a 64-bit kernel.  They enter through
 * do_int80_emulation()/do_fast_syscall_32() (arch/x86/entry/syscall_32.c),
 * which set TS_COMPAT in thread_info.status (syscall_32_enter()) and fire
 * raw_syscalls:sys_enter/sys_exit with the i386 table's number, but no
 * syscalls:sys_enter_<name> event (those are defined for the native table
 * only).  So these raw tracepoints are attached for them (capture/kernel.py:
 * the compat_syscalls feature), and every call of a compat task is kept by
 * its i386 number (MMT_NR32_<name>, from arch/x86/entry/syscalls/
 * syscall_32.tbl) into the same record as a native one, flagged
 * MMT_SC_COMPAT.  Arguments are in bx, cx, dx, si, di, bp, 32 bits each.
 * TS_COMPAT is cleared only on the way back to user mode
 * (arch_exit_to_user_mode_prepare()), after sys_exit fired.
 */
#define MMT_REG32(w, r) (MMT_REG(w, r) & 0xffffffffULL)
#define MMT_NR32_CASE(name) case MMT_NR32_##name: return (MMT_SC_NARGS_##name << 16) | MMT_SC_##name;

/* i386 number -> (nargs << 16 | mmtrace id); mmap2 and old mmap both become mmap. */
static __always_inline u32 mmt_sc_of_nr32(u64 nr)
{
	switch (nr) {
#ifdef MMT_SC_mmap
	MMT_NR32_CASE(mmap)		/* mmap2: the offset in pages */
	case MMT_NR32_old_mmap: return (6 << 16) | MMT_SC_mmap;	/* one pointer to 6 u32s */
#endif
#if defined(MMT_NR32_munmap) && defined(MMT_SC_munmap)
	MMT_NR32_CASE(munmap)
#endif
#if defined(MMT_NR32_mprotect) && defined(MMT_SC_mprotect)
	MMT_NR32_CASE(mprotect)
#endif
#if defined(MMT_NR32_pkey_mprotect) && defined(MMT_SC_pkey_mprotect)
	MMT_NR32_CASE(pkey_mprotect)
#endif
#if defined(MMT_NR32_mremap) && defined(MMT_SC_mremap)
	MMT_NR32_CASE(mremap)
#endif
#if defined(MMT_NR32_brk) && defined(MMT_SC_brk)
	MMT_NR32_CASE(brk)
#endif
#if defined(MMT_NR32_madvise) && defined(MMT_SC_madvise)
	MMT_NR32_CASE(madvise)
#endif
#if defined(MMT_NR32_shmat) && defined(MMT_SC_shmat)
	MMT_NR32_CASE(shmat)
#endif
#if defined(MMT_NR32_shmdt) && defined(MMT_SC_shmdt)
	MMT_NR32_CASE(shmdt)
#endif
#if defined(MMT_NR32_execve) && defined(MMT_SC_execve)
	MMT_NR32_CASE(execve)
#endif
#if defined(MMT_NR32_execveat) && defined(MMT_SC_execveat)
	MMT_NR32_CASE(execveat)
#endif
#if defined(MMT_NR32_mseal) && defined(MMT_SC_mseal)
	MMT_NR32_CASE(mseal)
#endif
#if defined(MMT_NR32_remap_file_pages) && defined(MMT_SC_remap_file_pages)
	MMT_NR32_CASE(remap_file_pages)
#endif
#if defined(MMT_NR32_fallocate) && defined(MMT_SC_fallocate)
	case MMT_NR32_fallocate: return (6 << 16) | MMT_SC_fallocate;	/* 64-bit offset, len in two halves */
#endif
	}
	return 0;
}

/* TP_PROTO(struct pt_regs *regs, long id) of a compat task's raw sys_enter. */
static __always_inline int mmt_sc_enter32(struct bpf_raw_tracepoint_args *ctx, struct task_struct *task)
{
	u64 nr = ctx->args[1];
	u32 which = mmt_sc_of_nr32(nr);
	u32 nargs = which >> 16;
	u64 w[MMT_WIN_pt_regs_LEN / 8];
	struct mmt_syscall *s;

	if (!which)
		return 0;
	s = mmt_sc_begin(task, which & 0xffff, nr);
	if (!s)
		return 0;
	s->flags = MMT_SC_COMPAT;
	bpf_probe_read_kernel(w, sizeof(w), (void *)(ctx->args[0] + MMT_WIN_pt_regs_LO));
	s->args[0] = nargs > 0 ? MMT_REG32(w, bx) : 0;
	s->args[1] = nargs > 1 ? MMT_REG32(w, cx) : 0;
	s->args[2] = nargs > 2 ? MMT_REG32(w, dx) : 0;
	s->args[3] = nargs > 3 ? MMT_REG32(w, si) : 0;
	s->args[4] = nargs > 4 ? MMT_REG32(w, di) : 0;
	s->args[5] = nargs > 5 ? MMT_REG32(w, bp) : 0;
#ifdef MMT_SC_mmap
	if (nr == MMT_NR32_mmap) {
		s->args[5] <<= 12;	/* sys_mmap_pgoff(): pgoff in 4 KiB pages on x86 */
	} else if (nr == MMT_NR32_old_mmap) {
		/* compat_sys_ia32_mmap(struct mmap_arg_struct32 __user *):
		 * addr, len, prot, flags, fd, offset (bytes); zeros if unreadable */
		u32 a[6] = {};

		bpf_probe_read_user(a, sizeof(a), (void *)s->args[0]);
		for (int i = 0; i < 6; i++)
			s->args[i] = a[i];
	}
#endif
#if defined(MMT_NR32_fallocate) && defined(MMT_SC_fallocate)
	if (nr == MMT_NR32_fallocate) {
		/* sys_ia32_fallocate(fd, mode, offset_lo, offset_hi, len_lo, len_hi) */
		s->args[2] |= s->args[3] << 32;
		s->args[3] = s->args[4] | s->args[5] << 32;
		s->args[4] = 0;
		s->args[5] = 0;
	}
#endif
	return 0;
}
#endif /* MMT_COMPAT_SYSCALLS */

#ifdef MMT_SYSCALLS_RAW

/* The syscall number -> (nargs << 16 | mmtrace id), 0 for a syscall we do not
 * follow.  A switch on constants, no map lookup: this runs for every syscall
 * of every task on the host. */
#define MMT_NR_CASE(name) case MMT_NR_##name: return (MMT_SC_NARGS_##name << 16) | MMT_SC_##name;
static __always_inline u32 mmt_sc_of_nr(u64 nr)
{
	switch (nr) {
#if defined(MMT_NR_mmap) && defined(MMT_SC_mmap)
	MMT_NR_CASE(mmap)
#endif
#if defined(MMT_NR_munmap) && defined(MMT_SC_munmap)
	MMT_NR_CASE(munmap)
#endif
#if defined(MMT_NR_mprotect) && defined(MMT_SC_mprotect)
	MMT_NR_CASE(mprotect)
#endif
#if defined(MMT_NR_pkey_mprotect) && defined(MMT_SC_pkey_mprotect)
	MMT_NR_CASE(pkey_mprotect)
#endif
#if defined(MMT_NR_mremap) && defined(MMT_SC_mremap)
	MMT_NR_CASE(mremap)
#endif
#if defined(MMT_NR_brk) && defined(MMT_SC_brk)
	MMT_NR_CASE(brk)
#endif
#if defined(MMT_NR_madvise) && defined(MMT_SC_madvise)
	MMT_NR_CASE(madvise)
#endif
#if defined(MMT_NR_shmat) && defined(MMT_SC_shmat)
	MMT_NR_CASE(shmat)
#endif
#if defined(MMT_NR_shmdt) && defined(MMT_SC_shmdt)
	MMT_NR_CASE(shmdt)
#endif
#if defined(MMT_NR_execve) && defined(MMT_SC_execve)
	MMT_NR_CASE(execve)
#endif
#if defined(MMT_NR_execveat) && defined(MMT_SC_execveat)
	MMT_NR_CASE(execveat)
#endif
#if defined(MMT_NR_mseal) && defined(MMT_SC_mseal)
	MMT_NR_CASE(mseal)
#endif
#if defined(MMT_NR_remap_file_pages) && defined(MMT_SC_remap_file_pages)
	MMT_NR_CASE(remap_file_pages)
#endif
#if defined(MMT_NR_fallocate) && defined(MMT_SC_fallocate)
	MMT_NR_CASE(fallocate)
#endif
	}
	return 0;
}

/* TP_PROTO(struct pt_regs *regs, long id) */
RAW_TRACEPOINT_PROBE(sys_enter)
{
	MMT_EMPTY_RETURN_IN(syscall);
	u64 nr = ctx->args[1];
	u32 which = mmt_sc_of_nr(nr);
	u32 nargs = which >> 16;
	u64 w[MMT_WIN_pt_regs_LEN / 8];
	struct task_struct *task;
	struct mmt_syscall *s;

	/* A 32-bit syscall's number is from another table (in_ia32_syscall()). */
	task = bpf_get_current_task_btf();
	if (mmt_is_compat(task)) {
#ifdef MMT_COMPAT_SYSCALLS
		return mmt_sc_enter32(ctx, task);
#else
		return 0;
#endif
	}
	if (!which)
		return 0;
	s = mmt_sc_begin(task, which & 0xffff, nr);
	if (!s)
		return 0;
	mmt_stack(ctx, &s->stack_id, &s->ret_addr);	/* record -g: stacks.bpf.c */
	bpf_probe_read_kernel(w, sizeof(w), (void *)(ctx->args[0] + MMT_WIN_pt_regs_LO));
	/* Registers beyond the syscall's own arguments hold leftovers: zero
	 * them, as the per-syscall tracepoints' records have none. */
	s->args[0] = nargs > 0 ? MMT_REG(w, di) : 0;
	s->args[1] = nargs > 1 ? MMT_REG(w, si) : 0;
	s->args[2] = nargs > 2 ? MMT_REG(w, dx) : 0;
	s->args[3] = nargs > 3 ? MMT_REG(w, r10) : 0;
	s->args[4] = nargs > 4 ? MMT_REG(w, r8) : 0;
	s->args[5] = nargs > 5 ? MMT_REG(w, r9) : 0;
	return 0;
}

/* TP_PROTO(struct pt_regs *regs, long ret) */
RAW_TRACEPOINT_PROBE(sys_exit)
{
	MMT_EMPTY_RETURN_IN(syscall);
	return mmt_sc_end((s64)ctx->args[1]);
}

#else /* per-syscall tracepoints */

static __always_inline int mmt_sc_enter(void *args, u16 sc, u32 nargs)
{
	/* Format of every syscalls:sys_enter_*: int __syscall_nr at 8, then
	 * one 8-byte field per argument from 16.  Loads from the context at
	 * constant offsets: no helper call. */
	u64 *a = (u64 *)(args + 16);
	struct mmt_syscall *s = mmt_sc_begin(bpf_get_current_task_btf(), sc, *(int *)(args + 8));

	if (!s)
		return 0;
	mmt_stack(args, &s->stack_id, &s->ret_addr);	/* record -g: stacks.bpf.c */
	s->args[0] = nargs > 0 ? a[0] : 0;
	s->args[1] = nargs > 1 ? a[1] : 0;
	s->args[2] = nargs > 2 ? a[2] : 0;
	s->args[3] = nargs > 3 ? a[3] : 0;
	s->args[4] = nargs > 4 ? a[4] : 0;
	s->args[5] = nargs > 5 ? a[5] : 0;
	return 0;
}

#define MMT_SYSCALL(name)                                                  \
	TRACEPOINT_PROBE(syscalls, sys_enter_##name)                      \
	{                                                                  \
		MMT_EMPTY_RETURN_IN(syscall);                              \
		return mmt_sc_enter(args, MMT_SC_##name, MMT_SC_NARGS_##name); \
	}                                                                  \
	TRACEPOINT_PROBE(syscalls, sys_exit_##name)                       \
	{                                                                  \
		MMT_EMPTY_RETURN_IN(syscall);                              \
		return mmt_sc_end(args->ret);                              \
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
#ifdef MMT_SC_fallocate
MMT_SYSCALL(fallocate)
#endif

#ifdef MMT_COMPAT_SYSCALLS
/* Native calls have their syscalls:* tracepoints above; these raw ones keep
 * compat tasks' calls only (the first test, for every syscall of the host). */
RAW_TRACEPOINT_PROBE(sys_enter)
{
	MMT_EMPTY_RETURN_IN(compat_syscall);
	struct task_struct *task = bpf_get_current_task_btf();

	if (!mmt_is_compat(task))
		return 0;
	return mmt_sc_enter32(ctx, task);
}

RAW_TRACEPOINT_PROBE(sys_exit)
{
	MMT_EMPTY_RETURN_IN(compat_syscall);
	if (!mmt_is_compat(bpf_get_current_task_btf()))
		return 0;
	return mmt_sc_end((s64)ctx->args[1]);
}
#endif

#endif /* MMT_SYSCALLS_RAW */
