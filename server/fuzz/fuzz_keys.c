/* fuzz_keys.c - libFuzzer harness for the key and ciphertext parsers of
 * lib/crypto.c: crypto_master_key_parse (CHATOPENAII_MASTER_KEY and the key
 * file), crypto_hex_decode, and crypto_box_open (sealed provider keys read
 * back from the database) under a fixed key.
 * Invariants (abort() when broken): a parsed master key re-encodes to a
 * text that parses to the same key; hex decoding agrees with hex encoding;
 * crypto_box_open never accepts bytes that were not sealed under the key
 * and AAD (with 2^-128 odds for a forged tag: a success is a bug), and it
 * opens what crypto_box_seal made from the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/crypto.h"

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "fuzz_keys: invariant failed at line %d: %s\n", __LINE__, \
                    #cond);                                                            \
            abort();                                                                   \
        }                                                                              \
    } while (0)

static const unsigned char fixed_key[32] = {
    0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77, 0x81,
    0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4,
};

static void check_master_key(const char *text)
{
    unsigned char key[32], again[32];
    char err[256];
    err[0] = '\0';
    int rc = crypto_master_key_parse(text, key, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        CHECK(err[0] != '\0' && strlen(err) < sizeof err);
        /* the message never quotes the key text (every message has
         * spaces, so a space-free text found in one was quoted) */
        if (strlen(text) >= 16 && !strpbrk(text, " \t\n\v\f\r"))
            CHECK(strstr(err, text) == NULL);
        return;
    }
    char hex[65];
    CHECK(crypto_hex_encode(key, 32, hex, sizeof hex) == 0);
    CHECK(crypto_master_key_parse(hex, again, err, sizeof err) == 0);
    CHECK(memcmp(key, again, 32) == 0);
    /* Accepted forms: 64 hex digits or 43/44 base64 characters. */
    size_t len = strlen(text);
    const char *s = text;
    while (*s == ' ' || (*s >= '\t' && *s <= '\r'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || (s[len - 1] >= '\t' && s[len - 1] <= '\r')))
        len--;
    CHECK(len == 64 || len == 43 || len == 44);
}

static void check_hex(const char *text)
{
    unsigned char out[64];
    size_t n = 99;
    int rc = crypto_hex_decode(text, out, sizeof out, &n);
    if (rc != 0) {
        CHECK(rc == -1 && n == 0);
        return;
    }
    CHECK(n == strlen(text) / 2 && n <= sizeof out);
    char back[129];
    CHECK(crypto_hex_encode(out, n, back, sizeof back) == 0);
    CHECK(strcasecmp(back, text) == 0);
    /* a too small output is refused, not overrun */
    if (n > 0) {
        unsigned char small[64];
        size_t m = 99;
        CHECK(crypto_hex_decode(text, small, n - 1, &m) == -1 && m == 0);
    }
}

static void check_box(const uint8_t *data, size_t size)
{
    /* The first byte picks how much of the input is AAD. */
    size_t aad_len = size ? data[0] % 16 : 0;
    if (aad_len > size - (size ? 1 : 0))
        aad_len = size ? size - 1 : 0;
    const uint8_t *aad = size ? data + 1 : data;
    const uint8_t *in = aad + aad_len;
    size_t in_len = size - (size ? 1 : 0) - aad_len;

    char *pt = (char *)1;
    size_t pt_len = 99;
    int rc = crypto_box_open(fixed_key, aad, aad_len, in, in_len, &pt, &pt_len);
    CHECK(rc == -1 && pt == NULL && pt_len == 0);
    rc = crypto_box_open(fixed_key, NULL, 0, data, size, &pt, &pt_len);
    CHECK(rc == -1 && pt == NULL && pt_len == 0);

    /* Seal the input and open it again; then any one flipped bit fails. */
    unsigned char *box = NULL;
    size_t box_len = 0;
    CHECK(crypto_box_seal(fixed_key, aad, aad_len, in, in_len, &box, &box_len) == 0);
    CHECK(box_len == in_len + CRYPTO_BOX_OVERHEAD);
    CHECK(crypto_box_open(fixed_key, aad, aad_len, box, box_len, &pt, &pt_len) == 0);
    CHECK(pt_len == in_len && memcmp(pt, in, in_len) == 0 && pt[pt_len] == '\0');
    secure_wipe(pt, pt_len);
    free(pt);
    size_t bit = size ? ((size_t)data[size - 1] * 131 + size) % (box_len * 8) : 0;
    box[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    CHECK(crypto_box_open(fixed_key, aad, aad_len, box, box_len, &pt, &pt_len) == -1);
    CHECK(pt == NULL && pt_len == 0);
    box[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    if (box_len > 0)
        CHECK(crypto_box_open(fixed_key, aad, aad_len, box, box_len - 1, &pt, &pt_len) == -1);
    free(box);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    check_master_key(text);
    check_hex(text);
    check_box(data, size);
    free(text);
    return 0;
}
