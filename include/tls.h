/* tls.h - the listeners' TLS: an OpenSSL server context per listener and config generation. */
#ifndef TURNOUT_TLS_H
#define TURNOUT_TLS_H

#include <stddef.h>

struct ssl_ctx_st;

/* A server context for the certificate chain file CERT and private key
 * file KEY (PEM): TLS 1.2 and 1.3 only, OpenSSL's default ciphers, ALPN
 * http/1.1, session resumption (tickets and a session cache). NULL with a
 * message naming the file and the problem in ERR. */
struct ssl_ctx_st *tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen);

/* Gives up this reference (connections hold their own). NULL is ignored. */
void tls_ctx_free(struct ssl_ctx_st *ctx);

#endif
