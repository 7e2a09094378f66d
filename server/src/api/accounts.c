/* accounts.c - register, sign in/out, the current user, password change,
 * and session management. Wrong credentials get one answer whether or not
 * the account exists, and take the same time (a dummy argon2 verify). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../http/auth.h"
#include "../lib/caps.h"
#include "../lib/crypto.h"
#include "../lib/ids.h"
#include "../lib/ratelimit.h"
#include "../views.h"
#include "api.h"

static bool email_ok(const char *e)
{
    const char *at = strchr(e, '@');
    if (!at || at == e || strchr(at + 1, '@') || !strchr(at + 1, '.') || at[1] == '.')
        return false;
    for (const unsigned char *p = (const unsigned char *)e; *p; p++)
        if (*p <= ' ' || *p == 0x7f)
            return false;
    size_t l = strlen(e);
    return e[l - 1] != '.';
}

static int password_check(struct api_ctx *c, const char *field, const char *pw)
{
    size_t n = strlen(pw);
    if (n < LIMIT_PASSWORD_MIN) {
        api_fail(c, 400, "weak_password", "%s must be at least %d characters", field,
                 LIMIT_PASSWORD_MIN);
        return -1;
    }
    return 0;
}

void api_auth_register(struct api_ctx *c)
{
    const char *email, *password, *name;
    if (api_body_string(c, "email", true, LIMIT_EMAIL, &email) ||
        api_body_string(c, "password", true, LIMIT_PASSWORD, &password) ||
        api_body_string(c, "name", false, 200, &name))
        return;
    if (!email_ok(email))
        return api_fail(c, 400, "invalid_email", "email is not a valid address");
    if (password_check(c, "password", password))
        return;
    if (!c->app->cfg.registration_open)
        return api_fail(c, 403, "registration_closed",
                        "registration is closed; ask an administrator for an account");
    struct store_user u;
    memset(&u, 0, sizeof u);
    if (crypto_password_hash(password, &u.password_hash) != 0)
        return api_fail_err(c, APP_EINTERNAL, "");
    u.email = (char *)email;
    u.name = (char *)name;
    enum app_err e = store_user_create(c->st, &u, true);
    u.email = NULL; /* borrowed */
    u.name = NULL;
    if (e == APP_ECONFLICT) {
        store_user_clear(&u);
        return api_fail(c, 409, "email_taken", "an account with this email already exists");
    }
    if (e != APP_OK) {
        store_user_clear(&u);
        return api_fail_err(c, e, "");
    }
    char id[STORE_ID_LEN + 1];
    memcpy(id, u.id, sizeof id);
    store_user_clear(&u);
    store_user_clear(&c->user);
    e = store_user_get(c->st, id, &c->user);
    if (e == APP_OK)
        e = auth_session_start(c, c->user.id);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 201, json_pack("{s:o}", "user", view_user(&c->user)));
}

/* Lock-out keys: the account (any email, existing or not, so a lock-out
 * reveals nothing) and the client address (which may try many accounts). */
static void lock_keys(struct api_ctx *c, const char *email, char *acct, size_t al, char *ip,
                      size_t il)
{
    snprintf(acct, al, "lock-acct:");
    size_t n = strlen(acct);
    for (const char *p = email; *p && n + 1 < al; p++)
        acct[n++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    acct[n] = '\0';
    snprintf(ip, il, "lock-ip:%s", c->client_ip ? c->client_ip : "");
}

void api_auth_login(struct api_ctx *c)
{
    const char *email, *password;
    if (api_body_string(c, "email", true, LIMIT_EMAIL, &email) ||
        api_body_string(c, "password", true, LIMIT_PASSWORD, &password))
        return;
    struct config *cfg = &c->app->cfg;
    int window = cfg->lockout_minutes * 60, ra = 0;
    char acct[LIMIT_EMAIL + 16], ip[96];
    lock_keys(c, email, acct, sizeof acct, ip, sizeof ip);
    if (ratelimit_shared_locked(c->app->rl, acct, cfg->lockout_failures, window, &ra) ||
        ratelimit_shared_locked(c->app->rl, ip, cfg->lockout_failures * 4, window, &ra)) {
        c->retry_after = ra;
        return api_fail(c, 429, "locked_out",
                        "too many failed sign-ins; try again in %d minutes", (ra + 59) / 60);
    }
    enum app_err e = store_user_get_by_email(c->st, email, &c->user);
    if (e == APP_ENOTFOUND) {
        crypto_password_dummy_verify(password);
        ratelimit_shared_fail(c->app->rl, acct, window);
        ratelimit_shared_fail(c->app->rl, ip, window);
        return api_fail(c, 401, "invalid_credentials", "email or password is incorrect");
    }
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    int v = crypto_password_verify(c->user.password_hash, password);
    if (v != 0) {
        store_user_clear(&c->user);
        ratelimit_shared_fail(c->app->rl, acct, window);
        ratelimit_shared_fail(c->app->rl, ip, window);
        return api_fail(c, 401, "invalid_credentials", "email or password is incorrect");
    }
    ratelimit_shared_clear(c->app->rl, acct);
    e = auth_session_start(c, c->user.id);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 200, json_pack("{s:o}", "user", view_user(&c->user)));
}

void api_auth_logout(struct api_ctx *c)
{
    enum app_err e = store_session_delete(c->st, c->user.id, c->session.id);
    if (e != APP_OK && e != APP_ENOTFOUND)
        return api_fail_err(c, e, "");
    auth_cookie_clear(c);
    api_reply_take(c, 204, NULL);
}

void api_me_get(struct api_ctx *c)
{
    api_reply_take(c, 200, json_pack("{s:o}", "user", view_user(&c->user)));
}

void api_me_password(struct api_ctx *c)
{
    const char *cur, *next;
    if (api_body_string(c, "current_password", true, LIMIT_PASSWORD, &cur) ||
        api_body_string(c, "new_password", true, LIMIT_PASSWORD, &next))
        return;
    if (password_check(c, "new_password", next))
        return;
    if (crypto_password_verify(c->user.password_hash, cur) != 0)
        return api_fail(c, 403, "invalid_credentials", "current password is incorrect");
    char *hash = NULL;
    if (crypto_password_hash(next, &hash) != 0)
        return api_fail_err(c, APP_EINTERNAL, "");
    enum app_err e = store_user_set_password(c->st, c->user.id, hash);
    free(hash);
    /* Every other session ends: a changed password must lock out whoever
     * knew the old one. */
    if (e == APP_OK)
        e = store_session_delete_all(c->st, c->user.id, c->session.id);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 204, NULL);
}

void api_sessions_list(struct api_ctx *c)
{
    struct store_session *list = NULL;
    size_t n = 0;
    enum app_err e = store_session_list(c->st, c->user.id, now_ms(), &list, &n);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, view_session(&list[i], strcmp(list[i].id, c->session.id) == 0));
    store_session_list_free(list, n);
    api_reply_take(c, 200, json_pack("{s:o}", "data", arr));
}

void api_sessions_delete(struct api_ctx *c)
{
    if (!ids_valid(c->params[0]))
        return api_fail(c, 404, "not_found", "no such session");
    enum app_err e = store_session_delete(c->st, c->user.id, c->params[0]);
    if (e == APP_ENOTFOUND)
        return api_fail(c, 404, "not_found", "no such session");
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    if (strcmp(c->params[0], c->session.id) == 0)
        auth_cookie_clear(c);
    api_reply_take(c, 204, NULL);
}

/* Public, cacheable facts the web app needs before sign-in. Runs on the loop. */
void api_config_get(struct api_ctx *c)
{
    struct config *cfg = &c->app->cfg;
    const char *env = cfg->env == ENV_PRODUCTION ? "production"
                      : cfg->env == ENV_STAGING  ? "staging"
                                                 : "development";
    api_reply_take(c, 200,
                   json_pack("{s:b,s:s,s:o,s:s}", "registration_open", cfg->registration_open,
                             "environment", env, "sentry_dsn",
                             cfg->sentry_dsn ? json_string(cfg->sentry_dsn) : json_null(),
                             "version", "0.1.0"));
}
