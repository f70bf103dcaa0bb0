/*
 * getppid.c - getppid() N times: a syscall mmtrace does not follow.
 *
 *   getppid [-n ITERATIONS] [--warmup W]
 *
 * What tracing costs every other syscall on the host: mmtrace's syscall
 * hooks put all syscalls on the kernel's tracing path, whichever it follows.
 * Prints one machine-readable line on stdout (key=value, space separated):
 *   MMBENCH workload=getppid iterations=N elapsed_ns=T us_per_iter=U iters_per_s=R
 * elapsed_ns covers the N timed iterations only (CLOCK_MONOTONIC).
 * Build: cc -O2 -Wall getppid.c -o getppid
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BENCH_NAME "getppid"
#include "bench.h"

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "iterations", required_argument, 0, 'n' },
		{ "warmup", required_argument, 0, 'w' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	long long n = 2000000, warm = 100000;
	int c;

	while ((c = getopt_long(argc, argv, "n:w:h", opts, NULL)) != -1) {
		switch (c) {
		case 'n': n = atoll(optarg); break;
		case 'w': warm = atoll(optarg); break;
		case 'h':
			printf("usage: getppid [-n ITERATIONS] [--warmup W]\n");
			return 0;
		default: return 2;
		}
	}
	if (optind < argc)
		n = atoll(argv[optind]);
	if (n <= 0)
		return 2;
	/* syscall(): glibc's getppid() is a plain syscall too, but be sure. */
	for (long long i = 0; i < warm; i++)
		syscall(SYS_getppid);

	uint64_t c0 = cpu_ns();
	uint64_t t0 = now_ns();
	for (long long i = 0; i < n; i++)
		syscall(SYS_getppid);
	uint64_t dt = now_ns() - t0;
	uint64_t cdt = cpu_ns() - c0;

	bench_print(n, dt);
	bench_print_cpu(n, cdt);
	printf("\n");
	fflush(stdout);
	return 0;
}
