/* lazy_redis.c - the hiredis functions the server (redis.c, including
 * hiredis's libevent adapter) and its tests call, defined here under their
 * own names and forwarded to hiredis loaded by lazy.c (see lazy.h).
 * redis_new loads it first, so a missing hiredis is reported at start. The
 * variadic redisCommand and redisAppendCommand forward to the va_list forms
 * hiredis has for exactly this. */
#include <stdarg.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "lazy_int.h"

#define REDIS_FUNCS(X)                                                                          \
    X(redisConnectWithTimeout) X(redisSetTimeout) X(redisEnableKeepAlive) X(redisFree)          \
    X(redisCommandArgv) X(redisvCommand) X(redisAppendCommandArgv) X(redisvAppendCommand)       \
    X(redisBufferWrite) X(redisGetReply) X(freeReplyObject) X(redisAsyncConnect)                \
    X(redisAsyncFree) X(redisAsyncSetConnectCallback) X(redisAsyncSetDisconnectCallback)        \
    X(redisAsyncCommandArgv) X(redisAsyncHandleRead) X(redisAsyncHandleWrite) X(hi_calloc)

enum { REDIS_FUNCS(LAZY_ENUM) REDIS_NFUNCS };
static const char *const names[] = {REDIS_FUNCS(LAZY_NAME)};
static void *fns[REDIS_NFUNCS];
const struct lazy_syms lazy_redis_syms = {names, fns, REDIS_NFUNCS};

#define F(name) ((__typeof__(&name))lazy_fn(LAZY_REDIS, fns, I_##name))

redisContext *redisConnectWithTimeout(const char *ip, int port, const struct timeval tv)
{
    return F(redisConnectWithTimeout)(ip, port, tv);
}

int redisSetTimeout(redisContext *c, const struct timeval tv)
{
    return F(redisSetTimeout)(c, tv);
}

int redisEnableKeepAlive(redisContext *c)
{
    return F(redisEnableKeepAlive)(c);
}

void redisFree(redisContext *c)
{
    if (!c) /* as hiredis does, without loading it */
        return;
    F(redisFree)(c);
}

void *redisCommandArgv(redisContext *c, int argc, const char **argv, const size_t *argvlen)
{
    return F(redisCommandArgv)(c, argc, argv, argvlen);
}

void *redisvCommand(redisContext *c, const char *format, va_list ap)
{
    return F(redisvCommand)(c, format, ap);
}

void *redisCommand(redisContext *c, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    void *r = F(redisvCommand)(c, format, ap);
    va_end(ap);
    return r;
}

int redisAppendCommandArgv(redisContext *c, int argc, const char **argv, const size_t *argvlen)
{
    return F(redisAppendCommandArgv)(c, argc, argv, argvlen);
}

int redisvAppendCommand(redisContext *c, const char *format, va_list ap)
{
    return F(redisvAppendCommand)(c, format, ap);
}

int redisAppendCommand(redisContext *c, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    int rc = F(redisvAppendCommand)(c, format, ap);
    va_end(ap);
    return rc;
}

int redisBufferWrite(redisContext *c, int *done)
{
    return F(redisBufferWrite)(c, done);
}

int redisGetReply(redisContext *c, void **reply)
{
    return F(redisGetReply)(c, reply);
}

void freeReplyObject(void *reply)
{
    if (!reply) /* as hiredis does, without loading it */
        return;
    F(freeReplyObject)(reply);
}

redisAsyncContext *redisAsyncConnect(const char *ip, int port)
{
    return F(redisAsyncConnect)(ip, port);
}

void redisAsyncFree(redisAsyncContext *ac)
{
    F(redisAsyncFree)(ac);
}

int redisAsyncSetConnectCallback(redisAsyncContext *ac, redisConnectCallback *fn)
{
    return F(redisAsyncSetConnectCallback)(ac, fn);
}

int redisAsyncSetDisconnectCallback(redisAsyncContext *ac, redisDisconnectCallback *fn)
{
    return F(redisAsyncSetDisconnectCallback)(ac, fn);
}

int redisAsyncCommandArgv(redisAsyncContext *ac, redisCallbackFn *fn, void *privdata, int argc,
                          const char **argv, const size_t *argvlen)
{
    return F(redisAsyncCommandArgv)(ac, fn, privdata, argc, argv, argvlen);
}

void redisAsyncHandleRead(redisAsyncContext *ac)
{
    F(redisAsyncHandleRead)(ac);
}

void redisAsyncHandleWrite(redisAsyncContext *ac)
{
    F(redisAsyncHandleWrite)(ac);
}

/* hiredis's libevent adapter (an inline header) allocates with it */
void *hi_calloc(size_t nmemb, size_t size)
{
    return F(hi_calloc)(nmemb, size);
}
