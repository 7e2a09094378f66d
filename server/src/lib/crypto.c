/* crypto.c - OpenSSL 3 / libargon2 wrappers; see crypto.h. Secrets that pass
 * through local buffers (plaintexts, key text) are wiped before the buffers
 * are released, on success and failure paths alike.
 */
#include "crypto.h"

#include <argon2.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/random.h>

/* SHA256_Init/Update/Final: OpenSSL's own SHA-256, without the library
 * initialisation (see crypto_sha256 below); deprecated in 3.0, not gone. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

static void fatal(const char *what)
{
    fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"crypto failure\",\"op\":\"%s\"}\n", what);
    abort();
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) COAI_PRINTF(3, 4);

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- randomness, tokens, digests --------------------------------------- */

/* The kernel's CSPRNG (getrandom(2), which also seeds OpenSSL's): the first
 * request's id key and every token come from here, so an idle server never
 * initialises OpenSSL (its configuration and providers: ~2.3 MB of RSS). */
int crypto_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static const char b64url_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *crypto_token_new(size_t nbytes)
{
    if (nbytes == 0 || nbytes > 4096)
        fatal("token_new size");
    unsigned char raw[4096];
    if (crypto_random(raw, nbytes) != 0)
        fatal("RAND_bytes");
    size_t outlen = (nbytes / 3) * 4 + (nbytes % 3 ? nbytes % 3 + 1 : 0);
    char *out = xmalloc(outlen + 1);
    size_t o = 0, i = 0;
    for (; i + 3 <= nbytes; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        out[o++] = b64url_alpha[(v >> 18) & 63];
        out[o++] = b64url_alpha[(v >> 12) & 63];
        out[o++] = b64url_alpha[(v >> 6) & 63];
        out[o++] = b64url_alpha[v & 63];
    }
    if (nbytes - i == 1) {
        uint32_t v = (uint32_t)raw[i] << 16;
        out[o++] = b64url_alpha[(v >> 18) & 63];
        out[o++] = b64url_alpha[(v >> 12) & 63];
    } else if (nbytes - i == 2) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8;
        out[o++] = b64url_alpha[(v >> 18) & 63];
        out[o++] = b64url_alpha[(v >> 12) & 63];
        out[o++] = b64url_alpha[(v >> 6) & 63];
    }
    out[o] = '\0';
    secure_wipe(raw, nbytes);
    return out;
}

static const char hexdig[] = "0123456789abcdef";

/* SHA-256 with OpenSSL's low-level functions: the EVP interface loads
 * OpenSSL's configuration and default provider on first use (~2.3 MB of
 * RSS), and start-up hashes (the web app's ETags, the instance id, the
 * master key's HKDF) would pay for it in every idle server. */
static void crypto_sha256(const void *p, size_t n, const void *p2, size_t n2, unsigned char md[32])
{
    SHA256_CTX c;
    if (SHA256_Init(&c) != 1 || SHA256_Update(&c, p, n) != 1 ||
        (n2 && SHA256_Update(&c, p2, n2) != 1) || SHA256_Final(md, &c) != 1)
        fatal("SHA256");
    secure_wipe(&c, sizeof c);
}

void crypto_sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char md[32];
    crypto_sha256(p, n, NULL, 0, md);
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hexdig[md[i] >> 4];
        out[2 * i + 1] = hexdig[md[i] & 15];
    }
    out[64] = '\0';
}

int crypto_hex_encode(const void *p, size_t n, char *out, size_t outlen)
{
    if (n > (SIZE_MAX - 1) / 2 || outlen < 2 * n + 1)
        return -1;
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdig[b[i] >> 4];
        out[2 * i + 1] = hexdig[b[i] & 15];
    }
    out[2 * n] = '\0';
    return 0;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int crypto_hex_decode(const char *hex, unsigned char *out, size_t outlen, size_t *n)
{
    *n = 0;
    if (!hex)
        return -1;
    size_t len = strlen(hex);
    if (len % 2 != 0 || len / 2 > outlen)
        return -1;
    for (size_t i = 0; i < len; i += 2) {
        int hi = hexval((unsigned char)hex[i]), lo = hexval((unsigned char)hex[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    *n = len / 2;
    return 0;
}

bool crypto_ct_equal(const void *a, const void *b, size_t n)
{
    if (n == 0)
        return true;
    return CRYPTO_memcmp(a, b, n) == 0;
}

/* ---- key derivation ---------------------------------------------------- */

/* HMAC-SHA256 (RFC 2104) of the concatenation m1 || m2 || m3. */
static void hmac_sha256(const unsigned char *key, size_t key_len, const unsigned char *m1,
                        size_t n1, const unsigned char *m2, size_t n2, const unsigned char *m3,
                        size_t n3, unsigned char out[32])
{
    unsigned char k[64] = {0}, pad[64], inner[32];
    if (key_len > sizeof k)
        crypto_sha256(key, key_len, NULL, 0, k);
    else if (key_len)
        memcpy(k, key, key_len);
    SHA256_CTX c;
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    if (SHA256_Init(&c) != 1 || SHA256_Update(&c, pad, 64) != 1 ||
        (n1 && SHA256_Update(&c, m1, n1) != 1) || (n2 && SHA256_Update(&c, m2, n2) != 1) ||
        (n3 && SHA256_Update(&c, m3, n3) != 1) || SHA256_Final(inner, &c) != 1)
        fatal("SHA256");
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    crypto_sha256(pad, 64, inner, 32, out);
    secure_wipe(k, sizeof k);
    secure_wipe(pad, sizeof pad);
    secure_wipe(inner, sizeof inner);
    secure_wipe(&c, sizeof c);
}

/* HKDF (RFC 5869) on HMAC-SHA256 above, not OpenSSL's EVP_KDF: the master
 * key's derivation runs at start, and EVP would initialise OpenSSL there
 * (see crypto_sha256). Checked against RFC 5869's test cases (test_crypto). */
int crypto_hkdf_ex(const unsigned char *ikm, size_t ikm_len, const unsigned char *salt,
                   size_t salt_len, const unsigned char *info, size_t info_len,
                   unsigned char *out, size_t out_len)
{
    if (!ikm || ikm_len == 0 || !out || out_len == 0 || out_len > 255 * 32)
        return -1;
    static const unsigned char zeros[32];
    unsigned char prk[32], t[32];
    if (!salt || salt_len == 0) {
        salt = zeros; /* "a string of HashLen zeros" */
        salt_len = sizeof zeros;
    }
    hmac_sha256(salt, salt_len, ikm, ikm_len, NULL, 0, NULL, 0, prk);
    size_t done = 0;
    for (unsigned char i = 1; done < out_len; i++) {
        hmac_sha256(prk, sizeof prk, t, i == 1 ? 0 : sizeof t, info, info ? info_len : 0, &i, 1,
                    t);
        size_t k = out_len - done < sizeof t ? out_len - done : sizeof t;
        memcpy(out + done, t, k);
        done += k;
    }
    secure_wipe(prk, sizeof prk);
    secure_wipe(t, sizeof t);
    return 0;
}

int crypto_hkdf(const unsigned char *ikm, size_t ikm_len, const char *info, unsigned char out[32])
{
    return crypto_hkdf_ex(ikm, ikm_len, NULL, 0, (const unsigned char *)info,
                          info ? strlen(info) : 0, out, 32);
}

/* ---- AES-256-GCM box --------------------------------------------------- */

int crypto_box_seal(const unsigned char key[32], const void *aad, size_t aad_len, const void *pt,
                    size_t pt_len, unsigned char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (pt_len > (size_t)INT_MAX || aad_len > (size_t)INT_MAX)
        return -1;
    size_t total = pt_len + CRYPTO_BOX_OVERHEAD;
    unsigned char *buf = xmalloc(total);
    unsigned char *nonce = buf, *ct = buf + CRYPTO_BOX_NONCE_LEN, *tag = ct + pt_len;
    EVP_CIPHER_CTX *ctx = NULL;
    int len = 0;
    if (crypto_random(nonce, CRYPTO_BOX_NONCE_LEN) != 0)
        goto fail;
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        goto fail;
    /* The default GCM IV length is 12, which is what we use. */
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1)
        goto fail;
    if (aad_len > 0 && EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aad_len) != 1)
        goto fail;
    if (pt_len > 0) {
        if (EVP_EncryptUpdate(ctx, ct, &len, pt, (int)pt_len) != 1 || (size_t)len != pt_len)
            goto fail;
    }
    if (EVP_EncryptFinal_ex(ctx, ct + pt_len, &len) != 1 || len != 0)
        goto fail;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRYPTO_BOX_TAG_LEN, tag) != 1)
        goto fail;
    EVP_CIPHER_CTX_free(ctx);
    *out = buf;
    *out_len = total;
    return 0;
fail:
    EVP_CIPHER_CTX_free(ctx);
    free(buf);
    return -1;
}

int crypto_box_open(const unsigned char key[32], const void *aad, size_t aad_len,
                    const unsigned char *in, size_t in_len, char **pt, size_t *pt_len)
{
    *pt = NULL;
    *pt_len = 0;
    if (!in || in_len < CRYPTO_BOX_OVERHEAD || aad_len > (size_t)INT_MAX)
        return -1;
    size_t ct_len = in_len - CRYPTO_BOX_OVERHEAD;
    if (ct_len > (size_t)INT_MAX)
        return -1;
    const unsigned char *nonce = in, *ct = in + CRYPTO_BOX_NONCE_LEN, *tag = ct + ct_len;
    unsigned char tagcopy[CRYPTO_BOX_TAG_LEN];
    memcpy(tagcopy, tag, sizeof tagcopy);
    unsigned char *buf = xmalloc(ct_len + 1);
    int len = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        goto fail;
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1)
        goto fail;
    if (aad_len > 0 && EVP_DecryptUpdate(ctx, NULL, &len, aad, (int)aad_len) != 1)
        goto fail;
    if (ct_len > 0) {
        if (EVP_DecryptUpdate(ctx, buf, &len, ct, (int)ct_len) != 1 || (size_t)len != ct_len)
            goto fail;
    }
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRYPTO_BOX_TAG_LEN, tagcopy) != 1)
        goto fail;
    /* Tag check happens here; until it passes, buf is unauthenticated. */
    if (EVP_DecryptFinal_ex(ctx, buf + ct_len, &len) != 1 || len != 0)
        goto fail;
    EVP_CIPHER_CTX_free(ctx);
    buf[ct_len] = '\0';
    *pt = (char *)buf;
    *pt_len = ct_len;
    return 0;
fail:
    EVP_CIPHER_CTX_free(ctx);
    secure_wipe(buf, ct_len + 1);
    free(buf);
    return -1;
}

/* ---- master key -------------------------------------------------------- */

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* 0..63 for either base64 alphabet; sets *std / *url for the alphabet seen. */
static int b64val(unsigned char c, bool *std, bool *url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '/') {
        *std = true;
        return c == '+' ? 62 : 63;
    }
    if (c == '-' || c == '_') {
        *url = true;
        return c == '-' ? 62 : 63;
    }
    return -1;
}

/* Strict base64 (either alphabet, not mixed; padding optional but, when
 * present, correct; trailing bits zero). out must hold len * 3 / 4 bytes.
 * Returns the decoded length or -1. */
static long b64_decode_strict(const char *s, size_t len, unsigned char *out)
{
    size_t pad = 0;
    while (pad < 2 && len > 0 && s[len - 1] == '=') {
        len--;
        pad++;
    }
    if (pad > 0 && (len + pad) % 4 != 0)
        return -1;
    if (len % 4 == 1)
        return -1;
    bool std = false, url = false;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val((unsigned char)s[i], &std, &url);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (std && url)
        return -1;
    if (acc != 0) /* non-canonical: leftover bits must be zero */
        return -1;
    return (long)o;
}

int crypto_master_key_parse(const char *text, unsigned char out[32], char *err, size_t errlen)
{
    if (!text) {
        set_err(err, errlen, "master key is missing");
        return -1;
    }
    const char *s = text;
    while (is_space((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && is_space((unsigned char)s[len - 1]))
        len--;
    if (len == 0) {
        set_err(err, errlen, "master key is empty");
        return -1;
    }
    bool all_hex = true;
    for (size_t i = 0; i < len; i++) {
        if (hexval((unsigned char)s[i]) < 0) {
            all_hex = false;
            break;
        }
    }
    if (all_hex && len == 64) {
        for (size_t i = 0; i < 32; i++)
            out[i] = (unsigned char)(hexval((unsigned char)s[2 * i]) << 4 |
                                     hexval((unsigned char)s[2 * i + 1]));
        return 0;
    }
    if (all_hex && len != 43 && len != 44) {
        set_err(err, errlen,
                "master key looks like hex but has %zu digits; need exactly 64 hex digits "
                "(32 bytes), e.g. from `openssl rand -hex 32`", len);
        return -1;
    }
    if (len > 4096) {
        set_err(err, errlen, "master key is too long (%zu characters); need 64 hex digits "
                "or base64 of 32 bytes", len);
        return -1;
    }
    unsigned char *tmp = xmalloc(len);
    long n = b64_decode_strict(s, len, tmp);
    int rc = -1;
    if (n < 0) {
        set_err(err, errlen,
                "master key is neither 64 hex digits nor valid base64 of 32 bytes "
                "(%zu characters after trimming whitespace)", len);
    } else if (n != 32) {
        set_err(err, errlen, "master key is base64 of %ld bytes; need exactly 32 bytes "
                "(e.g. from `openssl rand -base64 32`)", n);
    } else {
        memcpy(out, tmp, 32);
        rc = 0;
    }
    secure_wipe(tmp, len);
    free(tmp);
    return rc;
}

#define MASTER_KEY_FILE_MAX 4096

static int master_key_read_fd(int fd, const char *path, unsigned char out[32], char *err,
                              size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_err(err, errlen, "master key file %s: stat: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "master key file %s is not a regular file", path);
        return -1;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        set_err(err, errlen,
                "master key file %s has mode %04o, which gives group/others access; "
                "refusing to use it (run: chmod 600 %s)",
                path, (unsigned)(st.st_mode & 07777), path);
        return -1;
    }
    if (st.st_size > MASTER_KEY_FILE_MAX) {
        set_err(err, errlen, "master key file %s is too large (%lld bytes)", path,
                (long long)st.st_size);
        return -1;
    }
    char buf[MASTER_KEY_FILE_MAX + 2];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            set_err(err, errlen, "master key file %s: read: %s", path, strerror(errno));
            secure_wipe(buf, sizeof buf);
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
        if (got >= sizeof buf - 1)
            break;
    }
    if (got > MASTER_KEY_FILE_MAX) {
        set_err(err, errlen, "master key file %s is too large", path);
        secure_wipe(buf, sizeof buf);
        return -1;
    }
    buf[got] = '\0';
    if (memchr(buf, '\0', got)) {
        set_err(err, errlen, "master key file %s contains a NUL byte", path);
        secure_wipe(buf, sizeof buf);
        return -1;
    }
    char perr[256];
    int rc = crypto_master_key_parse(buf, out, perr, sizeof perr);
    secure_wipe(buf, sizeof buf);
    if (rc != 0)
        set_err(err, errlen, "master key file %s: %s", path, perr);
    return rc;
}

static void fsync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? (slash == path ? xstrdup("/") : xstrndup(path, (size_t)(slash - path)))
                      : xstrdup(".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd); /* best effort: some filesystems refuse directory fsync */
        close(dfd);
    }
    free(dir);
}

/* 0 created, 1 already exists (EEXIST), -1 error. */
static int master_key_create(const char *path, unsigned char out[32], char *err, size_t errlen)
{
    char text[66];
    if (crypto_random(out, 32) != 0) {
        set_err(err, errlen, "master key: random generator failed");
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int e = errno;
        secure_wipe(out, 32);
        if (e == EEXIST)
            return 1;
        set_err(err, errlen, "cannot create master key file %s: %s", path, strerror(e));
        return -1;
    }
    if (crypto_hex_encode(out, 32, text, sizeof text) != 0)
        fatal("hex_encode");
    text[64] = '\n';
    text[65] = '\0';
    const char *what = NULL;
    int e = 0;
    /* umask can only clear bits; make it exactly 0600 so we can reread it. */
    if (fchmod(fd, 0600) != 0) {
        what = "chmod";
        e = errno;
    }
    size_t off = 0;
    while (!what && off < 65) {
        ssize_t w = write(fd, text + off, 65 - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            what = "write";
            e = errno;
        } else {
            off += (size_t)w;
        }
    }
    if (!what && fsync(fd) != 0) {
        what = "fsync";
        e = errno;
    }
    if (close(fd) != 0 && !what) {
        what = "close";
        e = errno;
    }
    secure_wipe(text, sizeof text);
    if (what) {
        unlink(path);
        secure_wipe(out, 32);
        set_err(err, errlen, "cannot write master key file %s: %s: %s", path, what, strerror(e));
        return -1;
    }
    fsync_parent_dir(path);
    return 0;
}

int crypto_master_key_load_or_create(const char *path, unsigned char out[32], bool *created,
                                     char *err, size_t errlen)
{
    *created = false;
    if (!path || !*path) {
        set_err(err, errlen, "master key file path is empty");
        return -1;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        /* O_NONBLOCK: a FIFO at path must not hang startup (fstat rejects it). */
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd >= 0) {
            int rc = master_key_read_fd(fd, path, out, err, errlen);
            close(fd);
            if (rc != 0)
                secure_wipe(out, 32);
            return rc;
        }
        if (errno != ENOENT) {
            set_err(err, errlen, "cannot open master key file %s: %s", path, strerror(errno));
            return -1;
        }
        int rc = master_key_create(path, out, err, errlen);
        if (rc == 0) {
            *created = true;
            return 0;
        }
        if (rc < 0)
            return -1;
        /* rc == 1: someone created it between our open and our create; load it. */
    }
    set_err(err, errlen, "master key file %s: appeared and vanished while loading", path);
    return -1;
}

/* ---- passwords (argon2id) ---------------------------------------------- */

int crypto_password_hash(const char *pw, char **encoded)
{
    *encoded = NULL;
    if (!pw)
        return -1;
    unsigned char salt[CRYPTO_ARGON2_SALT_LEN];
    if (crypto_random(salt, sizeof salt) != 0)
        return -1;
    size_t enclen = argon2_encodedlen(CRYPTO_ARGON2_T, CRYPTO_ARGON2_M_KIB, CRYPTO_ARGON2_P,
                                      sizeof salt, CRYPTO_ARGON2_HASH_LEN, Argon2_id);
    char *enc = xmalloc(enclen);
    int rc = argon2id_hash_encoded(CRYPTO_ARGON2_T, CRYPTO_ARGON2_M_KIB, CRYPTO_ARGON2_P, pw,
                                   strlen(pw), salt, sizeof salt, CRYPTO_ARGON2_HASH_LEN, enc,
                                   enclen);
    if (rc != ARGON2_OK) {
        free(enc);
        return -1;
    }
    *encoded = enc;
    return 0;
}

int crypto_password_verify(const char *encoded, const char *pw)
{
    if (!encoded || !pw || strncmp(encoded, "$argon2id$", 10) != 0)
        return -1;
    int rc = argon2id_verify(encoded, pw, strlen(pw));
    if (rc == ARGON2_OK)
        return 0;
    if (rc == ARGON2_VERIFY_MISMATCH)
        return 1;
    return -1;
}

/* Hash of a random password nobody knows, with the CRYPTO_ARGON2_* parameters
 * (test_crypto checks the parameter prefix matches them). */
static const char dummy_hash[] =
    "$argon2id$v=19$m=19456,t=2,p=1$vZyhsLddcOdu4oNtpC/Jxg$bokPIcdSZrZTqC8pRD/j53mYHRGOMscEO2xw7rMp0Z8";

void crypto_password_dummy_verify(const char *pw)
{
    (void)crypto_password_verify(dummy_hash, pw ? pw : "");
}

/* Exposed for the unit test only (not in crypto.h). */
const char *crypto_password_dummy_hash_for_test(void);
const char *crypto_password_dummy_hash_for_test(void)
{
    return dummy_hash;
}
