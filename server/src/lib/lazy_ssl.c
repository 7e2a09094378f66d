/* lazy_ssl.c - the libssl and libevent_openssl functions the server calls
 * (http/security.c: HTTPS when CHATOPENAII_TLS_CERT is set), defined here
 * under their own names and forwarded to the libraries loaded by lazy.c
 * (see lazy.h). A server without TLS never loads either; libcrypto stays
 * linked (keys, hashes, random numbers are used from the start). */
#include <openssl/ssl.h>

#include <event2/bufferevent_ssl.h>

#include "lazy_int.h"

#define SSL_FUNCS(X)                                                                            \
    X(TLS_server_method) X(SSL_CTX_new) X(SSL_CTX_free) X(SSL_CTX_ctrl) X(SSL_CTX_set_options)  \
    X(SSL_CTX_use_certificate_chain_file) X(SSL_CTX_use_PrivateKey_file)                        \
    X(SSL_CTX_check_private_key) X(SSL_new)

enum { SSL_FUNCS(LAZY_ENUM) SSL_NFUNCS };
static const char *const names[] = {SSL_FUNCS(LAZY_NAME)};
static void *fns[SSL_NFUNCS];
const struct lazy_syms lazy_ssl_syms = {names, fns, SSL_NFUNCS};

static const char *const ev_names[] = {"bufferevent_openssl_socket_new"};
static void *ev_fns[1];
const struct lazy_syms lazy_event_ssl_syms = {ev_names, ev_fns, 1};

#define F(name) ((__typeof__(&name))lazy_fn(LAZY_SSL, fns, I_##name))

const SSL_METHOD *TLS_server_method(void)
{
    return F(TLS_server_method)();
}

SSL_CTX *SSL_CTX_new(const SSL_METHOD *meth)
{
    return F(SSL_CTX_new)(meth);
}

void SSL_CTX_free(SSL_CTX *ctx)
{
    if (!ctx) /* as libssl does, without loading it: cleanup without TLS */
        return;
    F(SSL_CTX_free)(ctx);
}

long SSL_CTX_ctrl(SSL_CTX *ctx, int cmd, long larg, void *parg)
{
    return F(SSL_CTX_ctrl)(ctx, cmd, larg, parg);
}

uint64_t SSL_CTX_set_options(SSL_CTX *ctx, uint64_t op)
{
    return F(SSL_CTX_set_options)(ctx, op);
}

int SSL_CTX_use_certificate_chain_file(SSL_CTX *ctx, const char *file)
{
    return F(SSL_CTX_use_certificate_chain_file)(ctx, file);
}

int SSL_CTX_use_PrivateKey_file(SSL_CTX *ctx, const char *file, int type)
{
    return F(SSL_CTX_use_PrivateKey_file)(ctx, file, type);
}

int SSL_CTX_check_private_key(const SSL_CTX *ctx)
{
    return F(SSL_CTX_check_private_key)(ctx);
}

SSL *SSL_new(SSL_CTX *ctx)
{
    return F(SSL_new)(ctx);
}

struct bufferevent *bufferevent_openssl_socket_new(struct event_base *base, evutil_socket_t fd,
                                                   struct ssl_st *ssl,
                                                   enum bufferevent_ssl_state state, int options)
{
    return ((__typeof__(&bufferevent_openssl_socket_new))lazy_fn(LAZY_EVENT_SSL, ev_fns, 0))(
        base, fd, ssl, state, options);
}
