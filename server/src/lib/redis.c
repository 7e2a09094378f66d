/* redis.c - see redis.h. Two hiredis async connections on the loop: one for
 * commands (with a timer per command) and one for subscriptions. Each
 * connection is a small state machine: DOWN (retry timer pending) ->
 * CONNECTING (handshake AUTH/SELECT/PING sent, deadline timer pending) ->
 * READY; any error or deadline goes back to DOWN with a backoff.
 *
 * LIFETIME NOTES: a command (struct rcmd) is owned by this file from
 * redis_command_argv until its callback has run AND hiredis has let go of
 * it (in_hiredis false). hiredis calls on_reply exactly once for every
 * command it accepted: with the reply, or with NULL when the context goes
 * away (redisAsyncFree runs those calls synchronously). conn->ac is cleared
 * before a context is freed, so callbacks can tell an old context from the
 * current one. Listeners are never freed while their channel is being
 * dispatched (dead flag + sweep afterwards). */
#include "redis.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <openssl/evp.h>

#include "log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

struct redis;

struct conn {
    struct redis *r;
    bool is_sub;            /* the subscription connection */
    redisAsyncContext *ac;  /* NULL while DOWN */
    bool ready;             /* handshake answered */
    struct event *timer;    /* DOWN: retry; CONNECTING: deadline */
    int backoff_ms;         /* next retry delay */
};

struct rcmd {
    struct redis *r;
    struct rcmd *prev, *next; /* r->pending, until the callback ran */
    redis_reply_fn cb;
    void *arg;
    struct event *timer;      /* fail-fast (0 s) or the command timeout */
    bool in_hiredis;          /* hiredis will still call on_reply */
    bool finished;            /* cb has been called */
    /* EVALSHA commands keep their arguments for the EVAL retry. */
    struct redis_script *script;
    bool retried;
    int nkeys, argc;
    char **argv;
    size_t *lens;
};

struct redis_script {
    struct redis_script *next;
    char *body;
    char sha[41];           /* lowercase hex SHA-1 of body, as Redis names it */
};

struct listener {
    struct listener *next;
    redis_message_fn cb;
    void *arg;
    bool dead;              /* unsubscribed during a dispatch */
    bool hello;             /* owes an "active" (NULL) call */
};

struct channel {
    struct channel *next;
    char *name;
    struct listener *ls;
    bool active;            /* Redis confirmed the subscription */
    int dispatching;        /* nesting depth of dispatch() */
};

struct redis {
    struct event_base *base;
    char *host, *user, *password;
    int port, db;
    int timeout_ms;
    bool freeing;
    bool down;              /* an outage was logged and has not ended */
    struct conn cmd, sub;
    struct rcmd *pending;
    struct redis_script *scripts;
    struct channel *channels;
    struct event *hello_ev; /* deferred "active" calls for new listeners */
};

/* ---- URL -------------------------------------------------------------------- */

static char *dup_decoded(const char *p, size_t n)
{
    char *s = xmalloc(n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%' && i + 2 < n) {
            char hex[3] = {p[i + 1], p[i + 2], 0};
            char *end;
            long v = strtol(hex, &end, 16);
            if (end == hex + 2 && v > 0) {
                s[j++] = (char)v;
                i += 2;
                continue;
            }
        }
        s[j++] = p[i];
    }
    s[j] = '\0';
    return s;
}

int redis_url_parse(const char *url, char **host, int *port, int *db, char **user,
                    char **password)
{
    *host = *user = *password = NULL;
    *port = 6379;
    *db = 0;
    if (!url || strncmp(url, "redis://", 8) != 0)
        return -1;
    const char *p = url + 8;
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    char *u = NULL, *pw = NULL;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return -1; /* a user without a password */
        if (colon > p)
            u = dup_decoded(p, (size_t)(colon - p));
        pw = dup_decoded(colon + 1, (size_t)(at - colon - 1));
        p = at + 1;
    }
    const char *hs = p, *he;
    const char *portp = NULL;
    if (*p == '[') { /* [ipv6]:port */
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb)
            goto bad;
        hs = p + 1;
        he = rb;
        if (rb + 1 < end) {
            if (rb[1] != ':')
                goto bad;
            portp = rb + 2;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        he = colon ? colon : end;
        if (colon)
            portp = colon + 1;
    }
    if (he <= hs || he - hs > 255)
        goto bad;
    for (const char *q = hs; q < he; q++)
        if (*q <= ' ' || *q == '/' || *q == '?' || *q == '#' || *q == '@' || *q == '%')
            goto bad;
    if (portp) {
        if (portp >= end)
            goto bad;
        long v = 0;
        for (const char *q = portp; q < end; q++) {
            if (*q < '0' || *q > '9' || v > 65535)
                goto bad;
            v = v * 10 + (*q - '0');
        }
        if (v < 1 || v > 65535)
            goto bad;
        *port = (int)v;
    }
    if (slash && slash[1]) {
        long v = 0;
        for (const char *q = slash + 1; *q; q++) {
            if (*q < '0' || *q > '9' || v > 100000)
                goto bad;
            v = v * 10 + (*q - '0');
        }
        *db = (int)v;
    }
    *host = xstrndup(hs, (size_t)(he - hs));
    *user = u;
    *password = pw;
    return 0;
bad:
    free(u);
    if (pw)
        secure_wipe(pw, strlen(pw));
    free(pw);
    return -1;
}

/* ---- outage log -------------------------------------------------------------- */

static void outage(struct redis *r, const struct conn *c, const char *why)
{
    if (r->down || r->freeing)
        return;
    r->down = true;
    log_warn("redis unreachable; shared limits fall back to this instance until it is back",
             "connection", c->is_sub ? "subscriptions" : "commands", "detail", why, NULL);
}

static void maybe_restored(struct redis *r)
{
    if (r->down && r->cmd.ready && r->sub.ready) {
        r->down = false;
        log_info("redis connection restored", NULL);
    }
}

/* ---- connections -------------------------------------------------------------- */

static void conn_start(struct conn *c);

static void conn_retry(struct conn *c)
{
    if (c->r->freeing)
        return;
    struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    c->backoff_ms *= 2;
    if (c->backoff_ms > BACKOFF_MAX_MS)
        c->backoff_ms = BACKOFF_MAX_MS;
}

static void channels_inactive(struct redis *r)
{
    for (struct channel *ch = r->channels; ch; ch = ch->next)
        ch->active = false;
}

/* Drop the context (not from inside a callback of that context unless
 * hiredis defers the free, which it does for IN_CALLBACK) and retry. */
static void conn_drop(struct conn *c)
{
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    c->ready = false;
    if (c->is_sub)
        channels_inactive(c->r);
    evtimer_del(c->timer);
    if (ac)
        redisAsyncFree(ac); /* pending callbacks get NULL now (or after the current one) */
    conn_retry(c);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;
    if (status == REDIS_OK || c->ac != ac)
        return;
    /* hiredis frees ac after this returns. */
    c->ac = NULL;
    c->ready = false;
    outage(c->r, c, ac->errstr[0] ? ac->errstr : "connect failed");
    evtimer_del(c->timer);
    conn_retry(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;
    if (c->ac != ac)
        return; /* we dropped it ourselves */
    c->ac = NULL;
    c->ready = false;
    if (c->is_sub)
        channels_inactive(c->r);
    outage(c->r, c, ac->errstr[0] ? ac->errstr : "connection closed");
    evtimer_del(c->timer);
    conn_retry(c);
}

static void send_subscribe(struct redis *r, struct channel *ch);
static void on_sub_reply(redisAsyncContext *ac, void *rp, void *priv);

static void on_handshake_step(redisAsyncContext *ac, void *rp, void *priv)
{
    struct conn *c = priv;
    redisReply *reply = rp;
    if (!reply || c->ac != ac || reply->type != REDIS_REPLY_ERROR)
        return;
    log_warn("redis refused the connection handshake (AUTH/SELECT)", "detail", reply->str, NULL);
    outage(c->r, c, "handshake refused");
    conn_drop(c); /* deferred free: we are inside its callback */
}

static void on_handshake_done(redisAsyncContext *ac, void *rp, void *priv)
{
    struct conn *c = priv;
    struct redis *r = c->r;
    redisReply *reply = rp;
    if (!reply || c->ac != ac)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        outage(r, c, reply->str);
        conn_drop(c);
        return;
    }
    c->ready = true;
    c->backoff_ms = BACKOFF_MIN_MS;
    evtimer_del(c->timer);
    log_debug("redis connected", "connection", c->is_sub ? "subscriptions" : "commands", NULL);
    if (c->is_sub) {
        for (struct channel *ch = r->channels; ch; ch = ch->next)
            send_subscribe(r, ch);
    } else {
        for (struct redis_script *s = r->scripts; s; s = s->next) {
            const char *argv[] = {"SCRIPT", "LOAD", s->body};
            (void)redisAsyncCommandArgv(ac, NULL, NULL, 3, argv, NULL);
        }
    }
    maybe_restored(r);
}

static void conn_start(struct conn *c)
{
    struct redis *r = c->r;
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (!ac) {
        outage(r, c, "out of memory");
        conn_retry(c);
        return;
    }
    if (ac->err) {
        outage(r, c, ac->errstr);
        redisAsyncFree(ac);
        conn_retry(c);
        return;
    }
    ac->data = c;
    if (redisLibeventAttach(ac, r->base) != REDIS_OK) {
        redisAsyncFree(ac);
        conn_retry(c);
        return;
    }
    (void)redisAsyncSetConnectCallback(ac, on_connect);
    (void)redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->ready = false;
    if (r->password) {
        const char *argv[] = {"AUTH", r->user ? r->user : r->password, r->password};
        (void)redisAsyncCommandArgv(ac, on_handshake_step, c, r->user ? 3 : 2, argv, NULL);
    }
    if (r->db && !c->is_sub) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->db);
        const char *argv[] = {"SELECT", db};
        (void)redisAsyncCommandArgv(ac, on_handshake_step, c, 2, argv, NULL);
    }
    const char *ping[] = {"PING"};
    (void)redisAsyncCommandArgv(ac, on_handshake_done, c, 1, ping, NULL);
    /* Deadline for connect + handshake (hiredis 0.14 has no connect timeout). */
    int ms = r->timeout_ms * 2;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (!c->ac) {
        conn_start(c);
    } else if (!c->ready) {
        outage(c->r, c, "connect timed out");
        conn_drop(c);
    }
}

/* ---- commands --------------------------------------------------------------- */

static void cmd_free(struct rcmd *cmd)
{
    if (cmd->timer)
        event_free(cmd->timer);
    for (int i = 0; i < cmd->argc; i++)
        free(cmd->argv[i]);
    free(cmd->argv);
    free(cmd->lens);
    free(cmd);
}

static void cmd_finish(struct rcmd *cmd, const redisReply *reply)
{
    struct redis *r = cmd->r;
    if (cmd->prev)
        cmd->prev->next = cmd->next;
    else
        r->pending = cmd->next;
    if (cmd->next)
        cmd->next->prev = cmd->prev;
    cmd->prev = cmd->next = NULL;
    evtimer_del(cmd->timer);
    cmd->finished = true;
    if (cmd->cb)
        cmd->cb(cmd->arg, reply);
    if (!cmd->in_hiredis)
        cmd_free(cmd);
}

static int send_script(struct rcmd *cmd, bool eval);

static void on_reply(redisAsyncContext *ac, void *rp, void *priv)
{
    struct rcmd *cmd = priv;
    redisReply *reply = rp;
    cmd->in_hiredis = false;
    if (cmd->finished) {
        cmd_free(cmd);
        return;
    }
    if (reply && cmd->script && !cmd->retried && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        cmd->retried = true;
        if (send_script(cmd, true) == 0)
            return; /* same deadline */
        reply = NULL;
    }
    cmd_finish(cmd, reply);
}

static void on_cmd_timer(evutil_socket_t fd, short what, void *arg)
{
    struct rcmd *cmd = arg;
    struct redis *r = cmd->r;
    if (!cmd->in_hiredis) {
        cmd_finish(cmd, NULL); /* fail fast: not connected */
        return;
    }
    /* No reply in time: the connection is unhealthy. Dropping it answers
     * every command in flight (this one included) with NULL. */
    outage(r, &r->cmd, "command timed out");
    conn_drop(&r->cmd);
}

static struct rcmd *cmd_new(struct redis *r, redis_reply_fn cb, void *arg)
{
    struct rcmd *cmd = xcalloc(1, sizeof *cmd);
    cmd->r = r;
    cmd->cb = cb;
    cmd->arg = arg;
    cmd->timer = evtimer_new(r->base, on_cmd_timer, cmd);
    if (!cmd->timer) {
        fprintf(stderr, "fatal: out of memory (event)\n");
        abort();
    }
    cmd->next = r->pending;
    if (r->pending)
        r->pending->prev = cmd;
    r->pending = cmd;
    return cmd;
}

/* Sent: arm the timeout. Not sent: fail on the next loop iteration. */
static void cmd_arm(struct rcmd *cmd, bool sent)
{
    int ms = cmd->r->timeout_ms;
    struct timeval tv = {0, 0};
    if (sent) {
        cmd->in_hiredis = true;
        tv.tv_sec = ms / 1000;
        tv.tv_usec = (ms % 1000) * 1000;
    }
    evtimer_add(cmd->timer, &tv);
}

int redis_command_argv(struct redis *r, int argc, const char **argv, const size_t *lens,
                       redis_reply_fn cb, void *arg)
{
    if (!r || r->freeing || argc < 1)
        return -1;
    struct rcmd *cmd = cmd_new(r, cb, arg);
    bool sent = r->cmd.ready &&
                redisAsyncCommandArgv(r->cmd.ac, on_reply, cmd, argc, argv, lens) == REDIS_OK;
    cmd_arm(cmd, sent);
    return 0;
}

/* ---- scripts ------------------------------------------------------------------ */

void redis_script_sha(const char *lua, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(lua, strlen(lua), md, &n, EVP_sha1(), NULL) != 1 || n != 20) {
        fprintf(stderr, "fatal: SHA-1 failed\n");
        abort();
    }
    for (unsigned i = 0; i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

struct redis_script *redis_script_new(struct redis *r, const char *lua)
{
    if (!r)
        return NULL;
    struct redis_script *s = xcalloc(1, sizeof *s);
    s->body = xstrdup(lua);
    redis_script_sha(lua, s->sha);
    s->next = r->scripts;
    r->scripts = s;
    if (r->cmd.ready) {
        const char *argv[] = {"SCRIPT", "LOAD", s->body};
        (void)redisAsyncCommandArgv(r->cmd.ac, NULL, NULL, 3, argv, NULL);
    }
    return s;
}

static int send_script(struct rcmd *cmd, bool eval)
{
    struct redis *r = cmd->r;
    if (!r->cmd.ready)
        return -1;
    int n = cmd->argc + 3;
    const char **argv = xcalloc((size_t)n, sizeof *argv);
    size_t *lens = xcalloc((size_t)n, sizeof *lens);
    char nk[16];
    snprintf(nk, sizeof nk, "%d", cmd->nkeys);
    argv[0] = eval ? "EVAL" : "EVALSHA";
    argv[1] = eval ? cmd->script->body : cmd->script->sha;
    argv[2] = nk;
    for (int i = 0; i < 3; i++)
        lens[i] = strlen(argv[i]);
    for (int i = 0; i < cmd->argc; i++) {
        argv[3 + i] = cmd->argv[i];
        lens[3 + i] = cmd->lens[i];
    }
    int rc = redisAsyncCommandArgv(r->cmd.ac, on_reply, cmd, n, argv, lens);
    free(argv);
    free(lens);
    if (rc != REDIS_OK)
        return -1;
    cmd->in_hiredis = true;
    return 0;
}

int redis_eval_sha(struct redis *r, struct redis_script *s, int nkeys, int argc,
                   const char **argv, const size_t *lens, redis_reply_fn cb, void *arg)
{
    if (!r || r->freeing || !s || nkeys < 0 || argc < nkeys)
        return -1;
    struct rcmd *cmd = cmd_new(r, cb, arg);
    cmd->script = s;
    cmd->nkeys = nkeys;
    cmd->argc = argc;
    cmd->argv = xcalloc((size_t)argc + 1, sizeof *cmd->argv);
    cmd->lens = xcalloc((size_t)argc + 1, sizeof *cmd->lens);
    for (int i = 0; i < argc; i++) {
        cmd->lens[i] = lens ? lens[i] : strlen(argv[i]);
        cmd->argv[i] = xmalloc(cmd->lens[i] + 1);
        memcpy(cmd->argv[i], argv[i], cmd->lens[i]);
        cmd->argv[i][cmd->lens[i]] = '\0';
    }
    bool sent = send_script(cmd, false) == 0;
    cmd->in_hiredis = false; /* cmd_arm sets it again */
    cmd_arm(cmd, sent);
    return 0;
}

/* ---- publish / subscribe -------------------------------------------------------- */

int redis_publish(struct redis *r, const char *channel, const void *data, size_t len)
{
    if (!r || r->freeing)
        return -1;
    if (!r->cmd.ready)
        return 0;
    const char *argv[] = {"PUBLISH", channel, data};
    size_t lens[] = {7, strlen(channel), len};
    return redis_command_argv(r, 3, argv, lens, NULL, NULL);
}

static void send_subscribe(struct redis *r, struct channel *ch)
{
    if (!r->sub.ready)
        return;
    const char *argv[] = {"SUBSCRIBE", ch->name};
    (void)redisAsyncCommandArgv(r->sub.ac, on_sub_reply, r, 2, argv, NULL);
}

static struct channel *channel_find(struct redis *r, const char *name, size_t len)
{
    for (struct channel *ch = r->channels; ch; ch = ch->next)
        if (strlen(ch->name) == len && memcmp(ch->name, name, len) == 0)
            return ch;
    return NULL;
}

static void channel_free(struct channel *ch)
{
    while (ch->ls) {
        struct listener *l = ch->ls;
        ch->ls = l->next;
        free(l);
    }
    free(ch->name);
    free(ch);
}

/* Free dead listeners; a channel with none left is unsubscribed. */
static void channel_sweep(struct redis *r, struct channel *ch)
{
    for (struct listener **pl = &ch->ls; *pl;) {
        if ((*pl)->dead) {
            struct listener *l = *pl;
            *pl = l->next;
            free(l);
        } else {
            pl = &(*pl)->next;
        }
    }
    if (ch->ls)
        return;
    for (struct channel **pc = &r->channels; *pc; pc = &(*pc)->next) {
        if (*pc == ch) {
            *pc = ch->next;
            break;
        }
    }
    if (r->sub.ready) {
        const char *argv[] = {"UNSUBSCRIBE", ch->name};
        (void)redisAsyncCommandArgv(r->sub.ac, NULL, NULL, 2, argv, NULL);
    }
    channel_free(ch);
}

static void dispatch(struct redis *r, struct channel *ch, const char *data, size_t len,
                     bool hello_only)
{
    ch->dispatching++;
    for (struct listener *l = ch->ls; l; l = l->next) {
        if (l->dead || (hello_only && !l->hello))
            continue;
        if (!data)
            l->hello = false;
        l->cb(l->arg, ch->name, data, len);
    }
    if (--ch->dispatching == 0)
        channel_sweep(r, ch);
}

static void on_sub_reply(redisAsyncContext *ac, void *rp, void *priv)
{
    struct redis *r = priv;
    redisReply *reply = rp;
    if (!reply || r->freeing || ac != r->sub.ac || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements < 3)
        return;
    const redisReply *kind = reply->element[0], *name = reply->element[1],
                     *data = reply->element[2];
    if (kind->type != REDIS_REPLY_STRING || name->type != REDIS_REPLY_STRING)
        return;
    struct channel *ch = channel_find(r, name->str, name->len);
    if (!ch)
        return;
    if (strcasecmp(kind->str, "message") == 0 && data->type == REDIS_REPLY_STRING) {
        dispatch(r, ch, data->str, data->len, false);
    } else if (strcasecmp(kind->str, "subscribe") == 0) {
        ch->active = true;
        dispatch(r, ch, NULL, 0, false);
    }
}

static void on_hello(evutil_socket_t fd, short what, void *arg)
{
    struct redis *r = arg;
    for (struct channel *ch = r->channels, *next; ch; ch = next) {
        next = ch->next; /* dispatch may free ch */
        if (ch->active)
            dispatch(r, ch, NULL, 0, true);
    }
}

int redis_subscribe(struct redis *r, const char *channel, redis_message_fn cb, void *arg)
{
    if (!r || r->freeing || !channel || !cb)
        return -1;
    struct channel *ch = channel_find(r, channel, strlen(channel));
    bool fresh = !ch;
    if (fresh) {
        ch = xcalloc(1, sizeof *ch);
        ch->name = xstrdup(channel);
        ch->next = r->channels;
        r->channels = ch;
    }
    struct listener *l = xcalloc(1, sizeof *l);
    l->cb = cb;
    l->arg = arg;
    l->hello = true;
    struct listener **pl = &ch->ls;
    while (*pl)
        pl = &(*pl)->next;
    *pl = l;
    if (fresh)
        send_subscribe(r, ch);
    else if (ch->active)
        event_active(r->hello_ev, EV_TIMEOUT, 0);
    return 0;
}

int redis_unsubscribe(struct redis *r, const char *channel, void *arg)
{
    if (!r || !channel)
        return -1;
    struct channel *ch = channel_find(r, channel, strlen(channel));
    if (!ch)
        return -1;
    for (struct listener *l = ch->ls; l; l = l->next) {
        if (!l->dead && l->arg == arg) {
            l->dead = true;
            if (ch->dispatching == 0 && !r->freeing)
                channel_sweep(r, ch);
            return 0;
        }
    }
    return -1;
}

/* ---- life cycle ----------------------------------------------------------------- */

/* Resolve a host name once, at start-up (may block; the loop is not running
 * yet), so that reconnects on the loop never wait for DNS. */
static char *resolve_once(const char *host)
{
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1)
        return xstrdup(host);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char out[INET6_ADDRSTRLEN] = "";
    if (getaddrinfo(host, NULL, &hints, &res) == 0 && res) {
        for (struct addrinfo *ai = res; ai && !out[0]; ai = ai->ai_next) {
            if (ai->ai_family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, out, sizeof out);
            else if (ai->ai_family == AF_INET6)
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, out,
                          sizeof out);
        }
    }
    if (res)
        freeaddrinfo(res);
    if (!out[0]) {
        log_warn("cannot resolve the redis host now; hiredis will resolve it on every connect",
                 "host", host, NULL);
        return xstrdup(host);
    }
    return xstrdup(out);
}

static void conn_init(struct redis *r, struct conn *c, bool is_sub)
{
    c->r = r;
    c->is_sub = is_sub;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->timer = evtimer_new(r->base, on_conn_timer, c);
    if (!c->timer) {
        fprintf(stderr, "fatal: out of memory (event)\n");
        abort();
    }
}

struct redis *redis_new(struct event_base *base, const char *url)
{
    char *host, *user, *password;
    int port, db;
    if (redis_url_parse(url, &host, &port, &db, &user, &password) != 0)
        return NULL;
    struct redis *r = xcalloc(1, sizeof *r);
    r->base = base;
    r->host = resolve_once(host);
    free(host);
    r->user = user;
    r->password = password;
    r->port = port;
    r->db = db;
    r->timeout_ms = 500;
    r->hello_ev = event_new(base, -1, 0, on_hello, r);
    if (!r->hello_ev) {
        fprintf(stderr, "fatal: out of memory (event)\n");
        abort();
    }
    conn_init(r, &r->cmd, false);
    conn_init(r, &r->sub, true);
    conn_start(&r->cmd);
    conn_start(&r->sub);
    return r;
}

void redis_free(struct redis *r)
{
    if (!r)
        return;
    r->freeing = true;
    conn_drop(&r->cmd); /* in-flight commands: callbacks with NULL */
    conn_drop(&r->sub);
    while (r->pending) /* fail-fast commands not yet answered */
        cmd_finish(r->pending, NULL);
    event_free(r->cmd.timer);
    event_free(r->sub.timer);
    event_free(r->hello_ev);
    while (r->scripts) {
        struct redis_script *s = r->scripts;
        r->scripts = s->next;
        free(s->body);
        free(s);
    }
    while (r->channels) {
        struct channel *ch = r->channels;
        r->channels = ch->next;
        channel_free(ch);
    }
    free(r->host);
    free(r->user);
    if (r->password)
        secure_wipe(r->password, strlen(r->password));
    free(r->password);
    free(r);
}

void redis_set_timeout(struct redis *r, int timeout_ms)
{
    if (r)
        r->timeout_ms = timeout_ms < 10 ? 10 : timeout_ms;
}

bool redis_connected(const struct redis *r)
{
    return r && r->cmd.ready;
}
