/* ui.h - the dashboard's static files, compiled into the binary, served by the admin listener under /ui/. */
#ifndef TURNOUT_UI_H
#define TURNOUT_UI_H

#include <stddef.h>

/* One file of ui/, as tools/embed.c wrote it into the generated ui_assets.c. */
typedef struct ui_asset {
    const char *name;                 /* path under /ui/, e.g. "app.js" */
    const char *type;                 /* Content-Type */
    const unsigned char *data;        /* the file's bytes */
    size_t len;
    const unsigned char *gz;          /* gzip -9 -n of them; gz_len 0 when not smaller */
    size_t gz_len;
    const char *etag;                 /* quoted strong ETag of the plain bytes */
    const char *etag_gz;              /* the gzip copy's: the same with "-gz" (another representation) */
} ui_asset_t;

extern const ui_asset_t ui_assets[];
extern const size_t ui_asset_count;

struct evhtp_request;

/* Answers REQ when PATH is the UI's: "/" (308 to /ui/), "/ui" (308), "/ui/"
 * (index.html) or "/ui/NAME" (that file, 404 if unknown; 405 for a method
 * other than GET or HEAD). Returns 1 when it answered, 0 when PATH is not
 * the UI's (the caller goes on). The files are public: no key is asked. */
int ui_serve(struct evhtp_request *req, const char *path);

/* The asset named NAME, or NULL. */
const ui_asset_t *ui_find(const char *name);

#endif
