/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel differences, in one place.  mmtrace/capture/kernel.py detects every
 * feature at load time (tracefs, BTF) and passes it here as a -D flag; nothing
 * in the collectors tests a kernel version.
 *
 *  MMT_OFF_<struct>__<member>   byte offsets read from /sys/kernel/btf/vmlinux.
 *      vm_area_struct and part of mm_struct are __randomize_layout, and the
 *      headers BCC compiles against may be another kernel's: never use the
 *      header layouts of those structs.
 *  MMT_HAVE_ma_op               maple_tree:ma_op exists.
 *  MMT_HAVE_exit_mmap, MMT_HAVE_vm_unmapped_area
 *      mmap tracepoints; exit_mmap came with the maple tree (v6.1, commit
 *      ("mm: start tracking VMAs with maple tree")).
 *  MMT_RAW_vm_unmapped_area     BTF has vm_unmapped_area_info and
 *      mm_struct.total_vm: attach vm_unmapped_area as a raw tracepoint.
 *  MMT_HAVE_vma_store, MMT_HAVE_vma_mas_szero
 *      only v6.1..v6.2 fire them: their callers went away with "mmap: convert
 *      __vma_adjust() to use vma iterator"; the events were later removed.
 *      Attached wherever tracefs has them; 6.12 (Debian 6.12.95) still has
 *      both but no vma_mas_store()/vma_mas_remove() to fire them
 *      (capture/kernel.py TRACEPOINT_CALLERS, `mmtrace doctor` says so).  On
 *      6.1 each is followed by the mas_store_prealloc() ma_write of the same
 *      tree, range and entry (mm/mmap.c vma_mas_store(), vma_mas_remove(),
 *      vma_mas_szero()): the model replays that write and needs neither
 *      (tests/live/test_kernels.py proves it on 6.1 under tests/vm/run).
 *  MMT_HAVE_exit_group_dead     sched_process_exit has a group_dead field.
 *  MMT_SC_<name>, MMT_SC_NARGS_<name>
 *      syscalls whose sys_enter/sys_exit tracepoints exist, mmtrace's id for
 *      each and the number of arguments its format declares.
 *  MMT_SYSCALLS_RAW             hook syscalls at raw_syscalls:sys_enter/sys_exit
 *      (raw tracepoints) instead of syscalls:sys_{enter,exit}_<name>; then
 *      MMT_NR_<name> is each syscall's number in this architecture's table,
 *      MMT_OFF_pt_regs__<reg> / MMT_WIN_pt_regs_* where its arguments are,
 *      and MMT_TS_COMPAT the thread_info.status bit of a 32-bit syscall.
 *  MMT_WIN_<struct>_LO, MMT_WIN_<struct>_LEN
 *      the one window of a struct read with a single probe read.
 *  MMT_THREAD_SIZE              at most the kernel stack's size: trees within
 *      it above task->stack are on the stack (munmap's detach tree).
 *  MMT_HAVE_page_fault_user     exceptions:page_fault_user exists (x86).
 *  MMT_HAVE_HUGETLB             BTF has hugetlbfs_sb_info and hstate: hugetlb
 *      counters are read through vm_file->f_inode->i_sb->s_fs_info->hstate.
 *  MMT_HAVE_HUGETLB_CGROUP      BTF has hugetlb_cgroup.rsvd_hugepage ("hugetlb_cgroup:
 *      add reservation accounting for private mappings", v5.7): each hugetlb
 *      sample also reads the task's cgroup counter; MMT_HUGETLB_CGRP_ID,
 *      MMT_SIZEOF_page_counter and MMT_HS_N / MMT_HS_ORDERS (each hstate_index()'s order)
 *      come with it.
 *  MMT_VM_HUGETLB               the VM_HUGETLB bit (mmtrace/events/flags.py).
 *  MMT_TRACE_ALL                system-wide: no tgid filter but the recorder's
 *      own (the traced_bits bitmap then lists the tgids left out).
 *  MMT_TP_BTF                   the raw tracepoints (ma_write, ma_op,
 *      vm_unmapped_area) are loaded as BTF-typed ones (tp_btf, "bpf: Introduce
 *      BPF_TRACE_RAW_TP", v5.5): their struct pointers are read by direct
 *      loads, not bpf_probe_read_kernel().  capture/kernel.py _tp_btf checks
 *      it by loading a probe program (it needs no ftrace, unlike fentry).
 *  MMT_EMPTY_PROGRAMS           every program returns at once: what the hooks
 *      alone cost (MMTRACE_EMPTY_PROGRAMS=1, benchmarks/overhead.py's
 *      mmtrace-empty-programs); nothing is recorded.
 *  MMT_EMPTY_GROUP_<group>      the programs of one group return at once, the
 *      others run (MMTRACE_EMPTY_PROGRAMS=GROUP[,GROUP...], overhead.py's
 *      mmtrace-without-GROUP): what each group costs, attributed.  Every
 *      program begins with MMT_EMPTY_RETURN_IN(<its group>), and is in one:
 *        tree            vma.bpf.c: maple_tree ma_write, ma_op
 *        syscall         syscalls.bpf.c: the native syscall hooks (under
 *                        MMT_SYSCALLS_RAW these also take the ia32 calls)
 *        compat_syscall  syscalls.bpf.c: the raw_syscalls hooks that keep
 *                        only ia32 calls (MMT_COMPAT_SYSCALLS, per-syscall
 *                        tracepoints)
 *        mmap_lock       mmap_lock.bpf.c
 *        mmap            mmap.bpf.c: vm_unmapped_area, exit_mmap, vma_store,
 *                        vma_mas_szero
 *        proc            proc.bpf.c: sched_process_fork, exec, exit
 *        hugetlb         huge.bpf.c: page_fault_user, signal_generate,
 *                        sys_enter_wait4/waitid
 *      A group's events may depend on another's programs: mmap_lock events
 *      come only inside a syscall the syscall group began, that group
 *      takes the hugetlb samples of syscalls, and the tree group's stores
 *      tell the hugetlb group where hugetlb VMAs are.  The names are
 *      capture/loader.py EMPTY_GROUPS (tests/unit/test_empty_groups.py
 *      checks both lists agree); a group not defined below does not compile.
 */
#ifndef MMTRACE_COMPAT_H
#define MMTRACE_COMPAT_H

#ifndef MMT_RINGBUF_PAGES
#define MMT_RINGBUF_PAGES 4096
#endif
#ifndef MMT_MAX_TRACED
#define MMT_MAX_TRACED 65536
#endif
#ifndef MMT_TRACED_WORDS
#define MMT_TRACED_WORDS 65536	/* bits for tgids below pid_max (4194304 on 64-bit) */
#endif

#ifndef MMT_EMPTY_GROUP_tree
#define MMT_EMPTY_GROUP_tree 0
#endif
#ifndef MMT_EMPTY_GROUP_syscall
#define MMT_EMPTY_GROUP_syscall 0
#endif
#ifndef MMT_EMPTY_GROUP_compat_syscall
#define MMT_EMPTY_GROUP_compat_syscall 0
#endif
#ifndef MMT_EMPTY_GROUP_mmap_lock
#define MMT_EMPTY_GROUP_mmap_lock 0
#endif
#ifndef MMT_EMPTY_GROUP_mmap
#define MMT_EMPTY_GROUP_mmap 0
#endif
#ifndef MMT_EMPTY_GROUP_proc
#define MMT_EMPTY_GROUP_proc 0
#endif
#ifndef MMT_EMPTY_GROUP_hugetlb
#define MMT_EMPTY_GROUP_hugetlb 0
#endif

/* A constant condition: the compiler drops the test, or the whole program. */
#ifdef MMT_EMPTY_PROGRAMS
#define MMT_EMPTY_RETURN_IN(group) return 0
#else
#define MMT_EMPTY_RETURN_IN(group)              \
	do {                                    \
		if (MMT_EMPTY_GROUP_##group)    \
			return 0;               \
	} while (0)
#endif

#endif /* MMTRACE_COMPAT_H */
