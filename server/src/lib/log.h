/* log.h - structured logging: one JSON object per line on stderr.
 *
 * Messages are constant strings; variable data goes into key/value fields so
 * logs stay machine-readable. Never pass secrets or message text here: the
 * fields are written as given.
 */
#ifndef COAI_LOG_H
#define COAI_LOG_H

#include "common.h"

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Parses "debug", "info", "warn", "error", "off"; -1 if unknown. */
int log_level_parse(const char *s);
bool log_enabled(enum log_level lvl);

/* log_kv(LOG_INFO, "request", "method", "GET", "status", "=200", NULL):
 * alternating key, value pairs ending with NULL. A value starting with '='
 * is written raw (numbers, true/false, pre-encoded JSON); others are
 * JSON-escaped strings. A NULL value after a key is written as null. */
void log_kv(enum log_level lvl, const char *msg, ...) __attribute__((sentinel));

#define log_info(msg, ...) log_kv(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_kv(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_kv(LOG_ERROR, msg, __VA_ARGS__)
#define log_debug(msg, ...) log_kv(LOG_DEBUG, msg, __VA_ARGS__)

#endif
