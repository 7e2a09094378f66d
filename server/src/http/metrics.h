/* metrics.h - Prometheus metrics: request counts by route and status,
 * latency histograms, provider errors, tokens; gauges read at scrape time
 * (active turns, SSE subscribers). Loop thread only. */
#ifndef COAI_METRICS_H
#define COAI_METRICS_H

#include "../app.h"

struct buf;

void metrics_init(void);
void metrics_cleanup(void);
/* One finished request; route is the pattern ("/api/v1/chats/{id}",
 * "static", "/v1/chat/completions", ...). */
void metrics_request(const char *route, const char *method, int status, int64_t duration_us);
void metrics_provider_error(const char *code);
void metrics_tokens(int64_t prompt, int64_t completion);
/* Text exposition format into b. */
void metrics_render(struct app *app, struct buf *b);

#endif
