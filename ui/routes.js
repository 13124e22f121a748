// routes.js - the routes view: a list with search and filters, an enable switch per
// route, delete with confirmation, and the create / edit form with the API's field errors.

import {api, listAll} from './api.js';
import {h, fill, show, field, toggle, deleteButton} from './dom.js';
import {flash, flashError, showFieldError, clearFieldErrors} from './msg.js';

const ENDPOINTS = ['chat', 'completions', 'embeddings', 'audio_speech', 'audio_transcription',
  'image_generation', 'responses'];
const STRATEGIES = ['direct', 'fallback', 'weighted', 'round_robin', 'ab'];

export function routesView(root) {
  let routes = [], providers = [];
  const search = h('input', {type: 'search', id: 'route-search', placeholder: 'Search name or description'});
  const endpoint = h('select', {id: 'route-filter-endpoint'}, h('option', {value: ''}, 'any endpoint'),
    ENDPOINTS.map((e) => h('option', {value: e}, e)));
  const state = h('select', {id: 'route-filter-state'}, h('option', {value: ''}, 'enabled and disabled'),
    h('option', {value: 'on'}, 'enabled'), h('option', {value: 'off'}, 'disabled'));
  const scope = h('input', {type: 'search', id: 'route-filter-scope', placeholder: 'scope (global, tenant:…)'});
  const router = h('input', {type: 'search', id: 'route-filter-router', placeholder: 'router'});
  const list = h('div', {class: 'list'});
  const panel = h('div', {class: 'panel'});
  const count = h('span', {class: 'count'});

  const matches = (r) => {
    const q = search.value.trim().toLowerCase();
    return (!q || (r.name || '').toLowerCase().includes(q) || (r.description || '').toLowerCase().includes(q)) &&
      (!endpoint.value || r.endpoint === endpoint.value) &&
      (!state.value || (r.enabled !== false) === (state.value === 'on')) &&
      (!scope.value.trim() || (r.scope || 'global').includes(scope.value.trim())) &&
      (!router.value.trim() || (r.router || '').includes(router.value.trim()));
  };

  const draw = () => {
    const shown = routes.filter(matches);
    fill(count, shown.length + ' of ' + routes.length + ' routes');
    fill(list, h('table', {class: 'grid', id: 'routes-table'},
      h('thead', {}, h('tr', {}, ['On', 'Name', 'Description', 'Endpoint', 'Scope', 'Router', 'Strategy',
        'Targets', 'Priority', ''].map((c) => h('th', {}, c)))),
      h('tbody', {}, shown.map(row))));
  };

  const row = (r) => h('tr', {'data-id': r.id, 'data-name': r.name, class: r.enabled === false ? 'off' : ''},
    h('td', {}, toggle(r.enabled !== false, 'enable ' + r.name, async (on) => {
      try {
        const got = await api('PATCH', '/v1/model-routes/' + encodeURIComponent(r.id), {enabled: on});
        Object.assign(r, got);
        flash('Route ' + r.name + (on ? ' enabled' : ' disabled: callers go to its fallbacks'));
        draw();
      } catch (e) { flashError(e); throw e; }
    })),
    h('td', {class: 'name'}, r.name),
    h('td', {class: 'desc'}, show(r.description)),
    h('td', {}, show(r.endpoint)), h('td', {}, show(r.scope)), h('td', {}, show(r.router)),
    h('td', {}, show(r.strategy)),
    h('td', {class: 'targets'}, targetsText(r)),
    h('td', {}, show(r.priority)),
    h('td', {class: 'actions'},
      h('button', {type: 'button', class: 'edit', onclick: () => edit(r)}, 'Edit'),
      deleteButton(r.name, async () => {
        try {
          await api('DELETE', '/v1/model-routes/' + encodeURIComponent(r.id));
          routes = routes.filter((x) => x.id !== r.id);
          flash('Deleted route ' + r.name);
          draw();
        } catch (e) { flashError(e); throw e; }
      })));

  const load = async () => {
    try {
      [routes, providers] = await Promise.all([listAll('/v1/model-routes?include_disabled=true'),
        listAll('/v1/providers').catch(() => [])]);
      routes.sort((a, b) => a.name.localeCompare(b.name));
      draw();
    } catch (e) { flashError(e); }
  };

  const edit = (rec) => {
    fill(panel, routeForm(rec, providers, (saved) => {
      fill(panel);
      flash((rec ? 'Saved route ' : 'Created route ') + saved.name);
      load();
    }, () => fill(panel)));
    panel.scrollIntoView({block: 'start'});
  };

  for (const x of [search, endpoint, state, scope, router]) x.addEventListener('input', draw);
  fill(root, h('div', {class: 'toolbar'}, h('h2', {}, 'Routes'), count,
    h('button', {type: 'button', id: 'route-new', class: 'primary', onclick: () => edit(null)}, 'New route')),
  h('div', {class: 'filters'}, search, endpoint, state, scope, router), panel, list);
  load();
}

function targetsText(r) {
  const t = (r.targets || []).map((x) => (x.provider || '?') + '/' + (x.model || '*') +
    (x.variant ? ' [' + x.variant + ']' : '') + (r.strategy === 'weighted' || r.strategy === 'ab' ? ' w' + show(x.weight) : '') +
    (x.enabled === false ? ' (off)' : ''));
  return (r.primary_model ? 'shorthand: ' : '') + (t.join(r.strategy === 'fallback' ? ' → ' : ', ') || '—');
}

// A form input's value for the API: numbers as numbers, anything else as typed
// (so the API, not the page, says what is wrong with it).
function value(input) {
  const v = input.value.trim();
  if (v === '') return null;
  if (input.dataset.kind === 'number' && /^-?\d+(\.\d+)?$/.test(v)) return Number(v);
  return v;
}

function text(id, val, kind) {
  return h('input', {type: 'text', id, value: val === undefined || val === null ? '' : String(val),
    'data-kind': kind || null, autocomplete: 'off'});
}

function routeForm(rec, providers, done, cancel) {
  const r = rec || {};
  const f = {
    name: text('rf-name', r.name),
    description: h('textarea', {id: 'rf-description', rows: 2}),
    endpoint: h('select', {id: 'rf-endpoint'}, ENDPOINTS.map((e) => h('option', {value: e, selected: (r.endpoint || 'chat') === e}, e))),
    router: text('rf-router', r.router),
    scope: text('rf-scope', r.scope),
    priority: text('rf-priority', r.priority, 'number'),
    strategy: h('select', {id: 'rf-strategy'}, h('option', {value: ''}, '(default)'),
      STRATEGIES.map((s) => h('option', {value: s, selected: r.strategy === s}, s))),
    enabled: h('input', {type: 'checkbox', id: 'rf-enabled', checked: r.enabled !== false}),
    max_in_flight: text('rf-max-in-flight', r.max_in_flight, 'number'),
    'retry.max_429_retries': text('rf-retries', (r.retry || {}).max_429_retries, 'number'),
    'retry.retry_after_cap_s': text('rf-retry-cap', (r.retry || {}).retry_after_cap_s, 'number'),
    'timeouts.connect_ms': text('rf-connect-ms', (r.timeouts || {}).connect_ms, 'number'),
    'timeouts.first_byte_s': text('rf-first-byte', (r.timeouts || {}).first_byte_s, 'number'),
    'timeouts.idle_s': text('rf-idle', (r.timeouts || {}).idle_s, 'number'),
    'timeouts.total_s': text('rf-total', (r.timeouts || {}).total_s, 'number'),
    provider: h('textarea', {id: 'rf-provider', rows: 2, placeholder: '{"order": ["a", "b"], "data_residency": "eu"}'}),
    primary_model: text('rf-primary', r.primary_model),
    fallback_model: text('rf-fallback', r.fallback_model),
  };
  f.description.value = r.description || '';
  f.provider.value = r.provider ? JSON.stringify(r.provider) : '';
  const shorthand = h('input', {type: 'radio', name: 'rf-mode', id: 'rf-mode-shorthand', value: 'shorthand',
    checked: !!r.primary_model || !rec});
  const full = h('input', {type: 'radio', name: 'rf-mode', id: 'rf-mode-targets', value: 'targets',
    checked: !!rec && !r.primary_model});
  const rows = h('tbody', {});
  const datalist = h('datalist', {id: 'rf-providers'}, providers.map((p) => h('option', {value: p.name})));
  const targetsBox = h('div', {class: 'field', 'data-param': 'targets'},
    h('table', {class: 'grid targets-edit'}, h('thead', {}, h('tr', {},
      ['Provider', 'Model', 'Weight', 'Order', 'Variant', 'On', ''].map((c) => h('th', {}, c)))), rows),
    h('button', {type: 'button', id: 'rf-add-target', onclick: () => addTarget({})}, 'Add target'),
    h('div', {class: 'field-error', role: 'alert'}));
  const shortBox = h('div', {class: 'row'},
    field('Primary model', f.primary_model, 'primary_model', 'provider/model, or a bare model'),
    field('Fallback model', f.fallback_model, 'fallback_model', 'optional'));

  // One row per target; its base object keeps fields the form does not edit (model_map, caps).
  function addTarget(t) {
    const i = rows.children.length;
    const cell = (name, input) => h('td', {}, h('div', {class: 'field', 'data-param': 'targets[' + i + '].' + name},
      input, h('div', {class: 'field-error', role: 'alert'})));
    const tr = h('tr', {class: 'target'},
      cell('provider', h('input', {type: 'text', list: 'rf-providers', class: 't-provider', value: t.provider || ''})),
      cell('model', h('input', {type: 'text', class: 't-model', value: t.model || ''})),
      cell('weight', h('input', {type: 'text', class: 't-weight', 'data-kind': 'number', value: t.weight === undefined ? '' : String(t.weight)})),
      cell('order', h('input', {type: 'text', class: 't-order', 'data-kind': 'number', value: t.order === undefined ? '' : String(t.order)})),
      cell('variant', h('input', {type: 'text', class: 't-variant', value: t.variant || ''})),
      cell('enabled', h('input', {type: 'checkbox', class: 't-enabled', checked: t.enabled !== false})),
      h('td', {}, h('button', {type: 'button', onclick: () => tr.remove()}, 'Remove')));
    tr.base = t;
    rows.appendChild(tr);
  }
  (r.targets || []).forEach(addTarget);
  if (!rows.children.length) addTarget({});

  const modeView = () => {
    targetsBox.hidden = !full.checked;
    shortBox.hidden = !shorthand.checked;
  };
  shorthand.addEventListener('change', modeView);
  full.addEventListener('change', modeView);
  modeView();

  const targets = () => [...rows.children].map((tr) => {
    const t = Object.assign({}, tr.base);
    const set = (k, v) => { if (v === null) delete t[k]; else t[k] = v; };
    set('provider', value(tr.querySelector('.t-provider')));
    set('model', value(tr.querySelector('.t-model')));
    set('weight', value(tr.querySelector('.t-weight')));
    set('order', value(tr.querySelector('.t-order')));
    set('variant', value(tr.querySelector('.t-variant')));
    t.enabled = tr.querySelector('.t-enabled').checked;
    return t;
  });

  // The body: on create only what is filled in; on edit every field, an empty one as null (removed).
  const body = () => {
    const b = {};
    const put = (k, v) => { if (v !== null || rec) b[k] = v; };
    for (const k of ['name', 'router', 'scope', 'priority', 'max_in_flight']) put(k, value(f[k]));
    put('description', f.description.value === '' ? null : f.description.value);
    b.endpoint = f.endpoint.value;
    put('strategy', f.strategy.value || null);
    b.enabled = f.enabled.checked;
    for (const group of ['retry', 'timeouts']) {
      const o = {};
      for (const k of Object.keys(f).filter((x) => x.startsWith(group + '.'))) {
        const v = value(f[k]);
        if (v !== null || rec) o[k.slice(group.length + 1)] = v;
      }
      if (Object.values(o).some((v) => v !== null)) b[group] = o;
      else put(group, null);
    }
    const prefs = f.provider.value.trim();
    if (prefs) {
      try { b.provider = JSON.parse(prefs); } catch (e) {
        throw Object.assign(new Error('not valid JSON: ' + e.message), {param: 'provider'});
      }
    } else put('provider', null);
    if (shorthand.checked) {
      b.primary_model = value(f.primary_model);
      put('fallback_model', value(f.fallback_model));
    } else {
      b.targets = targets();
    }
    return b;
  };

  const form = h('form', {class: 'card route-form', id: 'route-form', novalidate: true},
    h('h3', {}, rec ? 'Edit route ' + r.name : 'New route'),
    h('div', {class: 'form-error error', role: 'alert'}),
    h('div', {class: 'row'}, field('Name', f.name, 'name', 'an exact alias or a glob pattern'),
      field('Endpoint', f.endpoint, 'endpoint'), field('Strategy', f.strategy, 'strategy'),
      field('Enabled', f.enabled, 'enabled')),
    field('Description', f.description, 'description'),
    h('div', {class: 'row'}, field('Scope', f.scope, 'scope', 'global, tenant:ID or key:ID'),
      field('Router', f.router, 'router'), field('Priority', f.priority, 'priority', 'glob match order'),
      field('Max in flight', f.max_in_flight, 'max_in_flight')),
    h('fieldset', {}, h('legend', {}, 'Targets'),
      h('div', {class: 'modes'}, h('label', {}, shorthand, ' Shorthand (primary + fallback)'),
        h('label', {}, full, ' Full targets')),
      shortBox, targetsBox, datalist),
    h('details', {open: !!(r.retry || r.timeouts || r.provider)}, h('summary', {}, 'Retries, timeouts, provider preferences'),
      h('div', {class: 'row'}, field('429 retries', f['retry.max_429_retries'], 'retry.max_429_retries'),
        field('Retry-After cap (s)', f['retry.retry_after_cap_s'], 'retry.retry_after_cap_s')),
      h('div', {class: 'row'}, field('Connect (ms)', f['timeouts.connect_ms'], 'timeouts.connect_ms'),
        field('First byte (s)', f['timeouts.first_byte_s'], 'timeouts.first_byte_s'),
        field('Idle (s)', f['timeouts.idle_s'], 'timeouts.idle_s'),
        field('Total (s)', f['timeouts.total_s'], 'timeouts.total_s')),
      field('Provider preferences (JSON)', f.provider, 'provider')),
    h('div', {class: 'buttons'},
      h('button', {type: 'submit', class: 'primary', id: 'rf-save'}, rec ? 'Save' : 'Create'),
      h('button', {type: 'button', onclick: cancel}, 'Cancel')));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearFieldErrors(form);
    let b;
    try { b = body(); } catch (e) { showFieldError(form, e); return; }
    try {
      const saved = rec ? await api('PATCH', '/v1/model-routes/' + encodeURIComponent(rec.id), b)
        : await api('POST', '/v1/model-routes', b);
      done(saved);
    } catch (e) { showFieldError(form, e); }
  });
  return form;
}
