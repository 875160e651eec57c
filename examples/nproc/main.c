/* How many CPUs a C program is told: glibc's sysconf(_SC_NPROCESSORS_ONLN) and
 * get_nprocs() (which fall back to sched_getaffinity when /sys and /proc/stat are absent,
 * as in Kiln), sched_getaffinity's mask and sched_getcpu. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <sys/sysinfo.h>
#include <unistd.h>

int main(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    int affinity = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : -1;
    printf("online: %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
    printf("configured: %ld\n", sysconf(_SC_NPROCESSORS_CONF));
    printf("get_nprocs: %d\n", get_nprocs());
    printf("affinity: %d\n", affinity);
    int cpu = sched_getcpu();
    printf("this cpu is in range: %s\n", cpu >= 0 && cpu < affinity ? "yes" : "no");
    return 0;
}
