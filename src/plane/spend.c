/* spend.c - what a request's answer used and cost: its usage, priced at its provider model's prices, into the metrics and the access log. */
#include "plane.h"

/* The request is over: the usage of the attempt that answered (usage.c read
 * it on the way, or the translation did) priced, and counted by route,
 * provider and model. */
void spend_done(req_t *r)
{
    const candidate_t *c = r->last_cand >= 0 ? &r->res.cand[r->last_cand] : NULL;
    metrics_t *m = r->w->metrics;
    usage_prices_t p;
    if (c == NULL || (r->usage.prompt < 0 && r->usage.completion < 0))
        return;
    resolve_prices(c, &p);
    r->priced = p.input >= 0 || p.output >= 0;
    r->cost_nusd = usage_cost_nusd(&r->usage, &p);
    if (r->usage.prompt > 0)
        metrics_add(metrics_series(m, M_TOKENS, r->res.route, c->provider, c->model, "prompt"), r->usage.prompt);
    if (r->usage.completion > 0)
        metrics_add(metrics_series(m, M_TOKENS, r->res.route, c->provider, c->model, "completion"),
                    r->usage.completion);
    if (r->usage.cached > 0)
        metrics_add(metrics_series(m, M_TOKENS, r->res.route, c->provider, c->model, "cached"), r->usage.cached);
    if (r->cost_nusd > 0)
        metrics_add(metrics_series(m, M_COST, r->res.route, c->provider, c->model, NULL), r->cost_nusd);
}
