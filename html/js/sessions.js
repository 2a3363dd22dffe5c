// The SSH session audit: administrators and audit_sessions members see every
// session, others their own where segura_recording_self is on (docs/recording.md).
import { get, post, h, banner, errorText, confirmDialog } from './api.js';
import { mountShell } from './shell.js';

const me = await mountShell('sessions');
const main = document.getElementById('main');
const msg = h('div', { hidden: true });
const tbody = h('tbody', { id: 'sessions-body' });
const more = h('button', { type: 'button', hidden: true }, 'Older sessions');
// searching recordings: administrators for now (the server's one rule,
// ngx_segura_api_may_search); anyone else would get 403
const searchInput = h('input', { type: 'search', id: 'rec-q', name: 'q', maxlength: '200',
  placeholder: 'Words the session printed, e.g. /etc/passwd', 'aria-describedby': 'rec-q-hint' });
const searchForm = h('form', { class: 'toolbar', id: 'rec-search', role: 'search', hidden: !me.admin },
  h('div', { class: 'field grow' },
    h('label', { for: 'rec-q' }, 'Search recordings'), searchInput,
    h('div', { class: 'hint', id: 'rec-q-hint' }, 'Whole words, all of them (up to 8); what a person read on the screen.')),
  h('button', { type: 'submit', class: 'shrink' }, 'Search'));
const hitsBox = h('div', { id: 'rec-hits', 'aria-live': 'polite' });
main.replaceChildren(
  h('p', { class: 'breadcrumb' }, 'Sessions › Session audit'),
  h('div', { class: 'pagehead' }, h('h1', {}, 'Session audit')),
  h('p', { class: 'hint' }, me.admin || (me.groups || []).some(g => g.permissions?.audit_sessions)
    ? 'Every SSH session, newest first.'
    : 'The SSH sessions you may see (your own, where the server allows it), newest first.'),
  msg,
  h('section', { class: 'panel', hidden: !me.admin }, searchForm, hitsBox),
  h('section', { class: 'panel' },
    h('table', {}, h('thead', {}, h('tr', {}, [...['Started', 'Ended', 'User', 'Key', 'Device', 'From', 'Bytes in / out', 'End']
      .map(c => h('th', { scope: 'col' }, c)), h('th', { scope: 'col' }, h('span', { class: 'skip' }, 'Actions'))])), tbody),
    h('div', { class: 'count' }, more)));

const when = t => t ? new Date(t).toLocaleString() : '';

// end_reason (docs/protocol.md, Audit) in words
const ENDS = {
  exit: 'Shell exited',
  client_closed: 'Closed by the user',
  client_gone: 'Browser went away',
  protocol_error: 'Protocol error',
  idle_timeout: 'Idle timeout',
  device_gone: 'Connection to the device lost',
  shutdown: 'Server shut down',
};
function ending(s) {
  if (!s.end_reason) return '';
  const status = s.exit_status !== null && s.exit_status !== undefined ? ` (exit ${s.exit_status})` : '';
  return (ENDS[s.end_reason] || s.end_reason) + status;
}
// administrators end a live session; the node running it closes it
function endButton(s) {
  if (!me.admin || s.ended_at) return '';
  if (s.end_requested_at) return h('span', { class: 'muted' }, 'Ending…');
  const b = h('button', { type: 'button', class: 'danger', 'aria-label': `End the session of ${s.username} on ${s.device_name}` },
              'End session');
  b.addEventListener('click', async () => {
    const ok = await confirmDialog('End session',
      `End the live session of ${s.username} on ${s.device_name}? The terminal closes at once.`, 'End session');
    if (!ok) return;
    b.disabled = true;
    try {
      await post(`/api/sessions/${s.id}/end`, {});
      banner(msg, 'ok', `The session of ${s.username} on ${s.device_name} is being ended.`);
    } catch (e) {
      banner(msg, 'error', e.code === 'already_ended' ? 'That session had already ended.' : errorText(e));
    }
    await reload();
  });
  return b;
}

// a live session can be watched (read only) in the terminal page
function watchLink(s) {
  if (!me.admin || s.ended_at) return '';
  return h('a', { href: `terminal.html?watch=${encodeURIComponent(s.id)}`, target: '_blank', rel: 'noopener',
                  'aria-label': `Watch the session of ${s.username} on ${s.device_name}` }, 'Watch');
}

// a recorded session opens in the Replay view (the list holds only
// sessions the user may see, as GET /api/sessions/{id}/recording)
function replayLink(s) {
  if (!s.recorded) return '';
  return h('a', { class: 'button', href: `replay.html?session=${encodeURIComponent(s.id)}`,
                  'aria-label': `Replay the session of ${s.username} on ${s.device_name}` }, 'Replay');
}

async function reload() {
  tbody.replaceChildren();
  await load();
}

let next = null;
async function load(before) {
  try {
    const d = await get('/api/sessions?limit=50' + (before ? '&before=' + encodeURIComponent(before) : ''));
    tbody.append(...d.items.map(s => h('tr', {},
      h('td', {}, when(s.started_at)),
      h('td', {}, s.ended_at ? when(s.ended_at) : h('span', { class: 'pill ok' }, s.locked ? 'Live, locked' : 'Live')),
      h('td', {}, s.username),
      h('td', {}, s.key_name ?? `#${s.key_id}`),
      h('td', {}, `${s.device_name ?? '#' + s.device_id} (${s.device_address}:${s.device_port})`),
      h('td', { class: 'mono' }, s.client_addr || ''),
      h('td', {}, `${s.bytes_in} / ${s.bytes_out}`),
      h('td', { title: s.end_reason || '' }, ending(s)),
      h('td', { class: 'actions' }, replayLink(s), ' ', watchLink(s), ' ', endButton(s)))));
    next = d.next;
    more.hidden = !next;
  } catch (e) { banner(msg, 'error', errorText(e)); }
}
more.addEventListener('click', () => load(next));
await load();

// a hit's line with its word marked (the word is lowercase, the line as printed)
function marked(line, word) {
  const i = line.toLowerCase().indexOf(word);
  if (i < 0) return line;
  return [line.slice(0, i), h('mark', {}, line.slice(i, i + word.length)), line.slice(i + word.length)];
}
async function search(q) {
  hitsBox.replaceChildren(h('p', { class: 'muted' }, 'Searching…'));
  try {
    const d = await get('/api/sessions?q=' + encodeURIComponent(q));
    // the server searched only the newest sessions' recordings (a bound per search)
    const partial = d.partial ? [h('p', { class: 'hint', id: 'rec-partial' },
      'Only the most recent recordings were searched; older sessions were not.')] : [];
    if (!d.items.length) {
      hitsBox.replaceChildren(h('p', { class: 'muted', id: 'rec-none' }, 'No recorded session printed all of these words.'), ...partial);
      return;
    }
    const hit = (s, x) => h('li', {},
      h('a', { class: 'hit', href: `replay.html?session=${encodeURIComponent(s.id)}&t=${x.t}`,
               title: `Replay from ${x.t.toFixed(1)} s` },
        h('span', { class: 'mono' }, `${x.t.toFixed(1)} s`), ' ', h('code', {}, marked(x.line, x.word))));
    const found = s => h('li', { class: 'hit-session' },
      h('strong', {}, `${s.username} on ${s.device_name ?? '#' + s.device_id}`), ' ',
      h('span', { class: 'muted' }, `started ${when(s.started_at)}`),
      h('ol', {}, s.hits.map(x => hit(s, x))));
    hitsBox.replaceChildren(h('ul', { class: 'hits', id: 'rec-results' }, d.items.map(found)), ...partial);
  } catch (e) {
    hitsBox.replaceChildren();
    banner(msg, 'error', e.code === 'invalid_field'
      ? 'Search for 1 to 8 words of 2 to 40 letters or digits.' : errorText(e));
  }
}
searchForm.addEventListener('submit', ev => {
  ev.preventDefault();
  const q = searchInput.value.trim();
  if (q) search(q);
});
