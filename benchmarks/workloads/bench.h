/*
 * bench.h - what every benchmark workload here shares: the clock, the
 * error exit, and the fields of the MMBENCH line the scripts parse
 * (benchmarks/_common.py: parse_result).  Define BENCH_NAME first.
 */
#ifndef MMTRACE_BENCH_H
#define MMTRACE_BENCH_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CLOCK_MONOTONIC, the clock of mmtrace's ts (bpf_ktime_get_ns). */
static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* This process's CPU time, user + system: what the BPF programs cost it
 * (they run in its context) without the time it waited for a CPU, which on
 * a shared machine swamps the monotonic figure. */
static inline uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void die(const char *what)
{
	fprintf(stderr, BENCH_NAME ": %s: %s\n", what, strerror(errno));
	exit(1);
}

/* The MMBENCH line's common fields for n timed iterations in dt ns; the
 * caller may add its own " key=value" fields, then ends the line. */
static inline void bench_print(long long n, uint64_t dt)
{
	printf("MMBENCH workload=" BENCH_NAME " iterations=%lld elapsed_ns=%llu us_per_iter=%.4f iters_per_s=%.1f",
	       n, (unsigned long long)dt, dt / 1e3 / (double)n, (double)n * 1e9 / (double)dt);
}

/* Optional fields: the CPU time (cpu_ns()) of the n timed iterations. */
static inline void bench_print_cpu(long long n, uint64_t cpu_dt)
{
	printf(" cpu_ns=%llu cpu_us_per_iter=%.4f", (unsigned long long)cpu_dt, cpu_dt / 1e3 / (double)n);
}

#endif /* MMTRACE_BENCH_H */
