/*
 * churn.c - seeded random address-space churn, to test a VMA-tree model
 * against /proc/self/maps ground truth.
 *
 *   churn --seed S --ops N [--checkpoints DIR] [--forks K]
 *         [--hugetlb auto|on|off] [--threads] [-v]
 *
 * Each step draws an op and all of its parameters from a splitmix64 stream
 * seeded with S.  Exactly six numbers are drawn per step whatever happens, so
 * the op sequence stays in step with the seed even when an op fails or falls
 * back (e.g. MAP_FIXED_NOREPLACE finding the spot taken).  Checkpoints: see
 * checkpoint().  Build: cc -O2 -Wall -pthread churn.c -o churn
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#define HPAGE (2UL << 20)
#define MAXREG 32
#define FILE_PAGES 64
#define HUGE_BUDGET 4	/* huge pages one process may hold: leaves room for children */

static size_t pg;
static bool verbose, use_threads, huge_ok;
static const char *hugetlb_mode = "auto";
static int forks_left;
static unsigned fork_index;
static int file_fd = -1;
static uintptr_t brk_base, brk_cur;
static char note[200];	/* what the last op did, for -v */

static void die(const char *what)
{
	fprintf(stderr, "churn[%d]: %s: %s\n", (int)getpid(), what, strerror(errno));
	_exit(1);
}

/* ---- checkpoints ---------------------------------------------------------
 * Ground truth for the tracer: /proc/self/maps bracketed by two
 * CLOCK_MONOTONIC readings (the clock bpf_ktime_get_ns() uses).  Everything
 * here is static and the file is opened before the first op, so taking a
 * checkpoint never changes the address space it records: no malloc, no stdio
 * streams (snprintf into a static buffer does not allocate).
 */
static char cp_maps[1 << 20];
static char cp_hdr[256];
static char cp_path[4096];
static const char *cp_dir;
static int cp_fd = -1;
static unsigned long cp_seq;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Called at start and again in every forked child: the file is per pid. */
static void cp_open(void)
{
	if (!cp_dir)
		return;
	if (cp_fd >= 0)
		close(cp_fd);
	snprintf(cp_path, sizeof cp_path, "%s/%d.txt", cp_dir, (int)getpid());
	cp_fd = open(cp_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (cp_fd < 0)
		die(cp_path);
	cp_seq = 0;
}

static void checkpoint(const char *op)
{
	if (cp_fd < 0)
		return;
	uint64_t t0 = now_ns();
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("/proc/self/maps");
	size_t n = 0;
	for (;;) {
		ssize_t k = read(fd, cp_maps + n, sizeof cp_maps - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			die("read /proc/self/maps");
		if (k == 0)
			break;
		n += (size_t)k;
		if (n == sizeof cp_maps) {
			errno = EFBIG;
			die("/proc/self/maps larger than the checkpoint buffer");
		}
	}
	close(fd);
	uint64_t t1 = now_ns();
	int h = snprintf(cp_hdr, sizeof cp_hdr,
			 "# checkpoint pid=%d seq=%lu op=%s t_before=%llu t_after=%llu\n",
			 (int)getpid(), cp_seq++, op, (unsigned long long)t0,
			 (unsigned long long)t1);
	/* One writev, so a kill almost never leaves half a checkpoint; the
	 * reader drops one without "# end" anyway. */
	struct iovec iov[3] = {
		{ cp_hdr, (size_t)h }, { cp_maps, n }, { (void *)"# end\n", 6 },
	};
	int i = 0;
	while (i < 3) {
		ssize_t w = writev(cp_fd, iov + i, 3 - i);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die("write checkpoint");
		while (i < 3 && (size_t)w >= iov[i].iov_len)
			w -= (ssize_t)iov[i++].iov_len;
		if (i < 3) {
			iov[i].iov_base = (char *)iov[i].iov_base + w;
			iov[i].iov_len -= (size_t)w;
		}
	}
}

/* ---- randomness ---------------------------------------------------------- */
static uint64_t rng;

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Seed of child number idx, from the run's --seed and idx alone. */
static uint64_t seed0;

static uint64_t derive_seed(uint64_t seed, unsigned idx)
{
	uint64_t s = seed ^ (0xc0ffee00ULL + idx);
	return splitmix(&s);
}

/* ---- the region table -----------------------------------------------------
 * Ranges this process mapped itself; ops only ever touch these (plus the
 * break), never libc's or the loader's mappings.  One region can span
 * several VMAs (after a partial mprotect) and neighbouring regions can share
 * one VMA (after a merge): the table tracks ownership, not the tree.
 */
enum kind { K_ANON, K_FILE, K_HUGE };

struct region {
	uintptr_t addr;
	size_t len;
	int prot;	/* prot at creation: what mprotect-back restores */
	int flags;	/* mmap flags, MAP_SHARED/PRIVATE (+hugetlb bits) */
	enum kind kind;
	bool split;	/* part of it has another prot */
	bool mixed;	/* holds a MAP_FIXED piece of another kind: never one VMA */
};

static struct region reg[MAXREG];
static int nreg;

static const int prots[4] = {
	PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC, PROT_NONE,
};

static bool is_small(const struct region *r) { return r->kind != K_HUGE; }
static bool is_whole(const struct region *r) { return r->kind != K_HUGE && !r->split; }
static bool is_split(const struct region *r) { return r->split; }
static bool is_any(const struct region *r) { (void)r; return true; }
static bool is_huge3(const struct region *r) { return r->kind == K_HUGE && r->len >= 3 * HPAGE; }

/* The r-th (mod count) region that satisfies ok(), or -1. */
static int pick(uint64_t r, bool (*ok)(const struct region *))
{
	int cnt = 0;
	for (int i = 0; i < nreg; i++)
		cnt += ok(&reg[i]);
	if (!cnt)
		return -1;
	int k = (int)(r % (uint64_t)cnt);
	for (int i = 0; i < nreg; i++)
		if (ok(&reg[i]) && k-- == 0)
			return i;
	return -1;
}

static void add(uintptr_t addr, size_t len, int prot, int flags, enum kind kind)
{
	reg[nreg++] = (struct region){ addr, len, prot, flags, kind, false, false };
}

static void drop(int i)
{
	reg[i] = reg[--nreg];
}

static size_t huge_pages_held(void)
{
	size_t n = 0;
	for (int i = 0; i < nreg; i++)
		if (reg[i].kind == K_HUGE)
			n += reg[i].len / HPAGE;
	return n;
}

/* A random page-aligned [*off, *off + *len) inside npages units of unit. */
static void subrange(uint64_t r, size_t npages, size_t unit, size_t *off, size_t *len)
{
	size_t s = (size_t)(r % npages);
	*off = s * unit;
	*len = (1 + (size_t)((r >> 32) % (npages - s))) * unit;
}

/* Write-fault the pages whose bit is set in mask: gives the VMA an anon_vma,
 * which decides what may merge later. */
static void touch(uintptr_t addr, size_t npages, int prot, uint64_t mask)
{
	if (!(prot & PROT_WRITE))
		return;
	for (size_t i = 0; i < npages && i < 64; i++)
		if (mask >> i & 1)
			((volatile char *)addr)[i * pg] = 1;
}

/* ---- ops -----------------------------------------------------------------
 * Each takes the step's random words r[1..5] and returns the name written to
 * the checkpoint; an op that cannot apply falls back to another one.
 */
typedef const char *(*op_fn)(const uint64_t *r);

static const char *op_munmap_whole(const uint64_t *r)
{
	int i = pick(r[1], is_any);
	munmap((void *)reg[i].addr, reg[i].len);
	snprintf(note, sizeof note, "%#lx +%zu", (unsigned long)reg[i].addr, reg[i].len / pg);
	drop(i);
	return "munmap-whole";
}

static const char *op_mmap_anon(const uint64_t *r)
{
	if (nreg == MAXREG)
		return op_munmap_whole(r);
	size_t n = 1 + r[1] % 64;
	int prot = prots[r[2] % 4];
	int flags = (r[3] & 1 ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS;
	void *p = mmap(NULL, n * pg, prot, flags, -1, 0);
	if (p == MAP_FAILED)
		die("mmap anon");
	touch((uintptr_t)p, n, prot, r[4]);
	add((uintptr_t)p, n * pg, prot, flags, K_ANON);
	snprintf(note, sizeof note, "%p +%zu prot %d %s", p, n, prot, r[3] & 1 ? "shared" : "private");
	return "mmap-anon";
}

/* Right before or after a region, so neighbours exist to merge with and
 * munmap-span has something to span. */
static const char *op_mmap_adj(const uint64_t *r)
{
	int i = pick(r[1], is_small);
	if (i < 0 || nreg == MAXREG)
		return op_mmap_anon(r);
	size_t len = (1 + r[2] % 16) * pg;
	int prot = r[3] & 2 ? reg[i].prot : prots[(r[3] >> 2) % 4];
	int flags = reg[i].kind == K_ANON ? reg[i].flags : MAP_PRIVATE | MAP_ANONYMOUS;
	uintptr_t after = reg[i].addr + reg[i].len, before = reg[i].addr - len;
	uintptr_t cand[2] = { r[3] & 1 ? after : before, r[3] & 1 ? before : after };
	uintptr_t want = 0;
	for (int k = 0; k < 2 && !want; k++) {
		if (cand[k] == before && reg[i].addr < len + 0x10000)
			continue;	/* would sit below mmap_min_addr */
		void *p = mmap((void *)cand[k], len, prot, flags | MAP_FIXED_NOREPLACE, -1, 0);
		if (p != MAP_FAILED && (uintptr_t)p != cand[k])
			munmap(p, len);	/* pre-4.17 kernels: only a hint */
		else if (p != MAP_FAILED)
			want = cand[k];
	}
	if (!want) {
		snprintf(note, sizeof note, "both sides of %#lx taken", (unsigned long)reg[i].addr);
		return "mmap-adj-busy";
	}
	touch(want, len / pg, prot, r[4]);
	add(want, len, prot, flags, K_ANON);
	snprintf(note, sizeof note, "%#lx +%zu prot %d next to %#lx", (unsigned long)want,
		 len / pg, prot, (unsigned long)reg[i].addr);
	return "mmap-adj";
}

static const char *op_mmap_file(const uint64_t *r)
{
	if (nreg == MAXREG)
		return op_munmap_whole(r);
	size_t n = 1 + r[1] % 16;
	off_t off = (off_t)(r[2] % (FILE_PAGES - n + 1) * pg);
	int flags = r[3] & 1 ? MAP_SHARED : MAP_PRIVATE;
	int prot = r[3] & 2 ? PROT_READ : PROT_READ | PROT_WRITE;
	void *p = mmap(NULL, n * pg, prot, flags, file_fd, off);
	if (p == MAP_FAILED)
		die("mmap file");
	touch((uintptr_t)p, n, prot, r[4]);
	add((uintptr_t)p, n * pg, prot, flags, K_FILE);
	snprintf(note, sizeof note, "%p +%zu off %lld %s", p, n, (long long)off,
		 flags == MAP_SHARED ? "shared" : "private");
	return "mmap-file";
}

static const char *op_fixed_over(const uint64_t *r)
{
	int i = pick(r[1], is_small);
	if (i < 0)
		return op_mmap_anon(r);
	struct region *g = &reg[i];
	size_t off, len;
	subrange(r[2], g->len / pg, pg, &off, &len);
	bool same = r[3] & 1;
	int prot = same ? g->prot : prots[(r[3] >> 1) % 4];
	int flags = g->kind == K_ANON ? g->flags : MAP_PRIVATE | MAP_ANONYMOUS;
	if (mmap((void *)(g->addr + off), len, prot, flags | MAP_FIXED, -1, 0) == MAP_FAILED)
		die("mmap fixed");
	/* A new shmem object or anon piece in a file mapping never merges back. */
	if (g->kind != K_ANON || (flags & MAP_SHARED))
		g->mixed = true;
	g->split |= g->mixed || prot != g->prot;
	snprintf(note, sizeof note, "%#lx +%zu prot %d", (unsigned long)(g->addr + off), len / pg, prot);
	return "mmap-fixed-over";
}

static const char *op_mprotect_sub(const uint64_t *r)
{
	int i = pick(r[1], is_small);
	if (i < 0)
		return op_mmap_anon(r);
	size_t off, len;
	subrange(r[2], reg[i].len / pg, pg, &off, &len);
	int prot = prots[r[3] % 4];
	int rc = mprotect((void *)(reg[i].addr + off), len, prot);
	if (rc == 0)
		reg[i].split = true;
	snprintf(note, sizeof note, "%#lx +%zu prot %d rc %d", (unsigned long)(reg[i].addr + off),
		 len / pg, prot, rc ? errno : 0);
	return rc ? "mprotect-sub-failed" : "mprotect-sub";
}

static const char *op_mprotect_back(const uint64_t *r)
{
	int i = pick(r[1], is_split);
	if (i < 0)
		i = pick(r[1], is_any);
	if (i < 0)
		return op_mmap_anon(r);
	int rc = mprotect((void *)reg[i].addr, reg[i].len, reg[i].prot);
	if (rc == 0 && !reg[i].mixed)
		reg[i].split = false;
	snprintf(note, sizeof note, "%#lx +%zu prot %d rc %d", (unsigned long)reg[i].addr,
		 reg[i].len / pg, reg[i].prot, rc ? errno : 0);
	return rc ? "mprotect-back-failed" : "mprotect-back";
}

/* Punch [addr + off, + len) out of region i, keeping the table in step. */
static void cut(int i, size_t off, size_t len)
{
	struct region *g = &reg[i];
	if (munmap((void *)(g->addr + off), len))
		die("munmap");
	if (off == 0 && len == g->len) {
		drop(i);
	} else if (off == 0) {
		g->addr += len;
		g->len -= len;
	} else if (off + len == g->len) {
		g->len = off;
	} else {
		struct region tail = *g;
		tail.addr = g->addr + off + len;
		tail.len = g->len - off - len;
		g->len = off;
		reg[nreg++] = tail;
	}
}

static const char *op_munmap_sub(const uint64_t *r)
{
	int i = pick(r[1], is_small);
	if (i < 0)
		return op_mmap_anon(r);
	size_t off, len;
	subrange(r[2], reg[i].len / pg, pg, &off, &len);
	if (nreg == MAXREG && off && off + len < reg[i].len)
		len = reg[i].len - off;	/* no room for the tail piece: cut to the end */
	snprintf(note, sizeof note, "%#lx +%zu of %#lx +%zu", (unsigned long)(reg[i].addr + off),
		 len / pg, (unsigned long)reg[i].addr, reg[i].len / pg);
	cut(i, off, len);
	return "munmap-sub";
}

/* One munmap across two or more of our regions that touch end to end. */
static const char *op_munmap_span(const uint64_t *r)
{
	int first = -1, cnt = 0, k = 0;
	for (int pass = 0; pass < 2 && first < 0; pass++) {
		for (int i = 0; i < nreg; i++)
			for (int j = 0; j < nreg; j++)
				if (is_small(&reg[i]) && is_small(&reg[j]) &&
				    reg[i].addr + reg[i].len == reg[j].addr) {
					if (pass == 1 && k-- == 0)
						first = i;
					cnt += !pass;
				}
		if (!cnt)	/* nothing adjacent yet: make a neighbour instead */
			return op_mmap_adj(r);
		k = (int)(r[1] % (unsigned)cnt);
	}
	/* follow the chain for up to 4 regions */
	int chain[4] = { first }, n = 1;
	while (n < 4) {
		int next = -1;
		for (int j = 0; j < nreg; j++)
			if (is_small(&reg[j]) && reg[chain[n - 1]].addr + reg[chain[n - 1]].len == reg[j].addr)
				next = j;
		if (next < 0 || (n >= 2 && (r[2] >> n & 1)))
			break;
		chain[n++] = next;
	}
	struct region *a = &reg[chain[0]], *z = &reg[chain[n - 1]];
	uintptr_t lo = a->addr + (r[3] % (a->len / pg)) * pg;
	uintptr_t hi = z->addr + (1 + r[4] % (z->len / pg)) * pg;
	if (munmap((void *)lo, hi - lo))
		die("munmap span");
	snprintf(note, sizeof note, "%#lx-%#lx over %d regions", (unsigned long)lo, (unsigned long)hi, n);
	/* fix the table: first keeps its head, last its tail, the middle goes */
	a->len = lo - a->addr;
	z->len = z->addr + z->len - hi;
	z->addr = hi;
	for (int k = 1; k < n - 1; k++)
		reg[chain[k]].len = 0;
	for (int i = nreg - 1; i >= 0; i--)
		if (reg[i].len == 0)
			drop(i);
	return "munmap-span";
}

static const char *op_mremap_grow(const uint64_t *r)
{
	int i = pick(r[1], is_whole);
	if (i < 0)
		i = pick(r[1], is_small);
	if (i < 0)
		return op_mmap_anon(r);
	struct region *g = &reg[i];
	size_t nlen = g->len + (1 + r[2] % 32) * pg;
	const char *name = "mremap-grow-inplace";
	void *p = MAP_FAILED;
	if (r[3] & 1)
		p = mremap((void *)g->addr, g->len, nlen, 0);
	if (p == MAP_FAILED) {
		p = mremap((void *)g->addr, g->len, nlen, MREMAP_MAYMOVE);
		name = p == MAP_FAILED ? "mremap-grow-failed"
		       : (uintptr_t)p == g->addr ? "mremap-grow-inplace" : "mremap-grow-moved";
	}
	snprintf(note, sizeof note, "%#lx +%zu -> %p +%zu", (unsigned long)g->addr, g->len / pg, p, nlen / pg);
	if (p != MAP_FAILED) {
		g->addr = (uintptr_t)p;
		g->len = nlen;
	}
	return name;
}

static const char *op_mremap_shrink(const uint64_t *r)
{
	int i = pick(r[1], is_small);
	if (i < 0 || reg[i].len < 2 * pg)
		return op_munmap_sub(r);
	size_t nlen = (1 + r[2] % (reg[i].len / pg - 1)) * pg;
	void *p = mremap((void *)reg[i].addr, reg[i].len, nlen, 0);
	snprintf(note, sizeof note, "%#lx +%zu -> +%zu", (unsigned long)reg[i].addr, reg[i].len / pg, nlen / pg);
	if (p == MAP_FAILED)
		return "mremap-shrink-failed";
	reg[i].len = nlen;
	return "mremap-shrink";
}

/* Split regions too: since 6.17 a same-size MREMAP_FIXED move may span
 * several VMAs (older kernels: EFAULT, recorded as -failed). */
static const char *op_mremap_fixed(const uint64_t *r)
{
	int i = pick(r[1], is_small);
	if (i < 0)
		return op_mmap_anon(r);
	struct region *g = &reg[i];
	/* Reserve, then free, the target: MREMAP_FIXED would silently replace
	 * whatever lives there, and this way nothing does. */
	void *t = mmap(NULL, g->len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (t == MAP_FAILED || munmap(t, g->len))
		die("reserve");
	void *p = mremap((void *)g->addr, g->len, g->len, MREMAP_MAYMOVE | MREMAP_FIXED, t);
	snprintf(note, sizeof note, "%#lx +%zu -> %p rc %d", (unsigned long)g->addr, g->len / pg, t,
		 p == MAP_FAILED ? errno : 0);
	if (p == MAP_FAILED)
		return "mremap-fixed-failed";
	g->addr = (uintptr_t)p;
	return "mremap-fixed";
}

/* The break, moved with the raw syscall: glibc's sbrk() cache and malloc
 * must not be involved (main() parks malloc on a heap of its own first). */
static const char *op_brk(const uint64_t *r)
{
	size_t above = (brk_cur - brk_base) / pg;
	bool grow = above == 0 || (above < 256 && (r[1] & 1));
	uintptr_t want = grow ? brk_cur + (1 + r[2] % 32) * pg : brk_cur - (1 + r[2] % above) * pg;
	uintptr_t got = (uintptr_t)syscall(SYS_brk, want);
	if (got != want)
		die("brk");
	if (grow)
		touch(brk_cur, (want - brk_cur) / pg, PROT_WRITE, r[3]);
	snprintf(note, sizeof note, "%#lx -> %#lx", (unsigned long)brk_cur, (unsigned long)want);
	brk_cur = want;
	return grow ? "brk-grow" : "brk-shrink";
}

static const char *op_madvise(const uint64_t *r)
{
	int i = pick(r[1], is_small);
	if (i < 0)
		return op_mmap_anon(r);
	size_t off, len;
	subrange(r[2], reg[i].len / pg, pg, &off, &len);
	int rc = madvise((void *)(reg[i].addr + off), len, MADV_DONTNEED);
	snprintf(note, sizeof note, "%#lx +%zu rc %d", (unsigned long)(reg[i].addr + off), len / pg, rc ? errno : 0);
	return "madvise-dontneed";
}

/* 4 KiB frames, touched at both ends, so the kernel grows the stack VMA
 * (on the main thread; a pthread's stack is a fixed mapping). */
static __attribute__((noinline)) int dig(int depth)
{
	volatile char frame[4096];
	frame[0] = (char)depth;
	frame[sizeof frame - 1] = (char)depth;
	int below = depth > 0 ? dig(depth - 1) : 0;
	return below + frame[0] + frame[sizeof frame - 1];	/* no tail call */
}

static const char *op_stack(const uint64_t *r)
{
	int depth = 32 + (int)(r[1] % 96);
	dig(depth);
	snprintf(note, sizeof note, "%d KiB", depth * 4);
	return "stack-deep";
}

/* Hugetlb: mmap 1-3 huge pages, or split one: mprotect / munmap the middle
 * huge page of a 3-page region.  Pages are never touched, so MAP_NORESERVE
 * and COW after fork can never SIGBUS. */
static const char *op_huge(const uint64_t *r)
{
	int i = pick(r[2], is_huge3);
	unsigned sub = (unsigned)(r[1] % 3);
	if (sub == 0 || i < 0) {
		size_t n = 1 + r[3] % 3;
		if (i < 0 && sub)
			n = 3;	/* nothing to split yet: make something splittable */
		if (nreg == MAXREG || huge_pages_held() + n > HUGE_BUDGET)
			return op_munmap_whole(r);
		int flags = (r[4] & 1 ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_HUGETLB |
			    MAP_HUGE_2MB | (r[4] & 2 ? MAP_NORESERVE : 0);
		int prot = r[4] & 4 ? PROT_READ : PROT_READ | PROT_WRITE;
		void *p = mmap(NULL, n * HPAGE, prot, flags, -1, 0);
		snprintf(note, sizeof note, "%p %zu huge pages flags %#x", p, n, flags);
		if (p == MAP_FAILED)	/* no free huge page (another process holds them) */
			return "hugetlb-mmap-failed";
		add((uintptr_t)p, n * HPAGE, prot, flags, K_HUGE);
		return "hugetlb-mmap";
	}
	size_t k = 1 + r[3] % (reg[i].len / HPAGE - 2);	/* never the first or last */
	uintptr_t at = reg[i].addr + k * HPAGE;
	snprintf(note, sizeof note, "huge page %zu of %#lx", k, (unsigned long)reg[i].addr);
	if (sub == 1) {
		int prot = reg[i].prot == PROT_READ ? PROT_READ | PROT_WRITE : PROT_READ;
		if (mprotect((void *)at, HPAGE, prot))
			die("hugetlb mprotect");
		reg[i].split = true;
		return "hugetlb-mprotect";
	}
	if (nreg == MAXREG)
		return op_munmap_whole(r);
	cut(i, k * HPAGE, HPAGE);
	return "hugetlb-munmap";
}

static void run(uint64_t seed, unsigned long ops);

static void reap(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			die("waitpid");
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "churn[%d]: child %d failed (status %#x)\n", (int)getpid(), (int)pid, st);
		_exit(1);
	}
}

static const char *op_fork(const uint64_t *r)
{
	if (forks_left <= 0)
		return op_mmap_anon(r);
	forks_left--;
	unsigned idx = fork_index++;
	uint64_t seed = derive_seed(seed0, idx);
	unsigned long ops = 10 + r[1] % 40;
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		/* The child inherits the table and churns on its own copy of the
		 * mm; it must never return into the parent's loop. */
		forks_left = 0;
		cp_open();
		checkpoint("start");
		run(seed, ops);
		checkpoint("end");
		_exit(0);
	}
	reap(pid);
	snprintf(note, sizeof note, "child %d seed %#llx ops %lu", (int)pid, (unsigned long long)seed, ops);
	return "fork";
}

/* fork + exec of ourselves: the exec path tears the whole mm down. */
static char self_argv_buf[4][32];

static const char *op_exec(const uint64_t *r)
{
	if (forks_left <= 0)
		return op_mmap_anon(r);
	forks_left--;
	uint64_t seed = derive_seed(seed0, fork_index++);
	unsigned long ops = 5 + r[1] % 20;
	snprintf(self_argv_buf[0], 32, "%llu", (unsigned long long)seed);
	snprintf(self_argv_buf[1], 32, "%lu", ops);
	char *argv[16] = { "churn", "--seed", self_argv_buf[0], "--ops", self_argv_buf[1],
			   "--forks", "0", "--hugetlb", (char *)hugetlb_mode };
	int n = 9;
	if (cp_dir) {
		argv[n++] = "--checkpoints";
		argv[n++] = (char *)cp_dir;
	}
	if (use_threads)
		argv[n++] = "--threads";
	if (verbose)
		argv[n++] = "-v";
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		/* no checkpoint here: the exec'd image owns <pid>.txt from seq 0 */
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	reap(pid);
	snprintf(note, sizeof note, "child %d exec'd seed %s ops %lu", (int)pid, self_argv_buf[0], ops);
	return "fork-exec";
}

/* The op table: weights are fixed for a run, so the seed alone decides. */
static const struct {
	op_fn fn;
	unsigned weight;
	bool threadable;
} optab[] = {
	{ op_mmap_anon, 10, true },  { op_mmap_adj, 6, true },      { op_mmap_file, 5, true },
	{ op_fixed_over, 5, true },  { op_mprotect_sub, 10, true }, { op_mprotect_back, 7, true },
	{ op_munmap_sub, 8, true },  { op_munmap_span, 5, true },   { op_mremap_grow, 5, true },
	{ op_mremap_shrink, 4, true }, { op_mremap_fixed, 4, true }, { op_brk, 5, true },
	{ op_madvise, 4, true },     { op_stack, 2, true },         { op_huge, 6, true },
	{ op_fork, 1, false },       { op_exec, 1, false },
};
#define NOPS (sizeof optab / sizeof optab[0])

struct job {
	op_fn fn;
	const uint64_t *r;
	const char *name;
};

static void *thread_main(void *arg)
{
	struct job *j = arg;
	j->name = j->fn(j->r);
	return NULL;
}

static char opname[64];

static void run(uint64_t seed, unsigned long ops)
{
	rng = seed;
	unsigned total = 0;
	for (size_t k = 0; k < NOPS; k++)
		total += optab[k].fn == op_huge && !huge_ok ? 0 : optab[k].weight;
	for (unsigned long step = 0; step < ops; step++) {
		uint64_t r[6];
		for (int k = 0; k < 6; k++)
			r[k] = splitmix(&rng);
		unsigned w = (unsigned)(r[0] % total);
		size_t k = 0;
		for (;; k++) {
			unsigned wk = optab[k].fn == op_huge && !huge_ok ? 0 : optab[k].weight;
			if (w < wk)
				break;
			w -= wk;
		}
		note[0] = 0;
		const char *name;
		if (use_threads && optab[k].threadable && r[5] % 4 == 0) {
			/* create, run one op, join: concurrent mm, sequential ops */
			struct job j = { optab[k].fn, r, NULL };
			pthread_t th;
			if ((errno = pthread_create(&th, NULL, thread_main, &j)) ||
			    (errno = pthread_join(th, NULL)))
				die("pthread");
			snprintf(opname, sizeof opname, "thread:%s", j.name);
			name = opname;
		} else {
			name = optab[k].fn(r);
		}
		checkpoint(name);
		if (verbose)
			fprintf(stderr, "churn[%d] %lu %s %s\n", (int)getpid(), step, name, note);
	}
}

/* 2 MiB huge pages configured?  /proc/meminfo read without stdio. */
static bool hugetlb_available(void)
{
	static char buf[8192];
	int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	char *size = strstr(buf, "Hugepagesize:"), *total = strstr(buf, "HugePages_Total:");
	return size && total && strtol(size + 13, NULL, 10) == 2048 && strtol(total + 16, NULL, 10) > 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: churn --seed S --ops N [--checkpoints DIR] [--forks K]\n"
			"             [--hugetlb auto|on|off] [--threads] [-v]\n");
	exit(2);
}

static unsigned long long number(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || !*s || *end)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	uint64_t seed = 1;
	unsigned long ops = 100;
	forks_left = 4;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--threads"))
			use_threads = true;
		else if (!strcmp(a, "-v"))
			verbose = true;
		else if (!v)
			usage();
		else if (!strcmp(a, "--seed"))
			seed = number(v), i++;
		else if (!strcmp(a, "--ops"))
			ops = (unsigned long)number(v), i++;
		else if (!strcmp(a, "--forks"))
			forks_left = (int)number(v), i++;
		else if (!strcmp(a, "--checkpoints"))
			cp_dir = v, i++;
		else if (!strcmp(a, "--hugetlb") &&
			 (!strcmp(v, "auto") || !strcmp(v, "on") || !strcmp(v, "off")))
			hugetlb_mode = v, i++;
		else
			usage();
	}
	pg = (size_t)sysconf(_SC_PAGESIZE);
	huge_ok = strcmp(hugetlb_mode, "off") && hugetlb_available();
	if (!huge_ok && !strcmp(hugetlb_mode, "on")) {
		fprintf(stderr, "churn: --hugetlb on, but no 2 MiB huge pages are configured "
				"(echo 8 > /proc/sys/vm/nr_hugepages)\n");
		return 2;
	}

	/* pthread_create() mallocs (the DTV).  Park malloc on a roomy heap that
	 * it never trims, so glibc never moves the break under op_brk. */
	mallopt(M_TOP_PAD, 1 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	void *volatile warm = malloc(1); /* volatile: gcc drops malloc+free pairs */
	free(warm);
	brk_cur = (uintptr_t)syscall(SYS_brk, 0);
	brk_base = brk_cur = (brk_cur + pg - 1) & ~(uintptr_t)(pg - 1);
	if ((uintptr_t)syscall(SYS_brk, brk_cur) != brk_cur)
		die("brk align");

	/* Unlinked at once: no litter if killed; maps show it "(deleted)". */
	char path[] = "/tmp/mmtrace-churn-XXXXXX";
	file_fd = mkstemp(path);
	if (file_fd < 0 || unlink(path) || ftruncate(file_fd, FILE_PAGES * (off_t)pg))
		die("temp file");

	seed0 = seed;
	cp_open();
	checkpoint("start");
	run(seed, ops);
	checkpoint("end");
	return 0;
}
