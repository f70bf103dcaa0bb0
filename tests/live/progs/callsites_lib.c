/* SPDX-License-Identifier: GPL-2.0 */
/* The library tests/live/progs/callsites.c dlopens: lib_only_mmap() maps
 * and unmaps n times (each unmap by munmap from the same function). */
#include <stdlib.h>
#include <sys/mman.h>

__attribute__((noinline)) int lib_only_mmap(int n)
{
	int done = 0;

	for (int i = 0; i < n; i++) {
		char *p = mmap(NULL, 8 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			abort();
		done += munmap(p, 8 * 4096) == 0;
	}
	return done;
}
