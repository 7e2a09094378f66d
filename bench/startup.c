/* startup.c - time from exec to the first answered request, in microseconds.
 *
 *   startup PORT BIN serve    (the server's CHATOPENAII_* come from the environment)
 *
 * Forks, execs BIN with its arguments, and from the moment before the fork
 * tries to connect to 127.0.0.1:PORT every 100 us; once connected it sends
 * GET /healthz and waits for the status line. Prints the microseconds from
 * the fork to a "200" status line, then stops the server (SIGTERM) and waits
 * for it. No process start of a client per attempt (unlike polling with
 * curl), so the figure is the server's own start-up. Exit 1 on failure or
 * after 10 s.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* 1: answered 200; 0: not listening yet; -1: answered something else */
static int probe(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return 0;
    }
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
        close(fd);
        return 0;
    }
    char buf[64];
    size_t got = 0;
    while (got < 12) {
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    if (got < 12)
        return 0; /* accepted but closed: not ready */
    return strncmp(buf + 9, "200", 3) == 0 ? 1 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT BIN [ARGS...]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    signal(SIGPIPE, SIG_IGN);
    long long t0 = now_us();
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        execv(argv[2], argv + 2);
        _exit(127);
    }
    int rc = 1;
    long long took = -1;
    while (now_us() - t0 < 10 * 1000000LL) {
        int r = probe(port);
        if (r == 1) {
            took = now_us() - t0;
            rc = 0;
            break;
        }
        if (r < 0)
            break;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "startup: the server exited before answering\n");
            return 1;
        }
        usleep(100);
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    if (rc == 0)
        printf("%lld\n", took);
    else
        fprintf(stderr, "startup: no 200 from /healthz\n");
    return rc;
}
