/* routes.c - the route table: every API endpoint, its handler and flags.
 * docs/openapi.yaml must list exactly these (checked by a test through
 * `chatopenaii routes`). Order matters only for identical patterns. */
#include "api.h"

const struct route api_routes[] = {
    {"POST", "/api/v1/auth/register", api_auth_register, 0, "create an account and sign in"},
    {"POST", "/api/v1/auth/login", api_auth_login, 0, "sign in"},
    {"POST", "/api/v1/auth/logout", api_auth_logout, ROUTE_AUTH, "sign out"},
    {"GET", "/api/v1/me", api_me_get, ROUTE_AUTH, "the signed-in user"},
    {"POST", "/api/v1/me/password", api_me_password, ROUTE_AUTH, "change password"},
    {"GET", "/api/v1/sessions", api_sessions_list, ROUTE_AUTH, "list my sessions"},
    {"DELETE", "/api/v1/sessions/{id}", api_sessions_delete, ROUTE_AUTH, "revoke a session"},
    {"GET", "/api/v1/connection", api_connection_get, ROUTE_AUTH, "my provider connection"},
    {"PUT", "/api/v1/connection", api_connection_put, ROUTE_AUTH, "save my provider connection"},
    {"DELETE", "/api/v1/connection", api_connection_delete, ROUTE_AUTH,
     "remove my provider connection"},
    {"GET", "/api/v1/models", api_models_list, ROUTE_AUTH, "models available to me"},
    {"GET", "/api/v1/chats", api_chats_list, ROUTE_AUTH, "list chats, newest activity first"},
    {"POST", "/api/v1/chats", api_chats_create, ROUTE_AUTH, "create a chat"},
    {"GET", "/api/v1/chats/{id}", api_chats_get, ROUTE_AUTH, "a chat with all its messages"},
    {"PATCH", "/api/v1/chats/{id}", api_chats_update, ROUTE_AUTH,
     "rename, change settings, switch branch"},
    {"DELETE", "/api/v1/chats/{id}", api_chats_delete, ROUTE_AUTH, "delete a chat"},
    {"GET", "/api/v1/chats/{id}/messages", api_messages_list, ROUTE_AUTH,
     "all messages of a chat"},
    {"POST", "/api/v1/chats/{id}/messages", api_messages_create, ROUTE_AUTH,
     "send a message and start a turn"},
    {"POST", "/api/v1/chats/{id}/messages/{mid}/edit", api_messages_edit, ROUTE_AUTH,
     "edit a user message (new branch)"},
    {"POST", "/api/v1/chats/{id}/messages/{mid}/regenerate", api_messages_regenerate,
     ROUTE_AUTH, "regenerate an answer (new sibling)"},
    {"GET", "/api/v1/turns/{id}/events", api_turn_events, ROUTE_AUTH,
     "follow a turn (SSE, resumable)"},
    {"POST", "/api/v1/turns/{id}/stop", api_turn_stop, ROUTE_AUTH, "stop a turn"},
};

const size_t api_routes_count = sizeof api_routes / sizeof api_routes[0];
