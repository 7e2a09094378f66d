/* test_crypto.c - unit tests for lib/crypto: AES-GCM box tamper and rotation
 * cases, HKDF/SHA-256 known answers, hex, tokens, argon2id passwords and the
 * master-key parser and file. Prints one summary line "unit-crypto: ...".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/crypto.h"

/* Defined in crypto.c for tests only. */
const char *crypto_password_dummy_hash_for_test(void);

static void fill_key(unsigned char key[32], unsigned char seed)
{
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)(seed + i * 7);
}

static void hex_of(const unsigned char *p, size_t n, char *out, size_t outlen)
{
    assert_int_equal(crypto_hex_encode(p, n, out, outlen), 0);
}

/* ---- box ---------------------------------------------------------------- */

static void roundtrip(const unsigned char *key, const void *aad, size_t aad_len, const void *pt,
                      size_t pt_len)
{
    unsigned char *ct = NULL;
    size_t ct_len = 0;
    assert_int_equal(crypto_box_seal(key, aad, aad_len, pt, pt_len, &ct, &ct_len), 0);
    assert_non_null(ct);
    assert_int_equal(ct_len, pt_len + CRYPTO_BOX_OVERHEAD);
    char *out = NULL;
    size_t out_len = 99;
    assert_int_equal(crypto_box_open(key, aad, aad_len, ct, ct_len, &out, &out_len), 0);
    assert_non_null(out);
    assert_int_equal(out_len, pt_len);
    assert_int_equal(out[out_len], '\0');
    if (pt_len)
        assert_memory_equal(out, pt, pt_len);
    secure_wipe(out, out_len);
    free(out);
    free(ct);
}

static void test_box_roundtrip_empty(void **state)
{
    unsigned char key[32];
    fill_key(key, 1);
    roundtrip(key, NULL, 0, "", 0);
    roundtrip(key, "aad", 3, "", 0);
    roundtrip(key, NULL, 0, "sk-abc", 6);
}

static void test_box_roundtrip_100k(void **state)
{
    unsigned char key[32];
    fill_key(key, 2);
    size_t n = 100 * 1024;
    unsigned char *pt = malloc(n);
    assert_non_null(pt);
    assert_int_equal(crypto_random(pt, n), 0);
    roundtrip(key, "conn:1", 6, pt, n);
    free(pt);
}

static void test_box_nonce_random(void **state)
{
    unsigned char key[32];
    fill_key(key, 3);
    unsigned char *a, *b;
    size_t alen, blen;
    assert_int_equal(crypto_box_seal(key, "x", 1, "same plaintext", 14, &a, &alen), 0);
    assert_int_equal(crypto_box_seal(key, "x", 1, "same plaintext", 14, &b, &blen), 0);
    assert_int_equal(alen, blen);
    assert_memory_not_equal(a, b, CRYPTO_BOX_NONCE_LEN);
    assert_memory_not_equal(a + CRYPTO_BOX_NONCE_LEN, b + CRYPTO_BOX_NONCE_LEN,
                            alen - CRYPTO_BOX_NONCE_LEN);
    free(a);
    free(b);
}

static void test_box_tamper_every_byte(void **state)
{
    unsigned char key[32];
    fill_key(key, 4);
    const char *pt = "sk-proj-0123456789abcdefghijklmnop";
    const char *aad = "conn:abc:user:def";
    unsigned char *ct;
    size_t ct_len;
    assert_int_equal(crypto_box_seal(key, aad, strlen(aad), pt, strlen(pt), &ct, &ct_len), 0);
    static const unsigned char flips[] = {0x01, 0x80, 0xff};
    for (size_t i = 0; i < ct_len; i++) {
        for (size_t f = 0; f < sizeof flips; f++) {
            ct[i] ^= flips[f];
            char *out = (char *)1;
            size_t out_len = 1;
            assert_int_equal(crypto_box_open(key, aad, strlen(aad), ct, ct_len, &out, &out_len),
                             -1);
            assert_null(out);
            assert_int_equal(out_len, 0);
            ct[i] ^= flips[f];
        }
    }
    /* untouched still opens */
    char *out;
    size_t out_len;
    assert_int_equal(crypto_box_open(key, aad, strlen(aad), ct, ct_len, &out, &out_len), 0);
    assert_string_equal(out, pt);
    secure_wipe(out, out_len);
    free(out);
    free(ct);
}

static void test_box_wrong_aad(void **state)
{
    unsigned char key[32];
    fill_key(key, 5);
    const char *aad = "conn:0190-aaaa:user:0190-bbbb";
    unsigned char *ct;
    size_t ct_len;
    char *out;
    size_t out_len;
    assert_int_equal(crypto_box_seal(key, aad, strlen(aad), "secret", 6, &ct, &ct_len), 0);
    /* no AAD, empty AAD, a prefix, another row, another user */
    assert_int_equal(crypto_box_open(key, NULL, 0, ct, ct_len, &out, &out_len), -1);
    assert_int_equal(crypto_box_open(key, "", 0, ct, ct_len, &out, &out_len), -1);
    assert_int_equal(crypto_box_open(key, aad, strlen(aad) - 1, ct, ct_len, &out, &out_len), -1);
    const char *other_row = "conn:0190-aaab:user:0190-bbbb";
    const char *other_user = "conn:0190-aaaa:user:0190-bbbc";
    assert_int_equal(crypto_box_open(key, other_row, strlen(other_row), ct, ct_len, &out, &out_len),
                     -1);
    assert_int_equal(
        crypto_box_open(key, other_user, strlen(other_user), ct, ct_len, &out, &out_len), -1);
    assert_null(out);
    free(ct);

    /* sealed without AAD: opening with some AAD fails */
    assert_int_equal(crypto_box_seal(key, NULL, 0, "secret", 6, &ct, &ct_len), 0);
    assert_int_equal(crypto_box_open(key, "a", 1, ct, ct_len, &out, &out_len), -1);
    assert_int_equal(crypto_box_open(key, NULL, 0, ct, ct_len, &out, &out_len), 0);
    free(out);
    free(ct);
}

static void test_box_wrong_key(void **state)
{
    unsigned char key[32], key2[32];
    fill_key(key, 6);
    memcpy(key2, key, 32);
    key2[31] ^= 1;
    unsigned char *ct;
    size_t ct_len;
    char *out;
    size_t out_len;
    assert_int_equal(crypto_box_seal(key, "a", 1, "secret", 6, &ct, &ct_len), 0);
    assert_int_equal(crypto_box_open(key2, "a", 1, ct, ct_len, &out, &out_len), -1);
    assert_null(out);
    free(ct);
}

static void test_box_truncated(void **state)
{
    unsigned char key[32];
    fill_key(key, 7);
    unsigned char *ct;
    size_t ct_len;
    char *out;
    size_t out_len;
    assert_int_equal(crypto_box_seal(key, "a", 1, "secret-value", 12, &ct, &ct_len), 0);
    for (size_t n = 0; n < ct_len; n++) {
        unsigned char *copy = malloc(n ? n : 1);
        assert_non_null(copy);
        memcpy(copy, ct, n);
        assert_int_equal(crypto_box_open(key, "a", 1, copy, n, &out, &out_len), -1);
        assert_null(out);
        free(copy);
    }
    /* also: dropping a byte from the front or the middle */
    assert_int_equal(crypto_box_open(key, "a", 1, ct + 1, ct_len - 1, &out, &out_len), -1);
    assert_int_equal(crypto_box_open(key, "a", 1, NULL, 0, &out, &out_len), -1);
    /* extended by a byte */
    unsigned char *longer = malloc(ct_len + 1);
    assert_non_null(longer);
    memcpy(longer, ct, ct_len);
    longer[ct_len] = 0;
    assert_int_equal(crypto_box_open(key, "a", 1, longer, ct_len + 1, &out, &out_len), -1);
    free(longer);
    free(ct);
}

static void test_box_rotation(void **state)
{
    unsigned char oldk[32], newk[32];
    fill_key(oldk, 8);
    fill_key(newk, 9);
    const char *aad = "conn:r1:user:u1";
    const char *secret = "sk-live-rotate-me";
    unsigned char *ct_old, *ct_new;
    size_t old_len, new_len;
    assert_int_equal(
        crypto_box_seal(oldk, aad, strlen(aad), secret, strlen(secret), &ct_old, &old_len), 0);

    /* rotation: open with old, reseal with new */
    char *pt;
    size_t pt_len;
    assert_int_equal(crypto_box_open(oldk, aad, strlen(aad), ct_old, old_len, &pt, &pt_len), 0);
    assert_int_equal(crypto_box_seal(newk, aad, strlen(aad), pt, pt_len, &ct_new, &new_len), 0);
    secure_wipe(pt, pt_len);
    free(pt);

    char *out;
    size_t out_len;
    assert_int_equal(crypto_box_open(oldk, aad, strlen(aad), ct_new, new_len, &out, &out_len), -1);
    assert_int_equal(crypto_box_open(newk, aad, strlen(aad), ct_old, old_len, &out, &out_len), -1);
    assert_int_equal(crypto_box_open(newk, aad, strlen(aad), ct_new, new_len, &out, &out_len), 0);
    assert_string_equal(out, secret);
    secure_wipe(out, out_len);
    free(out);
    free(ct_old);
    free(ct_new);
}

/* ---- HKDF / SHA-256 / hex ---------------------------------------------- */

static void test_hkdf_rfc5869_tc1(void **state)
{
    unsigned char ikm[22], salt[13], info[10], okm[42];
    memset(ikm, 0x0b, sizeof ikm);
    for (int i = 0; i < 13; i++)
        salt[i] = (unsigned char)i;
    for (int i = 0; i < 10; i++)
        info[i] = (unsigned char)(0xf0 + i);
    assert_int_equal(crypto_hkdf_ex(ikm, sizeof ikm, salt, sizeof salt, info, sizeof info, okm,
                                    sizeof okm), 0);
    char hex[85];
    hex_of(okm, sizeof okm, hex, sizeof hex);
    assert_string_equal(hex, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                             "34007208d5b887185865");
}

static void test_hkdf_rfc5869_tc3_no_salt(void **state)
{
    /* TC3: no salt, no info; crypto_hkdf gives the first 32 bytes of OKM. */
    unsigned char ikm[22], okm[32];
    memset(ikm, 0x0b, sizeof ikm);
    assert_int_equal(crypto_hkdf(ikm, sizeof ikm, "", okm), 0);
    char hex[65];
    hex_of(okm, sizeof okm, hex, sizeof hex);
    assert_string_equal(hex, "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d");
}

static void test_hkdf_info_string(void **state)
{
    /* openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexkey:000102..1f
     *   -kdfopt info:coai/provider-key/v1 HKDF */
    unsigned char ikm[32], okm[32], okm2[32];
    for (int i = 0; i < 32; i++)
        ikm[i] = (unsigned char)i;
    assert_int_equal(crypto_hkdf(ikm, sizeof ikm, "coai/provider-key/v1", okm), 0);
    char hex[65];
    hex_of(okm, sizeof okm, hex, sizeof hex);
    assert_string_equal(hex, "cdae3ff9de7129cca8321bdca6f066f5b791daebff48bcb30aa22eff820e6283");
    /* a different context gives an unrelated key */
    assert_int_equal(crypto_hkdf(ikm, sizeof ikm, "coai/provider-key/v2", okm2), 0);
    assert_memory_not_equal(okm, okm2, 32);
    /* bad arguments */
    assert_int_equal(crypto_hkdf(ikm, 0, "x", okm), -1);
    assert_int_equal(crypto_hkdf_ex(ikm, 32, NULL, 0, NULL, 0, okm, 0), -1);
}

static void test_sha256_kat(void **state)
{
    char out[65];
    crypto_sha256_hex("abc", 3, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    crypto_sha256_hex("", 0, out);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_hex(void **state)
{
    unsigned char in[256], back[256];
    for (int i = 0; i < 256; i++)
        in[i] = (unsigned char)i;
    char hex[513];
    assert_int_equal(crypto_hex_encode(in, 256, hex, sizeof hex), 0);
    assert_int_equal(strlen(hex), 512);
    assert_memory_equal(hex, "000102", 6);
    assert_string_equal(hex + 506, "fdfeff");
    size_t n = 0;
    assert_int_equal(crypto_hex_decode(hex, back, sizeof back, &n), 0);
    assert_int_equal(n, 256);
    assert_memory_equal(in, back, 256);

    assert_int_equal(crypto_hex_decode("DEADbeef", back, sizeof back, &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(back, "\xde\xad\xbe\xef", 4);
    assert_int_equal(crypto_hex_decode("", back, sizeof back, &n), 0);
    assert_int_equal(n, 0);

    /* invalid */
    assert_int_equal(crypto_hex_decode("abc", back, sizeof back, &n), -1);
    assert_int_equal(n, 0);
    assert_int_equal(crypto_hex_decode("zz", back, sizeof back, &n), -1);
    assert_int_equal(crypto_hex_decode("0g", back, sizeof back, &n), -1);
    assert_int_equal(crypto_hex_decode(" 00", back, sizeof back, &n), -1);
    assert_int_equal(crypto_hex_decode("00-0", back, sizeof back, &n), -1);
    assert_int_equal(crypto_hex_decode("0011", back, 1, &n), -1); /* too small */
    assert_int_equal(crypto_hex_decode(NULL, back, 1, &n), -1);

    /* encode into too small a buffer */
    char small[6];
    assert_int_equal(crypto_hex_encode(in, 3, small, sizeof small), -1);
    char exact[7];
    assert_int_equal(crypto_hex_encode(in, 3, exact, sizeof exact), 0);
    assert_string_equal(exact, "000102");
}

static void test_ct_equal(void **state)
{
    assert_true(crypto_ct_equal("abcd", "abcd", 4));
    assert_false(crypto_ct_equal("abcd", "abce", 4));
    assert_false(crypto_ct_equal("xbcd", "abcd", 4));
    assert_true(crypto_ct_equal("a", "b", 0));
}

/* ---- tokens ------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_token(void **state)
{
    enum { N = 2000 };
    char *toks[N];
    for (int i = 0; i < N; i++) {
        toks[i] = crypto_token_new(CRYPTO_TOKEN_BYTES);
        assert_non_null(toks[i]);
        assert_int_equal(strlen(toks[i]), 43);
        for (const char *c = toks[i]; *c; c++) {
            bool ok = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
                      (*c >= '0' && *c <= '9') || *c == '-' || *c == '_';
            assert_true(ok);
        }
    }
    qsort(toks, N, sizeof toks[0], cmp_str);
    for (int i = 1; i < N; i++)
        assert_int_not_equal(strcmp(toks[i - 1], toks[i]), 0);
    for (int i = 0; i < N; i++)
        free(toks[i]);

    /* lengths without padding: 1->2, 2->3, 3->4, 16->22 */
    static const size_t nb[] = {1, 2, 3, 4, 16, 32, 48};
    static const size_t nc[] = {2, 3, 4, 6, 22, 43, 64};
    for (size_t i = 0; i < COAI_ARRAY_LEN(nb); i++) {
        char *t = crypto_token_new(nb[i]);
        assert_int_equal(strlen(t), nc[i]);
        assert_null(strchr(t, '='));
        free(t);
    }
}

static void test_random(void **state)
{
    unsigned char a[64] = {0}, b[64] = {0}, zero[64] = {0};
    assert_int_equal(crypto_random(a, sizeof a), 0);
    assert_int_equal(crypto_random(b, sizeof b), 0);
    assert_memory_not_equal(a, b, sizeof a);
    assert_memory_not_equal(a, zero, sizeof a);
    assert_int_equal(crypto_random(a, 0), 0);
}

/* ---- passwords ---------------------------------------------------------- */

static void test_password(void **state)
{
    char *h1 = NULL, *h2 = NULL;
    assert_int_equal(crypto_password_hash("correct horse battery staple", &h1), 0);
    assert_non_null(h1);
    assert_memory_equal(h1, "$argon2id$", 10);
    assert_non_null(strstr(h1, "$m=19456,t=2,p=1$"));
    assert_int_equal(crypto_password_verify(h1, "correct horse battery staple"), 0);
    assert_int_equal(crypto_password_verify(h1, "correct horse battery stapl"), 1);
    assert_int_equal(crypto_password_verify(h1, ""), 1);

    /* same password, different salt */
    assert_int_equal(crypto_password_hash("correct horse battery staple", &h2), 0);
    assert_string_not_equal(h1, h2);
    assert_int_equal(crypto_password_verify(h2, "correct horse battery staple"), 0);

    /* empty and non-ASCII passwords work */
    char *h3;
    assert_int_equal(crypto_password_hash("", &h3), 0);
    assert_int_equal(crypto_password_verify(h3, ""), 0);
    assert_int_equal(crypto_password_verify(h3, " "), 1);
    free(h3);
    assert_int_equal(crypto_password_hash("p\xc3\xa4ssw\xc3\xb6rd", &h3), 0);
    assert_int_equal(crypto_password_verify(h3, "p\xc3\xa4ssw\xc3\xb6rd"), 0);
    assert_int_equal(crypto_password_verify(h3, "passwords"), 1);
    free(h3);

    /* malformed */
    assert_int_equal(crypto_password_verify("", "x"), -1);
    assert_int_equal(crypto_password_verify("not a hash", "x"), -1);
    assert_int_equal(crypto_password_verify(NULL, "x"), -1);
    assert_int_equal(crypto_password_verify(h1, NULL), -1);
    assert_int_equal(crypto_password_verify("$argon2id$v=19$m=19456,t=2,p=1$", "x"), -1);
    assert_int_equal(crypto_password_verify("$argon2id$v=19$m=19456,t=2,p=1$!!!$???", "x"), -1);
    /* argon2i (wrong variant) and a truncated hash are malformed too */
    char *wrong = xstrdup(h1);
    memcpy(wrong, "$argon2i$$", 10);
    assert_int_equal(crypto_password_verify(wrong, "correct horse battery staple"), -1);
    free(wrong);
    char *trunc = xstrndup(h1, strlen(h1) / 2);
    assert_int_equal(crypto_password_verify(trunc, "correct horse battery staple"), -1);
    free(trunc);
    free(h1);
    free(h2);
}

static void test_password_dummy(void **state)
{
    const char *d = crypto_password_dummy_hash_for_test();
    char prefix[64];
    snprintf(prefix, sizeof prefix, "$argon2id$v=19$m=%d,t=%d,p=%d$", CRYPTO_ARGON2_M_KIB,
             CRYPTO_ARGON2_T, CRYPTO_ARGON2_P);
    /* the dummy hash must cost what a real one costs */
    assert_memory_equal(d, prefix, strlen(prefix));
    char *real;
    assert_int_equal(crypto_password_hash("whatever", &real), 0);
    assert_int_equal(strlen(real), strlen(d));
    free(real);
    /* well-formed, and nobody's password */
    assert_int_equal(crypto_password_verify(d, "password"), 1);
    assert_int_equal(crypto_password_verify(d, ""), 1);
    crypto_password_dummy_verify("password");
    crypto_password_dummy_verify(NULL);
}

/* ---- master key --------------------------------------------------------- */

static void expect_key_ok(const char *text, const unsigned char want[32])
{
    unsigned char out[32];
    char err[256] = "";
    assert_int_equal(crypto_master_key_parse(text, out, err, sizeof err), 0);
    assert_memory_equal(out, want, 32);
}

static void expect_key_bad(const char *text)
{
    unsigned char out[32];
    char err[256] = "";
    assert_int_equal(crypto_master_key_parse(text, out, err, sizeof err), -1);
    assert_true(strlen(err) > 0);
    assert_non_null(strstr(err, "master key"));
    /* the error never echoes the key material */
    if (text && strlen(text) > 8)
        assert_null(strstr(err, text));
}

static void test_master_key_parse(void **state)
{
    unsigned char seq[32], fb[32];
    for (int i = 0; i < 32; i++)
        seq[i] = (unsigned char)i;
    for (int i = 0; i < 30; i++)
        fb[i] = (unsigned char[]){0xfb, 0xef, 0xbe}[i % 3];
    fb[30] = 0xfb;
    fb[31] = 0xff;

    expect_key_ok("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", seq);
    expect_key_ok("  000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F\n", seq);
    expect_key_ok("\t000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\r\n", seq);
    expect_key_ok("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", seq);
    expect_key_ok("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", seq);
    expect_key_ok(" AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", seq);
    expect_key_ok("+++++++++++++++++++++++++++++++++++++++++/8=", fb);
    expect_key_ok("+++++++++++++++++++++++++++++++++++++++++/8", fb);
    expect_key_ok("-----------------------------------------_8=", fb);
    expect_key_ok("-----------------------------------------_8", fb);

    /* wrong lengths */
    expect_key_bad("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e");     /* 62 */
    expect_key_bad("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"); /* 66 */
    expect_key_bad("00010203");
    expect_key_bad("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==");  /* 31 bytes */
    expect_key_bad("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");  /* 33 bytes */
    expect_key_bad("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    /* garbage and malformed base64 */
    expect_key_bad("");
    expect_key_bad("   \n");
    expect_key_bad(NULL);
    expect_key_bad("this is not a key at all, not even close!!!");
    expect_key_bad("zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    expect_key_bad("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=");  /* non-canonical */
    expect_key_bad("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8==");
    expect_key_bad("AAECAwQFBgcICQoLDA0O DxAREhMUFRYXGBkaGxwdHh8="); /* inner space */
    expect_key_bad("-++++++++++++++++++++++++++++++++++++++++/8=");  /* mixed alphabets */
    expect_key_bad("0001020304050607 08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");

    /* err may be NULL */
    unsigned char out[32];
    assert_int_equal(crypto_master_key_parse("nope", out, NULL, 0), -1);
}

static char tmpdir[64];

static int setup_tmpdir(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_crypto.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmpdir(void **state)
{
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                char p[512];
                snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
                unlink(p);
            }
        }
        closedir(d);
    }
    return rmdir(tmpdir);
}

static void write_file(const char *path, const char *content, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void test_master_key_file(void **state)
{
    char path[256];
    snprintf(path, sizeof path, "%s/master.key", tmpdir);
    unsigned char k1[32], k2[32];
    bool created = false;
    char err[512] = "";

    assert_int_equal(crypto_master_key_load_or_create(path, k1, &created, err, sizeof err), 0);
    assert_true(created);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, 65);

    /* file content is the hex of the key + newline */
    char buf[128] = "";
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    assert_int_equal(got, 65);
    assert_int_equal(buf[64], '\n');
    char hex[65];
    hex_of(k1, 32, hex, sizeof hex);
    assert_memory_equal(buf, hex, 64);

    /* reload: same key, not created */
    created = true;
    assert_int_equal(crypto_master_key_load_or_create(path, k2, &created, err, sizeof err), 0);
    assert_false(created);
    assert_memory_equal(k1, k2, 32);

    /* a group/other-readable key file is refused */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(crypto_master_key_load_or_create(path, k2, &created, err, sizeof err), -1);
    assert_non_null(strstr(err, "chmod 600"));
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(crypto_master_key_load_or_create(path, k2, &created, err, sizeof err), -1);
    /* 0400 is fine */
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(crypto_master_key_load_or_create(path, k2, &created, err, sizeof err), 0);
    assert_memory_equal(k1, k2, 32);

    /* an operator-provided base64 key file */
    char path2[256];
    snprintf(path2, sizeof path2, "%s/b64.key", tmpdir);
    write_file(path2, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", 0600);
    assert_int_equal(crypto_master_key_load_or_create(path2, k2, &created, err, sizeof err), 0);
    assert_false(created);
    for (int i = 0; i < 32; i++)
        assert_int_equal(k2[i], i);

    /* a garbage file is refused, not overwritten */
    write_file(path2, "hello\n", 0600);
    assert_int_equal(crypto_master_key_load_or_create(path2, k2, &created, err, sizeof err), -1);
    assert_non_null(strstr(err, "b64.key"));
    assert_int_equal(stat(path2, &st), 0);
    assert_int_equal(st.st_size, 6);
    /* an empty file too */
    write_file(path2, "", 0600);
    assert_int_equal(crypto_master_key_load_or_create(path2, k2, &created, err, sizeof err), -1);

    /* a directory is not a key file */
    assert_int_equal(crypto_master_key_load_or_create(tmpdir, k2, &created, err, sizeof err), -1);

    /* missing directory: clear error */
    char path3[256];
    snprintf(path3, sizeof path3, "%s/nope/master.key", tmpdir);
    assert_int_equal(crypto_master_key_load_or_create(path3, k2, &created, err, sizeof err), -1);
    assert_non_null(strstr(err, "nope/master.key"));
    assert_false(created);

    /* a second fresh file gets a different key */
    char path4[256];
    snprintf(path4, sizeof path4, "%s/second.key", tmpdir);
    assert_int_equal(crypto_master_key_load_or_create(path4, k2, &created, err, sizeof err), 0);
    assert_true(created);
    assert_memory_not_equal(k1, k2, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_box_roundtrip_empty),
        cmocka_unit_test(test_box_roundtrip_100k),
        cmocka_unit_test(test_box_nonce_random),
        cmocka_unit_test(test_box_tamper_every_byte),
        cmocka_unit_test(test_box_wrong_aad),
        cmocka_unit_test(test_box_wrong_key),
        cmocka_unit_test(test_box_truncated),
        cmocka_unit_test(test_box_rotation),
        cmocka_unit_test(test_hkdf_rfc5869_tc1),
        cmocka_unit_test(test_hkdf_rfc5869_tc3_no_salt),
        cmocka_unit_test(test_hkdf_info_string),
        cmocka_unit_test(test_sha256_kat),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_password),
        cmocka_unit_test(test_password_dummy),
        cmocka_unit_test(test_master_key_parse),
        cmocka_unit_test(test_master_key_file),
    };
    int failed = cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
    int total = (int)COAI_ARRAY_LEN(tests);
    printf("unit-crypto: %d passed, %d failed\n", failed > total ? 0 : total - failed, failed);
    return failed ? 1 : 0;
}
