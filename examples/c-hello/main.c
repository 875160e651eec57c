/* Kiln's C smoke test (gcc -static): prints its arguments and $GREETING, then exits with
 * the status given by `--exit N` or $EXIT_STATUS (default 0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int status = 0;
    const char *env_status = getenv("EXIT_STATUS");
    const char *greeting = getenv("GREETING");

    printf("hello from C\n");
    for (int i = 0; i < argc; i++) {
        printf("argv[%d]=%s\n", i, argv[i]);
        if (strcmp(argv[i], "--exit") == 0 && i + 1 < argc)
            status = atoi(argv[i + 1]);
    }
    printf("GREETING=%s\n", greeting ? greeting : "(unset)");
    if (env_status)
        status = atoi(env_status);
    fflush(stdout);
    return status;
}
