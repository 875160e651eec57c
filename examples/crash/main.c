/* Writes through a null pointer: Kiln must report SIGSEGV (exit status 139). */
#include <stdio.h>

int main(void) {
    printf("about to crash\n");
    fflush(stdout);
    *(volatile int *)0 = 1;
    printf("still alive?\n");
    return 0;
}
