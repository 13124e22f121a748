// app.js - the dashboard's shell: sign-in, navigation between views, messages.

import {api, setKey, getKey, clearKey, onUnauthorized} from './api.js';
import {fill} from './dom.js';
import {flash} from './msg.js';
import {routesView} from './routes.js';
import {providersView, routersView, keysView, budgetsView} from './records.js';
import {usageView, dryRunView} from './tools.js';
import {liveView} from './live.js';

const views = {
  'routes': routesView, 'providers': providersView, 'routers': routersView, 'keys': keysView,
  'budgets': budgetsView, 'usage': usageView, 'dry-run': dryRunView, 'live': liveView,
};
const $ = (id) => document.getElementById(id);
let stopView = null;

function showSignIn(message) {
  if (stopView) { stopView(); stopView = null; }
  fill($('view'));
  $('app').hidden = true;
  $('signin').hidden = false;
  fill($('signin-error'), message || '');
  $('signin-key').value = '';
  $('signin-key').focus();
}

async function signIn(ev) {
  ev.preventDefault();
  const key = $('signin-key').value.trim();
  const btn = $('signin-submit');
  btn.disabled = true;
  try {
    await api('GET', '/v1/model-routes?limit=1', undefined, key);
    setKey(key);
    $('signin-key').value = '';
    $('signin').hidden = true;
    $('app').hidden = false;
    route();
  } catch (e) {
    const why = e.status === 401 ? 'That key was not accepted.' :
      e.status === 403 ? 'That key may not use the admin API.' : 'Sign-in failed.';
    fill($('signin-error'), why + ' ' + (e.status ? '(' + e.status + ') ' : '') + e.message);
  } finally {
    btn.disabled = false;
  }
}

function route() {
  if (!getKey()) return showSignIn();
  const name = (location.hash.replace(/^#\/?/, '') || 'routes').split('?')[0];
  const view = views[name] || views.routes;
  if (stopView) { stopView(); stopView = null; }
  for (const a of document.querySelectorAll('#nav a'))
    a.classList.toggle('active', a.dataset.view === (views[name] ? name : 'routes'));
  flash('');
  const root = fill($('view'));
  root.dataset.view = views[name] ? name : 'routes';
  stopView = view(root) || null;
}

onUnauthorized(() => {
  clearKey();
  showSignIn('Your key is no longer accepted (401): you have been signed out.');
});

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', () => { clearKey(); showSignIn('Signed out.'); });
  window.addEventListener('hashchange', () => { if (getKey()) route(); });
  if (getKey()) {
    $('app').hidden = false;
    route();
  } else {
    showSignIn();
  }
});
