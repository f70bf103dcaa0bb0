/*
 * mmloop.c - the benchmark loop: mmap 16 anonymous pages, mprotect the
 * middle 4 pages read-only, munmap all 16; N times.
 *
 *   mmloop [-n ITERATIONS] [--sleep-ns NS | --rate LOOPS_PER_S] [--warmup W]
 *
 * Pacing: with --sleep-ns NS (or --rate R, i.e. NS = 1e9 / R) iteration i
 * starts at t0 + i*NS, busy-waiting on CLOCK_MONOTONIC until then (no sleep
 * syscall: no extra events, no scheduler latency).  A late iteration is not
 * waited for, so a short stall is caught up.  0 (default) = as fast as possible.
 *
 * Prints one machine-readable line on stdout (key=value, space separated):
 *   MMBENCH workload=mmloop iterations=N elapsed_ns=T us_per_iter=U
 *           iters_per_s=R target_period_ns=P start_ns=S pid=PID
 * elapsed_ns covers the N timed iterations only (CLOCK_MONOTONIC), not
 * process start, warm-up or exit; start_ns is their CLOCK_MONOTONIC start,
 * the clock of mmtrace's ts, so the timed window can be cut out of a trace.
 * Build: cc -O2 -Wall mmloop.c -o mmloop
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <sys/mman.h>
#include <unistd.h>

#define BENCH_NAME "mmloop"
#include "bench.h"

static void one_loop(size_t pg)
{
	char *p = mmap(NULL, 16 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap");
	if (mprotect(p + 6 * pg, 4 * pg, PROT_READ))
		die("mprotect");
	if (munmap(p, 16 * pg))
		die("munmap");
}

static void usage(FILE *f)
{
	fprintf(f, "usage: mmloop [-n ITERATIONS] [--sleep-ns NS | --rate LOOPS_PER_S] [--warmup W]\n"
		   "  one loop = mmap 16 pages, mprotect middle 4 pages, munmap 16 pages\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "iterations", required_argument, 0, 'n' },
		{ "sleep-ns", required_argument, 0, 's' },
		{ "rate", required_argument, 0, 'r' },
		{ "warmup", required_argument, 0, 'w' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	long long n = 100000, warm = 1000;
	double period = 0;	/* ns between iteration starts */
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	int c;

	while ((c = getopt_long(argc, argv, "n:s:r:w:h", opts, NULL)) != -1) {
		switch (c) {
		case 'n': n = atoll(optarg); break;
		case 's': period = atof(optarg); break;
		case 'r': period = atof(optarg) > 0 ? 1e9 / atof(optarg) : 0; break;
		case 'w': warm = atoll(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc)	/* also accept a bare iteration count */
		n = atoll(argv[optind]);
	if (n <= 0) {
		usage(stderr);
		return 2;
	}
	for (long long i = 0; i < warm; i++)
		one_loop(pg);

	uint64_t c0 = cpu_ns();
	uint64_t t0 = now_ns();
	for (long long i = 0; i < n; i++) {
		if (period > 0) {
			uint64_t due = t0 + (uint64_t)(period * (double)i);

			while (now_ns() < due)
				;
		}
		one_loop(pg);
	}
	uint64_t dt = now_ns() - t0;
	uint64_t cdt = cpu_ns() - c0;

	bench_print(n, dt);
	bench_print_cpu(n, cdt);
	printf(" target_period_ns=%.0f start_ns=%llu pid=%d\n", period, (unsigned long long)t0, (int)getpid());
	fflush(stdout);
	return 0;
}
