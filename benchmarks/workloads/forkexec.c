/*
 * forkexec.c - fork + execve("/bin/true") + waitpid, N times.
 *
 *   forkexec [-n ITERATIONS] [--warmup W] [--exe PATH]
 *
 * Prints one machine-readable line on stdout (key=value, space separated):
 *   MMBENCH workload=forkexec iterations=N elapsed_ns=T us_per_iter=U iters_per_s=R
 * elapsed_ns covers the N timed iterations only (CLOCK_MONOTONIC).
 * Build: cc -O2 -Wall forkexec.c -o forkexec
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <sys/wait.h>
#include <unistd.h>

#define BENCH_NAME "forkexec"
#include "bench.h"

static void one(const char *exe)
{
	char *const av[] = { (char *)exe, NULL };
	char *const ev[] = { NULL };
	int status;
	pid_t pid = fork();

	if (pid < 0)
		die("fork");
	if (pid == 0) {
		execve(exe, av, ev);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "forkexec: %s failed (status 0x%x)\n", exe, status);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "iterations", required_argument, 0, 'n' },
		{ "warmup", required_argument, 0, 'w' },
		{ "exe", required_argument, 0, 'e' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	long long n = 1000, warm = 20;
	const char *exe = "/bin/true";
	int c;

	while ((c = getopt_long(argc, argv, "n:w:e:h", opts, NULL)) != -1) {
		switch (c) {
		case 'n': n = atoll(optarg); break;
		case 'w': warm = atoll(optarg); break;
		case 'e': exe = optarg; break;
		case 'h':
			printf("usage: forkexec [-n ITERATIONS] [--warmup W] [--exe PATH]\n");
			return 0;
		default: return 2;
		}
	}
	if (optind < argc)
		n = atoll(argv[optind]);
	if (n <= 0)
		return 2;
	for (long long i = 0; i < warm; i++)
		one(exe);

	uint64_t t0 = now_ns();
	for (long long i = 0; i < n; i++)
		one(exe);
	uint64_t dt = now_ns() - t0;

	bench_print(n, dt);
	printf("\n");
	fflush(stdout);
	return 0;
}
