/* ids.h - row ids: UUIDv7 text (36 chars), time-ordered, 74 random bits. */
#ifndef COAI_IDS_H
#define COAI_IDS_H

#include "common.h"

#define IDS_LEN 36

/* Write a new UUIDv7 into out (NUL-terminated). Thread-safe, cannot fail. */
void ids_new(char out[IDS_LEN + 1]);
/* True if s looks like an id we issue (36 chars, hex and dashes); cheap guard
 * for path parameters before they reach the store. */
bool ids_valid(const char *s);

#endif
