/* The two vm_util.c helpers tools/testing/selftests/mm/hugetlb-madvise.c
 * uses, for building it without the rest of vm_util.c (which needs uapi
 * headers newer than the host's).  mmtrace's own code, not the kernel's. */
#include <stdio.h>
#include <string.h>

unsigned long default_huge_page_size(void)
{
	unsigned long hps = 0;
	char line[256];
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Hugepagesize: %lu kB", &hps) == 1) {
			hps <<= 10;
			break;
		}
	fclose(f);
	return hps;
}

unsigned long get_free_hugepages(void)
{
	unsigned long fhp = 0;
	char line[256];
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %lu", &fhp) == 1)
			break;
	fclose(f);
	return fhp;
}
