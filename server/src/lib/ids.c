/* ids.c - UUIDv7 generation (RFC 9562): 48-bit ms timestamp, version 7,
 * variant 10, the rest from the kernel's CSPRNG. */
#include "ids.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Ids made in the same millisecond stay ordered: the 12-bit rand_a field
 * carries a counter (RFC 9562, method 1); on overflow we borrow the next ms. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_last_ms;
static unsigned g_seq;

/* The kernel's CSPRNG, drawn 512 bytes at a time per thread: one getrandom
 * per ~50 ids instead of one each (ids are made on every request). */
static void random_bytes(unsigned char *out, size_t n)
{
    static _Thread_local unsigned char pool[512];
    static _Thread_local size_t pos = sizeof pool;
    while (n > 0) {
        if (pos == sizeof pool) {
            size_t got = 0;
            while (got < sizeof pool) {
                ssize_t r = getrandom(pool + got, sizeof pool - got, 0);
                if (r < 0) {
                    perror("getrandom");
                    abort();
                }
                got += (size_t)r;
            }
            pos = 0;
        }
        size_t take = sizeof pool - pos < n ? sizeof pool - pos : n;
        memcpy(out, pool + pos, take);
        memset(pool + pos, 0, take); /* handed out once */
        pos += take;
        out += take;
        n -= take;
    }
}

void ids_new(char out[IDS_LEN + 1])
{
    unsigned char b[16];
    uint64_t ms = (uint64_t)now_ms();
    unsigned seq;
    pthread_mutex_lock(&g_mu);
    if (ms <= g_last_ms) {
        ms = g_last_ms;
        if (++g_seq > 0xfff) {
            ms++;
            g_seq = 0;
        }
    } else {
        g_seq = 0;
    }
    g_last_ms = ms;
    seq = g_seq;
    pthread_mutex_unlock(&g_mu);
    random_bytes(b + 6, 10);
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | ((seq >> 8) & 0x0f));
    b[7] = (unsigned char)(seq & 0xff);
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

bool ids_valid(const char *s)
{
    if (!s || strlen(s) != IDS_LEN)
        return false;
    for (int i = 0; i < IDS_LEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}
