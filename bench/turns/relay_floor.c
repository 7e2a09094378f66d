/* relay_floor.c - the floor under bench/turns' CPU per relayed chunk: the
 * least any relay can spend on this machine. It opens NTURNS streams to the
 * fake provider (upstream.c, same requests as the server makes: "stream":true,
 * "bench turn N") and copies every read, as it is, to one of NTURNS loopback
 * TCP connections whose other ends a child process reads and throws away.
 * One thread, epoll, no parsing, no allocation per chunk: per chunk one
 * epoll wake-up (shared), one recv and one send - the kernel and VM cost of
 * moving a chunk in and out of a process, which the server pays too.
 *
 * Prints key=value lines: relay_cpu_s (utime+stime of the relay, from the
 * first request to the last stream's end), chunks (NTURNS x NCHUNKS, the
 * content chunks, as the server's figure counts them), cpu_per_chunk_us,
 * reads, run_s.
 *
 * Usage: relay_floor UPSTREAM_PORT NTURNS NCHUNKS
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct stream {
    int up;        /* to the provider */
    int down;      /* to the sink */
    bool done;
    char tail[5];  /* the last bytes read, to see the final "0\r\n\r\n" */
    size_t ntail;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* The child: connect n sockets to port, read everything, exit at EOF on all. */
static void sink(int port, int n)
{
    int ep = epoll_create1(0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
            die("sink connect");
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    static char buf[65536];
    struct epoll_event evs[256];
    int open = n;
    while (open > 0) {
        int k = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < k; i++) {
            ssize_t r = recv(evs[i].data.fd, buf, sizeof buf, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                close(evs[i].data.fd);
                open--;
            }
        }
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s UPSTREAM_PORT NTURNS NCHUNKS\n", argv[0]);
        return 2;
    }
    int up_port = atoi(argv[1]), n = atoi(argv[2]), nchunks = atoi(argv[3]);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)(3 * n + 64)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* the sink's connections */
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096) ||
        getsockname(ls, (struct sockaddr *)&a, &al))
        die("listen");
    pid_t child = fork();
    if (child == 0) {
        close(ls);
        sink(ntohs(a.sin_port), n);
    }
    struct stream *s = calloc((size_t)n, sizeof *s);
    int one = 1;
    for (int i = 0; i < n; i++) {
        s[i].down = accept(ls, NULL, NULL);
        if (s[i].down < 0)
            die("accept");
        setsockopt(s[i].down, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    close(ls);

    int ep = epoll_create1(0);
    struct sockaddr_in ua = {.sin_family = AF_INET, .sin_port = htons((uint16_t)up_port)};
    ua.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    double c0 = cpu_s(), t0 = now_s();
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&ua, sizeof ua) != 0)
            die("connect to the provider");
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char body[256], req[512];
        int bl = snprintf(body, sizeof body,
                          "{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[{\"role\":\"user\","
                          "\"content\":\"bench turn %d: write %d tokens\"}]}",
                          i + 1, nchunks);
        int rl2 = snprintf(req, sizeof req,
                           "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                           bl, body);
        if (send(fd, req, (size_t)rl2, MSG_NOSIGNAL) != rl2)
            die("send request");
        s[i].up = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    static char buf[65536];
    struct epoll_event evs[256];
    unsigned long long reads = 0;
    int left = n;
    while (left > 0) {
        int k = epoll_wait(ep, evs, 256, 30000);
        if (k == 0) {
            fprintf(stderr, "relay_floor: no data for 30 s, %d streams left\n", left);
            return 1;
        }
        for (int i = 0; i < k; i++) {
            struct stream *st = evs[i].data.ptr;
            ssize_t r = recv(st->up, buf, sizeof buf, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                fprintf(stderr, "relay_floor: a provider stream broke\n");
                return 1;
            }
            reads++;
            size_t off = 0;
            while (off < (size_t)r) {
                ssize_t w = send(st->down, buf + off, (size_t)r - off, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    die("send to the sink"); /* blocking socket: only errors */
                off += (size_t)w;
            }
            /* the last 5 bytes seen, to notice the terminating chunk */
            if (r >= 5) {
                memcpy(st->tail, buf + r - 5, 5);
                st->ntail = 5;
            } else {
                size_t keep = st->ntail + (size_t)r > 5 ? 5 - (size_t)r : st->ntail;
                memmove(st->tail, st->tail + st->ntail - keep, keep);
                memcpy(st->tail + keep, buf, (size_t)r);
                st->ntail = keep + (size_t)r;
            }
            if (st->ntail == 5 && memcmp(st->tail, "0\r\n\r\n", 5) == 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, st->up, NULL);
                close(st->up);
                close(st->down);
                st->done = true;
                left--;
            }
        }
    }
    double c1 = cpu_s(), t1 = now_s();
    waitpid(child, NULL, 0);
    unsigned long long chunks = (unsigned long long)n * (unsigned long long)nchunks;
    printf("relay_cpu_s=%.2f\nchunks=%llu\nreads=%llu\nrun_s=%.1f\ncpu_per_chunk_us=%.3f\n", c1 - c0,
           chunks, reads, t1 - t0, (c1 - c0) / (double)chunks * 1e6);
    return 0;
}
