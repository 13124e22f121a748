// records.js - the providers, routers, keys and budgets views: lists with an enable
// switch and delete, and a JSON editor whose API errors are shown beside it.
// Secrets are never shown: a provider's api_key is not in what the API reads, and a
// new key's secret is shown once, from the create answer, then dropped.

import {api, listAll} from './api.js';
import {h, fill, show, fmtNum, field, toggle, deleteButton} from './dom.js';
import {flash, flashError, showFieldError, clearFieldErrors} from './msg.js';

const SERVER_FIELDS = ['id', 'created_at', 'updated_at', 'api_key_last4', 'secret_hint', 'last_used_at',
  'spent_usd', 'spent_tokens', 'requests', 'window_start', 'resets_at', 'exhausted'];

// A JSON editor for one record: POST when new, else a merge patch of what changed
// (a top-level field deleted in the editor is sent as null, which removes it).
function jsonForm(coll, noun, rec, template, done, cancel) {
  const plain = {};
  for (const [k, v] of Object.entries(rec || template)) if (!SERVER_FIELDS.includes(k) && !k.startsWith('_')) plain[k] = v;
  const text = JSON.stringify(plain, (k, v) => (k.startsWith('_') ? undefined : v), 2);
  const area = h('textarea', {id: 'json-editor', rows: 14, spellcheck: 'false'});
  area.value = text;
  const form = h('form', {class: 'card json-form'},
    h('h3', {}, rec ? 'Edit ' + noun + ' ' + (rec.name || rec.slug || rec.id) : 'New ' + noun),
    h('div', {class: 'form-error error', role: 'alert'}),
    field('Record (JSON)', area, '', 'the fields of the admin API; id and times are set by the server'),
    h('div', {class: 'buttons'}, h('button', {type: 'submit', class: 'primary', id: 'json-save'}, rec ? 'Save' : 'Create'),
      h('button', {type: 'button', onclick: cancel}, 'Cancel')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearFieldErrors(form);
    let body;
    try { body = JSON.parse(area.value); } catch (e) {
      showFieldError(form, {message: 'not valid JSON: ' + e.message, param: ''});
      return;
    }
    if (rec) for (const k of Object.keys(plain)) if (!(k in body)) body[k] = null;
    try {
      done(rec ? await api('PATCH', coll + '/' + encodeURIComponent(rec.id), body) : await api('POST', coll, body));
    } catch (e) {
      // the API names the field; the editor is one field, so say which
      showFieldError(form, Object.assign(new Error((e.param ? e.param + ': ' : '') + e.message),
        {status: e.status, param: null}));
    }
  });
  return form;
}

// A list view: COLUMNS are [title, record => cell]; SWITCH the boolean field an
// on/off switch edits (enabled, or a router's active); CREATE a custom create form.
function collectionView(root, o) {
  const list = h('div', {class: 'list'});
  const panel = h('div', {class: 'panel'});
  let records = [];
  const open = (form) => { fill(panel, form); panel.scrollIntoView({block: 'start'}); };
  const saved = (what) => (rec) => { fill(panel); flash(what + ' ' + (rec.name || rec.slug || rec.id)); load(); };
  const draw = () => fill(list, h('table', {class: 'grid', id: o.id + '-table'},
    h('thead', {}, h('tr', {}, o.switch ? h('th', {}, 'On') : null, o.columns.map(([t]) => h('th', {}, t)), h('th', {}))),
    h('tbody', {}, records.map((r) => h('tr', {'data-id': r.id, class: o.switch && r[o.switch] === false ? 'off' : ''},
      o.switch ? h('td', {}, toggle(r[o.switch] !== false, 'enable ' + (r.name || r.slug || r.id), async (on) => {
        try {
          Object.assign(r, await api('PATCH', o.path + '/' + encodeURIComponent(r.id), {[o.switch]: on}));
          flash(o.noun + ' ' + (r.name || r.slug || r.id) + (on ? ' enabled' : ' disabled'));
          draw();
        } catch (e) { flashError(e); throw e; }
      })) : null,
      o.columns.map(([, cell]) => h('td', {}, cell(r, records))),
      h('td', {class: 'actions'},
        h('button', {type: 'button', class: 'edit', onclick: () => open(jsonForm(o.path, o.noun, r, null, saved('Saved'), () => fill(panel)))}, 'Edit'),
        deleteButton(r.name || r.slug || r.id, async () => {
          try {
            await api('DELETE', o.path + '/' + encodeURIComponent(r.id));
            flash('Deleted ' + o.noun + ' ' + (r.name || r.slug || r.id));
            load();
          } catch (e) { flashError(e); throw e; }
        })))))));
  const load = async () => {
    try {
      records = await listAll(o.path + (o.query || ''));
      if (o.extra) await o.extra(records);
      draw();
    } catch (e) { flashError(e); }
  };
  fill(root, h('div', {class: 'toolbar'}, h('h2', {}, o.title),
    h('button', {type: 'button', class: 'primary', id: o.id + '-new',
      onclick: () => open(o.create ? o.create(saved('Created'), () => fill(panel))
        : jsonForm(o.path, o.noun, null, o.template, saved('Created'), () => fill(panel)))}, 'New ' + o.noun)),
  o.intro ? h('p', {class: 'intro'}, o.intro) : null, panel, list);
  load();
}

const price = (v) => (v === undefined || v === null ? '—' : '$' + v);

export function providersView(root) {
  collectionView(root, {
    id: 'providers', title: 'Providers', noun: 'provider', path: '/v1/providers', switch: 'enabled',
    template: {name: '', base_url: 'https://', api_key_env: '', protocol: 'openai',
      models: [{name: '', bare_alias: false, input_price: 0, output_price: 0}]},
    // live: each model's health (one dry-run of every PROVIDER/MODEL: usable,
    // cooling_down until T, probing, at_cap), and the provider's attempts over
    // the last minute, summed over the routes' targets
    extra: async (providers) => {
      const names = providers.flatMap((p) => (p.models || []).map((m) => p.name + '/' + m.name)).slice(0, 100);
      const [stats, health] = await Promise.all([api('GET', '/v1/stats').catch(() => null),
        names.length ? api('POST', '/v1/model-routes/dry-run', {models: names}).catch(() => null) : null]);
      for (const r of (health && health.results) || []) {
        const c = (r.candidates || [])[0];
        const [pname, ...rest] = r.model.split('/');
        const m = ((providers.find((p) => p.name === pname) || {}).models || []).find((x) => x.name === rest.join('/'));
        if (m && c) m._state = c.state === 'cooling_down' ? 'cooling down until ' + show(c.cooling_until)
          : c.state === 'at_cap' ? 'at its ' + c.cap + ' cap (' + c.in_flight + '/' + c.max_in_flight + ')'
          : c.state === 'usable' ? null : c.state;
      }
      for (const p of providers) {
        const lines = (stats ? stats.routes || [] : []).flatMap((r) => r.targets || [])
          .filter((t) => t.provider === p.name).map((t) => (t.stats || {})['1m'] || {});
        const n = lines.reduce((a, x) => a + (x.requests || 0), 0);
        const errors = lines.reduce((a, x) => a + (x.errors || 0), 0);
        const p99 = Math.max(0, ...lines.map((x) => x.p99_ms || 0));
        p._live = stats ? (n ? n + ' attempts, ' + (100 * errors / n).toFixed(1) + '% failed, p99 ' + p99.toFixed(1) + ' ms'
          : 'no attempts') : 'stats unavailable';
        p._bad = n > 0 && errors > 0;
      }
    },
    columns: [
      ['Name', (p) => h('span', {class: 'name'}, p.name)],
      ['Base URL', (p) => show(p.base_url)],
      ['Protocol', (p) => show(p.protocol)],
      ['Key', (p) => ('api_key_last4' in p ? 'stored' : p.api_key_env ? 'env ' + p.api_key_env : '—')],
      ['Placement', (p) => [p.region, p.eu_owned ? 'EU-owned' : null, p.data_collection].filter(Boolean).join(', ') || '—'],
      ['Cap', (p) => show(p.max_in_flight)],
      ['Last minute', (p) => h('span', {class: p._bad ? 'badge bad' : 'badge'}, p._live)],
      ['Models (price per 1M in / out)', (p) => h('ul', {class: 'models'}, (p.models || []).map((m) =>
        h('li', {class: m.enabled === false ? 'off' : ''}, m.name, m.bare_alias ? ' (bare alias)' : '',
          m.input_price !== undefined || m.output_price !== undefined ? ' · ' + price(m.input_price) + ' / ' + price(m.output_price) : '',
          m.enabled === false ? ' (off)' : '',
          m._state ? h('span', {class: 'badge bad state'}, m._state) : null)))],
    ],
  });
}

export function routersView(root) {
  collectionView(root, {
    id: 'routers', title: 'Routers and their pools', noun: 'router', path: '/v1/routers', switch: 'active',
    intro: 'A router is a namespace of routes; its pools are the glob routes (gpt-4*, *) matched by priority.',
    template: {slug: '', name: '', description: ''},
    extra: async (routers) => {
      const routes = await listAll('/v1/model-routes?include_disabled=true');
      for (const r of routers) r._routes = routes.filter((x) => x.router === r.slug);
    },
    columns: [
      ['Slug', (r) => h('span', {class: 'name'}, r.slug)],
      ['Name', (r) => show(r.name)],
      ['Description', (r) => show(r.description)],
      ['Namespaces', (r) => show((r.namespaces || []).join(', '))],
      ['Routes and pools', (r) => h('ul', {class: 'models'}, (r._routes || [])
        .sort((a, b) => (b.priority || 0) - (a.priority || 0))
        .map((x) => h('li', {class: x.enabled === false ? 'off' : ''}, x.name, /[*?[]/.test(x.name) ? ' (pool, priority ' + (x.priority || 0) + ')' : '',
          ' → ', (x.targets || []).map((t) => t.provider + '/' + (t.model || '*')).join(', '))))],
    ],
  });
}

export function keysView(root) {
  collectionView(root, {
    id: 'keys', title: 'Keys', noun: 'key', path: '/v1/keys', switch: 'enabled',
    columns: [
      ['Name', (k) => h('span', {class: 'name'}, show(k.name))],
      ['Role', (k) => show(k.role)],
      ['Tenant', (k) => show(k.tenant)],
      ['Secret', (k) => show(k.secret_hint)],
      ['Limits', (k) => ['rpm', 'tpm', 'max_in_flight'].filter((x) => k[x] != null).map((x) => x + ' ' + k[x]).join(', ') || '—'],
      ['Last used', (k) => show(k.last_used_at)],
      ['Id', (k) => h('code', {}, k.id)],
    ],
    create: keyForm,
  });
}

// Creating a key: its secret is in the answer only, shown once with a copy button.
function keyForm(done, cancel) {
  const name = h('input', {type: 'text', id: 'kf-name'});
  const role = h('select', {id: 'kf-role'}, ['user', 'tenant_admin', 'admin'].map((r) => h('option', {value: r}, r)));
  const tenant = h('input', {type: 'text', id: 'kf-tenant'});
  const description = h('input', {type: 'text', id: 'kf-description'});
  const out = h('div', {});
  const form = h('form', {class: 'card', id: 'key-form'},
    h('h3', {}, 'New key'), h('div', {class: 'form-error error', role: 'alert'}),
    h('div', {class: 'row'}, field('Name', name, 'name'), field('Role', role, 'role'),
      field('Tenant', tenant, 'tenant', 'required for tenant_admin'), field('Description', description, 'description')),
    h('div', {class: 'buttons'}, h('button', {type: 'submit', class: 'primary', id: 'kf-save'}, 'Create'),
      h('button', {type: 'button', onclick: cancel}, 'Cancel')), out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearFieldErrors(form);
    const b = {role: role.value};
    for (const [k, el] of [['name', name], ['tenant', tenant], ['description', description]])
      if (el.value.trim()) b[k] = el.value.trim();
    try {
      const rec = await api('POST', '/v1/keys', b);
      let secret = rec.secret;
      delete rec.secret;
      const box = h('input', {type: 'text', id: 'new-secret', readonly: true, value: secret});
      secret = null;
      const copy = h('button', {type: 'button', id: 'copy-secret', onclick: async () => {
        box.select();
        try { await navigator.clipboard.writeText(box.value); fill(copy, 'Copied'); } catch (e) {
          document.execCommand('copy'); fill(copy, 'Copied');
        }
      }}, 'Copy');
      fill(form, h('h3', {}, 'Key ' + (rec.name || rec.id) + ' created'),
        h('p', {class: 'warn'}, 'This is the only time the secret is shown. Copy it now; the gateway keeps only its hash.'),
        h('div', {class: 'secret'}, box, copy),
        h('div', {class: 'buttons'}, h('button', {type: 'button', class: 'primary', id: 'secret-done', onclick: () => {
          box.value = '';
          done(rec);
        }}, 'Done')));
    } catch (e) { showFieldError(form, e); }
  });
  return form;
}

export function budgetsView(root) {
  const scope = (s) => (typeof s === 'string' ? s : Object.entries(s || {}).map(([k, v]) =>
    k + ' ' + (typeof v === 'object' ? Object.values(v).join('/') : v)).join(', '));
  collectionView(root, {
    id: 'budgets', title: 'Budgets', noun: 'budget', path: '/v1/budgets', switch: 'enabled',
    template: {name: '', scope: 'global', limit_usd: 100, window: '1M', action_on_exhaust: 'block'},
    columns: [
      ['Name', (b) => h('span', {class: 'name'}, b.name)],
      ['Scope', (b) => scope(b.scope)],
      ['Window', (b) => show(b.window)],
      ['Spent', (b) => h('div', {class: 'spend'},
        b.limit_usd != null ? meter('$' + fmtNum(b.spent_usd, 4) + ' of $' + b.limit_usd, b.spent_usd, b.limit_usd) : null,
        b.limit_tokens != null ? meter(fmtNum(b.spent_tokens) + ' of ' + b.limit_tokens + ' tokens', b.spent_tokens, b.limit_tokens) : null,
        b.limit_requests != null ? meter(fmtNum(b.requests) + ' of ' + b.limit_requests + ' requests', b.requests, b.limit_requests) : null)],
      ['Resets', (b) => show(b.resets_at)],
      ['State', (b) => h('span', {class: b.exhausted ? 'badge bad' : 'badge good'}, b.exhausted ? 'exhausted' : 'ok',
        b.action_on_exhaust === 'alert' ? ' (alert)' : '')],
    ],
  });
}

function meter(label, v, max) {
  return h('div', {class: 'meter'}, h('progress', {max: String(max), value: String(Math.min(v || 0, max))}), ' ', label);
}
