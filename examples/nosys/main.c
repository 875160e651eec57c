/* Makes system calls Kiln does not implement and prints the errno each returned:
 *   syscall 335: errno=38 (an unassigned number)
 *   io_uring_setup: errno=38
 * Exits 0 when both failed with ENOSYS (38), 1 otherwise. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif

static int try(const char *name, long nr) {
    errno = 0;
    long r = syscall(nr, 0, 0, 0, 0, 0, 0);
    int e = r == -1 ? errno : 0;
    printf("%s: errno=%d (%s)\n", name, e, e ? strerror(e) : "no error");
    return e == ENOSYS;
}

int main(void) {
    int ok = try("syscall 335", 335);
    ok &= try("io_uring_setup", SYS_io_uring_setup);
    fflush(stdout);
    return ok ? 0 : 1;
}
