/* auth.c - session cookies. The cookie holds a 256-bit random token; the
 * store only ever sees its SHA-256, so a leaked database cannot be replayed
 * as cookies. */
#include "auth.h"

#include <stdlib.h>
#include <string.h>

#include "../lib/crypto.h"
#include "../lib/ids.h"


static char *cookie_value(struct api_ctx *c, const char *token, int64_t max_age)
{
    return xasprintf("%s=%s; Path=/; HttpOnly; SameSite=Lax; Max-Age=%lld%s", AUTH_COOKIE, token,
                     (long long)max_age, c->app->cfg.cookie_secure ? "; Secure" : "");
}

enum app_err auth_session_resolve(struct api_ctx *c)
{
    if (!c->cookie_token || !*c->cookie_token || strlen(c->cookie_token) > 128)
        return APP_EAUTH;
    char hash[65];
    crypto_sha256_hex(c->cookie_token, strlen(c->cookie_token), hash);
    int64_t now = now_ms();
    enum app_err e = store_session_get_by_hash(c->st, hash, now, &c->session);
    if (e == APP_ENOTFOUND)
        return APP_EAUTH;
    if (e != APP_OK)
        return e;
    e = store_user_get(c->st, c->session.user_id, &c->user);
    if (e == APP_ENOTFOUND)
        return APP_EAUTH;
    if (e != APP_OK)
        return e;
    if (now - c->session.last_seen_at > AUTH_TOUCH_INTERVAL_MS) {
        int64_t exp = now + c->app->cfg.session_ttl_s * 1000;
        if (store_session_touch(c->st, c->session.id, now, exp) == APP_OK) {
            c->session.last_seen_at = now;
            c->session.expires_at = exp;
            /* slide the browser's cookie too, or it would expire first */
            free(c->set_cookie);
            c->set_cookie = cookie_value(c, c->cookie_token, c->app->cfg.session_ttl_s);
        }
    }
    c->authed = true;
    return APP_OK;
}


enum app_err auth_session_start(struct api_ctx *c, const char *user_id)
{
    char *token = crypto_token_new(32);
    struct store_session s;
    memset(&s, 0, sizeof s);
    snprintf(s.user_id, sizeof s.user_id, "%s", user_id);
    crypto_sha256_hex(token, strlen(token), s.token_hash);
    int64_t now = now_ms();
    s.created_at = now;
    s.last_seen_at = now;
    s.expires_at = now + c->app->cfg.session_ttl_s * 1000;
    s.user_agent = c->user_agent;
    s.ip = c->client_ip;
    enum app_err e = store_session_create(c->st, &s);
    s.user_agent = NULL; /* borrowed */
    s.ip = NULL;
    if (e == APP_OK) {
        free(c->set_cookie);
        c->set_cookie = cookie_value(c, token, c->app->cfg.session_ttl_s);
        store_session_clear(&c->session);
        c->session = s;
    }
    secure_wipe(token, strlen(token));
    free(token);
    return e;
}

void auth_cookie_clear(struct api_ctx *c)
{
    free(c->set_cookie);
    c->set_cookie = cookie_value(c, "", 0);
}
