/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Maps and helpers shared by every collector.  The loader concatenates
 * common.bpf.c, vma.bpf.c, proc.bpf.c, syscalls.bpf.c, mmap.bpf.c (in that
 * order) into one BCC program, because BCC only rewrites the main file.
 */
#include "events.h"
#include "compat.h"

/* One ring buffer for every kind: per-CPU buffers would reorder events of
 * one task that migrates, and the model needs them in order. */
BPF_RINGBUF_OUTPUT(events, MMT_RINGBUF_PAGES);

/* Records that found the ring buffer full, per kind: never drop silently. */
BPF_PERCPU_ARRAY(lost, u64, MMT_LOST_SLOTS);

/* The traced set: tgid -> 1.  Children join at fork (proc.bpf.c). */
BPF_HASH(traced, u32, u8, MMT_MAX_TRACED);

/* Maple trees known to belong to a traced mm: &mm->mm_mt -> tgid. */
BPF_HASH(mm_trees, u64, u32, MMT_MAX_TRACED);

/* ma_write's fn is a bare __func__ pointer: read the string once, at capture
 * time, while the pointer is valid ("maple_tree: fix tracepoint string
 * pointers").  User space reads this map to name the fn column. */
struct mmt_fn_name {
	char s[48];
};
BPF_HASH(fn_names, u64, struct mmt_fn_name, 1024);

static __always_inline int mmt_is_traced(u32 tgid)
{
	if (tgid == MMT_SELF_TGID)
		return 0;
#ifdef MMT_TRACE_ALL
	return 1;
#else
	return traced.lookup(&tgid) != NULL;
#endif
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

static __always_inline u64 mmt_current_mm(void)
{
	return mmt_read_u64((u64)bpf_get_current_task(), MMT_OFF_task_struct__mm);
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

/* Reserve a record of a constant size (after inlining); count it as lost
 * when the buffer is full.  A function, not a macro: BCC cannot rewrite map
 * calls inside macros. */
static __always_inline void *mmt_reserve(u32 size, u32 kind)
{
	void *e = events.ringbuf_reserve(size);

	if (!e)
		mmt_count_lost(kind);
	return e;
}
