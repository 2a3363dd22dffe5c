// SSH Keys: Remote Access: the devices a key may reach, and Start session.
import { get, h, idParam, banner, errorText, statusPill, tagList } from './api.js';
import { mountShell } from './shell.js';
import { reasonText } from './reasons.js';

await mountShell('keys');
const msg = document.getElementById('page-msg');
const keyId = idParam('key');

async function load() {
  if (!keyId) { banner(msg, 'error', 'No SSH key was chosen: open this report from the SSH keys report.'); return; }
  let data;
  try {
    data = await get(`/api/keys/${keyId}/devices`);
  } catch (e) {
    banner(msg, 'error', e.status === 404 ? 'This SSH key does not exist or is not available to you.' : errorText(e));
    return;
  }
  document.getElementById('key-title').textContent = data.key.name;
  document.getElementById('key-status').replaceChildren(statusPill(data.key.status));
  document.getElementById('key-login').textContent = `logs in as ${data.key.username}`;
  document.title = `Remote Access: ${data.key.name} — Segura PAM Core`;
  document.getElementById('access-body').replaceChildren(...data.items.map(d => {
    const url = `terminal.html?key=${keyId}&device=${d.id}`;
    const reasonId = `reason-${d.id}`;
    const start = d.can_start
      ? h('a', { class: 'button primary', href: url, 'aria-label': `Start session on ${d.name}` }, 'Start session')
      : h('button', { type: 'button', class: 'primary', disabled: true, 'aria-describedby': reasonId,
                      'aria-label': `Start session on ${d.name}` }, 'Start session');
    return h('tr', { dataset: { deviceId: d.id } },
      h('td', {}, h('div', {}, h('strong', {}, d.name),
        d.description ? h('div', { class: 'muted small' }, d.description) : null)),
      h('td', { class: 'mono' }, d.address),
      h('td', { class: 'num mono' }, String(d.port)),
      h('td', {}, statusPill(d.status)),
      h('td', {}, d.main ? h('span', { class: 'pill main' }, 'Main') : ''),
      h('td', {}, d.tags?.length ? tagList(d.tags) : h('span', { class: 'muted' }, '—')),
      h('td', {}, d.can_start ? h('span', { class: 'pill ok' }, 'Allowed')
                              : h('span', { class: 'reason', id: reasonId }, reasonText(d.reason))),
      h('td', { class: 'actions' }, start));
  }));
  document.getElementById('access-empty').hidden = data.items.length > 0;
}

await load();
