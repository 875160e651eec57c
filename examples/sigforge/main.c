/* Forged signal frames and handler addresses: a SIGUSR1 handler edits its ucontext the way
 * the case named by argv[1] says, then returns through rt_sigreturn. Linux either repairs
 * what it can (RFLAGS) or ends the program with SIGSEGV (status 139); so must Kiln, never
 * with a kernel panic.
 *   rip-noncanonical, rip-kernel, rip-top, rip-rcx-noncanonical  -- 139
 *   rsp-noncanonical, rsp-kernel                                 -- 139
 *   cs-null, cs-kernel, cs-kiln-kernel, ss-null                  -- 139
 *   rflags       -- every bit set but TF, AC, DF: prints "rflags: sanitised", exits 0
 *   nt           -- NT set with popf, then a signal: prints "nt: survived", exits 0
 *   handler-noncanonical, handler-kernel  -- sa_handler outside user space: 139
 *   tf-syscall   -- TF set with popf, then a system call: SIGTRAP (status 133)
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ucontext.h>
#include <unistd.h>

static const char *which;

#define NONCANONICAL 0x0000800000000000ull
#define KERNEL_HALF 0xffffffff81000000ull

static void set_selector(greg_t *csgsfs, int shift, uint16_t v) {
    uint64_t g = (uint64_t)*csgsfs;
    g &= ~(0xffffull << shift);
    g |= (uint64_t)v << shift;
    *csgsfs = (greg_t)g;
}

static void forge(int sig, siginfo_t *info, void *p) {
    (void)sig;
    (void)info;
    ucontext_t *uc = p;
    greg_t *g = uc->uc_mcontext.gregs;
    if (!strcmp(which, "rip-noncanonical")) {
        g[REG_RIP] = (greg_t)NONCANONICAL;
    } else if (!strcmp(which, "rip-kernel")) {
        g[REG_RIP] = (greg_t)KERNEL_HALF;
    } else if (!strcmp(which, "rip-top")) {
        g[REG_RIP] = (greg_t)0x00007ffffffff000ull;
    } else if (!strcmp(which, "rip-rcx-noncanonical")) {
        /* rcx == rip, as after a system call: the sysretq path must not take it. */
        g[REG_RIP] = (greg_t)0x0000800000001000ull;
        g[REG_RCX] = g[REG_RIP];
    } else if (!strcmp(which, "rsp-noncanonical")) {
        g[REG_RSP] = (greg_t)0x0000800000001000ull;
    } else if (!strcmp(which, "rsp-kernel")) {
        g[REG_RSP] = (greg_t)0xffff800000010000ull;
    } else if (!strcmp(which, "cs-null")) {
        set_selector(&g[REG_CSGSFS], 0, 0);
    } else if (!strcmp(which, "cs-kernel")) {
        set_selector(&g[REG_CSGSFS], 0, 0x10);
    } else if (!strcmp(which, "cs-kiln-kernel")) {
        set_selector(&g[REG_CSGSFS], 0, 0x08);
    } else if (!strcmp(which, "ss-null")) {
        set_selector(&g[REG_CSGSFS], 48, 0);
    } else if (!strcmp(which, "rflags")) {
        g[REG_EFL] = (greg_t)~(0x100ull | 0x400ull | 0x40000ull);
    }
}

static void quiet(int sig) { (void)sig; }

static uint64_t rflags(void) {
    uint64_t f;
    __asm__ volatile("pushfq; pop %0" : "=r"(f));
    return f;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: sigforge CASE\n");
        return 2;
    }
    which = argv[1];
    printf("case %s\n", which);
    fflush(stdout);
    if (!strcmp(which, "tf-syscall")) {
        /* Single-stepping into a system call: the trap belongs to the program. */
        long r;
        __asm__ volatile("pushfq; orq $0x100, (%%rsp); popfq; mov $39, %%eax; syscall; nop"
                         : "=a"(r)
                         :
                         : "rcx", "r11", "memory", "cc");
        printf("resumed after single-stepping: %ld\n", r);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (!strcmp(which, "handler-noncanonical") || !strcmp(which, "handler-kernel")) {
        uint64_t h = !strcmp(which, "handler-kernel") ? KERNEL_HALF : NONCANONICAL;
        sa.sa_handler = (void (*)(int))(uintptr_t)h;
    } else if (!strcmp(which, "nt")) {
        sa.sa_handler = quiet;
    } else {
        sa.sa_sigaction = forge;
        sa.sa_flags = SA_SIGINFO;
    }
    if (sigaction(SIGUSR1, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }
    if (!strcmp(which, "nt")) {
        /* NT is not privileged: a program can set it; the kernel must cope. */
        __asm__ volatile("pushfq; orq $0x4000, (%%rsp); popfq" ::: "memory", "cc");
    }
    raise(SIGUSR1);
    if (!strcmp(which, "nt")) {
        __asm__ volatile("pushfq; andq $~0x4000, (%%rsp); popfq" ::: "memory", "cc");
        printf("nt: survived\n");
        return 0;
    }
    if (!strcmp(which, "rflags")) {
        uint64_t f = rflags();
        int ok = (f & 0x3000) == 0 && (f & 0x4000) == 0 && (f & (1 << 17)) == 0 &&
                 (f & 0x200) != 0;
        printf("rflags: %s (%#llx)\n", ok ? "sanitised" : "NOT sanitised",
               (unsigned long long)f);
        return ok ? 0 : 1;
    }
    printf("resumed after a forged frame: %s\n", which);
    return 1;
}
