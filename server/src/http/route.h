/* route.h - path pattern matching and cookie parsing (pure functions). */
#ifndef COAI_ROUTE_H
#define COAI_ROUTE_H

#include "../lib/common.h"

#define ROUTE_MAX_PARAMS 3

/* Match pattern ("/api/v1/chats/{id}") against a decoded path. On a match,
 * the {x} segments are copied into params (heap strings; previous values
 * freed) and true is returned; on no match params are untouched. */
bool route_match(const char *pattern, const char *path, char *params[ROUTE_MAX_PARAMS]);
/* The value of cookie `name` in a Cookie header (heap string), or NULL. */
char *http_cookie_get(const char *cookies, const char *name);

#endif
