/* log.c - JSON-lines logger; one write(2) per line so threads do not
 * interleave. See log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

static enum log_level g_level = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void log_set_level(enum log_level lvl) { g_level = lvl; }
enum log_level log_get_level(void) { return g_level; }
bool log_enabled(enum log_level lvl) { return lvl >= g_level && lvl != LOG_OFF; }

int log_level_parse(const char *s)
{
    for (int i = 0; i < (int)COAI_ARRAY_LEN(level_names); i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

static void put_json_string(struct buf *b, const char *s)
{
    (void)buf_append_json_str(b, s); /* a truncated log line is acceptable; the cap is generous */
}

void log_kv(enum log_level lvl, const char *msg, ...)
{
    if (!log_enabled(lvl))
        return;
    struct buf b;
    buf_init(&b, 64 * 1024);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    int rc = buf_printf(&b, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":", when,
                        ts.tv_nsec / 1000000, level_names[lvl]);
    put_json_string(&b, msg);
    va_list ap;
    va_start(ap, msg);
    const char *k;
    while (rc == 0 && (k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        rc = buf_append(&b, ",", 1);
        put_json_string(&b, k);
        rc |= buf_append(&b, ":", 1);
        if (!v)
            rc |= buf_append_str(&b, "null");
        else if (v[0] == '=')
            rc |= buf_append_str(&b, v + 1);
        else
            put_json_string(&b, v);
    }
    va_end(ap);
    (void)buf_append(&b, "}\n", 2);
    ssize_t w = write(STDERR_FILENO, b.p, b.len);
    (void)w;
    buf_cleanup(&b);
}
