// The SSH session audit: administrators see every session, others their own.
import { get, h, banner, errorText } from './api.js';
import { mountShell } from './shell.js';

const me = await mountShell('sessions');
const main = document.getElementById('main');
const msg = h('div', { hidden: true });
const tbody = h('tbody', { id: 'sessions-body' });
const more = h('button', { type: 'button', hidden: true }, 'Older sessions');
main.replaceChildren(
  h('p', { class: 'breadcrumb' }, 'Sessions › Session audit'),
  h('div', { class: 'pagehead' }, h('h1', {}, 'Session audit')),
  h('p', { class: 'hint' }, me.admin ? 'Every SSH session, newest first.' : 'Your SSH sessions, newest first.'),
  msg,
  h('section', { class: 'panel' },
    h('table', {}, h('thead', {}, h('tr', {}, ['Started', 'Ended', 'User', 'Key', 'Device', 'From', 'Bytes in / out', 'End']
      .map(c => h('th', { scope: 'col' }, c)))), tbody),
    h('div', { class: 'count' }, more)));

const when = t => t ? new Date(t).toLocaleString() : '';
let next = null;
async function load(before) {
  try {
    const d = await get('/api/sessions?limit=50' + (before ? '&before=' + encodeURIComponent(before) : ''));
    tbody.append(...d.items.map(s => h('tr', {},
      h('td', {}, when(s.started_at)),
      h('td', {}, s.ended_at ? when(s.ended_at) : h('span', { class: 'pill ok' }, 'Live')),
      h('td', {}, s.username),
      h('td', {}, s.key_name ?? `#${s.key_id}`),
      h('td', {}, `${s.device_name ?? '#' + s.device_id} (${s.device_address}:${s.device_port})`),
      h('td', { class: 'mono' }, s.client_addr || ''),
      h('td', {}, `${s.bytes_in} / ${s.bytes_out}`),
      h('td', {}, s.end_reason ? s.end_reason + (s.exit_status !== null && s.exit_status !== undefined ? ` (exit ${s.exit_status})` : '') : ''))));
    next = d.next;
    more.hidden = !next;
  } catch (e) { banner(msg, 'error', errorText(e)); }
}
more.addEventListener('click', () => load(next));
await load();
