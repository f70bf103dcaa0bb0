/*
 * demo.c - a deterministic tour of the address-space operations that mmtrace
 * has to model: splits, merges, holes, mremap in place / moved / fixed,
 * MAP_FIXED replacement, file mappings, brk, threads, fork, exec, hugetlb.
 *
 *   demo [--checkpoints DIR] [--sleep-ms N]
 *
 * One line on stderr per step.  With --checkpoints, every step also appends
 * a snapshot of /proc/self/maps to DIR/<pid>.txt (format: see checkpoint()).
 * Build: cc -O2 -Wall -pthread demo.c -o demo
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
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

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#define HPAGE (2UL << 20)
#define RW (PROT_READ | PROT_WRITE)
#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)

extern char **environ;

static size_t pg;
static long sleep_ms;
static const char *who = "demo";

static void die(const char *what)
{
	fprintf(stderr, "%s[%d]: %s: %s\n", who, (int)getpid(), what, strerror(errno));
	_exit(1);
}

#include "checkpoint.h"

/* ---- steps --------------------------------------------------------------- */
static char msg[512];

/* Report a finished step: one stderr line, a checkpoint, an optional pause. */
static void step(const char *op, const char *fmt, ...)
{
	int n = snprintf(msg, sizeof msg, "%s: ", who);
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(msg + n, sizeof msg - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof msg - 2)
		n = (int)sizeof msg - 2;
	msg[n++] = '\n';
	if (write(2, msg, (size_t)n) < 0) {
		/* stderr closed: keep going, the checkpoints still matter */
	}
	checkpoint(op);
	if (sleep_ms > 0) {
		struct timespec ts = { sleep_ms / 1000, (sleep_ms % 1000) * 1000000L };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
}

/*
 * Fixed hint addresses far away from the binary, heap and libraries, so the
 * demo's anonymous mappings have no neighbours to merge with and the VMA
 * counts of each step are exactly the ones described.  Only hints: without
 * MAP_FIXED the kernel still picks another place if one is taken.
 */
static void *hint(int i)
{
	return (void *)(0x200000000000UL + (unsigned long)i * 0x40000000UL);
}

static void *map(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = mmap(addr, len, prot, flags, fd, off);
	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

static void touch(char *p, size_t npages)
{
	for (size_t i = 0; i < npages; i++)
		((volatile char *)p)[i * pg] = 1;
}

static void *thread_fn(void *arg)
{
	char *m = map(NULL, 4 * pg, RW, ANON, -1, 0);
	touch(m, 4);
	*(void **)arg = m;
	if (munmap(m, 4 * pg))
		die("thread munmap");
	return NULL;
}

/* HugePages_Free from /proc/meminfo, read without stdio (see checkpoint()). */
static long huge_free(void)
{
	static char buf[8192];
	int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strstr(buf, "Hugepagesize:");
	if (!p || strtol(p + 13, NULL, 10) != 2048)
		return 0;
	p = strstr(buf, "HugePages_Free:");
	return p ? strtol(p + 15, NULL, 10) : 0;
}

static void fork_child(void)
{
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		who = "demo child";
		cp_open();
		step("start", "forked from %d", (int)getppid());
		char *c = map(NULL, 8 * pg, RW, ANON, -1, 0);
		touch(c, 8);
		step("child-mmap", "mmap anon 8 pages rw at %p", c);
		if (mprotect(c, 2 * pg, PROT_READ))
			die("mprotect");
		step("child-mprotect", "mprotect first 2 pages of %p to r (2 VMAs)", c);
		if (munmap(c, 8 * pg))
			die("munmap");
		step("child-munmap", "munmap all 8 pages of %p", c);
		step("end", "exit 0");
		_exit(0);
	}
	int st;
	if (waitpid(pid, &st, 0) < 0)
		die("waitpid");
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		errno = ECHILD;
		die("child failed");
	}
	step("fork-wait", "forked child %d did mmap/mprotect/munmap and exited 0", (int)pid);
}

static void fork_exec_true(void)
{
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		char *argv[] = { "true", NULL };
		execve("/bin/true", argv, environ);
		_exit(127);
	}
	int st;
	if (waitpid(pid, &st, 0) < 0)
		die("waitpid");
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		errno = ECHILD;
		die("/bin/true failed");
	}
	step("fork-exec", "child %d exec'd /bin/true and exited 0", (int)pid);
}

static void hugetlb_steps(void)
{
	long nfree = huge_free();
	if (nfree < 2) {
		step("hugetlb-skip", "only %ld free 2 MiB huge pages (need 2; set "
		     "vm.nr_hugepages); skipping hugetlb steps", nfree);
		return;
	}
	int hf = ANON | MAP_HUGETLB | MAP_HUGE_2MB;
	char *h = mmap(NULL, 2 * HPAGE, RW, hf, -1, 0);
	if (h == MAP_FAILED) {
		step("hugetlb-skip", "MAP_HUGETLB mmap failed (%s); skipping hugetlb steps",
		     strerror(errno));
		return;
	}
	step("hugetlb-mmap", "mmap 2 huge pages (2 MiB) rw at %p", h);
	if (mprotect(h + HPAGE, HPAGE, PROT_READ))
		die("hugetlb mprotect");
	step("hugetlb-mprotect", "mprotect second huge page of %p to r (2 VMAs)", h);
	if (munmap(h, HPAGE))
		die("hugetlb munmap");
	step("hugetlb-munmap", "munmap first huge page of %p", h);
	/* NORESERVE takes no reservation, so it maps even with no free pages;
	 * it is never touched, which is what makes that safe. */
	char *nr = map(NULL, HPAGE, RW, hf | MAP_NORESERVE, -1, 0);
	step("hugetlb-noreserve", "mmap 1 huge page MAP_NORESERVE at %p", nr);
}

static void usage(void)
{
	fprintf(stderr, "usage: demo [--checkpoints DIR] [--sleep-ms N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--checkpoints") && i + 1 < argc) {
			cp_dir = argv[++i];
		} else if (!strcmp(argv[i], "--sleep-ms") && i + 1 < argc) {
			char *end;
			sleep_ms = strtol(argv[++i], &end, 10);
			if (*end || sleep_ms < 0)
				usage();
		} else {
			usage();
		}
	}
	pg = (size_t)sysconf(_SC_PAGESIZE);

	/* pthread_create() mallocs (the DTV).  Give malloc a roomy heap now and
	 * forbid trimming, so glibc never moves the break between our own brk
	 * steps, and its allocation is not a surprise mid-demo. */
	mallopt(M_TOP_PAD, 1 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	void *volatile warm = malloc(1); /* volatile: gcc drops malloc+free pairs */
	free(warm);

	cp_open();
	step("start", "pid %d", (int)getpid());

	/* split / merge / hole on one 16-page mapping */
	char *a = map(hint(0), 16 * pg, RW, ANON, -1, 0);
	touch(a, 16);
	step("mmap-anon", "mmap anon 16 pages rw at %p", a);
	if (mprotect(a + 6 * pg, 4 * pg, PROT_READ))
		die("mprotect");
	step("mprotect-middle", "mprotect middle 4 pages of %p to r (3 VMAs: 6+4+6)", a);
	if (mprotect(a + 6 * pg, 4 * pg, RW))
		die("mprotect");
	step("mprotect-back", "mprotect them back to rw (merged: 1 VMA of 16)");
	if (munmap(a + 7 * pg, 2 * pg))
		die("munmap");
	step("munmap-hole", "munmap pages 7-8 of %p (hole: 7+7 pages)", a);

	/* mremap: in place, forced to move, moved to a chosen address, shrunk */
	char *b = map(hint(1), 4 * pg, RW, ANON, -1, 0);
	touch(b, 4);
	step("mmap-anon-b", "mmap anon 4 pages rw at %p", b);
	char *q = mremap(b, 4 * pg, 8 * pg, 0);
	const char *how = "in place";
	if (q == MAP_FAILED) {
		q = mremap(b, 4 * pg, 8 * pg, MREMAP_MAYMOVE);
		how = "moved (in place failed)";
		if (q == MAP_FAILED)
			die("mremap grow");
	}
	step("mremap-grow", "mremap grow %p 4 -> 8 pages %s, now %p", b, how, q);
	/* A read-only page right after it: cannot merge, blocks in-place growth. */
	char *blk = map(q + 8 * pg, pg, PROT_READ, ANON, -1, 0);
	step("mmap-blocker", "mmap 1 page r at %p%s", blk,
	     blk == q + 8 * pg ? " (right after it)" : " (not adjacent: hint taken)");
	char *r = mremap(q, 8 * pg, 12 * pg, 0);
	how = "in place";
	if (r == MAP_FAILED) {
		r = mremap(q, 8 * pg, 12 * pg, MREMAP_MAYMOVE);
		how = "with MREMAP_MAYMOVE (in place blocked)";
		if (r == MAP_FAILED)
			die("mremap maymove");
	}
	step("mremap-grow-move", "mremap grow %p 8 -> 12 pages %s, now %p", q, how, r);
	/* Reserve then unmap the target: MREMAP_FIXED would silently replace
	 * anything there, and this way the target is known free. */
	char *t = map(hint(2), 12 * pg, PROT_NONE, ANON | MAP_NORESERVE, -1, 0);
	if (munmap(t, 12 * pg))
		die("munmap");
	char *s = mremap(r, 12 * pg, 12 * pg, MREMAP_MAYMOVE | MREMAP_FIXED, t);
	if (s == MAP_FAILED)
		die("mremap fixed");
	step("mremap-fixed", "mremap MAYMOVE|FIXED %p -> %p (12 pages)", r, s);
	if (mremap(s, 12 * pg, 6 * pg, 0) == MAP_FAILED)
		die("mremap shrink");
	step("mremap-shrink", "mremap shrink %p 12 -> 6 pages", s);
	map(s + 2 * pg, 2 * pg, PROT_READ, ANON | MAP_FIXED, -1, 0);
	step("mmap-fixed-over", "MAP_FIXED anon 2 pages r over pages 2-3 of %p (3 VMAs)", s);

	/* file-backed: shared and private views of a temp file, then unlinked */
	static char path[] = "/tmp/mmtrace-demo-XXXXXX";
	static char filebuf[4 * 65536];
	int fd = mkstemp(path);
	if (fd < 0)
		die("mkstemp");
	memset(filebuf, 'm', 4 * pg);
	if (write(fd, filebuf, 4 * pg) != (ssize_t)(4 * pg))
		die("write temp file");
	char *fs = map(NULL, 4 * pg, RW, MAP_SHARED, fd, 0);
	fs[0] = 'M';
	step("mmap-file-shared", "mmap %s 4 pages MAP_SHARED rw at %p", path, fs);
	char *fp = map(NULL, 2 * pg, RW, MAP_PRIVATE, fd, (off_t)pg);
	fp[0] = 'P'; /* COW: private copy of one page */
	step("mmap-file-private", "mmap %s pages 1-2 MAP_PRIVATE rw at %p", path, fp);
	if (unlink(path) || close(fd))
		die("unlink");
	step("file-unlink", "unlinked %s; both mappings remain, shown (deleted)", path);

	/* brk via the raw syscall: sbrk()/malloc would hide what the kernel sees */
	unsigned long cur = (unsigned long)syscall(SYS_brk, 0);
	unsigned long want = cur + 8 * pg;
	if ((unsigned long)syscall(SYS_brk, want) != want)
		die("brk grow");
	touch((char *)cur, 8);
	step("brk-grow", "brk %#lx -> %#lx (+8 pages)", cur, want);
	if ((unsigned long)syscall(SYS_brk, cur) != cur)
		die("brk shrink");
	step("brk-shrink", "brk %#lx -> %#lx (back)", want, cur);

	/* a thread shares the mm: its mmap/munmap land in the same tree */
	pthread_t th;
	void *tm = NULL;
	if ((errno = pthread_create(&th, NULL, thread_fn, &tm)) || (errno = pthread_join(th, NULL)))
		die("pthread");
	step("thread-mmap-munmap", "thread mmap+munmap 4 pages at %p (and its stack)", tm);

	fork_child();
	fork_exec_true();
	hugetlb_steps();
	step("end", "exit 0");
	return 0;
}
