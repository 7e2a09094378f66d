/* auth.h - sessions: the cookie, token hashing, resolving a request's user. */
#ifndef COAI_AUTH_H
#define COAI_AUTH_H

#include "http.h"

#define AUTH_COOKIE "coai_session"
/* A session's last-seen time and expiry slide at most this often. */
#define AUTH_TOUCH_INTERVAL_MS (60 * 1000)

/* Worker side: look the cookie token up (hashed), check expiry, load the
 * user into c->user / c->session, slide the expiry. APP_EAUTH if there is no
 * valid session. */
enum app_err auth_session_resolve(struct api_ctx *c);
/* Worker side: create a session for user_id and put its cookie on c. */
enum app_err auth_session_start(struct api_ctx *c, const char *user_id);
/* Put a cookie that clears the session on c. */
void auth_cookie_clear(struct api_ctx *c);

#endif
