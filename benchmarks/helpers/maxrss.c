/*
 * maxrss.c - run a command and write its peak RSS (KiB) to a file.
 *
 *   maxrss OUTFILE CMD [ARGS...]
 *
 * Writes "maxrss_kb=N" (wait4's ru_maxrss: the command and all of its
 * waited-for descendants) to OUTFILE and exits with the command's status.
 * Why a C helper: ru_maxrss survives exec, so anything forked straight from
 * a large Python process (the benchmark driver) would report the driver's
 * RSS.  This process is small, so its children start from a small figure.
 * Build: cc -O2 -Wall maxrss.c -o maxrss
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct rusage ru;
	int status;
	pid_t pid;
	FILE *f;

	if (argc < 3) {
		fprintf(stderr, "usage: maxrss OUTFILE CMD [ARGS...]\n");
		return 2;
	}
	pid = fork();
	if (pid < 0) {
		perror("maxrss: fork");
		return 127;
	}
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		fprintf(stderr, "maxrss: %s: %s\n", argv[2], strerror(errno));
		_exit(127);
	}
	/* A signal for the group (timeout) reaches the command too; wait for it. */
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	if (wait4(pid, &status, 0, &ru) != pid) {
		perror("maxrss: wait4");
		return 127;
	}
	f = fopen(argv[1], "w");
	if (f) {
		fprintf(f, "maxrss_kb=%ld\n", ru.ru_maxrss);
		fclose(f);
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
