/*
 * hugetlb accounting scenarios, for checking mmtrace's reservation model
 * against the kernel's counters.  Needs >= 8 free 2 MiB huge pages.
 *
 *   hugetlb [--fault-child]
 *
 * private: mmap 4 pages, fault 2, mprotect the 2nd page, munmap the 3rd
 *          (a hole: split), fork (the child owns no reservation; it writes a
 *          page: COW from the pool), munmap all;
 * noreserve: MAP_NORESERVE mapping of 2 pages, fault 1, munmap;
 * shared anon: MAP_SHARED|MAP_HUGETLB 2 pages, fault 1, munmap;
 * shared file: memfd_create(MFD_HUGETLB) of 3 pages, mapped twice (the
 *          second mapping reserves nothing new), a child faults a page
 *          through its copy, both unmapped, the file closed (evicted).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define H (2UL << 20)

static void *map(size_t len, int prot, int flags, int fd)
{
	void *p = mmap(NULL, len, prot, flags, fd, 0);

	if (p == MAP_FAILED) {
		perror("hugetlb: mmap");
		exit(2);
	}
	return p;
}

static void child_touch(char *p)
{
	pid_t c = fork();

	if (c < 0) {
		perror("fork");
		exit(2);
	}
	if (c == 0) {
		p[0] = 2;
		_exit(0);
	}
	waitpid(c, NULL, 0);
}

int main(void)
{
	char *p = map(4 * H, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1);

	p[0] = 1;
	p[H] = 1;
	mprotect(p + H, H, PROT_READ);
	munmap(p + 2 * H, H);
	child_touch(p);
	munmap(p, 4 * H);

	char *n = map(2 * H, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_NORESERVE, -1);
	n[0] = 1;
	munmap(n, 2 * H);

	char *s = map(2 * H, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1);
	s[0] = 1;
	munmap(s, 2 * H);

	int fd = memfd_create("mmtrace-huge", MFD_HUGETLB);
	if (fd < 0 || ftruncate(fd, 3 * H) < 0) {
		perror("hugetlb: memfd");
		return 2;
	}
	char *f1 = map(3 * H, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	char *f2 = map(2 * H, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	f1[0] = 1;
	child_touch(f2 + H);
	munmap(f1, 3 * H);
	munmap(f2, 2 * H);
	close(fd);
	printf("hugetlb: done\n");
	return 0;
}
