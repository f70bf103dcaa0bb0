/* SPDX-License-Identifier: GPL-2.0 */
/*
 * `callsites LIB`: each VMA change from a function of its own, for
 * `record -g` (tests/live/test_callsites.py): only_mmap() only maps,
 * only_mprotect() only mprotects (a split), only_munmap() only unmaps;
 * the parent runs them, then a forked child, then LIB is dlopen'ed, its
 * lib_only_mmap() run and the library dlclose'd.  Each function uses the
 * syscall's result, so the compiler cannot turn the call into a tail jump.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define LEN (16 * 4096)

__attribute__((noinline)) void *only_mmap(void)
{
	void *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		abort();
	return p;
}

__attribute__((noinline)) void only_mprotect(char *p)
{
	if (mprotect(p + 4 * 4096, 4 * 4096, PROT_READ))
		abort();
}

__attribute__((noinline)) void only_munmap(char *p)
{
	if (munmap(p, LEN))
		abort();
}

static void work(int n)
{
	for (int i = 0; i < n; i++) {
		char *p = only_mmap();

		only_mprotect(p);
		only_munmap(p);
	}
}

int main(int argc, char **argv)
{
	pid_t child;

	if (argc < 2)
		return 2;
	work(20);
	child = fork();
	if (child == 0) {
		work(10);
		_exit(0);
	}
	if (child < 0 || waitpid(child, NULL, 0) != child)
		return 3;
	void *h = dlopen(argv[1], RTLD_NOW);
	if (!h)
		return 4;
	int (*f)(int) = (int (*)(int))dlsym(h, "lib_only_mmap");
	if (!f || f(5) != 5)
		return 5;
	dlclose(h);
	return 0;
}
