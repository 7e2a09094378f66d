/* route.c - pure parsing helpers of the HTTP layer, kept apart so unit
 * tests and fuzzers can reach them: path pattern matching and cookies. */
#include "route.h"

#include <stdlib.h>
#include <string.h>

/* Match pattern against path; captures {x} segments into params. */
bool route_match(const char *pattern, const char *path, char *params[ROUTE_MAX_PARAMS])
{
    int np = 0;
    const char *p = pattern, *s = path;
    char *caps[ROUTE_MAX_PARAMS] = {0};
    while (*p && *s) {
        if (*p == '{') {
            const char *pe = strchr(p, '}');
            const char *se = strchr(s, '/');
            if (!se)
                se = s + strlen(s);
            if (se == s || np >= ROUTE_MAX_PARAMS)
                goto fail;
            caps[np++] = xstrndup(s, (size_t)(se - s));
            p = pe + 1;
            s = se;
            continue;
        }
        if (*p != *s)
            goto fail;
        p++;
        s++;
    }
    if (*p || *s)
        goto fail;
    for (int i = 0; i < ROUTE_MAX_PARAMS; i++) {
        free(params[i]);
        params[i] = caps[i];
    }
    return true;
fail:
    for (int i = 0; i < np; i++)
        free(caps[i]);
    return false;
}

char *http_cookie_get(const char *cookies, const char *name)
{
    size_t nl = strlen(name);
    const char *p = cookies;
    while (p && *p) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *e = strchr(p, ';');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=')
            return xstrndup(p + nl + 1, len - nl - 1);
        p = e;
    }
    return NULL;
}

