/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Checkpoints shared by the bundled workloads (demo.c, churn.c): included
 * once by each program, after it defines die().  Format (read by
 * mmtrace.events.procmaps.read_checkpoints):
 *
 *   # checkpoint pid=<pid> seq=<n> op=<op> t_before=<ns> t_after=<ns>
 *   <the /proc/self/maps text verbatim>
 *   # end
 */
#ifndef MMTRACE_WORKLOAD_CHECKPOINT_H
#define MMTRACE_WORKLOAD_CHECKPOINT_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what);

/* ---- checkpoints ---------------------------------------------------------
 * Ground truth for the tracer: /proc/self/maps bracketed by two
 * CLOCK_MONOTONIC readings (the clock bpf_ktime_get_ns() uses).  Everything
 * here is static and the file is opened before the first op, so taking a
 * checkpoint never changes the address space it records: no malloc, no stdio
 * streams (snprintf into a static buffer does not allocate).
 */
static char cp_maps[1 << 20], cp_hdr[256], cp_path[4096];
static const char *cp_dir;
static int cp_fd = -1;
static unsigned long cp_seq;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Called at start and again in every forked child: the file is per pid. */
static void cp_open(void)
{
	if (!cp_dir)
		return;
	if (cp_fd >= 0)
		close(cp_fd);
	snprintf(cp_path, sizeof cp_path, "%s/%d.txt", cp_dir, (int)getpid());
	if ((cp_fd = open(cp_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0)
		die(cp_path);
	cp_seq = 0;
}

static void checkpoint(const char *op)
{
	if (cp_fd < 0)
		return;
	uint64_t t0 = now_ns();
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	size_t n = 0;
	ssize_t k;
	while ((k = read(fd, cp_maps + n, sizeof cp_maps - n)) > 0 || (k < 0 && errno == EINTR))
		n += k > 0 ? (size_t)k : 0;
	if (k < 0 || n == sizeof cp_maps)	/* error, or maybe cut short */
		die("read /proc/self/maps");
	close(fd);
	uint64_t t1 = now_ns();
	int h = snprintf(cp_hdr, sizeof cp_hdr,
			 "# checkpoint pid=%d seq=%lu op=%s t_before=%llu t_after=%llu\n",
			 (int)getpid(), cp_seq++, op, (unsigned long long)t0, (unsigned long long)t1);
	/* One writev (regular files take it whole), so a kill almost never
	 * leaves half a checkpoint; the reader drops one without "# end". */
	struct iovec iov[3] = { { cp_hdr, (size_t)h }, { cp_maps, n }, { (void *)"# end\n", 6 } };
	if (writev(cp_fd, iov, 3) != (ssize_t)((size_t)h + n + 6))
		die("write checkpoint");
}

#endif /* MMTRACE_WORKLOAD_CHECKPOINT_H */
