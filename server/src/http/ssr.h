/* ssr.h - the first screen of a chat, rendered on the server: the last few
 * messages of the chat's visible branch as safe HTML, with the markup and
 * class names of the web app's message list (web/src/components/
 * MessageItem.tsx), so the browser paints them while it parses the page,
 * before any script; the app removes the block when it renders the chat
 * (web/src/lib/ssr.ts).
 *
 * Markdown is parsed by md4c (libmd4c.so.0, loaded with dlopen on first use,
 * on a worker: nothing at idle) and rendered here: raw HTML is text
 * (MD_FLAG_NOHTML), every text and attribute is escaped, links keep their
 * target only for http:, https: and mailto:, images become links as in the
 * app (web/src/lib/markdown.ts). Input, nesting and output are bounded. */
#ifndef COAI_SSR_H
#define COAI_SSR_H

#include <stddef.h>

#include "../lib/buf.h"
#include "../store/store.h"

#define SSR_MESSAGES_MAX 10        /* the end of the branch: a tall viewport */
#define SSR_BUDGET (64u * 1024)    /* bytes of rendered HTML, shell included */
#define SSR_MD_MAX (32u * 1024)    /* markdown source rendered per message */
#define SSR_DEPTH_MAX 32           /* nested blocks and spans */

/* Appends the safe HTML of markdown md[0..len) to out. 0, or -1 (out may
 * hold part of it) when md4c cannot be loaded, len > SSR_MD_MAX, nesting
 * passes SSR_DEPTH_MAX, or out's cap is reached. */
int ssr_markdown(struct buf *out, const char *md, size_t len);

/* Appends s[0..len) HTML-escaped (text or attribute value). */
int ssr_escape(struct buf *out, const char *s, size_t len);

/* The block for chat chat_id titled title (may be NULL) from msgs (the
 * answer of store_message_tail: the branch ending at leaf_id, or at the last
 * message when leaf_id is NULL or "", plus siblings): its last messages, at
 * most SSR_MESSAGES_MAX, as many as fit in budget bytes. NULL when none
 * does (or md4c is missing); else a NUL-terminated string, *len its
 * length. */
char *ssr_chat_block(const char *chat_id, const char *title, const struct store_message *msgs,
                     size_t n, const char *leaf_id, size_t budget, size_t *len);

#endif
