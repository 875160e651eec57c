/*
 * /init of the Linux guest in `cargo xtask bench http`: the smallest userland that lets the
 * benchmark's server run on Debian's cloud kernel. It loads the kernel modules in /modules
 * (in name order: the bench names them 00-virtio.ko, 01-...), brings up lo and eth0 with a
 * static address, then execs /server with the arguments in /args (each followed by a NUL;
 * the file may be empty or missing) and the environment the kernel gave init (every K=V on
 * the kernel command line that the kernel does not know, so PORT=8080 reaches it).
 *
 * Configuration, from the kernel command line: KILN_BENCH_IP=A.B.C.D,
 * KILN_BENCH_MASK=A.B.C.D (default 255.255.255.0), KILN_BENCH_GW=A.B.C.D (optional).
 * Any failure prints one line on the console and exits: the kernel then panics, and with
 * panic=-1 and QEMU's -no-reboot the VM ends.
 *
 * Built by the toolchain with `gcc -static -Os` (no libc needed in the initramfs).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/route.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void fail(const char *what, const char *arg) {
    fprintf(stderr, "kiln-init: %s %s: %s\n", what, arg ? arg : "", strerror(errno));
    exit(1);
}

static int only_ko(const struct dirent *d) {
    size_t n = strlen(d->d_name);
    return n > 3 && strcmp(d->d_name + n - 3, ".ko") == 0;
}

static void load_modules(void) {
    struct dirent **list;
    int n = scandir("/modules", &list, only_ko, alphasort);
    if (n < 0) {
        return;
    }
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "/modules/%s", list[i]->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fail("open", path);
        }
        if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) {
            fail("finit_module", path);
        }
        close(fd);
    }
}

static void set_addr(int s, unsigned long req, const char *ifname, const char *addr) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1) {
        errno = EINVAL;
        fail("bad address", addr);
    }
    if (ioctl(s, req, &ifr) != 0) {
        fail("ioctl on", ifname);
    }
}

static void link_up(int s, const char *ifname) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    /* The device appears when its driver has probed it: wait up to 10 s. */
    for (int i = 0; ioctl(s, SIOCGIFFLAGS, &ifr) != 0; i++) {
        if (i == 1000) {
            fail("no network interface", ifname);
        }
        struct timespec t = {0, 10 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) {
        fail("bring up", ifname);
    }
}

static void default_route(int s, const char *gw) {
    struct rtentry rt;
    memset(&rt, 0, sizeof rt);
    struct sockaddr_in *g = (struct sockaddr_in *)&rt.rt_gateway;
    g->sin_family = AF_INET;
    if (inet_pton(AF_INET, gw, &g->sin_addr) != 1) {
        errno = EINVAL;
        fail("bad gateway", gw);
    }
    ((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
    ((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    if (ioctl(s, SIOCADDRT, &rt) != 0 && errno != EEXIST) {
        fail("default route via", gw);
    }
}

/* {"/server", the NUL-terminated strings of /args..., NULL}. */
static char **server_args(void) {
    static char buf[65536];
    size_t len = 0;
    int fd = open("/args", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = 0;
        while (len < sizeof buf && (n = read(fd, buf + len, sizeof buf - len)) > 0) {
            len += (size_t)n;
        }
        if (n < 0 || len == sizeof buf) {
            fail("read (or too long)", "/args");
        }
        close(fd);
    }
    size_t count = 0;
    for (size_t i = 0; i < len; i++) {
        count += buf[i] == 0;
    }
    char **out = calloc(count + 2, sizeof *out);
    if (!out) {
        fail("calloc", NULL);
    }
    out[0] = "/server";
    size_t k = 1;
    for (size_t i = 0; i < len && k <= count; k++) {
        out[k] = buf + i;
        i += strlen(buf + i) + 1;
    }
    out[k] = NULL;
    return out;
}

int main(int argc, char **argv) {
    (void)argc;
    mkdir("/proc", 0555);
    mkdir("/dev", 0755);
    mkdir("/tmp", 01777);
    mount("proc", "/proc", "proc", 0, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    load_modules();

    const char *ip = getenv("KILN_BENCH_IP");
    const char *mask = getenv("KILN_BENCH_MASK");
    const char *gw = getenv("KILN_BENCH_GW");
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        fail("socket", NULL);
    }
    link_up(s, "lo");
    if (ip) {
        set_addr(s, SIOCSIFADDR, "eth0", ip);
        set_addr(s, SIOCSIFNETMASK, "eth0", mask ? mask : "255.255.255.0");
        link_up(s, "eth0");
        if (gw) {
            default_route(s, gw);
        }
    }
    close(s);

    char **server_argv = server_args();
    argv[0] = "/server";
    execve("/server", server_argv, environ);
    fail("execve", "/server");
    return 1;
}
