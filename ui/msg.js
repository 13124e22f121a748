// msg.js - the message line under the navigation: confirmations fade, errors stay.

import {ApiError} from './api.js';
import {fill, h} from './dom.js';

let timer = null;

export function flash(text, isError) {
  const el = document.getElementById('flash');
  clearTimeout(timer);
  fill(el, text ? h('div', {class: isError ? 'msg error' : 'msg ok'}, text) : null);
  if (text && !isError) timer = setTimeout(() => fill(el), 4000);
}

// An API error with its status and the API's own message.
export function flashError(e) {
  flash((e instanceof ApiError && e.status ? e.status + ': ' : '') + e.message, true);
}

// Puts an API error beside the field it names (`param`, or the nearest
// enclosing field: targets[1].model, then targets[1], then targets), else at
// the form's top. FORM holds fields with data-param.
export function showFieldError(form, e) {
  clearFieldErrors(form);
  let param = e.param || '';
  while (param) {
    const f = [...form.querySelectorAll('[data-param]')].find((x) => x.dataset.param === param);
    if (f) {
      f.classList.add('invalid');
      fill(f.querySelector(':scope > .field-error'), e.message);
      const input = f.querySelector('input, select, textarea');
      if (input) input.focus();
      return;
    }
    const up = param.replace(/(\.[^.[\]]*|\[\d+\])$/, '');
    if (up === param) break;
    param = up;
  }
  const top = form.querySelector('.form-error');
  if (top) fill(top, (e.status ? e.status + ': ' : '') + e.message);
  else flashError(e);
}

export function clearFieldErrors(form) {
  for (const f of form.querySelectorAll('.invalid')) f.classList.remove('invalid');
  for (const x of form.querySelectorAll('.field-error, .form-error')) fill(x);
}
