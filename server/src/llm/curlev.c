/* curlev.c - curl multi_socket API on libevent: curl tells us which sockets
 * to watch and when to time out; we tell curl when sockets are ready. Built
 * after curl's own multi-event.c / hiperfifo.c examples, in our style. */
#include "curlev.h"

#include <stdlib.h>

#include "../lib/common.h"
#include "../lib/log.h"

struct xfer {
    curlev_done_fn done;
    void *arg;
};

struct curlev {
    struct event_base *base;
    CURLM *multi;
    CURLSH *share;
    struct event *timer;
    int running;
    int added;
};

struct sockctx {
    struct curlev *c;
    struct event *ev;
    curl_socket_t fd;
    short kind; /* the libevent flags ev was made with */
};

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
    struct curlev *c = arg;
    int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
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
    struct sockctx *sc = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            event_free(sc->ev);
            free(sc);
            curl_multi_assign(c->multi, s, NULL);
        }
        return 0;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                         ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    if (!sc) {
        sc = xcalloc(1, sizeof *sc);
        sc->c = c;
        sc->fd = s;
        curl_multi_assign(c->multi, s, sc);
    } else if (sc->kind == kind) {
        return 0; /* already watching exactly this: spare two epoll_ctl calls */
    } else {
        event_free(sc->ev);
    }
    sc->kind = kind;
    sc->ev = event_new(c->base, s, kind, on_socket, c);
    event_add(sc->ev, NULL);
    return 0;
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

CURLSH *curlev_share(struct curlev *c)
{
    return c->share;
}

void curlev_free(struct curlev *c)
{
    if (!c)
        return;
    curl_multi_cleanup(c->multi);
    curl_share_cleanup(c->share);
    event_free(c->timer);
    free(c);
}
