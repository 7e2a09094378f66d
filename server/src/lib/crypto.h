/* crypto.h - every cryptographic primitive the server uses, behind one small
 * API: CSPRNG, opaque tokens, SHA-256, hex, constant-time compare, HKDF,
 * AES-256-GCM sealing of secrets at rest, master-key file handling and
 * argon2id password hashing. Built on OpenSSL 3 (libcrypto) and libargon2;
 * randomness, SHA-256 and HKDF do not initialise OpenSSL (its configuration
 * and providers load on the first AES-GCM or TLS use, not at start).
 *
 * Ownership: every pointer this module returns through an out-parameter or
 * return value is a fresh heap allocation the caller frees with free();
 * buffers that held plaintext secrets (crypto_box_open output) must be
 * secure_wipe()d first. Inputs are only borrowed for the duration of a call.
 * All functions are thread-safe (no shared mutable state).
 */
#ifndef COAI_CRYPTO_H
#define COAI_CRYPTO_H

#include "common.h"

#define CRYPTO_KEY_LEN          32   /* AES-256 / HKDF output / master key */
#define CRYPTO_BOX_NONCE_LEN    12
#define CRYPTO_BOX_TAG_LEN      16
#define CRYPTO_BOX_OVERHEAD     (CRYPTO_BOX_NONCE_LEN + CRYPTO_BOX_TAG_LEN)
#define CRYPTO_TOKEN_BYTES      32   /* default entropy of cookies / API tokens */
#define CRYPTO_SHA256_HEX_LEN   64

/* argon2id parameters (OWASP baseline). Encoded hashes carry their own
 * parameters, so changing these only affects new hashes. */
#define CRYPTO_ARGON2_T         2
#define CRYPTO_ARGON2_M_KIB     19456
#define CRYPTO_ARGON2_P         1
#define CRYPTO_ARGON2_SALT_LEN  16
#define CRYPTO_ARGON2_HASH_LEN  32

/* ---- randomness, tokens, digests --------------------------------------- */

/* Fill buf with n bytes from the kernel's CSPRNG (getrandom(2)). 0 ok, -1 error. */
COAI_MUST_CHECK int crypto_random(void *buf, size_t n);

/* New random opaque token: nbytes (> 0; use CRYPTO_TOKEN_BYTES) of CSPRNG
 * output, base64url without padding (alphabet A-Z a-z 0-9 - _), so
 * ceil(nbytes * 4 / 3) characters. Heap, caller frees. Never returns NULL:
 * aborts if the CSPRNG fails (same policy as ids_new / xmalloc). Store only
 * crypto_sha256_hex(token) server-side. */
char *crypto_token_new(size_t nbytes);

/* Lowercase hex SHA-256 of p[0..n) into out (64 chars + NUL). Cannot fail
 * (aborts on an OpenSSL internal failure). */
void crypto_sha256_hex(const void *p, size_t n, char out[65]);

/* Lowercase hex of p[0..n) into out; needs outlen >= 2n + 1 (NUL-terminated).
 * 0 ok, -1 if out is too small (out untouched). */
COAI_MUST_CHECK int crypto_hex_encode(const void *p, size_t n, char *out, size_t outlen);
/* Decode the NUL-terminated hex string (either case, no whitespace, even
 * length) into out; *n receives the byte count. 0 ok, -1 on odd length, a
 * non-hex character, or more than outlen bytes. On failure *n is 0 and out
 * may hold garbage. */
COAI_MUST_CHECK int crypto_hex_decode(const char *hex, unsigned char *out, size_t outlen, size_t *n);

/* Constant-time (in n) equality of a[0..n) and b[0..n). n == 0 is equal. */
bool crypto_ct_equal(const void *a, const void *b, size_t n);

/* ---- key derivation ---------------------------------------------------- */

/* HKDF-SHA256 (RFC 5869) with no salt (the RFC's default of HashLen zero
 * bytes, fine when ikm is a uniformly random key such as the master key) and
 * the NUL-terminated info string as context (e.g. "coai/provider-key/v1";
 * "" allowed). Writes 32 bytes. 0 ok, -1 error (including ikm_len == 0). */
COAI_MUST_CHECK int crypto_hkdf(const unsigned char *ikm, size_t ikm_len, const char *info,
                                unsigned char out[32]);
/* General form: optional salt (NULL/0 = none), binary info (NULL/0 = none),
 * any out_len in 1..8160. 0 ok, -1 error. */
COAI_MUST_CHECK int crypto_hkdf_ex(const unsigned char *ikm, size_t ikm_len,
                                   const unsigned char *salt, size_t salt_len,
                                   const unsigned char *info, size_t info_len,
                                   unsigned char *out, size_t out_len);

/* ---- AES-256-GCM box --------------------------------------------------- */

/* Encrypt pt[0..pt_len) under key, authenticating aad[0..aad_len) too (bind
 * the ciphertext to its row, e.g. "conn:<id>:user:<id>"; aad may be NULL when
 * aad_len is 0). *out = 12-byte random nonce || ciphertext || 16-byte tag,
 * *out_len = pt_len + CRYPTO_BOX_OVERHEAD; heap, caller frees. A fresh random
 * nonce per call, so sealing the same plaintext twice gives different
 * output. 0 ok, -1 error (pt_len or aad_len > INT_MAX, OpenSSL failure);
 * on error *out is NULL. */
COAI_MUST_CHECK int crypto_box_seal(const unsigned char key[32], const void *aad, size_t aad_len,
                                    const void *pt, size_t pt_len,
                                    unsigned char **out, size_t *out_len);
/* Verify and decrypt a crypto_box_seal output. On success returns 0, *pt is
 * a heap buffer of *pt_len bytes plus a terminating NUL, which the caller
 * must secure_wipe(*pt, *pt_len) and free. Returns -1 on any failure (input
 * shorter than CRYPTO_BOX_OVERHEAD, wrong key, wrong AAD, any modified
 * byte); then *pt is NULL, *pt_len 0, and no unauthenticated plaintext is
 * left in memory. */
COAI_MUST_CHECK int crypto_box_open(const unsigned char key[32], const void *aad, size_t aad_len,
                                    const unsigned char *in, size_t in_len,
                                    char **pt, size_t *pt_len);

/* ---- master key -------------------------------------------------------- */

/* Parse a 32-byte master key from text: surrounding whitespace is ignored;
 * accepted forms are exactly 64 hex digits (either case) or base64 of
 * exactly 32 bytes, standard (+/) or url-safe (-_) alphabet, with or without
 * the single '=' padding (43 or 44 characters, canonical trailing bits).
 * 0 ok; -1 with a message in err (never containing the key text). */
COAI_MUST_CHECK int crypto_master_key_parse(const char *text, unsigned char out[32],
                                            char *err, size_t errlen);
/* Load the master key from path, or create it if the file does not exist.
 * Existing file: must be a regular file of at most 4 KiB whose permission
 * bits grant nothing to group or others (0600 / 0400, like ssh private
 * keys); otherwise refused with -1 and a "chmod 600" hint. Its content goes
 * through crypto_master_key_parse. *created = false.
 * Missing file: 32 fresh random bytes are written as 64 lowercase hex chars
 * + "\n" to a new file (O_CREAT|O_EXCL, mode 0600), fully, then fsync()ed
 * together with its directory; *created = true. On a write failure the
 * partial file is removed. If another process creates it first, that file
 * is loaded instead. The directory must already exist.
 * 0 ok; -1 with a message in err (out is wiped on failure). */
COAI_MUST_CHECK int crypto_master_key_load_or_create(const char *path, unsigned char out[32],
                                                     bool *created, char *err, size_t errlen);

/* ---- passwords (argon2id) ---------------------------------------------- */

/* Hash pw (NUL-terminated) with argon2id, CRYPTO_ARGON2_* parameters and a
 * random 16-byte salt. *encoded = "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>",
 * heap, caller frees. 0 ok, -1 error (*encoded NULL). Callers cap pw at
 * LIMIT_PASSWORD first. */
COAI_MUST_CHECK int crypto_password_hash(const char *pw, char **encoded);
/* Check pw against an encoded argon2id hash (constant-time compare).
 * 0 match, 1 mismatch, -1 malformed / not argon2id / out of memory.
 * The cost is that of the parameters inside encoded. */
int crypto_password_verify(const char *encoded, const char *pw);
/* Spend the time of one crypto_password_verify with the current parameters
 * against a fixed dummy hash and throw the result away. Call it when the
 * account does not exist so response timing does not reveal which emails
 * are registered. */
void crypto_password_dummy_verify(const char *pw);

#endif
