/* sentry.h - Sentry-compatible error reporting. With CHATOPENAII_SENTRY_DSN
 * set, unexpected errors (5xx answers, provider failures, crashes) are sent
 * as envelopes over HTTP; without it nothing is sent. Events carry codes,
 * routes and ids only: never message text, keys or request bodies. */
#ifndef COAI_SENTRY_H
#define COAI_SENTRY_H

#include <jansson.h>

#include "../app.h"

/* Parse the DSN, install the crash handler, send a crash report left by a
 * previous run. 0 ok (also when no DSN), -1 bad DSN (err set). */
int sentry_init(struct app *app, char *err, size_t errlen);
void sentry_cleanup(void);
bool sentry_enabled(void);
/* Report an event (loop thread). tags: object of string values, taken. */
void sentry_capture(struct app *app, const char *level, const char *message, json_t *tags);

#endif
