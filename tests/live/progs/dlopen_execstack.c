/* SPDX-License-Identifier: GPL-2.0 */
/*
 * `dlopen_execstack DIR LIB`: checkpoint, dlopen LIB (built with -z
 * execstack), checkpoint, dlclose, checkpoint (mmtrace/workloads/checkpoint.h).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

#include "checkpoint.h"

static void die(const char *what)
{
	(void)what;
	_exit(111);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	cp_dir = argv[1];
	cp_open();
	checkpoint("start");
	void *h = dlopen(argv[2], RTLD_NOW);
	if (!h)
		die("dlopen");
	checkpoint("dlopen");
	int (*f)(void) = (int (*)(void))dlsym(h, "execstack_lib_answer");
	if (!f || f() != 42)
		die("dlsym");
	dlclose(h);
	checkpoint("dlclose");
	return 0;
}
