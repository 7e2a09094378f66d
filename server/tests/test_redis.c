/* test_redis.c - the async Redis client (lib/redis.c) against a real
 * redis-server started here on a free port: commands, fail-fast while down,
 * EVALSHA with the EVAL fallback after SCRIPT FLUSH, publish/subscribe with
 * several listeners (unsubscribe from inside a callback), resubscription
 * after the connections are killed, and the per-command timeout on a stalled
 * server. Needs redis-server on PATH (scripts/deps.sh test). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#include <cmocka.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "lib/redis.h"

static pid_t server_pid;
static int server_port;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    close(fd);
    return ntohs(sa.sin_port);
}

static redisContext *sync_ctx(void)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", server_port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static void sync_cmd(const char *cmd)
{
    redisContext *c = sync_ctx();
    assert_non_null(c);
    redisReply *r = redisCommand(c, cmd);
    assert_non_null(r);
    freeReplyObject(r);
    redisFree(c);
}

static int start_server(void **state)
{
    server_port = free_port();
    if (server_port <= 0)
        return -1;
    char port[16];
    snprintf(port, sizeof port, "%d", server_port);
    server_pid = fork();
    if (server_pid == 0) {
        int devnull = open("/dev/null", 1);
        dup2(devnull, 1);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--enable-debug-command", "yes", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        redisContext *c = sync_ctx();
        if (c) {
            redisFree(c);
            return 0;
        }
        usleep(20000);
    }
    fprintf(stderr, "redis-server did not start (is it installed? scripts/deps.sh test)\n");
    return -1;
}

static int stop_server(void **state)
{
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    return 0;
}

/* ---- loop helpers ------------------------------------------------------------ */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

/* Run base until *flag >= want or ms pass; returns the elapsed ms. */
static int64_t run_until(struct event_base *base, const int *flag, int want, int ms)
{
    bool expired = false;
    struct event *t = evtimer_new(base, on_deadline, &expired);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t, &tv);
    int64_t t0 = mono_us();
    while (!expired && *flag < want)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
    return (mono_us() - t0) / 1000;
}

struct got {
    int calls;
    int nulls;
    bool in_call;       /* set around redis_command_argv */
    bool called_inside;
    char str[64];
};

static void reply_cb(void *arg, const redisReply *r)
{
    struct got *g = arg;
    g->calls++;
    if (g->in_call)
        g->called_inside = true;
    if (!r) {
        g->nulls++;
        return;
    }
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
        snprintf(g->str, sizeof g->str, "%s", r->str);
    else if (r->type == REDIS_REPLY_INTEGER)
        snprintf(g->str, sizeof g->str, "%lld", r->integer);
    else if (r->type == REDIS_REPLY_ERROR)
        snprintf(g->str, sizeof g->str, "ERR:%s", r->str);
}

static struct redis *connect_new(struct event_base *base)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", server_port);
    struct redis *r = redis_new(base, url);
    assert_non_null(r);
    for (int i = 0; i < 200 && !redis_connected(r); i++)
        event_base_loop(base, EVLOOP_ONCE);
    assert_true(redis_connected(r));
    return r;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_url(void **state)
{
    char *h, *u, *p;
    int port, db;
    assert_int_equal(redis_url_parse("redis://h:1234/3", &h, &port, &db, &u, &p), 0);
    assert_string_equal(h, "h");
    assert_int_equal(port, 1234);
    assert_int_equal(db, 3);
    assert_null(u);
    assert_null(p);
    free(h);
    assert_int_equal(redis_url_parse("redis://al:s%40cret@[::1]/", &h, &port, &db, &u, &p), 0);
    assert_string_equal(h, "::1");
    assert_int_equal(port, 6379);
    assert_string_equal(u, "al");
    assert_string_equal(p, "s@cret");
    free(h);
    free(u);
    free(p);
    const char *bad[] = {"http://h", "redis://", "redis://h:0", "redis://h:70000", "redis://h:x",
                         "redis://h/x", "redis://u@h", "redis://[::1", NULL};
    for (int i = 0; bad[i]; i++)
        assert_int_equal(redis_url_parse(bad[i], &h, &port, &db, &u, &p), -1);
}

static void test_command(void **state)
{
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base);
    struct got g = {0};
    const char *set[] = {"SET", "coai:test:k", "v\0x"};
    size_t lens[] = {3, 11, 3};
    g.in_call = true;
    assert_int_equal(redis_command_argv(r, 3, set, lens, reply_cb, &g), 0);
    g.in_call = false;
    run_until(base, &g.calls, 1, 2000);
    assert_int_equal(g.calls, 1);
    assert_false(g.called_inside);
    assert_string_equal(g.str, "OK");
    const char *get[] = {"STRLEN", "coai:test:k"};
    memset(&g, 0, sizeof g);
    assert_int_equal(redis_command_argv(r, 2, get, NULL, reply_cb, &g), 0);
    run_until(base, &g.calls, 1, 2000);
    assert_string_equal(g.str, "3");
    /* An error answer is a reply, not NULL. */
    const char *bad[] = {"NOSUCHCOMMAND"};
    memset(&g, 0, sizeof g);
    assert_int_equal(redis_command_argv(r, 1, bad, NULL, reply_cb, &g), 0);
    run_until(base, &g.calls, 1, 2000);
    assert_int_equal(g.nulls, 0);
    assert_true(strncmp(g.str, "ERR:", 4) == 0);
    /* Waiting callbacks get NULL from redis_free. */
    memset(&g, 0, sizeof g);
    assert_int_equal(redis_command_argv(r, 1, (const char *[]){"PING"}, NULL, reply_cb, &g), 0);
    redis_free(r);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.nulls, 1);
    event_base_free(base);
}

static void test_fail_fast(void **state)
{
    struct event_base *base = event_base_new();
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", free_port()); /* nobody listens */
    struct redis *r = redis_new(base, url);
    struct got g = {0};
    g.in_call = true;
    assert_int_equal(redis_command_argv(r, 1, (const char *[]){"PING"}, NULL, reply_cb, &g), 0);
    g.in_call = false;
    int64_t ms = run_until(base, &g.calls, 1, 2000);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.nulls, 1);
    assert_false(g.called_inside);
    assert_true(ms < 100);
    assert_int_equal(redis_publish(r, "c", "x", 1), 0); /* dropped silently */
    redis_free(r);
    event_base_free(base);
}

static void test_script(void **state)
{
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base);
    struct redis_script *s = redis_script_new(r, "return KEYS[1] .. ARGV[1]");
    for (int round = 0; round < 2; round++) {
        struct got g = {0};
        const char *argv[] = {"k", "v"};
        assert_int_equal(redis_eval_sha(r, s, 1, 2, argv, NULL, reply_cb, &g), 0);
        run_until(base, &g.calls, 1, 2000);
        assert_int_equal(g.calls, 1);
        assert_string_equal(g.str, "kv");
        sync_cmd("SCRIPT FLUSH"); /* the next EVALSHA gets NOSCRIPT, then EVAL */
    }
    redis_free(r);
    event_base_free(base);
}

struct lst {
    struct redis *r;
    const char *channel;
    int hellos, msgs;
    char last[32];
    bool unsub_self;    /* unsubscribe from inside the first message */
    int *total;
};

static void msg_cb(void *arg, const char *channel, const char *data, size_t len)
{
    struct lst *l = arg;
    assert_string_equal(channel, l->channel);
    (*l->total)++;
    if (!data) {
        l->hellos++;
        return;
    }
    l->msgs++;
    snprintf(l->last, sizeof l->last, "%.*s", (int)len, data);
    if (l->unsub_self)
        assert_int_equal(redis_unsubscribe(l->r, channel, l), 0);
}

static void test_pubsub(void **state)
{
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base);
    int total = 0;
    struct lst a = {r, "ch1", .unsub_self = true, .total = &total};
    struct lst b = {r, "ch1", .total = &total};
    struct lst c = {r, "ch2", .total = &total};
    assert_int_equal(redis_subscribe(r, "ch1", msg_cb, &a), 0);
    assert_int_equal(redis_subscribe(r, "ch2", msg_cb, &c), 0);
    run_until(base, &total, 2, 2000);
    assert_int_equal(a.hellos, 1);
    assert_int_equal(c.hellos, 1);
    /* A listener joining an active channel gets its own hello, later. */
    assert_int_equal(redis_subscribe(r, "ch1", msg_cb, &b), 0);
    assert_int_equal(b.hellos, 0);
    run_until(base, &total, 3, 2000);
    assert_int_equal(b.hellos, 1);
    assert_int_equal(a.hellos, 1);

    total = 0;
    assert_int_equal(redis_publish(r, "ch1", "one", 3), 0);
    run_until(base, &total, 2, 2000);
    assert_int_equal(a.msgs, 1);
    assert_int_equal(b.msgs, 1);
    assert_string_equal(b.last, "one");
    assert_int_equal(c.msgs, 0);
    /* a unsubscribed itself: only b hears the second message. */
    total = 0;
    assert_int_equal(redis_publish(r, "ch1", "two", 3), 0);
    assert_int_equal(redis_publish(r, "ch2", "three", 5), 0);
    run_until(base, &total, 2, 2000);
    assert_int_equal(a.msgs, 1);
    assert_int_equal(b.msgs, 2);
    assert_int_equal(c.msgs, 1);
    assert_int_equal(redis_unsubscribe(r, "ch1", &a), -1);

    /* Connections killed: both come back, the channels are subscribed
     * again (hello), messages flow again. */
    total = 0;
    sync_cmd("CLIENT KILL TYPE pubsub");
    sync_cmd("CLIENT KILL TYPE normal");
    run_until(base, &total, 2, 5000);
    assert_int_equal(b.hellos, 2);
    assert_int_equal(c.hellos, 2);
    for (int i = 0; i < 200 && !redis_connected(r); i++)
        event_base_loop(base, EVLOOP_ONCE);
    total = 0;
    assert_int_equal(redis_publish(r, "ch1", "four", 4), 0);
    run_until(base, &total, 1, 2000);
    assert_string_equal(b.last, "four");
    /* Last listener gone: unsubscribed; a publish reaches nobody here. */
    assert_int_equal(redis_unsubscribe(r, "ch1", &b), 0);
    assert_int_equal(redis_unsubscribe(r, "ch2", &c), 0);
    total = 0;
    assert_int_equal(redis_publish(r, "ch1", "five", 4), 0);
    run_until(base, &total, 1, 300);
    assert_int_equal(total, 0);
    redis_free(r);
    event_base_free(base);
}

static void test_timeout(void **state)
{
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base);
    redis_set_timeout(r, 300);
    /* Stall the server for 1 s from another connection (no wait here). */
    redisContext *s = sync_ctx();
    assert_non_null(s);
    assert_int_equal(redisAppendCommand(s, "DEBUG SLEEP 1"), REDIS_OK);
    int done = 0;
    while (!done)
        assert_int_equal(redisBufferWrite(s, &done), REDIS_OK);
    usleep(50000);
    struct got g = {0};
    assert_int_equal(redis_command_argv(r, 1, (const char *[]){"PING"}, NULL, reply_cb, &g), 0);
    int64_t ms = run_until(base, &g.calls, 1, 3000);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.nulls, 1);
    assert_true(ms >= 250 && ms < 800);
    redisFree(s);
    /* And it recovers by itself. */
    for (int i = 0; i < 400 && !redis_connected(r); i++)
        run_until(base, &(int){0}, 1, 10);
    assert_true(redis_connected(r));
    memset(&g, 0, sizeof g);
    assert_int_equal(redis_command_argv(r, 1, (const char *[]){"PING"}, NULL, reply_cb, &g), 0);
    run_until(base, &g.calls, 1, 2000);
    assert_string_equal(g.str, "PONG");
    redis_free(r);
    event_base_free(base);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url),      cmocka_unit_test(test_command),
        cmocka_unit_test(test_fail_fast), cmocka_unit_test(test_script),
        cmocka_unit_test(test_pubsub),   cmocka_unit_test(test_timeout),
    };
    int failed = cmocka_run_group_tests(tests, start_server, stop_server);
    int total = (int)(sizeof tests / sizeof tests[0]);
    printf("unit-redis: %d passed, %d failed\n", failed > total ? 0 : total - failed, failed);
    return failed ? 1 : 0;
}
