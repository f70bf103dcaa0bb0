/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The wire format between the BPF collectors and mmtrace: one struct per
 * event kind, all starting with struct mmt_hdr.  mmtrace/events/schema.py
 * declares the same layouts as numpy dtypes; tests/unit/test_schema.py
 * compiles this header with the host compiler and checks that every field
 * name, offset and size agrees, so change both together.
 *
 * Rules that keep decoding a single numpy.frombuffer per kind:
 *  - fixed-size structs, explicit padding, every field naturally aligned;
 *  - the kind is the first byte, so user space can route a record without
 *    decoding it;
 *  - strings are fixed char arrays (comm, filename) or ids (fn).
 */
#ifndef MMTRACE_EVENTS_H
#define MMTRACE_EVENTS_H

#include <linux/types.h>

enum mmt_kind {
	MMT_TREE_WRITE = 1,	/* maple_tree:ma_write / ma_op */
	MMT_SYSCALL = 2,	/* one traced syscall, emitted at its exit */
	MMT_PROC = 3,		/* fork / exec / exit */
	MMT_UNMAPPED_AREA = 4,	/* mmap:vm_unmapped_area */
	MMT_EXIT_MMAP = 5,	/* mmap:exit_mmap */
	MMT_VMA_STORE = 6,	/* mmap:vma_store, mmap:vma_mas_szero (6.1-6.2 only) */
	MMT_FAULT = 7,		/* exceptions:page_fault_user in traced hugetlb ranges */
	MMT_HUGETLB = 8,	/* the hstate's counters, sampled in the kernel */
	MMT_MMAP_LOCK = 9,	/* mmap_lock:* write unlock / downgrade inside a traced syscall */
	MMT_NR_KINDS = 10,
};

struct mmt_hdr {
	__u8 kind;		/* enum mmt_kind */
	__u8 _pad0;
	__u16 cpu;
	__u32 tgid;		/* user-space pid of the task that fired the event */
	__u32 tid;
	__u32 _pad1;
	__u64 ts;		/* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
};

/* mmt_tree_write.op */
#define MMT_OP_WRITE 0		/* maple_tree:ma_write */
#define MMT_OP_OP 1		/* maple_tree:ma_op */

/* mmt_tree_write.flags */
#define MMT_TW_VAL_IS_VMA 0x1	/* val->vm_mm->mm_mt == tree: val is a VMA of this mm tree */
#define MMT_TW_CURRENT_MM 0x2	/* tree == current->mm->mm_mt */
#define MMT_TW_KNOWN_MM 0x4	/* tree was seen before as a traced mm's tree */
#define MMT_TW_FILE 0x8		/* the VMA maps a file: dev/ino are valid */

struct mmt_tree_write {
	struct mmt_hdr h;
	__u64 fn;		/* kernel address of the __func__ string; see fn_names */
	__u64 tree;		/* mas->tree: which maple tree was written */
	__u64 mm;		/* current->mm */
	__u64 index;		/* mas->index: first slot written (inclusive) */
	__u64 last;		/* mas->last: last slot written (inclusive) */
	__u64 min;		/* mas->min, mas->max: node bounds */
	__u64 max;
	__u64 node;		/* mas->node */
	__u64 piv;		/* ma_write's piv argument */
	__u64 val;		/* the entry stored: a struct vm_area_struct * or NULL */
	__u64 vm_start;		/* the VMA's fields at the moment of the store */
	__u64 vm_end;
	__u64 vm_flags;
	__u64 vm_pgoff;
	__u64 ino;		/* vm_file->f_inode->i_ino */
	__u32 dev;		/* vm_file->f_inode->i_sb->s_dev (kernel dev_t) */
	__u16 op;		/* MMT_OP_* */
	__u16 flags;		/* MMT_TW_* */
};

/* stack_id of mmt_syscall and mmt_proc: >= 0 is a key of the BPF stack map
 * "stacks" (record -g), MMT_STACK_NONE not captured (record without -g);
 * any other negative value is bpf_get_stackid()'s -errno: -EEXIST a hash
 * collision (that stack is lost, counted as such), -EFAULT no user stack. */
#define MMT_STACK_NONE (-1)

/* mmt_syscall.flags */
#define MMT_SC_UNFINISHED 0x1	/* no exit seen (only for records emitted at teardown) */
#define MMT_SC_COMPAT 0x2	/* an ia32 (compat) syscall: nr is the i386 table's, args 32-bit */

struct mmt_syscall {
	struct mmt_hdr h;	/* h.ts is the exit time */
	__u64 ts_enter;
	__s64 ret;
	__u64 args[6];
	__u64 mm;		/* current->mm at entry */
	__u64 brk_enter;	/* mm->brk at entry and exit: the heap end for brk() */
	__u64 brk_exit;
	__u32 nr;		/* the architecture's syscall number */
	__u16 sc;		/* mmtrace's syscall id (the probe plan lists them) */
	__u16 flags;
	/* record -g (collectors/stacks.bpf.c), at entry: */
	__u64 ret_addr;		/* the word at the user stack pointer */
	__s32 stack_id;		/* MMT_STACK_* or an id of the "stacks" map */
	__u32 _pad2;
};

/* mmt_proc.what */
#define MMT_PROC_FORK 1
#define MMT_PROC_EXEC 2
#define MMT_PROC_EXIT 3

/* mmt_proc.flags */
#define MMT_PF_THREAD 0x1	/* fork: the child joined the parent's thread group */
#define MMT_PF_SHARED_MM 0x2	/* fork: the child shares the parent's mm (CLONE_VM) */
#define MMT_PF_GROUP_DEAD 0x4	/* exit: last thread of the group */

struct mmt_proc {
	struct mmt_hdr h;	/* the parent (fork), the exec'ing task, the exiting task */
	__u64 mm;		/* fork: child's mm; exec: the new mm; exit: mm at exit */
	__u64 tree;		/* &mm->mm_mt, 0 when mm is NULL */
	__u32 pid;		/* fork: child tid; exec: pid; exit: tid */
	__u32 child_tgid;	/* fork: child tgid; exec: old_pid; exit: 0 */
	__u16 what;		/* MMT_PROC_* */
	__u16 flags;		/* MMT_PF_* */
	__s32 stack_id;		/* record -g: the task's user stack (see mmt_syscall) */
	char comm[16];		/* fork: child comm; exec: new comm; exit: comm */
	char filename[128];	/* exec: the binary's path (truncated) */
	__u64 ret_addr;		/* record -g: the word at the user stack pointer */
};

struct mmt_unmapped_area {
	struct mmt_hdr h;
	__u64 addr;		/* returned address, or -errno */
	__u64 total_vm;
	__u64 flags;		/* VM_UNMAPPED_AREA_TOPDOWN = 1 */
	__u64 length;
	__u64 low_limit;
	__u64 high_limit;
	__u64 align_mask;
	__u64 align_offset;
	__u64 mm;
};

struct mmt_exit_mmap {
	struct mmt_hdr h;
	__u64 mm;
	__u64 mt;
};

/* mmt_vma_store.op */
#define MMT_VS_STORE 0		/* mmap:vma_store */
#define MMT_VS_SZERO 1		/* mmap:vma_mas_szero */

struct mmt_vma_store {
	struct mmt_hdr h;
	__u64 mt;
	__u64 vma;		/* 0 for vma_mas_szero */
	__u64 start;
	__u64 end;
	__u32 op;		/* MMT_VS_* */
	__u32 _pad;
};

struct mmt_fault {
	struct mmt_hdr h;
	__u64 address;
	__u64 ip;
	__u64 error_code;
};

/* mmt_hugetlb.cause: when the counters were read */
#define MMT_HC_SYSCALL 1	/* exit of a traced syscall of an mm with hugetlb VMAs */
#define MMT_HC_FAULT 2		/* a user page fault in a hugetlb range (before it is handled) */
#define MMT_HC_EXIT_MMAP 3	/* the end of exit_mmap: all VMAs of the mm released */
#define MMT_HC_SYSCALL_ENTER 4	/* entry of a traced syscall of an mm with hugetlb VMAs */
#define MMT_HC_SIGBUS 5		/* a fault of the sampling thread ended in SIGBUS (BUS_ADRERR) */
#define MMT_HC_WAIT 6		/* entry of wait4/waitid (not followed): the thread's faults have returned */

/* hugetlb reservations have no tracepoint: read the hstate's counters
 * (the same ones /sys/kernel/mm/hugepages/<size>/ shows), reached from a
 * hugetlb VMA: vm_file->f_inode->i_sb->s_fs_info->hstate. */
struct mmt_hugetlb {
	struct mmt_hdr h;
	__u64 hstate;
	__u64 nr_huge_pages;
	__u64 free_huge_pages;
	__u64 resv_huge_pages;
	__u64 surplus_huge_pages;
	__u64 tree;		/* the mm tree whose event caused the sample */
	__u64 address;		/* MMT_HC_FAULT: the faulting address */
	__u32 order;		/* huge page size = PAGE_SIZE << order */
	__u16 cause;		/* MMT_HC_* */
	__u16 sc;		/* MMT_HC_SYSCALL(_ENTER): mmtrace's syscall id */
	/* The sampling task's own hugetlb cgroup: rsvd_hugepage[hstate].usage
	 * (hugetlb.<size>.rsvd.current, in base pages), ~0 when not read. */
	__u64 cg_rsvd;
	/* bpf_ktime_get_ns() once the counters are read: they were read at some
	 * instant of [h.ts, ts_read], which may be long (an interrupt, or the
	 * vCPU descheduled by the host, between the two), and whatever other
	 * CPUs did meanwhile may show (detect/hugetlb.py _read_ends). */
	__u64 ts_read;
};

/* mmt_mmap_lock.what */
#define MMT_ML_READ_LOCKED 1	/* mmap_lock_acquire_returned(write=false): mmap_write_downgrade() when the call held it for write */
#define MMT_ML_WRITE_UNLOCK 2	/* mmap_lock_released(write=true) */

/* The end of a syscall's tree changes: the instant its mmap_lock stops
 * being held for write (mmap_write_downgrade() or mmap_write_unlock(), each
 * firing its tracepoint before vma_end_write_all() lets readers of the
 * VMAs it write-locked go on).  Emitted only for a traced task inside a
 * followed syscall (collectors/mmap_lock.bpf.c). */
struct mmt_mmap_lock {
	struct mmt_hdr h;
	__u64 mm;
	__u16 sc;		/* mmtrace's id of the syscall in progress */
	__u16 op;		/* MMT_ML_* */
	__u32 _pad;
};

/* Index of the per-source lost-event counters (BPF per-CPU array "lost"). */
#define MMT_LOST_SLOTS MMT_NR_KINDS

#endif /* MMTRACE_EVENTS_H */
