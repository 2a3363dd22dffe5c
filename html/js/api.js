// The JSON API client: every call goes through api(), which turns an error
// answer into an ApiError (status, code, message, field, reason) and sends a
// person whose login is gone back to the login page.

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `The server answered ${status}`);
    this.status = status;
    this.code = e.code || 'http_' + status;
    this.field = e.field || null;
    this.reason = e.reason || null;
  }
}

export function loginUrl() {
  const here = location.pathname + location.search;
  return 'login.html?next=' + encodeURIComponent(here);
}

export async function api(method, path, body, { redirect = true } = {}) {
  const opt = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opt);
  } catch {
    throw new ApiError(0, { error: { code: 'network', message: 'The server cannot be reached. Check the connection and try again.' } });
  }
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    if (res.status === 401 && redirect) {
      location.assign(loginUrl());
      // never resolves: the page is going away
      return new Promise(() => {});
    }
    throw new ApiError(res.status, data);
  }
  return data;
}

export const get = (p, o) => api('GET', p, undefined, o);
export const post = (p, b, o) => api('POST', p, b ?? {}, o);
export const patch = (p, b, o) => api('PATCH', p, b, o);
export const put = (p, b, o) => api('PUT', p, b, o);
export const del = (p, o) => api('DELETE', p, undefined, o);

// a tiny element builder: h('td', {class: 'x'}, 'text', child)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function param(name) {
  return new URLSearchParams(location.search).get(name);
}

export function idParam(name) {
  const v = param(name);
  return v && /^[0-9]+$/.test(v) ? Number(v) : null;
}

export function statusPill(status) {
  return h('span', { class: 'pill ' + (status === 'active' ? 'active' : 'inactive') },
           status === 'active' ? 'Active' : status === 'inactive' ? 'Inactive' : status);
}

export function tagList(tags) {
  return (tags || []).map(t => h('span', { class: 'tag' }, t));
}

export function banner(el, kind, text) {
  el.className = 'banner ' + kind;
  el.textContent = text;
  el.hidden = !text;
  el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
}

export function errorText(e) {
  if (e instanceof ApiError) {
    if (e.status === 403) return 'You are not allowed to do this. ' + (e.message || '');
    if (e.status === 503) return 'The database is unavailable; try again in a moment.';
    return e.message;
  }
  return String(e && e.message || e);
}

// a modal confirmation with a <dialog>; resolves true or false
export function confirmDialog(title, text, okLabel = 'Delete') {
  return new Promise(resolve => {
    const ok = h('button', { class: 'danger solid', type: 'button' }, okLabel);
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const d = h('dialog', { 'aria-labelledby': 'confirm-title' },
      h('header', { id: 'confirm-title' }, title),
      h('div', { class: 'body' }, text),
      h('footer', {}, cancel, ok));
    document.body.append(d);
    const done = v => { d.close(); d.remove(); resolve(v); };
    ok.addEventListener('click', () => done(true));
    cancel.addEventListener('click', () => done(false));
    d.addEventListener('cancel', ev => { ev.preventDefault(); done(false); });
    d.showModal();
    cancel.focus();
  });
}
