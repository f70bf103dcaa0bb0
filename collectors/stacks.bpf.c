/* SPDX-License-Identifier: GPL-2.0 */
/*
 * User stacks of the calls that change an address space (record -g).
 *
 * Compiled in only with -DMMT_STACKS (capture/loader.py, `record -g`):
 * without it mmt_stack() stores MMT_STACK_NONE and costs nothing.
 *
 * The frames come from bpf_get_stackid(BPF_F_USER_STACK): the kernel walks
 * the user stack from task_pt_regs(current) by frame pointers
 * (arch/x86/events/core.c perf_callchain_user()), and keeps each distinct
 * stack once in a BPF_MAP_TYPE_STACK_TRACE map; the event carries its id.
 * Without BPF_F_REUSE_STACKID an id, once given, keeps its stack until user
 * space deletes it (kernel/bpf/stackmap.c __bpf_get_stackid()): a hash
 * collision with another stack returns -EEXIST instead of overwriting, so
 * user space reads each id once (capture/stacks.py StackTable).
 *
 * Frame-pointer walking starts at regs->ip (inside the syscall wrapper) and
 * follows regs->bp; glibc's syscall wrappers are leaf functions without a
 * frame, so bp is still their caller's and the caller itself is skipped.
 * Its return address is the word at the user stack pointer when the
 * wrapper pushed nothing: it is kept as ret_addr and user space inserts it
 * as the second frame once it checks, in the ELF file, that the bytes
 * before it are a call instruction (mmtrace/detect/callsites.py).
 */

#ifdef MMT_STACKS
/* MMT_STACK_DEPTH frames per stack (BCC's BPF_STACK_TRACE has 127): the map
 * is preallocated, so fewer frames buy more buckets, i.e. fewer stacks lost
 * to a hash collision (-EEXIST) for the same kernel memory. */
struct mmt_stack_ips {
	u64 ip[MMT_STACK_DEPTH];
};
BPF_TABLE("stacktrace", int, struct mmt_stack_ips, stacks, MMT_STACK_ENTRIES);
/* Where a stack goes when its bucket in "stacks" holds another (-EEXIST):
 * the same hash picks the same bucket here, but this map holds only such
 * stacks, so that bucket is almost always free.  Its ids are given as
 * MMT_STACK_ENTRIES + id. */
BPF_TABLE("stacktrace", int, struct mmt_stack_ips, stacks2, MMT_STACK_ENTRIES2);

static __always_inline void mmt_stack(void *ctx, s32 *stack_id, u64 *ret_addr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u64 regs, sp = 0, ret = 0;

	s32 id = stacks.get_stackid(ctx, BPF_F_USER_STACK);

	if (id == -17) {	/* -EEXIST */
		id = stacks2.get_stackid(ctx, BPF_F_USER_STACK);
		if (id >= 0)
			id += MMT_STACK_ENTRIES;
	}
	*stack_id = id;
	/* task_pt_regs(): the user registers saved at kernel entry.  The helper
	 * returns a BTF pointer to struct pt_regs: a direct load, no probe read. */
	regs = bpf_task_pt_regs(task);
	if (regs)
		sp = *(u64 *)(regs + MMT_OFF_PT_REGS_SP);
	if (sp)
		bpf_probe_read_user(&ret, sizeof(ret), (void *)sp);
	*ret_addr = ret;
}
#else
static __always_inline void mmt_stack(void *ctx, s32 *stack_id, u64 *ret_addr)
{
	*stack_id = MMT_STACK_NONE;
	*ret_addr = 0;
}
#endif
