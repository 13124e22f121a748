// dom.js - building elements from data. Every value goes in as text (createTextNode,
// textContent, attribute values), never as markup: nothing here parses HTML.

// h('div', {class: 'x', onclick: fn}, 'text', child, [more]) -> an element.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'disabled' || k === 'selected') el[k] = true;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// Empties EL and puts CHILDREN in it.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// A value for a table cell: text, with absent values as a dash.
export function show(v) {
  if (v === undefined || v === null || v === '') return '—';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function fmtNum(v, digits = 2) {
  if (v === undefined || v === null) return '—';
  if (typeof v !== 'number') return String(v);
  return Number.isInteger(v) ? String(v) : v.toFixed(digits);
}

export function fmtPct(v) {
  return v === undefined || v === null ? '—' : (v * 100).toFixed(1) + '%';
}

// A labelled field of a form; PARAM names the API field its errors are about.
export function field(label, input, param, hint) {
  return h('div', {class: 'field', 'data-param': param || null},
    h('label', {}, h('span', {class: 'label'}, label), input),
    hint ? h('div', {class: 'hint'}, hint) : null,
    h('div', {class: 'field-error', role: 'alert'}));
}

// An on/off switch that calls onchange(checked) and stays as it was if that fails.
export function toggle(checked, label, onchange) {
  const box = h('input', {type: 'checkbox', class: 'switch', 'aria-label': label, checked});
  box.addEventListener('change', async () => {
    const want = box.checked;
    box.disabled = true;
    try {
      await onchange(want);
    } catch (e) {
      box.checked = !want;
    } finally {
      box.disabled = false;
    }
  });
  return box;
}

// A delete button that asks in place: "Delete NAME?" Yes / Cancel.
export function deleteButton(name, ondelete) {
  const wrap = h('span', {class: 'confirm'});
  const ask = () => fill(wrap,
    h('span', {class: 'ask'}, 'Delete ' + name + '?'),
    h('button', {type: 'button', class: 'danger confirm-yes', onclick: async () => {
      try { await ondelete(); } catch (e) { reset(); }
    }}, 'Yes, delete'),
    h('button', {type: 'button', class: 'confirm-no', onclick: () => reset()}, 'Cancel'));
  const reset = () => fill(wrap, h('button', {type: 'button', class: 'danger delete', onclick: ask}, 'Delete'));
  reset();
  return wrap;
}
