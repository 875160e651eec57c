/* Runs the machine out of memory in every way a program can, and checks that each ends as
 * an errno the program sees (or, for memory it was already granted, as the OOM kill), never
 * as a kernel crash. Each line it prints is one check:
 *   split: ENOMEM after N regions       -- mprotect splitting a mapping page by page
 *   populate: ENOMEM after N MiB        -- mmap + MADV_POPULATE_WRITE until memory runs out
 *   low mmap: ENOMEM                    -- a new mapping once memory is gone
 *   low mprotect: ENOMEM                -- a split once memory is gone
 *   low mremap: ENOMEM | moved          -- growing a full mapping that has to move
 *   low read: EFAULT | N bytes          -- read() into untouched memory
 *   low tmpfs: ENOSPC | ENOMEM          -- a /tmp file that grows
 *   low pipe: ENOMEM                    -- a pipe whose buffer must grow
 *   low create: ENOSPC                  -- a new /tmp file (tmpfs is full)
 *   low listen: ENOMEM                  -- a TCP listener (socket buffers)
 *   low thread: EAGAIN | ENOMEM         -- pthread_create
 *   freed: populate works again
 *   threads: EAGAIN after N             -- threads until the kernel says no
 * Then it exits 0: the program, not the kernel, decided how it ended.
 * With the argument "touch" it instead touches fresh memory until the kernel must kill it
 * (Linux's OOM killer: SIGKILL, status 137).
 * With the argument "sockets" it measures how much memory it can populate, makes TCP
 * listeners (whose socket buffers are kernel memory) until the kernel refuses one, closes
 * them, and measures again:
 *   sockets: N MiB before, M listeners, K MiB after
 * M comes back close to N when the kernel gives the buffers' memory back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define MIB (1024 * 1024)
#define PAGE 4096
#define MAX_CHUNKS 65536

static void *chunks[MAX_CHUNKS];
static int nchunks;

static const char *err(int e) {
    switch (e) {
    case ENOMEM: return "ENOMEM";
    case EFAULT: return "EFAULT";
    case EAGAIN: return "EAGAIN";
    case ENOSPC: return "ENOSPC";
    case EFBIG: return "EFBIG";
    default: return strerror(e);
    }
}

static int touch(void) {
    /* One large lazy mapping, as an allocator's arena would be: the kernel hands out its
     * pages as they are touched, so running out happens on a touch, whatever the kernel's
     * own size leaves over (mapping chunk by chunk, a chunk's mmap may be the call that
     * finds memory low, and it rightly fails with ENOMEM instead). */
    long size = 4096L * MIB;
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        printf("touch: mmap failed with %s\n", err(errno));
        return 1;
    }
    for (long mib = 0; mib < size / MIB;) {
        for (long i = 0; i < MIB; i += PAGE)
            p[mib * MIB + i] = 1;
        mib++;
        if (mib % 16 == 0) {
            printf("touched %ld MiB\n", mib);
            fflush(stdout);
        }
    }
    printf("touch: 4 GiB touched and still alive\n");
    return 1;
}

/* MiB the program can have backed now (mmap + MADV_POPULATE_WRITE until ENOMEM), all
 * given back before it returns. */
static int populate_all(void) {
    int filled = 0;
    nchunks = 0;
    while (nchunks < MAX_CHUNKS) {
        void *p = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            break;
        chunks[nchunks++] = p;
        if (madvise(p, MIB, MADV_POPULATE_WRITE) != 0)
            break;
        filled++;
    }
    for (int i = 0; i < nchunks; i++)
        munmap(chunks[i], MIB);
    nchunks = 0;
    return filled;
}

static int sockets(void) {
    static int fds[4096];
    int before = populate_all();
    int n = 0;
    while (n < 4096) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0)
            break;
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(20000 + n)};
        if (bind(s, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(s, 64) != 0) {
            close(s);
            break;
        }
        fds[n++] = s;
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
    int after = populate_all();
    printf("sockets: %d MiB before, %d listeners, %d MiB after\n", before, n, after);
    return 0;
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;
static int finished;

static void *wait_for_end(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    while (!finished)
        pthread_cond_wait(&done, &lock);
    pthread_mutex_unlock(&lock);
    return NULL;
}

static int start_thread(void) {
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    pthread_t t;
    int r = pthread_create(&t, &a, wait_for_end, NULL);
    pthread_attr_destroy(&a);
    if (r == 0)
        pthread_detach(t);
    return r;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && !strcmp(argv[1], "touch"))
        return touch();
    if (argc > 1 && !strcmp(argv[1], "sockets"))
        return sockets();

    /* Regions: split one mapping page by page until the kernel refuses. */
    long pages = 70000;
    char *area = mmap(NULL, pages * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    long split = 0;
    int e = 0;
    for (long i = 0; i < pages; i += 2) {
        if (mprotect(area + i * PAGE, PAGE, PROT_READ) != 0) {
            e = errno;
            break;
        }
        split++;
    }
    printf("split: %s after %ld regions\n", e ? err(e) : "no error", split * 2);
    if (mprotect(area, pages * PAGE, PROT_NONE) != 0)
        printf("split: merging back failed: %s\n", err(errno));

    /* Things to try once memory is gone, made while there is some. */
    char *big = mmap(NULL, 64 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int zero = open("/dev/zero", O_RDONLY);
    int tmp = open("/tmp/hog", O_RDWR | O_CREAT | O_TRUNC, 0600);
    char *buf = malloc(MIB);
    int pipefd[2];
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(7000)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (big == MAP_FAILED || zero < 0 || tmp < 0 || !buf || pipe2(pipefd, O_NONBLOCK) != 0 ||
        sock < 0 || bind(sock, (struct sockaddr *)&sin, sizeof sin) != 0) {
        perror("setup");
        return 1;
    }
    memset(buf, 'x', MIB);

    /* Fill memory with pages the kernel must back now. */
    e = 0;
    int filled = 0;
    while (nchunks < MAX_CHUNKS) {
        void *p = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            e = errno;
            break;
        }
        chunks[nchunks++] = p;
        if (madvise(p, MIB, MADV_POPULATE_WRITE) != 0) {
            /* Keep what it got: memory stays exhausted for what follows. */
            e = errno;
            break;
        }
        filled++;
    }
    printf("populate: %s after %d MiB\n", e ? err(e) : "no error", filled);

    void *p = mmap(NULL, MIB, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("low mmap: %s\n", p == MAP_FAILED ? err(errno) : "mapped");
    int r = mprotect(chunks[0], PAGE, PROT_READ);
    printf("low mprotect: %s\n", r ? err(errno) : "changed");
    p = mremap(chunks[1], MIB, 32 * MIB, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) {
        printf("low mremap: %s\n", err(errno));
    } else {
        printf("low mremap: moved\n");
        chunks[1] = NULL;
        munmap(p, 32 * MIB);
    }
    ssize_t n = read(zero, big, 16 * MIB);
    if (n < 0)
        printf("low read: %s\n", err(errno));
    else
        printf("low read: %zd bytes\n", n);
    long written = 0;
    e = 0;
    for (int i = 0; i < 4096; i++) {
        ssize_t w = write(tmp, buf, MIB);
        if (w < 0) {
            e = errno;
            break;
        }
        written += w;
    }
    printf("low tmpfs: %s after %ld MiB\n", e ? err(e) : "no error", written / MIB);
    if (ftruncate(tmp, 0) != 0)
        printf("low tmpfs: truncating failed: %s\n", err(errno));
    n = write(pipefd[1], buf, 65536);
    printf("low pipe: %s\n", n < 0 ? err(errno) : "written");
    int fresh = open("/tmp/fresh", O_RDWR | O_CREAT, 0600);
    printf("low create: %s\n", fresh < 0 ? err(errno) : "created");
    r = listen(sock, 16);
    printf("low listen: %s\n", r ? err(errno) : "listening");
    r = start_thread();
    printf("low thread: %s\n", r ? err(r) : "started");

    /* Give everything back: the program goes on as if nothing happened. */
    for (int i = 0; i < nchunks; i++)
        if (chunks[i])
            munmap(chunks[i], MIB);
    munmap(big, 64 * MIB);
    p = mmap(NULL, 4 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    r = p == MAP_FAILED ? errno : (madvise(p, 4 * MIB, MADV_POPULATE_WRITE) ? errno : 0);
    printf("freed: %s\n", r ? err(r) : "populate works again");
    if (p != MAP_FAILED)
        munmap(p, 4 * MIB);

    int threads = 0;
    while ((r = start_thread()) == 0)
        threads++;
    printf("threads: %s after %d\n", err(r), threads);
    pthread_mutex_lock(&lock);
    finished = 1;
    pthread_cond_broadcast(&done);
    pthread_mutex_unlock(&lock);
    printf("done\n");
    return 0;
}
