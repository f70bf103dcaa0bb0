/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Maps and helpers shared by every collector.  The loader concatenates the
 * files in the order of COLLECTOR_FILES (mmtrace/capture/kernel.py: common,
 * vma, huge, proc, syscalls, mmap_lock, mmap) into one BCC program, because BCC only
 * rewrites the main file.
 */
#include "events.h"
#include "compat.h"

/* One bpf_probe_read_kernel per struct instead of one per member: the
 * loader passes the smallest window [LO, LO+LEN) of the struct holding every
 * member we read (capture/kernel.py), whatever order __randomize_layout gave
 * them.  Members are then taken at constant offsets inside the window. */
#define MMT_WIN_U64(win, s, m) ((win)[(MMT_OFF_##s##__##m - MMT_WIN_##s##_LO) / 8])
/* The same slot filled by a direct load from ``p``, a pointer the verifier
 * knows (tp_btf argument, bpf_rdonly_cast), instead of the window's read. */
#define MMT_WIN_LOAD(win, s, m, p) (MMT_WIN_U64(win, s, m) = *(u64 *)((p) + MMT_OFF_##s##__##m))

/* One ring buffer per kind.  Every record of a ring then has the same size,
 * so user space reads a whole batch as one strided numpy array straight from
 * the mmap'ed ring (mmtrace/capture/ring.py) instead of one Python callback
 * per event; order across kinds is restored from ts (CLOCK_MONOTONIC is
 * coherent across CPUs).  Records are submitted without wakeup: the reader
 * polls on a timer, and a wakeup per event would cost the traced task. */
BPF_RINGBUF_OUTPUT(rb_tree_write, MMT_RB_PAGES_tree_write);
BPF_RINGBUF_OUTPUT(rb_syscall, MMT_RB_PAGES_syscall);
BPF_RINGBUF_OUTPUT(rb_proc, MMT_RB_PAGES_proc);
BPF_RINGBUF_OUTPUT(rb_unmapped_area, MMT_RB_PAGES_unmapped_area);
BPF_RINGBUF_OUTPUT(rb_exit_mmap, MMT_RB_PAGES_exit_mmap);
BPF_RINGBUF_OUTPUT(rb_vma_store, MMT_RB_PAGES_vma_store);
BPF_RINGBUF_OUTPUT(rb_fault, MMT_RB_PAGES_fault);
BPF_RINGBUF_OUTPUT(rb_hugetlb, MMT_RB_PAGES_hugetlb);
BPF_RINGBUF_OUTPUT(rb_mmap_lock, MMT_RB_PAGES_mmap_lock);

/* Records that found the ring buffer full, per kind: never drop silently. */
BPF_PERCPU_ARRAY(lost, u64, MMT_LOST_SLOTS);

/* The traced set: tgid -> 1.  Children join at fork (proc.bpf.c).  The hash
 * is the authority; the bitmap over tgids below pid_max is what the hot
 * paths test, because the verifier inlines an array lookup, while a hash
 * lookup costs ~20 ns on hosts whose kernel returns go through a thunk
 * (AMD's SRSO "Safe RET"), on every event of every process on the host. */
BPF_HASH(traced, u32, u8, MMT_MAX_TRACED);
BPF_ARRAY(traced_bits, u64, MMT_TRACED_WORDS);

/* Maple trees known to belong to a traced mm: &mm->mm_mt -> tgid. */
BPF_HASH(mm_trees, u64, u32, MMT_MAX_TRACED);

/* ma_write's fn is a bare __func__ pointer: read the string once, at capture
 * time, while the pointer is valid ("maple_tree: fix tracepoint string
 * pointers").  User space reads this map to name the fn column. */
struct mmt_fn_name {
	char s[48];
	u8 inner;	/* a mas_wr_* leaf store, called under an outer one */
};
BPF_HASH(fn_names, u64, struct mmt_fn_name, 1024);

/* mm trees that hold (or held) hugetlb VMAs: where their hstate is, and the
 * bounding box of their hugetlb ranges (faults outside it are not recorded;
 * inside it the model sorts out which pages were hugetlb at the time). */
struct mmt_huge_mm {
	u64 hstate;
	u64 lo;
	u64 hi;
};
BPF_HASH(huge_mm, u64, struct mmt_huge_mm, MMT_MAX_TRACED);
/* [0] != 0 once any traced mm stored a hugetlb VMA: until then the hot
 * paths skip the huge_mm lookup (an array lookup is inlined, a hash one is
 * a helper call). */
BPF_ARRAY(huge_seen, u8, 1);

static __always_inline int mmt_huge_seen(void)
{
	u32 zero = 0;
	u8 *seen = huge_seen.lookup(&zero);

	return seen && *seen;
}

/* System-wide (MMT_TRACE_ALL), the bitmap holds the tgids NOT traced: the
 * recorder's own.  It is set by user space after load, so the compiled
 * module does not depend on the recorder's pid and can be cached
 * (capture/loader.py). */
static __always_inline int mmt_is_traced(u32 tgid)
{
	u32 word = tgid / 64;
	u64 *bits = traced_bits.lookup(&word);

#ifdef MMT_TRACE_ALL
	return !bits || !((*bits >> (tgid % 64)) & 1);
#else
	if (bits)
		return (*bits >> (tgid % 64)) & 1;
	return traced.lookup(&tgid) != NULL;	/* pid_max was raised after load */
#endif
}

/* Add to / remove from the traced set, hash first: user space re-reads the
 * hash after its own (non-atomic) bitmap updates (capture/loader.py). */
static __always_inline void mmt_trace_add(u32 tgid)
{
	u32 word = tgid / 64;
	u64 *bits = traced_bits.lookup(&word);
	u8 one = 1;

	traced.update(&tgid, &one);
	if (bits)
		__sync_fetch_and_or(bits, 1ULL << (tgid % 64));
}

static __always_inline void mmt_trace_del(u32 tgid)
{
	u32 word = tgid / 64;
	u64 *bits = traced_bits.lookup(&word);

	if (bits)
		__sync_fetch_and_and(bits, ~(1ULL << (tgid % 64)));
	traced.delete(&tgid);
}

static __always_inline u64 mmt_read_u64(u64 base, u64 off)
{
	u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), (void *)(base + off));
	return v;
}

static __always_inline u32 mmt_read_u32(u64 base, u64 off)
{
	u32 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), (void *)(base + off));
	return v;
}

#ifdef MMT_KF_rdonly_cast
/* The bpf_rdonly_cast(obj, btf_id) kfunc (v6.2): obj as a read-only BTF
 * pointer of type btf_id, read by direct loads (the verifier makes them
 * fault-safe, and the call itself a register move).  BCC cannot compile a
 * kfunc call: this calls MMT_KF_rdonly_cast like a helper, an id no helper
 * has, and the loader turns that call into the kfunc's (capture/bpfsys.py
 * patch_kfunc_calls).  btf_id must be a constant. */
static u64 (*mmt_rdonly_cast)(u64 obj, u32 btf_id) = (void *)MMT_KF_rdonly_cast;
#endif

/* current->mm by a direct load from the BTF-typed task pointer: the
 * verifier checks the offset against the running kernel's BTF, and the load
 * costs a few ns where a bpf_probe_read_kernel() costs ~30 on this kind of
 * host.  Kernel threads give 0. */
static __always_inline u64 mmt_task_mm(struct task_struct *task)
{
	return *(u64 *)((char *)task + MMT_OFF_task_struct__mm);
}

static __always_inline u64 mmt_current_mm(void)
{
	return mmt_task_mm(bpf_get_current_task_btf());
}

/* bpf_get_current_pid_tgid()'s value from a task pointer we already hold:
 * two loads instead of a helper call. */
static __always_inline u64 mmt_task_id(struct task_struct *task)
{
	return (u64)*(u32 *)((char *)task + MMT_OFF_task_struct__tgid) << 32 |
	       *(u32 *)((char *)task + MMT_OFF_task_struct__pid);
}

static __always_inline u64 mmt_tree_of(u64 mm)
{
	return mm ? mm + MMT_OFF_mm_struct__mm_mt : 0;
}

static __always_inline void mmt_fill_hdr(struct mmt_hdr *h, u8 kind, u64 pid_tgid)
{
	h->kind = kind;
	h->_pad0 = 0;
	h->cpu = bpf_get_smp_processor_id();
	h->tgid = pid_tgid >> 32;
	h->tid = (u32)pid_tgid;
	h->_pad1 = 0;
	h->ts = bpf_ktime_get_ns();
}

static __always_inline void mmt_count_lost(u32 kind)
{
	u64 *c = lost.lookup(&kind);

	if (c)
		(*c)++;
}

/* Reserve a record of a constant size (after inlining) in its kind's ring;
 * count it as lost when the ring is full.  A function, not a macro: BCC
 * cannot rewrite map calls inside macros. */
static __always_inline void *mmt_reserve(u32 size, u32 kind)
{
	void *e = NULL;

	switch (kind) {
	case MMT_TREE_WRITE:
		e = rb_tree_write.ringbuf_reserve(size);
		break;
	case MMT_SYSCALL:
		e = rb_syscall.ringbuf_reserve(size);
		break;
	case MMT_PROC:
		e = rb_proc.ringbuf_reserve(size);
		break;
	case MMT_UNMAPPED_AREA:
		e = rb_unmapped_area.ringbuf_reserve(size);
		break;
	case MMT_EXIT_MMAP:
		e = rb_exit_mmap.ringbuf_reserve(size);
		break;
	case MMT_VMA_STORE:
		e = rb_vma_store.ringbuf_reserve(size);
		break;
	case MMT_FAULT:
		e = rb_fault.ringbuf_reserve(size);
		break;
	case MMT_HUGETLB:
		e = rb_hugetlb.ringbuf_reserve(size);
		break;
	case MMT_MMAP_LOCK:
		e = rb_mmap_lock.ringbuf_reserve(size);
		break;
	}
	if (!e)
		mmt_count_lost(kind);
	return e;
}

static __always_inline void mmt_submit(void *e)
{
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}
