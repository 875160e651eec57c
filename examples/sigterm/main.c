/* Signals that interrupt blocked system calls, and ways to wait for SIGTERM.
 *
 *   sigterm accept    SIGTERM handler without SA_RESTART: accept fails with EINTR
 *   sigterm restart   handler with SA_RESTART: accept starts again; a helper thread sees
 *                     the handler's flag and connects, so accept returns a connection
 *   sigterm ignore    SIGTERM ignored: the program never ends by itself
 *   sigterm thread    pthread_kill/tgkill to a thread blocked in read on a pipe
 *   sigterm signalfd  signalfd + timerfd in an epoll loop, ends on SIGTERM
 *   sigterm sigwait   rt_sigtimedwait with a timeout, ends on SIGTERM
 *
 * Modes that wait for SIGTERM print "ready" first. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got;

static void on_signal(int sig) { got = sig; }

static void handle(int sig, int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = flags;
    sigaction(sig, &sa, NULL);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int port(void) {
    const char *p = getenv("PORT");
    return p ? atoi(p) : 8080;
}

static int listener(void) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port())};
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 8)) {
        perror("listen");
        exit(2);
    }
    return l;
}

static int accept_mode(void) {
    handle(SIGTERM, 0);
    int l = listener();
    printf("ready\n");
    int c = accept(l, NULL, NULL);
    if (c < 0 && errno == EINTR && got == SIGTERM) {
        printf("got SIGTERM: accept gave EINTR\n");
        return 0;
    }
    printf("accept returned %d (errno %d)\n", c, errno);
    return 1;
}

/* Waits for the handler's flag, then wakes the restarted accept with a connection. */
static void *knock(void *arg) {
    (void)arg;
    while (!got)
        sleep_ms(10);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port()),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    connect(s, (struct sockaddr *)&a, sizeof a);
    return NULL;
}

static int restart_mode(void) {
    handle(SIGTERM, SA_RESTART);
    int l = listener();
    /* The helper blocks SIGTERM, so the main thread (in accept) takes it. */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, NULL);
    pthread_t t;
    pthread_create(&t, NULL, knock, NULL);
    pthread_sigmask(SIG_UNBLOCK, &term, NULL);
    printf("ready\n");
    int c = accept(l, NULL, NULL);
    if (c >= 0 && got == SIGTERM) {
        printf("got SIGTERM: accept restarted and took a connection\n");
        return 0;
    }
    printf("accept returned %d (errno %d), flag %d\n", c, errno, (int)got);
    return 1;
}

static int ignore_mode(void) {
    signal(SIGTERM, SIG_IGN);
    int l = listener();
    printf("ready\n");
    for (;;)
        if (accept(l, NULL, NULL) < 0 && errno != EINTR)
            return 1;
}

static int fds[2];
static volatile pid_t reader_tid;

static void *reader(void *arg) {
    (void)arg;
    char b;
    reader_tid = gettid();
    ssize_t n = read(fds[0], &b, 1);
    printf("thread: read gave %s after the handler of signal %d\n",
           n < 0 && errno == EINTR ? "EINTR" : "something else", (int)got);
    got = 0;
    n = read(fds[0], &b, 1);
    printf("thread: read restarted and got %zd byte '%c' after signal %d\n", n, b, (int)got);
    return NULL;
}

static int thread_mode(void) {
    pipe(fds);
    handle(SIGUSR1, 0);
    handle(SIGUSR2, SA_RESTART);
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    while (!reader_tid)
        sleep_ms(10);
    sleep_ms(100); /* let it block in read */
    pthread_kill(t, SIGUSR1);
    while (got)
        sleep_ms(10);
    sleep_ms(100);
    syscall(SYS_tgkill, getpid(), reader_tid, SIGUSR2);
    sleep_ms(100);
    write(fds[1], "x", 1);
    pthread_join(t, NULL);
    return 0;
}

static int signalfd_mode(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec its = {{0, 20000000}, {0, 20000000}};
    timerfd_settime(tfd, 0, &its, NULL);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = sfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
    ev.data.fd = tfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    unsigned long long ticks = 0;
    int usr1 = 0;
    for (;;) {
        struct epoll_event out[4];
        int n = epoll_wait(ep, out, 4, -1);
        for (int i = 0; i < n; i++) {
            if (out[i].data.fd == tfd) {
                unsigned long long c;
                if (read(tfd, &c, 8) == 8)
                    ticks += c;
                if (ticks >= 3 && !usr1) {
                    usr1 = 1;
                    kill(getpid(), SIGUSR1);
                }
                continue;
            }
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGUSR1) {
                    printf("signalfd: SIGUSR1 from pid %u after %llu timer ticks\n", si.ssi_pid,
                           ticks);
                    /* Stop the timer: now only SIGTERM can wake the loop. */
                    struct itimerspec off = {{0, 0}, {0, 0}};
                    timerfd_settime(tfd, 0, &off, NULL);
                    printf("ready\n");
                } else if (si.ssi_signo == SIGTERM) {
                    printf("got SIGTERM via signalfd\n");
                    return 0;
                }
            }
        }
    }
}

static int sigwait_mode(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    struct timespec second = {1, 0};
    printf("ready\n");
    for (;;) {
        siginfo_t info;
        int sig = sigtimedwait(&set, &info, &second);
        if (sig == SIGTERM) {
            /* From outside the machine: no sender pid (docker stop's is 0 too). */
            printf("got SIGTERM via sigtimedwait (code %d, pid %d)\n", info.si_code,
                   (int)info.si_pid);
            return 0;
        }
        if (sig < 0 && errno != EAGAIN) {
            printf("sigtimedwait: errno %d\n", errno);
            return 1;
        }
    }
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *mode = argc > 1 ? argv[1] : "accept";
    if (!strcmp(mode, "accept"))
        return accept_mode();
    if (!strcmp(mode, "restart"))
        return restart_mode();
    if (!strcmp(mode, "ignore"))
        return ignore_mode();
    if (!strcmp(mode, "thread"))
        return thread_mode();
    if (!strcmp(mode, "signalfd"))
        return signalfd_mode();
    if (!strcmp(mode, "sigwait"))
        return sigwait_mode();
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
