/* gwload.c - the gateway part of bench/turns, for reference: STREAMS
 * streaming requests at once through ChatOpenAII's pass-through
 * /v1/chat/completions (API token), each asking the fake provider for
 * CHUNKS content chunks ("max_tokens"), read to "data: [DONE]". Prints
 * key=value lines: streams, ok (complete), chunks (content chunks relayed:
 * CHUNKS per complete stream), run_s, the server's CPU over the run
 * (utime+stime from /proc/PID/stat) and per chunk, and its own CPU.
 *
 * Usage: gwload URL TOKEN STREAMS CHUNKS SERVER_PID
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

struct s {
    CURL *e;
    char tail[32];
    size_t tail_len;
    unsigned long long events; /* "data: " lines */
};

static CURLM *multi;
static int ep;
static int64_t deadline_us = -1;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long proc_ticks(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static size_t on_write(char *p, size_t sz, size_t n, void *arg)
{
    struct s *s = arg;
    size_t len = sz * n;
    for (size_t i = 0; i + 6 <= len; i++)
        if (p[i] == 'd' && (i == 0 || p[i - 1] == '\n') && memcmp(p + i, "data: ", 6) == 0)
            s->events++;
    if (len >= sizeof s->tail) {
        memcpy(s->tail, p + len - sizeof s->tail, sizeof s->tail);
        s->tail_len = sizeof s->tail;
    } else {
        size_t keep = s->tail_len + len > sizeof s->tail ? sizeof s->tail - len : s->tail_len;
        memmove(s->tail, s->tail + s->tail_len - keep, keep);
        memcpy(s->tail + keep, p, len);
        s->tail_len = keep + len;
    }
    return len;
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *u, void *sp)
{
    struct epoll_event ev = {.data.fd = fd};
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
    if (!sp) {
        curl_multi_assign(multi, fd, (void *)1);
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST)
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    } else {
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    }
    return 0;
}

static int on_timer(CURLM *m, long ms, void *u)
{
    deadline_us = ms < 0 ? -1 : now_us() + ms * 1000;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s URL TOKEN STREAMS CHUNKS SERVER_PID\n", argv[0]);
        return 2;
    }
    unsigned n = (unsigned)strtoul(argv[3], NULL, 10), chunks = (unsigned)strtoul(argv[4], NULL, 10);
    int pid = atoi(argv[5]);
    long hz = sysconf(_SC_CLK_TCK);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ep = epoll_create1(0);
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)n + 16);
    char auth[512], body[512];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", argv[2]);
    snprintf(body, sizeof body,
             "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
             "\"max_tokens\":%u,\"messages\":[{\"role\":\"user\",\"content\":\"bench turn 7\"}]}",
             chunks);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    struct s *ss = calloc(n, sizeof *ss);
    long long t0c = proc_ticks(pid);
    double me0 = self_cpu_s();
    int64_t t0 = now_us();
    for (unsigned i = 0; i < n; i++) {
        CURL *e = ss[i].e = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, argv[1]);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &ss[i]);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &ss[i]);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT, 60L);
        curl_multi_add_handle(multi, e);
    }
    unsigned done = 0, ok = 0;
    struct epoll_event evs[256];
    int still;
    while (done < n) {
        int wait = 100;
        if (deadline_us >= 0) {
            int64_t d = deadline_us - now_us();
            int dm = d <= 0 ? 0 : (int)((d + 999) / 1000);
            if (dm < wait)
                wait = dm;
        }
        int k = epoll_wait(ep, evs, 256, wait);
        for (int i = 0; i < k; i++) {
            int a = ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ? CURL_CSELECT_IN : 0) |
                    ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0);
            curl_multi_socket_action(multi, evs[i].data.fd, a, &still);
        }
        if (deadline_us >= 0 && now_us() >= deadline_us) {
            deadline_us = -1;
            curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &still);
        }
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct s *s;
            long status = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            size_t tl = s->tail_len;
            while (tl && (s->tail[tl - 1] == '\n' || s->tail[tl - 1] == '\r'))
                tl--;
            if (m->data.result == CURLE_OK && status == 200 && tl >= 6 &&
                memcmp(s->tail + tl - 6, "[DONE]", 6) == 0)
                ok++;
            else if (done - ok < 3)
                fprintf(stderr, "gwload: stream failed: %s, HTTP %ld\n",
                        curl_easy_strerror(m->data.result), status);
            curl_multi_remove_handle(multi, m->easy_handle);
            curl_easy_cleanup(m->easy_handle);
            done++;
        }
    }
    double run_s = (double)(now_us() - t0) / 1e6;
    double srv = (double)(proc_ticks(pid) - t0c) / (double)hz;
    unsigned long long relayed = (unsigned long long)ok * chunks;
    printf("streams=%u\nok=%u\nchunks_per_stream=%u\nchunks=%llu\nrun_s=%.2f\n", n, ok, chunks,
           relayed, run_s);
    printf("server_cpu_s=%.2f\ncpu_per_chunk_us=%.3f\nclient_cpu_s=%.2f\n", srv,
           relayed ? srv * 1e6 / (double)relayed : -1, self_cpu_s() - me0);
    return ok == n ? 0 : 0;
}
