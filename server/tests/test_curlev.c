/* test_curlev.c - unit tests of llm/curlev (libcurl's multi_socket API on
 * the libevent loop) against a small HTTP/1.1 server on the same loop that
 * answers after a delay, so curl has to wait for the reply on the socket.
 *
 * What is checked: transfers complete; a keep-alive connection is reused;
 * its socket stays registered with the loop across transfers instead of
 * being unregistered and registered again for each one (two epoll_ctl calls
 * a request); an idle kept-alive socket that the server closes is
 * unregistered when it turns readable, without a busy loop, and the next
 * transfer opens a new connection; everything is freed (ASan). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "lib/lazy.h"
#include "llm/curlev.h"

/* ---- the server: answers each request 5 ms late; may close afterwards ---- */

struct srv {
    struct event_base *base;
    struct evconnlistener *lev;
    int port;
    int requests;
    int accepted;
    int close_after_ms; /* > 0: close the connection this long after each answer */
};

struct sconn {
    struct srv *s;
    struct bufferevent *bev;
    struct event *later;
    bool answered;
};

static void sconn_free(struct sconn *c)
{
    event_free(c->later);
    bufferevent_free(c->bev);
    free(c);
}

static void on_later(evutil_socket_t fd, short what, void *arg)
{
    struct sconn *c = arg;
    if (c->answered) { /* the close after the answer */
        sconn_free(c);
        return;
    }
    static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                "Content-Length: 2\r\n\r\nok";
    bufferevent_write(c->bev, reply, sizeof reply - 1);
    c->s->requests++;
    if (c->s->close_after_ms > 0) {
        c->answered = true;
        struct timeval tv = {0, c->s->close_after_ms * 1000};
        evtimer_add(c->later, &tv);
    }
}

static void on_sread(struct bufferevent *bev, void *arg)
{
    struct sconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0)
        return;
    evbuffer_drain(in, (size_t)end.pos + 4); /* GETs only: no body */
    struct timeval tv = {0, 5000};
    evtimer_add(c->later, &tv);
}

static void on_sevent(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        sconn_free(arg);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct srv *s = arg;
    struct sconn *c = calloc(1, sizeof *c);
    c->s = s;
    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->later = evtimer_new(s->base, on_later, c);
    bufferevent_setcb(c->bev, on_sread, NULL, on_sevent, c);
    bufferevent_enable(c->bev, EV_READ);
    s->accepted++;
}

static void srv_start(struct srv *s, struct event_base *base)
{
    memset(s, 0, sizeof *s);
    s->base = base;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    s->lev = evconnlistener_new_bind(base, on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                     16, (struct sockaddr *)&sin, sizeof sin);
    assert_non_null(s->lev);
    socklen_t sl = sizeof sin;
    getsockname(evconnlistener_get_fd(s->lev), (struct sockaddr *)&sin, &sl);
    s->port = ntohs(sin.sin_port);
}

/* ---- the client: n transfers one after the other ------------------------ */

struct run {
    struct curlev *c;
    struct event_base *base;
    CURL *easy;
    char url[64];
    int left, ok, failed;
    long connects; /* new connections, summed over the transfers */
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    return sz * n;
}

static void start(struct run *r);

static void on_done(CURL *easy, CURLcode rc, void *arg)
{
    struct run *r = arg;
    long status = 0, nc = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &nc);
    r->connects += nc;
    if (rc == CURLE_OK && status == 200)
        r->ok++;
    else
        r->failed++;
    if (--r->left > 0)
        start(r);
    else
        event_base_loopbreak(r->base);
}

static void start(struct run *r)
{
    curl_easy_setopt(r->easy, CURLOPT_URL, r->url);
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, 5000L);
    assert_int_equal(curlev_add(r->c, r->easy, on_done, r), 0);
}

static void run_n(struct run *r, int n)
{
    r->left = n;
    r->ok = r->failed = 0;
    r->connects = 0;
    start(r);
    event_base_dispatch(r->base);
}

static void run_for_ms(struct event_base *base, int ms)
{
    struct timeval tv = {0, ms * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* Frees the client side (curlev_free closes its connections), lets the
 * server see those closes and free its side, then frees the server. */
static void finish(struct event_base *base, struct srv *s, struct curlev *c)
{
    curlev_free(c);
    run_for_ms(base, 30);
    evconnlistener_free(s->lev);
    event_base_free(base);
}

static int setup(void **state)
{
    char err[256];
    if (lazy_load(LAZY_CURL, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

/* Twenty transfers over one kept-alive connection register its socket with
 * the loop once or twice, not once per transfer. */
static void test_keepalive_keeps_registration(void **state)
{
    struct event_base *base = event_base_new();
    struct srv s;
    srv_start(&s, base);
    struct run r = {.base = base, .c = curlev_new(base), .easy = curl_easy_init()};
    snprintf(r.url, sizeof r.url, "http://127.0.0.1:%d/slow", s.port);
    run_n(&r, 20);
    assert_int_equal(r.ok, 20);
    assert_int_equal(r.failed, 0);
    assert_int_equal(s.requests, 20);
    assert_int_equal(s.accepted, 1);
    assert_int_equal(r.connects, 1);
    const struct curlev_stats *st = curlev_stats(r.c);
    /* connect (OUT), then wait for the answer (IN): at most a few changes
     * for the connection's whole life; the old code made 2 per transfer */
    assert_true(st->registered <= 3);
    assert_true(st->unregistered <= 2);
    assert_int_equal(curlev_running(r.c), 0);
    curl_easy_cleanup(r.easy);
    finish(base, &s, r.c);
}

/* The server closes each connection 20 ms after answering: the idle socket
 * curl keeps turns readable, is unregistered once (no busy loop), and the
 * next transfer connects again and succeeds. */
static void test_idle_close_unregisters(void **state)
{
    struct event_base *base = event_base_new();
    struct srv s;
    srv_start(&s, base);
    s.close_after_ms = 20;
    struct run r = {.base = base, .c = curlev_new(base), .easy = curl_easy_init()};
    snprintf(r.url, sizeof r.url, "http://127.0.0.1:%d/slow", s.port);
    run_n(&r, 1);
    assert_int_equal(r.ok, 1);
    const struct curlev_stats *st = curlev_stats(r.c);
    assert_int_equal(st->idle_wakeups, 0);
    run_for_ms(base, 100); /* the server closes; the loop sees it once */
    assert_int_equal(st->idle_wakeups, 1);
    unsigned long long unreg = st->unregistered;
    run_for_ms(base, 50);
    assert_int_equal(st->idle_wakeups, 1);
    assert_int_equal(st->unregistered, unreg);
    run_n(&r, 1);
    assert_int_equal(r.ok, 1);
    assert_int_equal(r.connects, 1);
    assert_int_equal(s.accepted, 2);
    curl_easy_cleanup(r.easy);
    finish(base, &s, r.c); /* closes the last connection through closesocket_cb */
}

/* Transfers that overlap get a connection each; every socket is closed and
 * freed by curlev_free with no registration left behind (ASan). */
static void test_parallel_then_free(void **state)
{
    struct event_base *base = event_base_new();
    struct srv s;
    srv_start(&s, base);
    struct curlev *c = curlev_new(base);
    struct run r[4];
    int done = 0;
    for (int i = 0; i < 4; i++) {
        r[i] = (struct run){.base = base, .c = c, .easy = curl_easy_init()};
        snprintf(r[i].url, sizeof r[i].url, "http://127.0.0.1:%d/p%d", s.port, i);
        r[i].left = 3;
        start(&r[i]);
    }
    for (int spins = 0; spins < 200 && done < 4; spins++) {
        event_base_loop(base, EVLOOP_ONCE);
        done = 0;
        for (int i = 0; i < 4; i++)
            done += r[i].left == 0;
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r[i].ok, 3);
        curl_easy_cleanup(r[i].easy);
    }
    assert_int_equal(s.requests, 12);
    assert_true(s.accepted >= 1 && s.accepted <= 4);
    finish(base, &s, c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keepalive_keeps_registration),
        cmocka_unit_test(test_idle_close_unregisters),
        cmocka_unit_test(test_parallel_then_free),
    };
    int total = (int)(sizeof tests / sizeof tests[0]);
    int failed = cmocka_run_group_tests(tests, setup, NULL);
    lazy_cleanup();
    printf("unit-curlev: %d passed, %d failed\n", total - failed, failed);
    return failed ? 1 : 0;
}
