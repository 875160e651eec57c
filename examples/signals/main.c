/* Signal handlers as programs use them; each line it prints is one check.
 *   raise: handler 10 ... after raise: 1       -- a handler runs and returns (SA_SIGINFO)
 *   segv: recovered at 0x10                    -- a SIGSEGV handler on an alternate stack
 *                                                 longjmps out of a null-page write
 *   blocked: 0 then 1                          -- a blocked signal waits until unblocked
 *   sigpipe: handler ran, write gave EPIPE     -- SIGPIPE handled, the write still fails
 *   resethand: default restored                -- SA_RESETHAND
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t count;
static volatile int last_code;
static sigjmp_buf jump;
static volatile uintptr_t fault_addr;
static volatile int on_altstack;
static char altstack[64 * 1024];

static void on_usr(int sig, siginfo_t *info, void *uc) {
    (void)uc;
    count++;
    last_code = info->si_code;
    printf("raise: handler %d code %d\n", sig, info->si_code);
}

static void on_segv(int sig, siginfo_t *info, void *uc) {
    (void)sig;
    (void)uc;
    char here;
    on_altstack = (&here >= altstack && &here < altstack + sizeof altstack);
    fault_addr = (uintptr_t)info->si_addr;
    siglongjmp(jump, 1);
}

static volatile int pipe_handled;
static void on_pipe(int sig) { (void)sig; pipe_handled = 1; }
static void on_once(int sig) { (void)sig; count++; }

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    printf("after raise: %d\n", (int)count);

    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
    if (sigsetjmp(jump, 1) == 0) {
        *(volatile int *)0x10 = 1;
        puts("segv: no fault");
    } else {
        printf("segv: recovered at %#lx%s\n", (unsigned long)fault_addr,
               on_altstack ? " on the alternate stack" : " NOT on the alternate stack");
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    count = 0;
    raise(SIGUSR1);
    printf("blocked: %d", (int)count);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    printf(" then %d\n", (int)count);

    signal(SIGPIPE, on_pipe);
    int fds[2];
    pipe(fds);
    close(fds[0]);
    ssize_t n = write(fds[1], "x", 1);
    printf("sigpipe: %s, write gave %s\n", pipe_handled ? "handler ran" : "no handler",
           n < 0 && errno == EPIPE ? "EPIPE" : "something else");

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_once;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGUSR2, &sa, NULL);
    raise(SIGUSR2);
    struct sigaction now;
    sigaction(SIGUSR2, NULL, &now);
    printf("resethand: %s\n", now.sa_handler == SIG_DFL ? "default restored" : "handler kept");
    return 0;
}
