// api.js - calls to the admin API with the signed-in key as a bearer header (no cookies).
// The key lives in this tab's sessionStorage only; it is never logged or shown.

const STORE = 'turnout.key';
let unauthorized = () => {};

export const getKey = () => sessionStorage.getItem(STORE);
export const setKey = (k) => sessionStorage.setItem(STORE, k);
export const clearKey = () => sessionStorage.removeItem(STORE);

// Called with the error when a call answers 401 (the key was deleted or disabled).
export function onUnauthorized(fn) { unauthorized = fn; }
export function notifyUnauthorized(e) { unauthorized(e); }

// An answer other than 2xx: the API's message, and the field it names in `param`.
export class ApiError extends Error {
  constructor(status, body, text) {
    const err = body && body.error;
    super(err && err.message ? err.message : ('HTTP ' + status + (text ? ': ' + text.slice(0, 200) : '')));
    this.status = status;
    this.param = err ? err.param : null;
    this.code = err ? err.code : null;
  }
}

export function authHeaders(key) {
  return {'Authorization': 'Bearer ' + (key || getKey() || '')};
}

// One call: resolves with the decoded JSON answer, rejects with an ApiError.
export async function api(method, path, body, key) {
  const headers = authHeaders(key);
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store', credentials: 'omit'});
  } catch (e) {
    throw new ApiError(0, {error: {message: 'the gateway did not answer: ' + e.message}});
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!r.ok) {
    const e = new ApiError(r.status, data, data ? '' : text);
    if (r.status === 401 && key === undefined) unauthorized(e);
    throw e;
  }
  return data;
}

// Every record of a list, following next_cursor (at most 20 pages of 1000).
export async function listAll(path) {
  const sep = path.includes('?') ? '&' : '?';
  let out = [], cursor = null;
  for (let page = 0; page < 20; page++) {
    const r = await api('GET', path + sep + 'limit=1000' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
    out = out.concat(r.data || []);
    if (!r.has_more || !r.next_cursor) break;
    cursor = r.next_cursor;
  }
  return out;
}
