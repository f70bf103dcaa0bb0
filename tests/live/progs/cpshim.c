/* SPDX-License-Identifier: GPL-2.0 */
/*
 * LD_PRELOAD checkpoint shim for real programs (tests/live/test_real_programs.py):
 * after every mmap, munmap, mprotect, mremap, madvise, mlock, munlock (and variants) and
 * syscall() call the program makes, append /proc/self/maps to
 * $MMTRACE_CP_DIR/<pid>.txt in the format of mmtrace/workloads/checkpoint.h
 * (whose checkpoint() it uses).  Calls glibc makes internally (malloc,
 * dlopen) do not go through these symbols: those instants are not
 * checkpointed, but the next one is.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>

#include "checkpoint.h"

static void die(const char *what)
{
	(void)what;
	_exit(111);
}

static pthread_mutex_t cp_lock = PTHREAD_MUTEX_INITIALIZER;

static void cp(const char *op)
{
	int e = errno;
	pthread_mutex_lock(&cp_lock);
	checkpoint(op);
	pthread_mutex_unlock(&cp_lock);
	errno = e;
}

static void child(void) { pthread_mutex_init(&cp_lock, NULL); cp_open(); cp("fork"); }

__attribute__((constructor)) static void init(void)
{
	cp_dir = getenv("MMTRACE_CP_DIR");
	cp_open();
	pthread_atfork(NULL, NULL, child);
	cp("start");
}

#define REAL(name) static __typeof__(name) *real; if (!real) real = dlsym(RTLD_NEXT, #name)

void *mmap(void *a, size_t l, int p, int f, int fd, off_t o)
{ REAL(mmap); void *r = real(a, l, p, f, fd, o); cp("mmap"); return r; }
void *mmap64(void *a, size_t l, int p, int f, int fd, off_t o)
{ REAL(mmap64); void *r = real(a, l, p, f, fd, o); cp("mmap"); return r; }
int munmap(void *a, size_t l) { REAL(munmap); int r = real(a, l); cp("munmap"); return r; }
int mprotect(void *a, size_t l, int p) { REAL(mprotect); int r = real(a, l, p); cp("mprotect"); return r; }
int pkey_mprotect(void *a, size_t l, int p, int k)
{ REAL(pkey_mprotect); int r = real(a, l, p, k); cp("pkey_mprotect"); return r; }
int madvise(void *a, size_t l, int adv) { REAL(madvise); int r = real(a, l, adv); cp("madvise"); return r; }
int mlock(const void *a, size_t l) { REAL(mlock); int r = real(a, l); cp("mlock"); return r; }
int mlock2(const void *a, size_t l, unsigned int f) { REAL(mlock2); int r = real(a, l, f); cp("mlock2"); return r; }
int munlock(const void *a, size_t l) { REAL(munlock); int r = real(a, l); cp("munlock"); return r; }
int mlockall(int f) { REAL(mlockall); int r = real(f); cp("mlockall"); return r; }
int munlockall(void) { REAL(munlockall); int r = real(); cp("munlockall"); return r; }

void *mremap(void *a, size_t ol, size_t nl, int f, ...)
{
	va_list ap;
	va_start(ap, f);
	void *na = va_arg(ap, void *);
	va_end(ap);
	REAL(mremap);
	void *r = real(a, ol, nl, f, na);
	cp("mremap");
	return r;
}

long syscall(long nr, ...)
{
	va_list ap;
	long a[6];
	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	REAL(syscall);
	long r = real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	cp("syscall");
	return r;
}
