/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Built with -m32: maps, splits by mprotect, punches a hole and unmaps,
 * taking /proc/self/maps checkpoints (mmtrace/workloads/checkpoint.h).
 * `m32_maps DIR`.  Its syscalls are ia32 ones.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/mman.h>

#include "checkpoint.h"

static void die(const char *what)
{
	(void)what;
	_exit(111);
}

int main(int argc, char **argv)
{
	size_t pg = 4096;
	if (argc < 2)
		return 2;
	cp_dir = argv[1];
	cp_open();
	checkpoint("start");
	char *p = mmap(NULL, 16 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	checkpoint("mmap");
	if (mprotect(p, 16 * pg, PROT_READ))
		die("mprotect");
	checkpoint("mprotect_whole");
	if (munmap(p + 4 * pg, 4 * pg))
		die("munmap hole");
	checkpoint("munmap_hole");
	if (munmap(p, 16 * pg))
		die("munmap");
	checkpoint("munmap");
	return 0;
}
