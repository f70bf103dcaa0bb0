/*
 * Seeded hugetlb churn, for checking mmtrace's reservation model against the
 * kernel's counters: a parent and forked children work AT THE SAME TIME on
 * 2 MiB MAP_HUGETLB|MAP_PRIVATE pages (mmap, fault, mprotect, munmap,
 * madvise(MADV_DONTNEED), fork, exit), and, with --shared, on a hugetlb
 * memfd (MAP_SHARED faults, MADV_REMOVE).
 *
 *   hugetlb_churn --seed S [--ops N] [--pages P] [--procs K] [--shared] [--zap-shared] [-v]
 *
 * Every process keeps at most P huge pages mapped; a fault the pool cannot
 * serve (a child's COW or read of a page it has no reservation for) raises
 * SIGBUS, which is caught and counted: the workload goes on.  Exit 0, or 2
 * on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define H (2UL << 20)
#define MAXMAP 8

struct region {
	char *p;
	unsigned long n;	/* huge pages */
	int shared;
	int kids;	/* faulted before a fork whose children are alive */
};

static struct region reg[MAXMAP];
static unsigned long long rng;
static int verbose, use_shared, memfd = -1;
static unsigned long max_pages = 6, nmemfd = 8;
static sigjmp_buf bus_jmp;
static volatile sig_atomic_t in_touch;
static long sigbus;

static unsigned long rnd(unsigned long n)
{
	/* xorshift64*: the same sequence for the same seed, per process */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return n ? (rng * 2685821657736338717ULL >> 33) % n : 0;
}

static void on_bus(int sig)
{
	(void)sig;
	if (in_touch)
		siglongjmp(bus_jmp, 1);
	_exit(3);
}

static void note(const char *op, char *p, unsigned long n, long r)
{
	if (verbose)
		fprintf(stderr, "%d %s %p %lu = %ld\n", getpid(), op, (void *)p, n, r);
}

static unsigned long mapped(void)
{
	unsigned long s = 0;

	for (int i = 0; i < MAXMAP; i++)
		s += reg[i].p ? reg[i].n : 0;
	return s;
}

static void touch(char *p, int write)
{
	in_touch = 1;
	if (sigsetjmp(bus_jmp, 1) == 0) {
		if (write)
			*(volatile char *)p = 1;
		else
			(void)*(volatile char *)p;
	} else {
		sigbus++;
	}
	in_touch = 0;
}

/* zap: a region the caller will unmap pages of.  The reservation owner does
 * not zap pages its live children still share (unless --zap-shared): the
 * kernel then restores the reservation in the map at once but in
 * resv_huge_pages only when the child drops the page (__unmap_hugepage_range,
 * free_huge_folio), so the counter can go below zero meanwhile, which
 * mmtrace reports as the kernel's counter underflow it is. */
static int zap_shared;

static int pick_for(int zap)
{
	int k = (int)rnd(MAXMAP);

	for (int i = 0; i < MAXMAP; i++) {
		int j = (k + i) % MAXMAP;
		if (reg[j].p && !(zap && reg[j].kids && !zap_shared))
			return j;
	}
	return -1;
}

static int pick(void)
{
	return pick_for(0);
}

/* The mapping keeps the pieces munmap leaves: one region per piece. */
static void forget(int i, unsigned long lo, unsigned long n)
{
	struct region r = reg[i];
	unsigned long hi = lo + n;

	reg[i].p = NULL;
	if (lo > 0) {
		reg[i] = r;
		reg[i].n = lo;
	}
	if (hi < r.n) {
		for (int j = 0; j < MAXMAP; j++) {
			if (!reg[j].p) {
				reg[j] = r;
				reg[j].p = r.p + hi * H;
				reg[j].n = r.n - hi;
				return;
			}
		}
		/* no slot left: drop the rest of it too */
		munmap(r.p + hi * H, (r.n - hi) * H);
	}
}

static void op_mmap(void)
{
	unsigned long n = 1 + rnd(3);
	int shared = use_shared && memfd >= 0 && rnd(3) == 0;
	int slot = -1;
	char *p;

	for (int i = 0; i < MAXMAP; i++)
		if (!reg[i].p)
			slot = i;
	if (slot < 0 || mapped() + n > max_pages)
		return;
	if (shared) {
		unsigned long off = rnd(nmemfd - n + 1);
		p = mmap(NULL, n * H, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, off * H);
	} else {
		int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB;
		if (rnd(8) == 0)
			flags |= MAP_NORESERVE;
		p = mmap(NULL, n * H, PROT_READ | PROT_WRITE, flags, -1, 0);
	}
	note("mmap", p, n, p == MAP_FAILED ? -errno : 0);
	if (p == MAP_FAILED)
		return;
	reg[slot] = (struct region){ p, n, shared, 0 };
}

static void op_touch(void)
{
	int i = pick();

	if (i < 0)
		return;
	unsigned long k = rnd(reg[i].n);
	int w = rnd(3) != 0;
	/* a write into a read-only piece would be a SIGSEGV: mprotect back first */
	mprotect(reg[i].p + k * H, H, PROT_READ | PROT_WRITE);
	touch(reg[i].p + k * H + rnd(H / 4096) * 4096, w);
	note(w ? "write" : "read", reg[i].p + k * H, 1, 0);
}

static void op_mprotect(void)
{
	int i = pick();

	if (i < 0)
		return;
	unsigned long lo = rnd(reg[i].n), n = 1 + rnd(reg[i].n - lo);
	int r = mprotect(reg[i].p + lo * H, n * H, rnd(2) ? PROT_READ : PROT_READ | PROT_WRITE);
	note("mprotect", reg[i].p + lo * H, n, r);
}

static void op_munmap(void)
{
	int i = pick_for(1);

	if (i < 0)
		return;
	unsigned long lo = rnd(reg[i].n), n = 1 + rnd(reg[i].n - lo);
	int r = munmap(reg[i].p + lo * H, n * H);
	note("munmap", reg[i].p + lo * H, n, r);
	if (r == 0)
		forget(i, lo, n);
}

static void op_madvise(void)
{
	int i = pick_for(1);

	if (i < 0)
		return;
	unsigned long lo = rnd(reg[i].n), n = 1 + rnd(reg[i].n - lo);
	int adv = reg[i].shared && rnd(2) ? MADV_REMOVE : MADV_DONTNEED;
	int r = madvise(reg[i].p + lo * H, n * H, adv);
	note(adv == MADV_REMOVE ? "madvise-remove" : "madvise-dontneed", reg[i].p + lo * H, n, r);
}

static void work(unsigned long ops, int procs);

static pid_t op_fork(int procs)
{
	if (procs <= 0)
		return 0;
	static unsigned long long nforks;

	fflush(stderr);
	nforks++;
	pid_t c = fork();
	if (c == 0) {
		/* the child's sequence follows from the seed alone (not its pid),
		 * so a seed names one workload */
		rng = rng * 31 + nforks;
		nforks = 0;
		for (int i = 0; i < MAXMAP; i++)
			reg[i].kids = 0;
		/* the child works on its copies and on mappings of its own while the
		 * parent goes on: no wait, so both change the counters at once */
		work(20 + rnd(40), procs - 1);
		note("exit", NULL, 0, sigbus);
		_exit(0);
	}
	note("fork", NULL, 0, c);
	if (c > 0)
		for (int i = 0; i < MAXMAP; i++)
			reg[i].kids = reg[i].p != NULL;
	return c;
}

static void work(unsigned long ops, int procs)
{
	pid_t kids[64];
	int nk = 0;

	for (unsigned long k = 0; k < ops; k++) {
		switch (rnd(12)) {
		case 0: case 1:
			op_mmap();
			break;
		case 2: case 3: case 4:
			op_touch();
			break;
		case 5: case 6:
			op_mprotect();
			break;
		case 7:
			op_munmap();
			break;
		case 8: case 9:
			op_madvise();
			break;
		case 10:
			if (nk < 64 && rnd(3) == 0) {
				pid_t c = op_fork(procs);
				if (c > 0)
					kids[nk++] = c;
			}
			break;
		default:
			if (nk && rnd(2))
				waitpid(kids[--nk], NULL, 0);
			if (!nk)
				for (int i = 0; i < MAXMAP; i++)
					reg[i].kids = 0;
			break;
		}
	}
	while (nk)
		waitpid(kids[--nk], NULL, 0);
	/* leave the rest mapped: exit_mmap tears it down */
}

int main(int argc, char **argv)
{
	unsigned long long seed = 1;
	unsigned long ops = 200;
	int procs = 3;

	for (int i = 1; i < argc; i++) {
		char *end = NULL;
		if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = strtoull(argv[++i], &end, 0);
		else if (!strcmp(argv[i], "--ops") && i + 1 < argc)
			ops = strtoul(argv[++i], &end, 0);
		else if (!strcmp(argv[i], "--pages") && i + 1 < argc)
			max_pages = strtoul(argv[++i], &end, 0);
		else if (!strcmp(argv[i], "--procs") && i + 1 < argc)
			procs = (int)strtol(argv[++i], &end, 0);
		else if (!strcmp(argv[i], "--shared"))
			use_shared = 1;
		else if (!strcmp(argv[i], "--zap-shared"))
			zap_shared = 1;
		else if (!strcmp(argv[i], "-v"))
			verbose = 1;
		else {
			fprintf(stderr, "usage: hugetlb_churn --seed S [--ops N] [--pages P] [--procs K] [--shared] [--zap-shared] [-v]\n");
			return 2;
		}
		if (end && *end) {
			fprintf(stderr, "hugetlb_churn: bad number %s\n", argv[i]);
			return 2;
		}
	}
	rng = seed * 0x9E3779B97F4A7C15ULL + 1;
	signal(SIGBUS, on_bus);
	if (use_shared) {
		memfd = memfd_create("mmtrace-churn", MFD_HUGETLB);
		if (memfd < 0 || ftruncate(memfd, nmemfd * H) < 0) {
			perror("hugetlb_churn: memfd");
			return 1;
		}
	}
	work(ops, procs);
	if (memfd >= 0)
		close(memfd);
	printf("hugetlb_churn: seed %llu done, %ld SIGBUS\n", seed, sigbus);
	return 0;
}
