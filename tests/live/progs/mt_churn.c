/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Several threads map, protect and unmap at once while the main thread takes
 * /proc/self/maps checkpoints (mmtrace/workloads/checkpoint.h) between them:
 * `mt_churn DIR THREADS LOOPS [HOLE_PAGES]`.  Each worker keeps its own few
 * mappings so maps stays a few lines long.  With HOLE_PAGES, each loop also
 * maps a region, faults it in and punches a hole of HOLE_PAGES faulted pages
 * in its middle: the split is stored, the clear of the hole is an exact-fit
 * store without an event, and zapping the pages after it (unmap_region)
 * keeps the hole visible to the other threads well before munmap returns.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "checkpoint.h"

static void die(const char *what)
{
	(void)what;
	_exit(111);
}

static int loops, hole;
static volatile int stop;

static void *worker(void *arg)
{
	long id = (long)arg;
	size_t pg = 4096, n = 8 + id;
	for (int i = 0; i < loops && !stop; i++) {
		char *p = mmap(NULL, n * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			die("mmap");
		p[0] = 1;
		if (mprotect(p + pg, pg, PROT_READ))
			die("mprotect");
		if (munmap(p + 2 * pg, pg))
			die("munmap hole");
		if (munmap(p, n * pg))
			die("munmap");
		if (hole) {
			size_t m = 2 * (size_t)hole;
			char *q = mmap(NULL, m * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (q == MAP_FAILED)
				die("mmap hole region");
			for (size_t k = 0; k < m; k++)
				q[k * pg] = 1;
			size_t a = (size_t)hole / 2, b = a + (size_t)hole;
			if (munmap(q + a * pg, (size_t)hole * pg))
				die("munmap hole region");
			/* the two pieces one by one: another thread's mapping may
			 * already sit in the hole, and unmapping the whole span
			 * would take it away (its next write faults) */
			if (munmap(q, a * pg) || munmap(q + b * pg, (m - b) * pg))
				die("munmap region");
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	cp_dir = argv[1];
	int nt = atoi(argv[2]);
	loops = atoi(argv[3]);
	hole = argc > 4 ? atoi(argv[4]) : 0;
	pthread_t th[16];
	cp_open();
	checkpoint("start");
	for (long i = 0; i < nt && i < 16; i++)
		if (pthread_create(&th[i], NULL, worker, (void *)i))
			die("pthread_create");
	checkpoint("threads");
	for (int k = 0; k < 2000 && !stop; k++)
		checkpoint("during");
	for (int i = 0; i < nt && i < 16; i++)
		pthread_join(th[i], NULL);
	checkpoint("joined");
	return 0;
}
