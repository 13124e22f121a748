/* tls.c - the listeners' TLS: an OpenSSL server context per listener and config generation.
 *
 * A context is made when a config is loaded (start-up, or SIGHUP: a
 * certificate or key that does not load rejects the reload, and the
 * running config's context keeps serving) and lives with that config;
 * every connection takes its own reference when it is accepted (SSL_new),
 * so connections made under the old certificate finish with it. All
 * workers share one context, so a session ticket issued by one worker
 * resumes on another. The connections' I/O over it is clientio.c's. */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

/* ALPN: http/1.1 when the client offers it; otherwise no protocol is
 * agreed (a client offering only h2 fails its own way). */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    static const unsigned char h11[] = "\x08http/1.1";
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto((unsigned char **)out, outlen, h11, sizeof(h11) - 1, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK;
}

/* The last OpenSSL error, as text, into BUF. */
static const char *why(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, cap, "unknown error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

struct ssl_ctx_st *tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen)
{
    static const unsigned char sid[] = "turnout";
    char e[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "tls: cannot make a context: %s", why(e, sizeof(e)));
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        snprintf(err, errlen, "tls: cannot require TLS 1.2: %s", why(e, sizeof(e)));
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "tls: certificate %s: %s", cert, why(e, sizeof(e)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, errlen, "tls: key %s: %s", key, why(e, sizeof(e)));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "tls: key %s does not match certificate %s", key, cert);
        ERR_clear_error();
        goto fail;
    }
    /* partial writes and a moving buffer: clientio.c writes from whatever
     * the output holds; a peer's close without close_notify is an end of
     * input, not an error (most HTTP clients close that way) */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_ctx_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}
