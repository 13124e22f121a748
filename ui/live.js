// live.js - the control loop: the live feed of GET /v1/events (SSE read with fetch, since
// EventSource cannot send a bearer header), and per-route rates, errors and latency from
// GET /v1/stats polled every few seconds, with charts and A/B variants side by side.

import {api, authHeaders, notifyUnauthorized, ApiError} from './api.js';
import {h, fill, fmtNum, fmtPct, show} from './dom.js';
import {drawChart} from './chart.js';

const POLL_MS = 3000;
const HISTORY = 200;          /* polls kept per route for the charts (10 min at 3 s) */
const FEED_MAX = 300;         /* events kept in the feed */

export function liveView(root) {
  const status = h('span', {class: 'badge', id: 'events-status'}, 'connecting');
  const feed = h('ol', {class: 'feed', id: 'events-feed'});
  const windowSel = h('select', {id: 'stats-window'}, ['1m', '5m', '1h'].map((w) => h('option', {value: w}, w)));
  const statsInfo = h('span', {class: 'count', id: 'stats-info'});
  const cards = h('div', {class: 'cards', id: 'stats-routes'});
  const history = new Map();  /* route -> [{t, rps, error_rate, p50, p99}] */
  const ctl = new AbortController();
  let timer = null, last = null;

  fill(root, h('div', {class: 'toolbar'}, h('h2', {}, 'Control loop')),
    h('div', {class: 'live'},
      h('section', {class: 'card feed-box'}, h('h3', {}, 'Events ', status),
        h('p', {class: 'hint'}, 'Failovers, 429 retries, cooldowns and exhausted budgets, newest first.'), feed),
      h('section', {class: 'stats-box'}, h('div', {class: 'toolbar'}, h('h3', {}, 'Routes'),
        h('label', {}, 'window ', windowSel), statsInfo), cards)));

  const addEvent = (type, data) => {
    let e;
    try { e = JSON.parse(data); } catch (x) { e = {detail: data}; }
    const li = h('li', {class: 'ev ev-' + String(e.type || type).replace(/[^a-z0-9_]/gi, ''), 'data-type': e.type || type},
      h('time', {}, show(e.time)), ' ',
      h('span', {class: 'badge'}, e.type || type), ' ',
      h('span', {class: 'route'}, e.route ? 'route ' + e.route : '(no route)'), ' ',
      h('span', {}, [e.provider, e.model].filter(Boolean).join('/')), ' ',
      e.status ? h('span', {class: 'status'}, String(e.status)) : null, ' ',
      h('span', {class: 'detail'}, show(e.detail)),
      e.request_id ? h('span', {class: 'rid'}, ' ' + e.request_id) : null);
    feed.insertBefore(li, feed.firstChild);
    while (feed.children.length > FEED_MAX) feed.lastChild.remove();
  };

  readEvents(ctl.signal, addEvent, (s, bad) => { fill(status, s); status.className = 'badge ' + (bad ? 'bad' : 'good'); });

  const draw = () => {
    if (!last) return;
    const w = windowSel.value;
    fill(statsInfo, 'generated ' + show(last.generated_at));
    const routes = last.routes || [];
    if (!routes.length) fill(cards, h('p', {class: 'hint'}, 'No traffic yet.'));
    else fill(cards, routes.map((r) => routeCard(r, w, history.get(r.route) || [])));
  };

  const poll = async () => {
    try {
      last = await api('GET', '/v1/stats');
      const now = Date.now();
      for (const r of last.routes || []) {
        const s = (r.stats || {})['1m'] || {};
        const hist = history.get(r.route) || [];
        hist.push({t: now, rps: s.rps, error_rate: s.error_rate, p50: s.p50_ms, p99: s.p99_ms});
        if (hist.length > HISTORY) hist.shift();
        history.set(r.route, hist);
      }
      draw();
    } catch (e) {
      fill(statsInfo, 'stats: ' + (e.status ? e.status + ' ' : '') + e.message);
    }
    if (!ctl.signal.aborted) timer = setTimeout(poll, POLL_MS);
  };
  windowSel.addEventListener('change', draw);
  poll();
  return () => { ctl.abort(); clearTimeout(timer); };
}

function statsRow(label, s) {
  s = s || {};
  return h('tr', {}, h('th', {}, label), h('td', {}, fmtNum(s.requests)), h('td', {}, fmtNum(s.rps)),
    h('td', {}, fmtNum(s.errors)), h('td', {}, fmtPct(s.error_rate)),
    h('td', {}, fmtNum(s.p50_ms, 1)), h('td', {}, fmtNum(s.p99_ms, 1)));
}

function routeCard(r, w, hist) {
  const rate = h('canvas', {class: 'chart', 'aria-label': 'request and error rate of ' + r.route});
  const lat = h('canvas', {class: 'chart', 'aria-label': 'latency of ' + r.route});
  const targets = r.targets || [];
  const card = h('div', {class: 'card route-stats', 'data-route': r.route},
    h('h4', {}, 'route ', h('span', {class: 'name'}, show(r.route))),
    h('table', {class: 'grid compact'}, h('thead', {}, h('tr', {}, ['', 'Requests', 'Req/s', 'Errors', 'Error rate', 'p50 ms', 'p99 ms']
      .map((c) => h('th', {}, c)))), h('tbody', {}, statsRow(w, (r.stats || {})[w]))),
    h('div', {class: 'charts'}, rate, lat),
    targets.length ? h('div', {class: 'variants'}, targets.map((t) => {
      const s = (t.stats || {})[w] || {};
      return h('div', {class: 'variant'},
        h('div', {class: 'vname'}, t.variant ? 'variant ' + t.variant : 'target', ': ', t.provider + '/' + t.model),
        h('dl', {class: 'facts'}, h('dt', {}, 'req/s'), h('dd', {}, fmtNum(s.rps)),
          h('dt', {}, 'requests'), h('dd', {}, fmtNum(s.requests)),
          h('dt', {}, 'errors'), h('dd', {}, fmtPct(s.error_rate)),
          h('dt', {}, 'p50 / p99'), h('dd', {}, fmtNum(s.p50_ms, 1) + ' / ' + fmtNum(s.p99_ms, 1) + ' ms')));
    })) : null);
  // drawn once in the page, so the canvases have their laid-out size
  requestAnimationFrame(() => {
    drawChart(rate, [{label: 'req/s', points: hist.map((p) => [p.t, p.rps])},
      {label: 'error rate', points: hist.map((p) => [p.t, p.error_rate])}]);
    drawChart(lat, [{label: 'p50 ms', points: hist.map((p) => [p.t, p.p50])},
      {label: 'p99 ms', points: hist.map((p) => [p.t, p.p99])}], {unit: ''});
  });
  return card;
}

// Reads /v1/events as server-sent events: fields per line, an event at a blank
// line, comments (": keep-alive") ignored. Reconnects after an error or an end,
// waiting 1 s, then longer up to 15 s; stops when SIGNAL aborts.
async function readEvents(signal, onEvent, onStatus) {
  let wait = 1000;
  while (!signal.aborted) {
    try {
      const r = await fetch('/v1/events', {headers: Object.assign(authHeaders(), {Accept: 'text/event-stream'}),
        cache: 'no-store', credentials: 'omit', signal});
      if (r.status === 401) {
        notifyUnauthorized(new ApiError(401, null, ''));
        return;
      }
      if (!r.ok || !r.body) throw new Error('HTTP ' + r.status);
      onStatus('live', false);
      wait = 1000;
      await parseStream(r.body.getReader(), onEvent);
      onStatus('ended, reconnecting', true);
    } catch (e) {
      if (signal.aborted) return;
      onStatus('disconnected (' + e.message + '), retrying in ' + wait / 1000 + ' s', true);
    }
    await new Promise((res) => setTimeout(res, wait));
    wait = Math.min(wait * 2, 15000);
  }
}

async function parseStream(reader, onEvent) {
  const dec = new TextDecoder();
  let buf = '', type = '', data = [];
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buf += dec.decode(value, {stream: true});
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      if (buf[nl] === '\r' && nl + 1 === buf.length) break;   /* a CR that may be half of CRLF */
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (data.length) onEvent(type || 'message', data.join('\n'));
        type = '';
        data = [];
      } else if (!line.startsWith(':')) {
        const c = line.indexOf(':');
        const name = c < 0 ? line : line.slice(0, c);
        let val = c < 0 ? '' : line.slice(c + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (name === 'event') type = val;
        else if (name === 'data') data.push(val);
      }
    }
  }
}
