// SSH Keys: Remote Access: the devices a key may reach, Start session, and
// the key's deployment: Check per device and Check all, the key version
// each device uses (rotate.js: "rotation pending" when it is behind); for
// administrators, Deploy and Withdraw per device and for all (deploy.js).
import { get, h, idParam, banner, errorText, statusPill, tagList } from './api.js';
import { mountShell } from './shell.js';
import { reasonText } from './reasons.js';
import { checkPill, runCheck } from './checks.js';
import { deployDialog } from './deploy.js';
import { versionNote } from './rotate.js';

const me = await mountShell('keys');
const progress = document.getElementById('check-progress');
const checkAll = document.getElementById('check-all');
let rows = [];   // the devices of the report
let theKey = null;
const deployAll = document.getElementById('deploy-all');
const withdrawAll = document.getElementById('withdraw-all');
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
  theKey = data.key;
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
    const mayCheck = me.admin || d.can_start;
    const check = h('button', { type: 'button', class: 'check', disabled: !mayCheck,
                                'aria-label': `Check the key on ${d.name}` }, 'Check');
    check.addEventListener('click', () => doCheck([d.id]));
    // a second line in the cell: the table keeps its width
    const edits = me.admin ? h('div', { class: 'edits' },
      h('button', { type: 'button', class: 'deploy', 'aria-label': `Deploy the key on ${d.name}`,
                    onclick: () => doDeploy([d], false) }, 'Deploy'), ' ',
      h('button', { type: 'button', class: 'withdraw', 'aria-label': `Withdraw the key from ${d.name}`,
                    onclick: () => doDeploy([d], true) }, 'Withdraw')) : null;
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
      h('td', { class: 'deployment' }, checkPill(d.check),
        d.version != null ? h('div', { class: 'version' }, versionNote(d)) : null),
      h('td', { class: 'actions' }, check, ' ', start, edits));
  }));
  rows = data.items;
  checkAll.hidden = !rows.some(d => me.admin || d.can_start);
  deployAll.hidden = withdrawAll.hidden = !(me.admin && rows.length);
  document.getElementById('access-empty').hidden = data.items.length > 0;
}

// one call for all the devices asked: the server checks them at once
async function doCheck(ids) {
  const cells = ids.map(id => document.querySelector(`tr[data-device-id="${id}"] td.deployment`));
  const buttons = [checkAll, ...document.querySelectorAll('button.check')];
  for (const b of buttons) b.disabled = true;
  for (const c of cells) c?.replaceChildren(h('span', { class: 'pill busy' }, 'Checking…'));
  progress.textContent = `Checking ${ids.length} device${ids.length === 1 ? '' : 's'}…`;
  try {
    const r = await runCheck(keyId, ids);
    progress.textContent = `Checked ${r.total} device${r.total === 1 ? '' : 's'}: the key is deployed on ${r.deployed}.`;
  } catch (e) {
    progress.textContent = '';
    banner(msg, 'error', 'The check failed: ' + errorText(e));
  }
  await load();
}
checkAll.addEventListener('click', () =>
  doCheck(rows.filter(d => me.admin || d.can_start).map(d => d.id)));

// administrators: the line onto (or off) the devices, then a fresh report
async function doDeploy(devices, withdraw) {
  const r = await deployDialog(theKey, devices, withdraw);
  if (r) {
    progress.textContent = `${withdraw ? 'Withdrawn from' : 'Deployed on'} ${r.done} of ${r.total} device${r.total === 1 ? '' : 's'}.`;
    await load();
  }
}
deployAll.addEventListener('click', () => doDeploy(rows, false));
withdrawAll.addEventListener('click', () => doDeploy(rows, true));

await load();
