/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Calls that fail part-way after changing some VMAs, with a checkpoint after
 * each (mmtrace/workloads/checkpoint.h): `partial_fail DIR`.
 *
 * - mremap(MREMAP_MAYMOVE|MREMAP_FIXED) of a range of several VMAs, the last
 *   one sealed: since "mm/mremap: permit mremap() move of multiple VMAs"
 *   (v6.17) remap_move() moves them one by one and stops at the first it
 *   refuses, so the ones before it are moved; before, a range of several
 *   VMAs is -EFAULT and nothing moves.
 * - munmap of a range ending in a sealed VMA (-EPERM; the split of the first
 *   VMA, if any, stays: vms_gather_munmap_vmas()).
 * - mprotect over a hole (-ENOMEM after the VMAs before it changed).
 * - mlock over a hole (-ENOMEM after the VMAs before it were locked: splits).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "checkpoint.h"

#ifndef __NR_mseal
#define __NR_mseal 462
#endif

static void die(const char *what)
{
	perror(what);
	_exit(111);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	cp_dir = argv[1];
	cp_open();
	const size_t pg = 4096;
	checkpoint("start");

	/* four VMAs: rw | r | rw | rw sealed */
	char *a = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *b = mmap(NULL, 16 * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED)
		die("mmap");
	for (int i = 0; i < 4; i++)
		a[i * pg] = 1;
	if (mprotect(a + pg, pg, PROT_READ))
		die("mprotect");
	int sealed = syscall(__NR_mseal, a + 3 * pg, pg, 0) == 0;
	checkpoint("setup");
	long r = (long)mremap(a, 4 * pg, 4 * pg, MREMAP_MAYMOVE | MREMAP_FIXED, b + 4 * pg);
	fprintf(stderr, "partial_fail: sealed=%d mremap-multi=%ld\n", sealed, r == -1 ? -1L : 0L);
	checkpoint("mremap-multi");
	r = munmap(a + 2 * pg + pg / 2 * 0, 2 * pg);
	checkpoint("munmap-sealed");

	/* three pages with a hole in the middle */
	char *c = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED || munmap(c + pg, pg))
		die("mmap c");
	checkpoint("hole");
	if (mprotect(c, 3 * pg, PROT_READ) == 0)
		die("mprotect over a hole succeeded");
	checkpoint("mprotect-hole");
	char *d = mmap(NULL, 6 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d == MAP_FAILED || munmap(d + 4 * pg, pg))
		die("mmap d");
	(void)mlock(d + pg, 4 * pg);	/* splits at d+pg, then -ENOMEM at the hole */
	checkpoint("mlock-hole");
	return 0;
}
