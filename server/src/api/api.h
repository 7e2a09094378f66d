/* api.h - declarations shared by the resource handlers in api/. Every
 * handler here runs on a worker thread (see http.h) unless its route has
 * ROUTE_LOOP. */
#ifndef COAI_API_H
#define COAI_API_H

#include "../http/http.h"
#include "../llm/provider.h"

/* auth.c */
void api_auth_register(struct api_ctx *c);
void api_auth_login(struct api_ctx *c);
void api_auth_logout(struct api_ctx *c);
void api_me_get(struct api_ctx *c);
void api_me_password(struct api_ctx *c);
void api_sessions_list(struct api_ctx *c);
void api_sessions_delete(struct api_ctx *c);
void api_config_get(struct api_ctx *c);

/* connection.c */
void api_connection_get(struct api_ctx *c);
void api_connection_put(struct api_ctx *c);
void api_connection_delete(struct api_ctx *c);
void api_models_list(struct api_ctx *c);
struct models_cache *models_cache_new(void);
void models_cache_free(struct models_cache *mc);
/* The provider connection a user's requests use: their own, else the
 * server default. APP_ENOTFOUND when neither has a key. */
enum app_err api_provider_resolve(struct api_ctx *c, struct provider_conn *out);
/* Seal/open a provider key bound to (owner, connection id). */
int api_key_seal(struct app *app, const char *owner, const char *conn_id, const char *key,
                 unsigned char **ct, size_t *ct_len);
int api_key_open(struct app *app, const char *owner, const char *conn_id,
                 const unsigned char *ct, size_t ct_len, char **key);

/* chats.c */
void api_chats_list(struct api_ctx *c);
void api_chats_create(struct api_ctx *c);
void api_chats_get(struct api_ctx *c);
void api_chats_update(struct api_ctx *c);
void api_chats_delete(struct api_ctx *c);
/* Validate and serialize the "params" object; NULL + 400 set on error. */
char *api_chat_params(struct api_ctx *c, json_t *params);

/* messages.c */
void api_messages_list(struct api_ctx *c);
void api_messages_create(struct api_ctx *c);
void api_messages_edit(struct api_ctx *c);
void api_messages_regenerate(struct api_ctx *c);
void api_turn_events(struct api_ctx *c);
void api_turn_stop(struct api_ctx *c);
/* Close the event streams that follow turns of other instances (SIGTERM). */
void api_follows_shutdown(struct app *app);

/* tokens.c */
void api_tokens_create(struct api_ctx *c);
void api_tokens_list(struct api_ctx *c);
void api_tokens_revoke(struct api_ctx *c);
void api_usage_mine(struct api_ctx *c);
void api_admin_usage(struct api_ctx *c);

/* admin.c */
void api_admin_keys_list(struct api_ctx *c);
void api_admin_keys_create(struct api_ctx *c);
void api_admin_keys_update(struct api_ctx *c);
void api_admin_keys_delete(struct api_ctx *c);
void api_admin_prices_list(struct api_ctx *c);
void api_admin_prices_put(struct api_ctx *c);
void api_admin_prices_delete(struct api_ctx *c);
void api_admin_users_list(struct api_ctx *c);
void api_admin_limits_get(struct api_ctx *c);
void api_admin_limits_put(struct api_ctx *c);

#endif
