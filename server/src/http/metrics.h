/* metrics.h - Prometheus metrics: request counts by route and status,
 * latency histograms, provider errors, tokens, event-loop lag; gauges read
 * at scrape time (active turns, SSE subscribers). Loop thread only. */
#ifndef COAI_METRICS_H
#define COAI_METRICS_H

#include "../app.h"

struct buf;

void metrics_init(void);
void metrics_cleanup(void);      /* also stops the loop-lag timer */
/* Start sampling event-loop lag (coai_loop_lag_seconds): a timer on base
 * records how late it runs. Once; metrics_cleanup stops it (before the base
 * is freed). */
void metrics_loop_lag_start(struct event_base *base);
/* One finished request; route is the pattern ("/api/v1/chats/{id}",
 * "static", "/v1/chat/completions", ...). */
void metrics_request(const char *route, const char *method, int status, int64_t duration_us);
void metrics_provider_error(const char *code);
void metrics_tokens(int64_t prompt, int64_t completion);
/* Text exposition format into b. */
void metrics_render(struct app *app, struct buf *b);

#endif
