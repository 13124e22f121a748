// tools.js - the usage report and the dry-run ("where would model X from caller Y go, and why").

import {api} from './api.js';
import {h, fill, show, fmtNum, field} from './dom.js';
import {showFieldError, clearFieldErrors} from './msg.js';

const GROUPS = ['key', 'tenant', 'route', 'provider', 'model'];
const GROUP_FIELD = {key: 'key_id', tenant: 'tenant', route: 'route', provider: 'provider', model: 'model'};

export function usageView(root) {
  const from = h('input', {type: 'text', id: 'usage-from', placeholder: 'default: 24 h before "to"'});
  const to = h('input', {type: 'text', id: 'usage-to', placeholder: 'default: now'});
  const bucket = h('select', {id: 'usage-bucket'}, h('option', {value: 'hour'}, 'hour'), h('option', {value: 'day'}, 'day'));
  const groups = GROUPS.map((g) => h('input', {type: 'checkbox', value: g, checked: g === 'route'}));
  const out = h('div', {class: 'list'});
  const form = h('form', {class: 'card', id: 'usage-form'}, h('div', {class: 'form-error error', role: 'alert'}),
    h('div', {class: 'row'}, field('From', from, 'from', 'RFC 3339 or epoch seconds'), field('To', to, 'to'),
      field('Bucket', bucket, 'bucket'),
      h('div', {class: 'field', 'data-param': 'group_by'}, h('span', {class: 'label'}, 'Group by'),
        h('div', {class: 'checks'}, groups.map((c) => h('label', {}, c, ' ' + c.value))),
        h('div', {class: 'field-error', role: 'alert'}))),
    h('div', {class: 'buttons'}, h('button', {type: 'submit', class: 'primary'}, 'Report')));
  const run = async () => {
    clearFieldErrors(form);
    const q = new URLSearchParams();
    if (from.value.trim()) q.set('from', from.value.trim());
    if (to.value.trim()) q.set('to', to.value.trim());
    q.set('bucket', bucket.value);
    const by = groups.filter((c) => c.checked).map((c) => c.value);
    if (by.length) q.set('group_by', by.join(','));
    try {
      const r = await api('GET', '/v1/usage?' + q.toString());
      const cols = (r.group_by || []).map((g) => GROUP_FIELD[g]);
      const total = (r.data || []).reduce((a, x) => ({requests: a.requests + x.requests, cost: a.cost + Number(x.cost_usd || 0)}), {requests: 0, cost: 0});
      fill(out, h('p', {}, 'From ' + r.from + ' to ' + r.to + ' by ' + r.bucket + ': ' + total.requests +
        ' requests, $' + total.cost.toFixed(6)),
      h('table', {class: 'grid', id: 'usage-table'}, h('thead', {}, h('tr', {}, ['Start', ...cols, 'Requests',
        'Prompt tokens', 'Completion tokens', 'Cost (USD)'].map((c) => h('th', {}, c)))),
      h('tbody', {}, (r.data || []).map((x) => h('tr', {}, h('td', {}, x.start), cols.map((c) => h('td', {}, show(x[c]))),
        h('td', {}, fmtNum(x.requests)), h('td', {}, fmtNum(x.prompt_tokens)), h('td', {}, fmtNum(x.completion_tokens)),
        h('td', {}, show(x.cost_usd)))))));
    } catch (e) { showFieldError(form, e); }
  };
  form.addEventListener('submit', (ev) => { ev.preventDefault(); run(); });
  fill(root, h('div', {class: 'toolbar'}, h('h2', {}, 'Usage')), form, out);
  run();
}

const ENDPOINTS = ['chat', 'completions', 'embeddings', 'audio_speech', 'audio_transcription', 'image_generation', 'responses'];

export function dryRunView(root) {
  const f = {
    model: h('input', {type: 'text', id: 'dr-model', placeholder: 'fast-summariser, route::NAME, provider/model'}),
    endpoint: h('select', {id: 'dr-endpoint'}, ENDPOINTS.map((e) => h('option', {value: e}, e))),
    router: h('input', {type: 'text', id: 'dr-router'}),
    key_id: h('input', {type: 'text', id: 'dr-key-id', placeholder: 'the caller: a key id'}),
    tenant: h('input', {type: 'text', id: 'dr-tenant', placeholder: 'or a tenant'}),
    user: h('input', {type: 'text', id: 'dr-user', placeholder: 'A/B key'}),
  };
  const out = h('div', {id: 'dry-run-result'});
  const form = h('form', {class: 'card', id: 'dry-run-form'}, h('div', {class: 'form-error error', role: 'alert'}),
    h('div', {class: 'row'}, field('Model', f.model, 'model'), field('Endpoint', f.endpoint, 'endpoint'),
      field('Router', f.router, 'router')),
    h('div', {class: 'row'}, field('Caller key id', f.key_id, 'key_id'), field('Tenant', f.tenant, 'tenant'),
      field('User', f.user, 'user')),
    h('div', {class: 'buttons'}, h('button', {type: 'submit', class: 'primary', id: 'dr-run'}, 'Where would it go?')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearFieldErrors(form);
    const b = {endpoint: f.endpoint.value};
    for (const k of ['model', 'router', 'key_id', 'tenant', 'user']) if (f[k].value.trim()) b[k] = f[k].value.trim();
    try {
      drawResult(out, await api('POST', '/v1/model-routes/dry-run', b));
    } catch (e) { fill(out); showFieldError(form, e); }
  });
  fill(root, h('div', {class: 'toolbar'}, h('h2', {}, 'Dry-run')),
    h('p', {class: 'intro'}, 'Resolves a model name as a request from that caller would, without calling any provider.'),
    form, out);
}

function drawResult(out, r) {
  const rt = r.route;
  const ok = r.status >= 200 && r.status < 300;
  fill(out, h('div', {class: 'card'},
    h('h3', {}, h('span', {class: ok ? 'badge good' : 'badge bad', id: 'dr-status'}, String(r.status)), ' ',
      r.code ? r.code + ' ' : '', 'model ', r.model || '', ' on ', r.endpoint || ''),
    h('dl', {class: 'facts'},
      h('dt', {}, 'Rule'), h('dd', {id: 'dr-rule'}, show(r.rule)),
      h('dt', {}, 'Why'), h('dd', {id: 'dr-why'}, show(r.why)),
      h('dt', {}, 'Route'), h('dd', {}, rt ? rt.name + ' (' + [rt.scope, rt.strategy, rt.enabled === false ? 'disabled' : null].filter(Boolean).join(', ') + ')' : '—'),
      h('dt', {}, 'A/B variant'), h('dd', {}, show(r.variant)),
      h('dt', {}, 'Providers in order'), h('dd', {}, show((r.providers || []).join(' → '))),
      h('dt', {}, 'Preferences'), h('dd', {}, show(r.effective_preferences))),
    h('h4', {}, 'Candidates, in the order they would be tried'),
    h('table', {class: 'grid', id: 'dr-candidates'}, h('thead', {}, h('tr', {},
      ['#', 'Provider', 'Model', 'Variant', 'Available', 'State', 'Detail'].map((c) => h('th', {}, c)))),
    h('tbody', {}, (r.candidates || []).map((c, i) => h('tr', {class: c.available ? '' : 'off'},
      h('td', {}, String(i + 1)), h('td', {}, show(c.provider)), h('td', {}, show(c.model)), h('td', {}, show(c.variant)),
      h('td', {}, h('span', {class: c.available ? 'badge good' : 'badge bad'}, c.available ? 'yes' : 'no')),
      h('td', {class: 'state'}, show(c.state)),
      h('td', {}, detail(c)))))),
    r.variants && r.variants.length ? [h('h4', {}, 'A/B variants'), h('table', {class: 'grid'}, h('thead', {}, h('tr', {},
      ['Variant', 'Weight', 'Requests', 'Errors', 'Mean latency (ms)'].map((c) => h('th', {}, c)))),
    h('tbody', {}, r.variants.map((v) => h('tr', {}, h('td', {}, show(v.variant)), h('td', {}, show(v.weight)),
      h('td', {}, show(v.requests)), h('td', {}, show(v.errors)), h('td', {}, fmtNum(v.mean_latency_ms, 1))))))] : null,
    r.budgets && r.budgets.length ? [h('h4', {}, 'Budgets of the request'), h('ul', {}, r.budgets.map((b) =>
      h('li', {}, (b.name || b.id) + (b.blocks ? ' — blocks' : '') + (b.exhausted ? ' (exhausted)' : ''))))] : null));
}

function detail(c) {
  const rest = {};
  for (const [k, v] of Object.entries(c))
    if (!['provider', 'model', 'variant', 'available', 'state'].includes(k) && !(Array.isArray(v) && !v.length)) rest[k] = v;
  return Object.keys(rest).length ? JSON.stringify(rest) : '';
}

