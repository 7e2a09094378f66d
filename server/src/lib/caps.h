/* caps.h - every cap on outside bytes, in one place (bytes unless noted). */
#ifndef COAI_CAPS_H
#define COAI_CAPS_H

#define LIMIT_REQUEST_BODY      (1024 * 1024)      /* JSON API request body; 413 past it */
#define LIMIT_REQUEST_BODY_HARD (26 * 1024 * 1024) /* libevent drops the request past it */
#define LIMIT_GATEWAY_BODY      (25 * 1024 * 1024) /* a /v1 request (audio uploads) */
#define LIMIT_REQUEST_HEADERS   (16 * 1024)        /* all request headers; 431 past it */
#define LIMIT_REQUEST_HEADERS_HARD (64 * 1024)
#define LIMIT_UPSTREAM_SSE_LINE (1024 * 1024)      /* one SSE line from the provider */
#define LIMIT_UPSTREAM_BODY     (8 * 1024 * 1024)  /* a non-streamed provider body */
#define LIMIT_UPSTREAM_ERROR    (64 * 1024)        /* a provider error body we keep */
#define LIMIT_MESSAGE_CONTENT   (2 * 1024 * 1024)  /* one stored message's content */
#define LIMIT_USER_MESSAGE      (256 * 1024)       /* text a user sends in one message */
#define LIMIT_TITLE             200                /* chat title, in bytes */
#define LIMIT_SYSTEM_PROMPT     (64 * 1024)
#define LIMIT_EMAIL             254
#define LIMIT_PASSWORD          1024
#define LIMIT_PASSWORD_MIN      8
#define LIMIT_API_KEY           1024
#define LIMIT_URL               2048
#define LIMIT_MODEL_NAME        200
#define LIMIT_CHAT_MESSAGES_REPLY (1024 * 1024 * 1024) /* one chat's messages as JSON; 500 past it */
#define LIMIT_SSE_EVENT_LOG     (16 * 1024 * 1024) /* replay log of one live turn */

#endif
