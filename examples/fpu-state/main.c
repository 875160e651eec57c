/* A program's floating-point state survives the kernel: system calls, switches to another
 * thread and signal handlers that change it. Each thread loads every SSE register, MXCSR,
 * the x87 control word and two x87 stack registers with values of its own, makes a system
 * call with them live (getppid, sched_yield to let the other thread run, or tgkill of
 * itself with a handler that scribbles over all of it), then reads them back.
 * Prints "fpu: N checks, all intact" and exits 0, or the first difference and exits 1.
 */
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ROUNDS 400

struct fpstate {
    uint8_t xmm[16][16];
    uint32_t mxcsr;
    uint16_t fcw;
    long double st0, st1;
};

static volatile int handled;

/* The handler changes everything the checks look at. */
static void on_usr1(int sig) {
    (void)sig;
    static const uint16_t fcw = 0x0c7f;    /* round toward zero, all masked */
    static const uint32_t mxcsr = 0xff80;  /* flush to zero, round toward zero */
    volatile long double x = 1.0L;
    x = x / 3.0L;
    __asm__ volatile("fldcw %0\n\tldmxcsr %1\n\t"
                     "pcmpeqd %%xmm0, %%xmm0\n\tpcmpeqd %%xmm7, %%xmm7\n\t"
                     "pxor %%xmm8, %%xmm8\n\tpcmpeqd %%xmm15, %%xmm15"
                     :
                     : "m"(fcw), "m"(mxcsr)
                     : "xmm0", "xmm7", "xmm8", "xmm15");
    handled++;
}

/* Loads `in`, makes system call `nr` (arguments a, b, c), stores the state to `out`. */
static void around_syscall(const struct fpstate *in, struct fpstate *out, long nr, long a,
                           long b, long c) {
    uint16_t fcw;
    uint32_t mxcsr;
    __asm__ volatile("fnstcw %0\n\tstmxcsr %1" : "=m"(fcw), "=m"(mxcsr));
    long rax = nr;
    __asm__ volatile(
        "fldcw %c[fcw](%[in])\n\t"
        "ldmxcsr %c[mx](%[in])\n\t"
        "fldt %c[st1](%[in])\n\t"
        "fldt %c[st0](%[in])\n\t"
        "movdqu 0(%[in]), %%xmm0\n\t"
        "movdqu 16(%[in]), %%xmm1\n\t"
        "movdqu 32(%[in]), %%xmm2\n\t"
        "movdqu 48(%[in]), %%xmm3\n\t"
        "movdqu 64(%[in]), %%xmm4\n\t"
        "movdqu 80(%[in]), %%xmm5\n\t"
        "movdqu 96(%[in]), %%xmm6\n\t"
        "movdqu 112(%[in]), %%xmm7\n\t"
        "movdqu 128(%[in]), %%xmm8\n\t"
        "movdqu 144(%[in]), %%xmm9\n\t"
        "movdqu 160(%[in]), %%xmm10\n\t"
        "movdqu 176(%[in]), %%xmm11\n\t"
        "movdqu 192(%[in]), %%xmm12\n\t"
        "movdqu 208(%[in]), %%xmm13\n\t"
        "movdqu 224(%[in]), %%xmm14\n\t"
        "movdqu 240(%[in]), %%xmm15\n\t"
        "syscall\n\t"
        "movdqu %%xmm0, 0(%[out])\n\t"
        "movdqu %%xmm1, 16(%[out])\n\t"
        "movdqu %%xmm2, 32(%[out])\n\t"
        "movdqu %%xmm3, 48(%[out])\n\t"
        "movdqu %%xmm4, 64(%[out])\n\t"
        "movdqu %%xmm5, 80(%[out])\n\t"
        "movdqu %%xmm6, 96(%[out])\n\t"
        "movdqu %%xmm7, 112(%[out])\n\t"
        "movdqu %%xmm8, 128(%[out])\n\t"
        "movdqu %%xmm9, 144(%[out])\n\t"
        "movdqu %%xmm10, 160(%[out])\n\t"
        "movdqu %%xmm11, 176(%[out])\n\t"
        "movdqu %%xmm12, 192(%[out])\n\t"
        "movdqu %%xmm13, 208(%[out])\n\t"
        "movdqu %%xmm14, 224(%[out])\n\t"
        "movdqu %%xmm15, 240(%[out])\n\t"
        "fstpt %c[st0](%[out])\n\t"
        "fstpt %c[st1](%[out])\n\t"
        "fnstcw %c[fcw](%[out])\n\t"
        "stmxcsr %c[mx](%[out])"
        : "+a"(rax)
        : [in] "r"(in), [out] "r"(out), "D"(a), "S"(b), "d"(c),
          [fcw] "i"(offsetof(struct fpstate, fcw)), [mx] "i"(offsetof(struct fpstate, mxcsr)),
          [st0] "i"(offsetof(struct fpstate, st0)), [st1] "i"(offsetof(struct fpstate, st1))
        : "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
          "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    __asm__ volatile("fldcw %0\n\tldmxcsr %1" : : "m"(fcw), "m"(mxcsr));
}

/* A state of thread `id`, different in every register from the other thread's. */
static void pattern(int id, int round, struct fpstate *s) {
    memset(s, 0, sizeof *s);
    for (int r = 0; r < 16; r++)
        for (int i = 0; i < 16; i++)
            s->xmm[r][i] = (uint8_t)(id * 97 + r * 16 + i + round);
    /* Round down (id 0) or up (id 1), precision control 64 bits, all exceptions masked. */
    s->fcw = id ? 0x0b7f : 0x077f;
    /* Exceptions masked, rounding down or up, flush-to-zero on for one of them. */
    s->mxcsr = id ? 0x5f80 : 0x3f80 | 0x8000;
    s->st0 = (long double)(id + 1) / 7.0L + round;
    s->st1 = -(long double)(id + 3) / 11.0L - round;
}

static int compare(int id, const char *what, const struct fpstate *want,
                   const struct fpstate *got) {
    if (memcmp(want->xmm, got->xmm, sizeof want->xmm) != 0) {
        for (int r = 0; r < 16; r++)
            if (memcmp(want->xmm[r], got->xmm[r], 16) != 0) {
                printf("thread %d, %s: xmm%d changed\n", id, what, r);
                return 1;
            }
    }
    /* MXCSR's sticky exception flags (bits 0-5) may be set by the computations. */
    if ((want->mxcsr & ~0x3fu) != (got->mxcsr & ~0x3fu)) {
        printf("thread %d, %s: MXCSR %#x, want %#x\n", id, what, got->mxcsr, want->mxcsr);
        return 1;
    }
    if (want->fcw != got->fcw) {
        printf("thread %d, %s: FCW %#x, want %#x\n", id, what, got->fcw, want->fcw);
        return 1;
    }
    if (memcmp(&want->st0, &got->st0, 10) != 0 || memcmp(&want->st1, &got->st1, 10) != 0) {
        printf("thread %d, %s: x87 registers changed\n", id, what);
        return 1;
    }
    return 0;
}

static volatile int failed;
static volatile long checks;

static void *run(void *arg) {
    int id = (int)(intptr_t)arg;
    struct fpstate want, got;
    for (int round = 0; round < ROUNDS && !failed; round++) {
        pattern(id, round, &want);
        around_syscall(&want, &got, SYS_getppid, 0, 0, 0);
        if (compare(id, "getppid", &want, &got)) failed = 1;
        around_syscall(&want, &got, SYS_sched_yield, 0, 0, 0);
        if (compare(id, "sched_yield", &want, &got)) failed = 1;
        if (round % 8 == id) {
            int before = handled;
            around_syscall(&want, &got, SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR1);
            if (compare(id, "signal handler", &want, &got)) failed = 1;
            if (handled == before) {
                printf("thread %d: the handler did not run\n", id);
                failed = 1;
            }
        }
        __atomic_add_fetch(&checks, 3, __ATOMIC_RELAXED);
    }
    return NULL;
}

int main(void) {
    signal(SIGUSR1, on_usr1);
    pthread_t t;
    if (pthread_create(&t, NULL, run, (void *)1) != 0) {
        printf("pthread_create failed\n");
        return 1;
    }
    run((void *)0);
    pthread_join(t, NULL);
    if (failed) return 1;
    printf("fpu: %ld checks, all intact\n", checks);
    return 0;
}
