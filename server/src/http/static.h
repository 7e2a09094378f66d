/* static.h - the built web app, loaded into memory at start so serving it
 * never touches the disk from the event loop. */
#ifndef COAI_STATIC_H
#define COAI_STATIC_H

#include <event2/http.h>

struct static_files;

/* Loads every regular file under dir (recursively; hidden files skipped),
 * up to a total cap. A missing dir gives a set with a built-in placeholder
 * page. Never NULL. */
struct static_files *static_load(const char *dir);
void static_free(struct static_files *s);
size_t static_count(const struct static_files *s);
/* Serves path for a GET/HEAD; falls back to index.html for client routes
 * (paths without a file extension). Returns the status sent. */
int static_serve(struct static_files *s, struct evhttp_request *req, const char *path,
                 const char *req_id);

#endif
