/* The two vm_util.c helpers tools/testing/selftests/mm/hugetlb-madvise.c
 * uses, for building it without the rest of vm_util.c (which needs uapi
 * headers newer than the host's).  mmtrace's own code, not the kernel's. */
#include <stdio.h>

/* The value of the /proc/meminfo line that scanf format ``fmt`` matches, 0 if none. */
static unsigned long meminfo(const char *fmt)
{
	unsigned long v = 0;
	char line[256];
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, fmt, &v) == 1)
			break;
	fclose(f);
	return v;
}

unsigned long default_huge_page_size(void)
{
	return meminfo("Hugepagesize: %lu kB") << 10;
}

unsigned long get_free_hugepages(void)
{
	return meminfo("HugePages_Free: %lu");
}
