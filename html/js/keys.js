// The SSH keys report: filters, table, Actions menu per row; under the
// device count, the deployment and the rotation state (rotate.js).
import { get, del, h, statusPill, tagList, banner, errorText, confirmDialog } from './api.js';
import { mountShell } from './shell.js';
import { deploymentText } from './checks.js';
import { rotationLines } from './rotate.js';

const me = await mountShell('keys');
const body = document.getElementById('keys-body');
const msg = document.getElementById('page-msg');
const form = document.getElementById('filters');
if (me.admin) document.getElementById('add-key').hidden = false;

function closeMenus(except) {
  for (const m of document.querySelectorAll('[role="menu"]')) {
    if (m === except) continue;
    m.hidden = true;
    m.previousElementSibling?.setAttribute('aria-expanded', 'false');
  }
}
document.addEventListener('click', ev => {
  if (!ev.target.closest('.menu-wrap')) closeMenus();
});
document.addEventListener('keydown', ev => {
  if (ev.key === 'Escape') {
    const open = document.querySelector('[role="menu"]:not([hidden])');
    if (open) { closeMenus(); open.previousElementSibling.focus(); }
  }
});

function actionsMenu(k) {
  const id = 'menu-' + k.id;
  const btn = h('button', { type: 'button', 'aria-haspopup': 'menu', 'aria-expanded': 'false',
                            'aria-controls': id, 'aria-label': `Actions for ${k.name}` }, 'Actions ▾');
  const items = [
    h('a', { role: 'menuitem', href: `remote-access.html?key=${k.id}` }, 'Start session with a key'),
  ];
  if (me.admin) {
    items.push(h('a', { role: 'menuitem', href: `key-edit.html?id=${k.id}` }, 'Edit'));
    items.push(h('button', { role: 'menuitem', type: 'button', class: 'danger',
                             onclick: () => remove(k) }, 'Delete'));
  }
  const menu = h('div', { role: 'menu', id, hidden: true, 'aria-label': `Actions for ${k.name}` }, items);
  btn.addEventListener('click', () => {
    const open = menu.hidden;
    closeMenus(menu);
    menu.hidden = !open;
    btn.setAttribute('aria-expanded', String(open));
    if (open) items[0].focus();
  });
  menu.addEventListener('keydown', ev => {
    const i = items.indexOf(document.activeElement);
    if (ev.key === 'ArrowDown') { ev.preventDefault(); items[(i + 1) % items.length].focus(); }
    if (ev.key === 'ArrowUp') { ev.preventDefault(); items[(i - 1 + items.length) % items.length].focus(); }
  });
  return h('div', { class: 'menu-wrap' }, btn, menu);
}

async function remove(k) {
  closeMenus();
  const ok = await confirmDialog('Delete SSH key',
    `Delete the SSH key "${k.name}"? Sessions can no longer start with it.`);
  if (!ok) return;
  try {
    await del(`/api/keys/${k.id}`);
    banner(msg, 'ok', `The SSH key "${k.name}" was deleted.`);
    await load();
  } catch (e) {
    banner(msg, 'error', errorText(e));
  }
}

const none = () => h('span', { class: 'muted' }, '—');

async function load() {
  const q = new URLSearchParams();
  for (const n of ['status', 'tag', 'q']) {
    const v = form.elements[n].value.trim();
    if (v) q.set(n, v);
  }
  let data;
  try {
    data = await get('/api/keys' + (q.size ? '?' + q : ''));
  } catch (e) {
    banner(msg, 'error', errorText(e));
    return;
  }
  body.replaceChildren(...data.items.map(k => h('tr', { dataset: { keyId: k.id } },
    h('td', { class: 'nowrap' }, h('strong', {}, k.name)),
    h('td', {}, h('div', {}, h('div', { class: 'nowrap' }, k.type + (k.bits ? ` (${k.bits})` : '')),
      h('div', { class: 'fp', title: k.fingerprint }, k.fingerprint))),
    h('td', {}, k.username),
    h('td', {}, k.owner || none()),
    h('td', {}, statusPill(k.status)),
    h('td', {}, tagList(k.tags)),
    h('td', { class: 'clip', title: k.main_device_name ?? '' }, k.main_device_name ?? none()),
    h('td', { class: 'num' }, h('div', {}, String(k.devices.length)),
      h('div', { class: 'muted small', dataset: { deployment: '' } }, deploymentText(k.deployment)),
      rotationLines(k)),
    h('td', { class: 'actions' }, actionsMenu(k)))));
  document.getElementById('keys-empty').hidden = data.items.length > 0;
  document.getElementById('keys-count').textContent =
    `${data.items.length} SSH key${data.items.length === 1 ? '' : 's'}`;
}

form.addEventListener('submit', ev => { ev.preventDefault(); load(); });
form.elements.status.addEventListener('change', load);

const flash = sessionStorage.getItem('segura-flash');
if (flash) { sessionStorage.removeItem('segura-flash'); banner(msg, 'ok', flash); }

await load();
