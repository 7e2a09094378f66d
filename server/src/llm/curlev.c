/* curlev.c - curl multi_socket API on libevent: curl tells us which sockets
 * to watch and when to time out; we tell curl when sockets are ready. Built
 * after curl's own multi-event.c / hiperfifo.c examples, in our style. */
#include "curlev.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event_struct.h>

#include "../lib/common.h"
#include "../lib/log.h"

struct xfer {
    curlev_done_fn done;
    void *arg;
};

struct sockctx;

struct curlev {
    struct event_base *base;
    CURLM *multi;
    CURLSH *share;
    struct event *timer;
    int running;
    int added;
    struct sockctx **byfd; /* the sockets curl has asked us to watch, by descriptor */
    size_t nbyfd;
    struct curlev_stats stats;
};

/* One per socket curl has shown us, from the first time it asks us to watch
 * it until curl closes it (closesocket_cb), across every transfer that
 * reuses the connection. When a transfer ends, curl stops watching the
 * socket of a connection it keeps alive (CURL_POLL_REMOVE) and watches it
 * again for the next transfer: unregistering and registering it each time
 * cost two epoll_ctl calls a request. So REMOVE only marks it unwanted and
 * the registration stays; if an idle socket becomes readable meanwhile (the
 * provider closed it), it is unregistered then, without waking curl, which
 * finds the connection dead when it next looks at it. */
struct sockctx {
    struct curlev *c;
    struct event ev;
    short kind;  /* the libevent flags ev is registered with; 0: not registered */
    bool wanted; /* curl watches it now */
};

static struct sockctx *sock_get(struct curlev *c, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < c->nbyfd ? c->byfd[fd] : NULL;
}

static void sock_unwatch(struct sockctx *sc)
{
    if (sc->kind) {
        event_del(&sc->ev);
        sc->kind = 0;
        sc->c->stats.unregistered++;
    }
}

static void check_done(struct curlev *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *easy = m->easy_handle;
        CURLcode rc = m->data.result;
        struct xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(c->multi, easy);
        c->added--;
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        if (x) {
            curlev_done_fn done = x->done;
            void *arg = x->arg;
            free(x);
            if (done)
                done(easy, rc, arg);
        }
    }
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    struct sockctx *sc = arg;
    struct curlev *c = sc->c;
    if (!sc->wanted) {
        /* an idle keep-alive connection: closed by the peer, most likely */
        sock_unwatch(sc);
        c->stats.idle_wakeups++;
        return;
    }
    int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    /* sc may be freed in here (curl closes the socket) */
    curl_multi_socket_action(c->multi, fd, action, &c->running);
    /* No timer fiddling here: curl owns it through timer_cb, and a done
     * callback may just have added a new transfer whose 0 ms timer must
     * stay armed (key-pool failover does exactly that). */
    check_done(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct curlev *c = arg;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &c->running);
    check_done(c);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct curlev *c = userp;
    struct sockctx *sc = sock_get(c, s);
    if (what == CURL_POLL_REMOVE) {
        if (sc)
            sc->wanted = false; /* the registration stays: see struct sockctx */
        return 0;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                         ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    if (!sc) {
        if (s < 0)
            return -1;
        if ((size_t)s >= c->nbyfd) {
            size_t n = c->nbyfd ? c->nbyfd : 64;
            while (n <= (size_t)s)
                n *= 2;
            c->byfd = xrealloc(c->byfd, n * sizeof *c->byfd);
            memset(c->byfd + c->nbyfd, 0, (n - c->nbyfd) * sizeof *c->byfd);
            c->nbyfd = n;
        }
        sc = xcalloc(1, sizeof *sc);
        sc->c = c;
        c->byfd[s] = sc;
    }
    sc->wanted = true;
    if (sc->kind == kind)
        return 0; /* already registered for exactly this */
    sock_unwatch(sc);
    event_assign(&sc->ev, c->base, s, kind, on_socket, sc);
    event_add(&sc->ev, NULL);
    sc->kind = kind;
    c->stats.registered++;
    return 0;
}

/* curl closes every socket it opened through here: the one moment a
 * registration kept for an idle connection must go. */
static int closesocket_cb(void *clientp, curl_socket_t s)
{
    struct curlev *c = clientp;
    struct sockctx *sc = sock_get(c, s);
    if (sc) {
        sock_unwatch(sc);
        c->byfd[s] = NULL;
        free(sc);
    }
    return close(s);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct curlev *c = userp;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    return 0;
}

struct curlev *curlev_new(struct event_base *base)
{
    struct curlev *c = xcalloc(1, sizeof *c);
    c->base = base;
    c->multi = curl_multi_init();
    c->timer = evtimer_new(base, on_timer, c);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    /* Keep as many idle provider connections as transfers can run at once:
     * a smaller cache closes and reopens connections under load. */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 1024L);
    c->share = curl_share_init();
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return c;
}

int curlev_add(struct curlev *c, CURL *easy, curlev_done_fn done, void *arg)
{
    struct xfer *x = xmalloc(sizeof *x);
    x->done = done;
    x->arg = arg;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)x);
    curl_easy_setopt(easy, CURLOPT_SHARE, c->share);
    /* a connection keeps the close callback of the transfer that opened it */
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, c);
    if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        free(x);
        return -1;
    }
    c->added++;
    return 0;
}

void curlev_remove(struct curlev *c, CURL *easy)
{
    struct xfer *x = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    if (!x)
        return; /* not ours, or already finished */
    curl_multi_remove_handle(c->multi, easy);
    c->added--;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    free(x);
}

int curlev_running(const struct curlev *c)
{
    return c->added;
}

const struct curlev_stats *curlev_stats(const struct curlev *c)
{
    return &c->stats;
}

CURLSH *curlev_share(struct curlev *c)
{
    return c->share;
}

void curlev_free(struct curlev *c)
{
    if (!c)
        return;
    curl_multi_cleanup(c->multi); /* closes its connections: closesocket_cb */
    curl_share_cleanup(c->share);
    for (size_t i = 0; i < c->nbyfd; i++) { /* none, unless curl closed one without us */
        if (c->byfd[i]) {
            sock_unwatch(c->byfd[i]);
            free(c->byfd[i]);
        }
    }
    free(c->byfd);
    event_free(c->timer);
    free(c);
}
