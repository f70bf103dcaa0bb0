/*
 * churn.c - seeded random address-space churn, to test a VMA-tree model
 * against /proc/self/maps ground truth.
 *
 *   churn --seed S --ops N [--checkpoints DIR] [--forks K]
 *         [--hugetlb auto|on|off] [--threads] [-v]
 *
 * Each step draws an op and all its parameters from a splitmix64 stream
 * seeded with S.  Exactly six numbers are drawn per step whatever happens, so
 * the op sequence stays in step with the seed even when an op fails or falls
 * back (e.g. MAP_FIXED_NOREPLACE finding the spot taken).  With the address
 * layout fixed (no ASLR) a seed reproduces every op of every process.
 * Checkpoints: see checkpoint().  Build: cc -O2 -Wall -pthread churn.c
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
#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)
#define RW (PROT_READ | PROT_WRITE)
#define MAXREG 32
#define FILE_PAGES 64
#define HUGE_BUDGET 4	/* huge pages one process may hold: leaves some for children */

static size_t pg;
static bool verbose, use_threads;
static const char *hugetlb_mode = "auto";
static int forks_left, file_fd = -1;
static unsigned fork_index;
static uint64_t seed0, rng;
static char *brk_base, *brk_cur;
static char note[200];	/* what the last op did, for -v */
#define NOTE(...) snprintf(note, sizeof note, __VA_ARGS__)

static void die(const char *what)
{
	fprintf(stderr, "churn[%d]: %s: %s\n", (int)getpid(), what, strerror(errno));
	_exit(1);
}

#include "checkpoint.h"

/* ---- randomness ---------------------------------------------------------- */
static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Seed of child number idx: from --seed and idx alone. */
static uint64_t derive_seed(unsigned idx)
{
	uint64_t s = seed0 ^ (0xc0ffee00ULL + idx);
	return splitmix(&s);
}

/* ---- the region table -----------------------------------------------------
 * Ranges this process mapped itself.  Ops only ever touch these and the
 * break, never libc's or the loader's mappings.  One region can span several
 * VMAs (after a partial mprotect) and neighbouring regions can share a VMA
 * (after a merge): the table tracks ownership, not the tree.
 */
enum kind { K_ANON, K_FILE, K_HUGE };

struct region {
	char *addr;
	size_t len;
	int prot;	/* prot at creation: what mprotect-back restores */
	int flags;	/* mmap flags */
	enum kind kind;
	bool split;	/* part of it has another prot */
	bool mixed;	/* holds a MAP_FIXED piece of another kind: never one VMA */
};

static struct region reg[MAXREG];
static int nreg;
static const int prots[4] = { PROT_READ, RW, PROT_READ | PROT_EXEC, PROT_NONE };

static bool is_small(const struct region *g) { return g->kind != K_HUGE; }
static bool is_whole(const struct region *g) { return g->kind != K_HUGE && !g->split; }
static bool is_split(const struct region *g) { return g->split; }
static bool is_any(const struct region *g) { return g->len > 0; }
static bool is_huge(const struct region *g) { return g->kind == K_HUGE; }
static bool is_huge3(const struct region *g) { return g->kind == K_HUGE && g->len >= 3 * HPAGE; }

/* The r-th (mod count) region that satisfies ok(), or -1. */
static int pick(uint64_t r, bool (*ok)(const struct region *))
{
	int cnt = 0;
	for (int i = 0; i < nreg; i++)
		cnt += ok(&reg[i]);
	for (int i = 0, k = cnt ? (int)(r % (unsigned)cnt) : -1; i < nreg && cnt; i++)
		if (ok(&reg[i]) && k-- == 0)
			return i;
	return -1;
}

static void add(char *addr, size_t len, int prot, int flags, enum kind kind)
{
	reg[nreg++] = (struct region){ addr, len, prot, flags, kind, false, false };
}

static void drop(int i) { reg[i] = reg[--nreg]; }

/* A random page-aligned [*off, *off + *len) inside region i. */
static void subrange(uint64_t r, int i, size_t *off, size_t *len)
{
	size_t npages = reg[i].len / pg, s = (size_t)(r % npages);
	*off = s * pg;
	*len = (1 + (size_t)((r >> 32) % (npages - s))) * pg;
}

/* Write-fault the pages whose bit is set in mask: that gives the VMA an
 * anon_vma, which decides what may merge with it later. */
static void touch(char *addr, size_t npages, int prot, uint64_t mask)
{
	for (size_t i = 0; (prot & PROT_WRITE) && i < npages && i < 64; i++)
		if (mask >> i & 1)
			((volatile char *)addr)[i * pg] = 1;
}

/* Punch [addr + off, + len) out of region i, keeping the table in step. */
static void cut(int i, size_t off, size_t len)
{
	struct region *g = &reg[i];
	if (munmap(g->addr + off, len))
		die("munmap");
	if (off == 0 && len == g->len) {
		drop(i);
	} else if (off == 0) {
		g->addr += len;
		g->len -= len;
	} else if (off + len == g->len) {
		g->len = off;
	} else {	/* a hole: the tail becomes a region of its own */
		reg[nreg] = *g;
		reg[nreg].addr = g->addr + off + len;
		reg[nreg++].len = g->len - off - len;
		g->len = off;
	}
}

/* ---- ops -----------------------------------------------------------------
 * Each takes the step's random words r[1..5] and returns the name written to
 * the checkpoint; an op that cannot apply falls back to another one.
 */
static const char *op_munmap_whole(const uint64_t *r)
{
	int i = pick(r[1], is_any);
	NOTE("%p +%zu", reg[i].addr, reg[i].len / pg);
	cut(i, 0, reg[i].len);
	return "munmap-whole";
}

static const char *op_mmap_anon(const uint64_t *r)
{
	if (nreg == MAXREG)
		return op_munmap_whole(r);
	size_t n = 1 + r[1] % 64;
	int prot = prots[r[2] % 4], flags = (r[3] & 1 ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS;
	char *p = mmap(NULL, n * pg, prot, flags, -1, 0);
	if (p == MAP_FAILED)
		die("mmap anon");
	touch(p, n, prot, r[4]);
	add(p, n * pg, prot, flags, K_ANON);
	NOTE("%p +%zu prot %d flags %#x", p, n, prot, flags);
	return "mmap-anon";
}

/* Right after or before a region (MAP_FIXED_NOREPLACE), so that neighbours
 * exist to merge with and munmap-span has something to span. */
static const char *op_mmap_adj(const uint64_t *r)
{
	int i = pick(r[1], is_small);
	if (i < 0 || nreg == MAXREG)
		return op_mmap_anon(r);
	size_t len = (1 + r[2] % 16) * pg;
	int prot = r[3] & 2 ? reg[i].prot : prots[(r[3] >> 2) % 4];
	int flags = reg[i].kind == K_ANON ? reg[i].flags : ANON;
	char *after = reg[i].addr + reg[i].len, *before = reg[i].addr - len, *at = NULL;
	char *cand[2] = { r[3] & 1 ? after : before, r[3] & 1 ? before : after };
	for (int k = 0; k < 2 && !at; k++) {
		if (cand[k] == before && (uintptr_t)reg[i].addr < len + 0x10000)
			continue;	/* would sit below mmap_min_addr */
		char *p = mmap(cand[k], len, prot, flags | MAP_FIXED_NOREPLACE, -1, 0);
		if (p != MAP_FAILED && p != cand[k])
			munmap(p, len);	/* pre-4.17 kernels: only a hint */
		else if (p != MAP_FAILED)
			at = p;
	}
	NOTE("%p +%zu prot %d next to %p", at, len / pg, prot, reg[i].addr);
	if (!at)
		return "mmap-adj-busy";
	touch(at, len / pg, prot, r[4]);
	add(at, len, prot, flags, K_ANON);
	return "mmap-adj";
}

static const char *op_mmap_file(const uint64_t *r)
{
	if (nreg == MAXREG)
		return op_munmap_whole(r);
	size_t n = 1 + r[1] % 16;
	off_t off = (off_t)(r[2] % (FILE_PAGES - n + 1) * pg);
	int flags = r[3] & 1 ? MAP_SHARED : MAP_PRIVATE, prot = r[3] & 2 ? PROT_READ : RW;
	char *p = mmap(NULL, n * pg, prot, flags, file_fd, off);
	if (p == MAP_FAILED)
		die("mmap file");
	touch(p, n, prot, r[4]);
	add(p, n * pg, prot, flags, K_FILE);
	NOTE("%p +%zu off %lld flags %#x", p, n, (long long)off, flags);
	return "mmap-file";
}

static const char *op_fixed_over(const uint64_t *r)
{
	int i = pick(r[1], is_small);
	if (i < 0)
		return op_mmap_anon(r);
	struct region *g = &reg[i];
	size_t off, len;
	subrange(r[2], i, &off, &len);
	int prot = r[3] & 1 ? g->prot : prots[(r[3] >> 1) % 4];
	int flags = g->kind == K_ANON ? g->flags : ANON;
	if (mmap(g->addr + off, len, prot, flags | MAP_FIXED, -1, 0) == MAP_FAILED)
		die("mmap fixed");
	/* a new shmem object, or anon inside a file mapping, never merges back */
	g->mixed |= g->kind != K_ANON || (flags & MAP_SHARED);
	g->split |= g->mixed || prot != g->prot;
	NOTE("%p +%zu prot %d", g->addr + off, len / pg, prot);
	return "mmap-fixed-over";
}

static const char *op_mprotect_sub(const uint64_t *r)
{
	int i = pick(r[1], is_small);
	if (i < 0)
		return op_mmap_anon(r);
	size_t off, len;
	subrange(r[2], i, &off, &len);
	int prot = prots[r[3] % 4], rc = mprotect(reg[i].addr + off, len, prot);
	reg[i].split |= rc == 0;
	NOTE("%p +%zu prot %d rc %d", reg[i].addr + off, len / pg, prot, rc ? errno : 0);
	return rc ? "mprotect-sub-failed" : "mprotect-sub";
}

static const char *op_mprotect_back(const uint64_t *r)
{
	int i = pick(r[1], is_split);
	if (i < 0 && (i = pick(r[1], is_any)) < 0)
		return op_mmap_anon(r);
	int rc = mprotect(reg[i].addr, reg[i].len, reg[i].prot);
	if (rc == 0 && !reg[i].mixed)
		reg[i].split = false;
	NOTE("%p +%zu prot %d rc %d", reg[i].addr, reg[i].len / pg, reg[i].prot, rc ? errno : 0);
	return rc ? "mprotect-back-failed" : "mprotect-back";
}

static const char *op_munmap_sub(const uint64_t *r)
{
	int i = pick(r[1], is_small);
	if (i < 0)
		return op_mmap_anon(r);
	size_t off, len;
	subrange(r[2], i, &off, &len);
	if (nreg == MAXREG && off && off + len < reg[i].len)
		len = reg[i].len - off;	/* no room for the tail piece: cut to the end */
	NOTE("%p +%zu of %p +%zu", reg[i].addr + off, len / pg, reg[i].addr, reg[i].len / pg);
	cut(i, off, len);
	return "munmap-sub";
}

static int next_to(int i)	/* our region starting where region i ends, or -1 */
{
	for (int j = 0; j < nreg; j++)
		if (is_small(&reg[j]) && reg[j].addr == reg[i].addr + reg[i].len)
			return j;
	return -1;
}

/* One munmap across a chain of 2-4 of our regions that touch end to end. */
static const char *op_munmap_span(const uint64_t *r)
{
	int heads[MAXREG], nh = 0, chain[4], n = 1;
	for (int i = 0; i < nreg; i++)
		if (is_small(&reg[i]) && next_to(i) >= 0)
			heads[nh++] = i;
	if (!nh)	/* nothing adjacent yet: make a neighbour instead */
		return op_mmap_adj(r);
	chain[0] = heads[r[1] % (unsigned)nh];
	while (n < 4 && (chain[n] = next_to(chain[n - 1])) >= 0 && (n < 2 || !(r[2] >> n & 1)))
		n++;
	struct region *a = &reg[chain[0]], *z = &reg[chain[n - 1]];
	char *lo = a->addr + (r[3] % (a->len / pg)) * pg;
	char *hi = z->addr + (1 + r[4] % (z->len / pg)) * pg;
	if (munmap(lo, (size_t)(hi - lo)))
		die("munmap span");
	NOTE("%p-%p over %d regions", lo, hi, n);
	/* the first keeps its head, the last its tail, the middle ones go */
	a->len = (size_t)(lo - a->addr);
	z->len = (size_t)(z->addr + z->len - hi);
	z->addr = hi;
	for (int k = 1; k < n - 1; k++)
		reg[chain[k]].len = 0;
	for (int i = nreg - 1; i >= 0; i--)
		if (reg[i].len == 0)
			drop(i);
	return "munmap-span";
}

/* Prefers unsplit regions: growing a range that spans VMAs is EFAULT. */
static const char *op_mremap_grow(const uint64_t *r)
{
	int i = pick(r[1], is_whole);
	if (i < 0 && (i = pick(r[1], is_small)) < 0)
		return op_mmap_anon(r);
	struct region *g = &reg[i];
	size_t nlen = g->len + (1 + r[2] % 32) * pg;
	char *p = r[3] & 1 ? mremap(g->addr, g->len, nlen, 0) : MAP_FAILED;
	if (p == MAP_FAILED)
		p = mremap(g->addr, g->len, nlen, MREMAP_MAYMOVE);
	NOTE("%p +%zu -> %p +%zu", g->addr, g->len / pg, p, nlen / pg);
	if (p == MAP_FAILED)
		return "mremap-grow-failed";
	const char *name = p == g->addr ? "mremap-grow-inplace" : "mremap-grow-moved";
	g->addr = p;
	g->len = nlen;
	return name;
}

static const char *op_mremap_shrink(const uint64_t *r)
{
	int i = pick(r[1], is_small);
	if (i < 0 || reg[i].len < 2 * pg)
		return op_munmap_sub(r);
	size_t nlen = (1 + r[2] % (reg[i].len / pg - 1)) * pg;
	char *p = mremap(reg[i].addr, reg[i].len, nlen, 0);
	NOTE("%p +%zu -> +%zu", reg[i].addr, reg[i].len / pg, nlen / pg);
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
	 * whatever lives there; this way nothing does. */
	char *t = mmap(NULL, g->len, PROT_NONE, ANON | MAP_NORESERVE, -1, 0);
	if (t == MAP_FAILED || munmap(t, g->len))
		die("reserve");
	char *p = mremap(g->addr, g->len, g->len, MREMAP_MAYMOVE | MREMAP_FIXED, t);
	NOTE("%p +%zu -> %p rc %d", g->addr, g->len / pg, t, p == MAP_FAILED ? errno : 0);
	if (p == MAP_FAILED)
		return "mremap-fixed-failed";
	g->addr = p;
	return "mremap-fixed";
}

/* The break, moved with the raw syscall: glibc's sbrk() caches it, and
 * malloc must not be involved (main() parks malloc on a heap of its own). */
static const char *op_brk(const uint64_t *r)
{
	size_t above = (size_t)(brk_cur - brk_base) / pg;
	bool grow = above == 0 || (above < 256 && (r[1] & 1));
	char *want = grow ? brk_cur + (1 + r[2] % 32) * pg : brk_cur - (1 + r[2] % above) * pg;
	if ((char *)syscall(SYS_brk, want) != want)
		die("brk");
	if (grow)
		touch(brk_cur, (size_t)(want - brk_cur) / pg, PROT_WRITE, r[3]);
	NOTE("%p -> %p", brk_cur, want);
	brk_cur = want;
	return grow ? "brk-grow" : "brk-shrink";
}

static const char *op_madvise(const uint64_t *r)
{
	int i = pick(r[1], is_small);
	if (i < 0)
		return op_mmap_anon(r);
	size_t off, len;
	subrange(r[2], i, &off, &len);
	int rc = madvise(reg[i].addr + off, len, MADV_DONTNEED);
	NOTE("%p +%zu rc %d", reg[i].addr + off, len / pg, rc ? errno : 0);
	return "madvise-dontneed";
}

/* 4 KiB frames touched at both ends, so the kernel grows the stack VMA (on
 * the main thread; a pthread's stack is a fixed mapping). */
static __attribute__((noinline)) int dig(int depth)
{
	volatile char frame[4096];
	frame[0] = frame[sizeof frame - 1] = (char)depth;
	int below = depth > 0 ? dig(depth - 1) : 0;
	return below + frame[0] + frame[sizeof frame - 1];	/* no tail call */
}

static const char *op_stack(const uint64_t *r)
{
	int depth = 32 + (int)(r[1] % 96);
	dig(depth);
	NOTE("%d KiB", depth * 4);
	return "stack-deep";
}

/* Hugetlb: mmap 1-3 huge pages, or mprotect / munmap the middle huge page of
 * a 3-page region.  The pages are never touched, so neither MAP_NORESERVE
 * nor COW after fork can SIGBUS. */
static const char *op_huge(const uint64_t *r)
{
	int i = pick(r[2], is_huge3), held = 0;
	unsigned sub = (unsigned)(r[1] % 3);
	if (sub == 0 || i < 0) {
		size_t n = i < 0 && sub ? 3 : 1 + r[3] % 3;	/* 3: make something to split */
		for (int k = 0; k < nreg; k++)
			held += reg[k].kind == K_HUGE ? (int)(reg[k].len / HPAGE) : 0;
		if (nreg == MAXREG || held + n > HUGE_BUDGET) {	/* make room */
			int v = held ? pick(r[4], is_huge) : pick(r[4], is_any);
			NOTE("%p +%zu", reg[v].addr, reg[v].len / pg);
			cut(v, 0, reg[v].len);
			return "munmap-whole";
		}
		int flags = (r[4] & 1 ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_HUGETLB |
			    MAP_HUGE_2MB | (r[4] & 2 ? MAP_NORESERVE : 0);
		int prot = r[4] & 4 ? PROT_READ : RW;
		char *p = mmap(NULL, n * HPAGE, prot, flags, -1, 0);
		NOTE("%p %zu huge pages flags %#x", p, n, flags);
		if (p == MAP_FAILED)	/* no free huge page: other processes hold them */
			return "hugetlb-mmap-failed";
		add(p, n * HPAGE, prot, flags, K_HUGE);
		return "hugetlb-mmap";
	}
	size_t k = 1 + r[3] % (reg[i].len / HPAGE - 2);	/* never the first or last */
	NOTE("huge page %zu of %p", k, reg[i].addr);
	if (sub == 1) {
		if (mprotect(reg[i].addr + k * HPAGE, HPAGE, reg[i].prot == PROT_READ ? RW : PROT_READ))
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

/* A child with its own seed: either it churns on its copy of the table and
 * the mm, or it execs a fresh churn (exec tears the inherited mm down). */
static const char *op_fork(const uint64_t *r)
{
	static char seed_s[32], ops_s[32];
	if (forks_left <= 0)
		return op_mmap_anon(r);
	forks_left--;
	bool exec = r[2] & 1;
	uint64_t seed = derive_seed(fork_index++);
	unsigned long ops = exec ? 5 + r[1] % 20 : 10 + r[1] % 40;
	snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)seed);
	snprintf(ops_s, sizeof ops_s, "%lu", ops);
	char *argv[16] = { "churn", "--seed", seed_s, "--ops", ops_s, "--forks", "0",
			   "--hugetlb", (char *)hugetlb_mode, "--checkpoints", (char *)cp_dir };
	int n = cp_dir ? 11 : 9, st;
	if (use_threads)
		argv[n++] = "--threads";
	if (verbose)
		argv[n++] = "-v";
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0 && exec) {	/* no checkpoint here: the new image owns <pid>.txt */
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	if (pid == 0) {	/* must never return into the parent's loop */
		forks_left = 0;
		cp_open();
		checkpoint("start");
		run(seed, ops);
		checkpoint("end");
		_exit(0);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			die("waitpid");
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "churn[%d]: child %d failed (status %#x)\n", (int)getpid(), (int)pid, st);
		_exit(1);
	}
	NOTE("child %d seed %s ops %s", (int)pid, seed_s, ops_s);
	return exec ? "fork-exec" : "fork";
}

typedef const char *(*op_fn)(const uint64_t *r);

/* Weights are fixed for a run (main() zeroes hugetlb's when unavailable),
 * so the seed alone decides the op sequence. */
static struct {
	op_fn fn;
	unsigned weight;
} optab[] = {
	{ op_mmap_anon, 10 },   { op_mmap_adj, 6 },      { op_mmap_file, 5 },
	{ op_fixed_over, 5 },   { op_mprotect_sub, 10 }, { op_mprotect_back, 7 },
	{ op_munmap_sub, 8 },   { op_munmap_span, 5 },   { op_mremap_grow, 5 },
	{ op_mremap_shrink, 4 }, { op_mremap_fixed, 4 }, { op_brk, 5 },
	{ op_madvise, 4 },      { op_stack, 2 },         { op_huge, 6 },
	{ op_fork, 2 },
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

static void run(uint64_t seed, unsigned long ops)
{
	static char name[64];
	unsigned total = 0;
	rng = seed;
	for (size_t k = 0; k < NOPS; k++)
		total += optab[k].weight;
	for (unsigned long step = 0; step < ops; step++) {
		uint64_t r[6];
		for (int k = 0; k < 6; k++)
			r[k] = splitmix(&rng);
		unsigned w = (unsigned)(r[0] % total);
		size_t k = 0;
		while (w >= optab[k].weight)
			w -= optab[k++].weight;
		note[0] = 0;
		if (use_threads && optab[k].fn != op_fork && r[5] % 4 == 0) {
			/* create, one op, join: the mm is shared, the ops stay sequential */
			struct job j = { optab[k].fn, r, NULL };
			pthread_t th;
			if ((errno = pthread_create(&th, NULL, thread_main, &j)) ||
			    (errno = pthread_join(th, NULL)))
				die("pthread");
			snprintf(name, sizeof name, "thread:%s", j.name);
		} else {
			snprintf(name, sizeof name, "%s", optab[k].fn(r));
		}
		checkpoint(name);
		if (verbose)
			fprintf(stderr, "churn[%d] %lu %s %s\n", (int)getpid(), step, name, note);
	}
}

/* 2 MiB huge pages configured?  /proc/meminfo, read without stdio. */
static bool hugetlb_available(void)
{
	static char buf[8192];
	int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
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
	unsigned long ops = 100;
	seed0 = 1;
	forks_left = 4;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--threads"))
			use_threads = true;
		else if (!strcmp(a, "-v"))
			verbose = true;
		else if (!v)
			usage();
		else if (++i, !strcmp(a, "--seed"))
			seed0 = number(v);
		else if (!strcmp(a, "--ops"))
			ops = (unsigned long)number(v);
		else if (!strcmp(a, "--forks"))
			forks_left = (int)number(v);
		else if (!strcmp(a, "--checkpoints"))
			cp_dir = v;
		else if (!strcmp(a, "--hugetlb") && (!strcmp(v, "auto") || !strcmp(v, "on") || !strcmp(v, "off")))
			hugetlb_mode = v;
		else
			usage();
	}
	pg = (size_t)sysconf(_SC_PAGESIZE);
	bool huge = strcmp(hugetlb_mode, "off") && hugetlb_available();
	if (!huge && !strcmp(hugetlb_mode, "on")) {
		fprintf(stderr, "churn: --hugetlb on, but no 2 MiB huge pages are configured "
				"(echo 8 > /proc/sys/vm/nr_hugepages)\n");
		return 2;
	}
	for (size_t k = 0; k < NOPS && !huge; k++)
		if (optab[k].fn == op_huge)
			optab[k].weight = 0;

	/* pthread_create() mallocs (the DTV).  Park malloc on a roomy heap that
	 * it never trims, so glibc never moves the break under op_brk. */
	mallopt(M_TOP_PAD, 1 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	void *volatile warm = malloc(1);	/* volatile: gcc drops malloc+free pairs */
	free(warm);
	uintptr_t b = ((uintptr_t)syscall(SYS_brk, 0) + pg - 1) & ~(uintptr_t)(pg - 1);
	brk_base = brk_cur = (char *)b;
	if ((char *)syscall(SYS_brk, brk_cur) != brk_cur)
		die("brk");

	/* Unlinked at once: no litter if killed; maps show it "(deleted)". */
	char path[] = "/tmp/mmtrace-churn-XXXXXX";
	if ((file_fd = mkstemp(path)) < 0 || unlink(path) || ftruncate(file_fd, FILE_PAGES * (off_t)pg))
		die("temp file");

	cp_open();
	checkpoint("start");
	run(seed0, ops);
	checkpoint("end");
	return 0;
}
