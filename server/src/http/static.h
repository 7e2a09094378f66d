/* static.h - the built web app, served from memory: each file is read
 * into memory the first time it is served (one read from the page cache on
 * the loop) and served from there afterwards. */
#ifndef COAI_STATIC_H
#define COAI_STATIC_H

#include <event2/http.h>

struct static_files;

/* Lists every regular file under dir (recursively; hidden files skipped)
 * without reading any; they are read when first served, up to a total cap.
 * A dir without index.html gives a set with a built-in placeholder page.
 * Never NULL. */
struct app;
struct static_files *static_load(const char *dir);
void static_free(struct static_files *s);
size_t static_count(const struct static_files *s);
/* Serves path for a GET/HEAD; falls back to index.html for client routes
 * (paths without a file extension). /c/<id> with a session cookie goes to
 * app's worker pool for the server-rendered first screen (ssr.c) and is
 * answered from there. Returns the status sent (200 for that one). */
int static_serve(struct static_files *s, struct app *app, struct evhttp_request *req,
                 const char *path, const char *req_id);

#endif
