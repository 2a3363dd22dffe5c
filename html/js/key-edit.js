// SSH Key registration (create and edit): tabs Information, Key data,
// Devices, Review; a saved key also has Rotations (its history) and the
// Rotate button (rotate.js).  The private key and the password are
// write-only: they are sent once and never read back.
import { get, post, patch, h, idParam, banner, errorText, statusPill, ApiError } from './api.js';
import { mountShell } from './shell.js';
import { checkPill, runCheck } from './checks.js';
import { deployDialog } from './deploy.js';
import { rotateDialog, historyRows, versionNote, whenText } from './rotate.js';

await mountShell('keys', { adminOnly: true });

const form = document.getElementById('key-form');
const msg = document.getElementById('page-msg');
const keyId = idParam('id');
const TABS = keyId ? ['info', 'keydata', 'devices', 'rotations', 'review'] : ['info', 'keydata', 'devices', 'review'];
document.getElementById('tab-rotations').hidden = !keyId;
const FIELD_TAB = {
  name: 'info', status: 'info', tags: 'info', owner: 'info',
  username: 'keydata', type: 'keydata', private_key: 'keydata', public_key: 'keydata', passphrase: 'keydata',
  rotation_days: 'keydata', main_device: 'devices', devices: 'devices',
};
const LABEL = {
  name: 'Key name', status: 'Status', tags: 'Tags', owner: 'SSH key owner', username: 'Username',
  type: 'Key type', private_key: 'Private Key', public_key: 'Public Key', passphrase: 'Key password',
  rotation_days: 'Rotate every (days)', main_device: 'Main device', devices: 'Devices',
};

let allDevices = new Map();   // id -> device
let assoc = [];               // device ids, in order
let mainId = null;
let original = null;          // the key being edited
let checks = new Map();       // device id -> its last deployment check
let versions = new Map();     // device id -> { version, behind }

/* ---------- tabs ---------- */

let current = 'info';
function showTab(name, focus = false) {
  current = name;
  for (const t of TABS) {
    const tab = document.getElementById('tab-' + t);
    const on = t === name;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    document.getElementById('panel-' + t).hidden = !on;
    if (on && focus) tab.focus();
  }
  const i = TABS.indexOf(name);
  document.getElementById('prev-tab').hidden = i === 0;
  document.getElementById('next-tab').hidden = i === TABS.length - 1;
  document.getElementById('save').hidden = name !== 'review';
  if (name === 'review') renderSummary();
}
for (const t of TABS) {
  const tab = document.getElementById('tab-' + t);
  tab.addEventListener('click', () => showTab(t));
  tab.addEventListener('keydown', ev => {
    const i = TABS.indexOf(t);
    let j = null;
    if (ev.key === 'ArrowRight') j = (i + 1) % TABS.length;
    if (ev.key === 'ArrowLeft') j = (i - 1 + TABS.length) % TABS.length;
    if (ev.key === 'Home') j = 0;
    if (ev.key === 'End') j = TABS.length - 1;
    if (j !== null) { ev.preventDefault(); showTab(TABS[j], true); }
  });
}
document.getElementById('prev-tab').addEventListener('click', () => showTab(TABS[TABS.indexOf(current) - 1]));
document.getElementById('next-tab').addEventListener('click', () => showTab(TABS[TABS.indexOf(current) + 1]));

/* ---------- field errors ---------- */

function fieldInput(field) {
  if (field === 'devices') return document.getElementById('add-devices');
  if (field === 'type') return document.getElementById('gen_type');
  return document.getElementById(field);
}

function fieldContainer(field) {
  if (field === 'devices') return document.getElementById('devices-field');
  if (field === 'type') return document.getElementById('gen-type-field');
  return document.getElementById(field)?.closest('.field');
}

function clearErrors(scope = document) {
  for (const e of scope.querySelectorAll('.field .error')) e.remove();
  for (const e of scope.querySelectorAll('[aria-invalid="true"]')) e.removeAttribute('aria-invalid');
  for (const b of document.querySelectorAll('[role="tab"] .badge')) b.remove();
  banner(document.getElementById('review-errors'), 'error', '');
}

function setFieldError(field, text, prefix = '') {
  const input = document.getElementById(prefix + field) || (prefix ? null : fieldInput(field));
  const box = prefix ? input?.closest('.field') : fieldContainer(field);
  if (!box) return false;
  box.querySelector('.error')?.remove();
  const id = (prefix + field) + '-error';
  const err = h('div', { class: 'error', id }, text);
  box.append(err);
  if (input) {
    input.setAttribute('aria-invalid', 'true');
    const d = (input.getAttribute('aria-describedby') || '').split(' ').filter(x => x && x !== id);
    input.setAttribute('aria-describedby', [...d, id].join(' '));
  }
  if (!prefix) {
    const tab = document.getElementById('tab-' + FIELD_TAB[field]);
    if (tab && !tab.querySelector('.badge')) tab.append(h('span', { class: 'badge', 'aria-label': 'has errors' }, '!'));
  }
  return true;
}

const REASONS = {
  unparsable: 'This is not a private key that can be read (PEM, PKCS#8 or OpenSSH format).',
  too_long: 'The key is too long.',
  dsa_not_supported: 'DSA keys are not supported: use RSA (2048 bits or more), ECDSA or Ed25519.',
  weak_key: 'RSA keys must have at least 2048 bits.',
  unsupported_type: 'This key type is not supported.',
  unsupported_cipher: 'The cipher protecting this key is not supported.',
  passphrase_required: 'This key is protected: tick "Set current password" and enter its password.',
  passphrase_wrong: 'The password does not open this key.',
  passphrase_not_needed: 'This key has no password: untick "Set current password".',
  mismatch: 'The public key does not belong to this private key.',
};

function explain(e) {
  if (e.reason && REASONS[e.reason]) return REASONS[e.reason];
  if (e.code === 'conflict') return 'This name is already taken.';
  return e.message;
}

// an error goes away as soon as its field is changed
form.addEventListener('input', ev => {
  const box = ev.target.closest('.field');
  const err = box?.querySelector('.error');
  if (!err || regBox.contains(box)) return;
  err.remove();
  ev.target.removeAttribute('aria-invalid');
  const panel = box.closest('[role="tabpanel"]');
  if (panel && !panel.querySelector('.field .error')) {
    document.querySelector(`[aria-controls="${panel.id}"] .badge`)?.remove();
  }
});

/* ---------- key data ---------- */

const setPw = document.getElementById('set_password');
const pw = document.getElementById('passphrase');
const eye = document.getElementById('toggle-passphrase');
setPw.addEventListener('change', () => {
  document.getElementById('passphrase-field').hidden = !setPw.checked;
  if (setPw.checked) pw.focus();
});
// the eye: an inline SVG (no icon font, no emoji font needed)
const EYE = 'M1 12s4-7 11-7 11 7 11 7-4 7-11 7S1 12 1 12z';
function eyeIcon(open) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24'); svg.setAttribute('width', '18'); svg.setAttribute('height', '18');
  svg.setAttribute('aria-hidden', 'true'); svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor'); svg.setAttribute('stroke-width', '2');
  const parts = [['path', { d: EYE }], ['circle', { cx: 12, cy: 12, r: 3 }]];
  if (!open) parts.push(['line', { x1: 3, y1: 21, x2: 21, y2: 3 }]);
  for (const [tag, a] of parts) {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(a)) el.setAttribute(k, v);
    svg.append(el);
  }
  return svg;
}
eye.replaceChildren(eyeIcon(true));
eye.addEventListener('click', () => {
  const show = pw.type === 'password';
  pw.type = show ? 'text' : 'password';
  eye.setAttribute('aria-pressed', String(show));
  eye.setAttribute('aria-label', show ? 'Hide password' : 'Show password');
  eye.replaceChildren(eyeIcon(!show));
});
document.getElementById('generate-passphrase').addEventListener('click', () => {
  const abc = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.!@#%+=';
  const r = crypto.getRandomValues(new Uint32Array(24));
  pw.value = Array.from(r, x => abc[x % abc.length]).join('');
  if (pw.type === 'password') eye.click();
  pw.focus();
});

const priv = document.getElementById('private_key');
const pub = document.getElementById('public_key');
function syncKeyFields() {
  if (!keyId) return;
  // editing: the password and public key belong to a new private key
  const fresh = priv.value.trim() !== '';
  pub.readOnly = !fresh;
  setPw.disabled = !fresh;
  if (!fresh) { setPw.checked = false; document.getElementById('passphrase-field').hidden = true; pw.value = ''; }
  if (fresh && original && pub.value.trim() === original.public_key) pub.value = '';
  if (!fresh && original) pub.value = original.public_key;
}
priv.addEventListener('input', syncKeyFields);

// "Load from file…": the file's text goes into the field, as if pasted;
// it never leaves the browser before Save
const FILE_MAX = { private_key: 16384, public_key: 8192 };   // the API's bounds
function clearFieldError(field) {
  const box = fieldContainer(field);
  box?.querySelector('.error')?.remove();
  document.getElementById(field)?.removeAttribute('aria-invalid');
}
function fileLoader(field) {
  const input = document.getElementById(field + '-file');
  const area = document.getElementById(field);
  document.getElementById(field + '-load').addEventListener('click', () => {
    input.value = '';
    input.click();
  });
  input.addEventListener('change', async () => {
    const file = input.files[0];
    if (!file) return;
    clearFieldError(field);
    if (file.size > FILE_MAX[field]) {
      setFieldError(field, `"${file.name}" is too large for a key (${file.size} bytes, at most ${FILE_MAX[field]}).`);
      return;
    }
    let text;
    try { text = await file.text(); } catch { setFieldError(field, `"${file.name}" cannot be read.`); return; }
    if (text.includes('\0') || text.includes('\uFFFD')) {
      setFieldError(field, `"${file.name}" is not a text file: choose the key file itself.`);
      return;
    }
    if (field === 'private_key' && /^\s*(ssh|ecdsa|sk)-[\w@.-]+ AAAA/.test(text)) {
      setFieldError(field, `"${file.name}" holds a public key: load it under Public Key.`);
      return;
    }
    area.value = field === 'public_key' ? text.trim() : text.replace(/\r\n/g, '\n').trim() + '\n';
    area.dispatchEvent(new Event('input', { bubbles: true }));
    input.value = '';
  });
}
fileLoader('private_key');
fileLoader('public_key');

/* ---------- devices ---------- */

const mainSel = document.getElementById('main_device');

function renderMainSelect() {
  const opts = [h('option', { value: '' }, '— None —')];
  for (const d of [...allDevices.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    opts.push(h('option', { value: d.id, selected: d.id === mainId }, `${d.name} (${d.address}:${d.port})`));
  }
  mainSel.replaceChildren(...opts);
  mainSel.value = mainId === null ? '' : String(mainId);
}

function setMain(id) {
  mainId = id;
  if (id !== null && !assoc.includes(id)) assoc.unshift(id);
  renderMainSelect();
  renderAssoc();
}

mainSel.addEventListener('change', () => setMain(mainSel.value ? Number(mainSel.value) : null));

function renderAssoc() {
  const ids = mainId !== null ? [mainId, ...assoc.filter(x => x !== mainId)] : assoc;
  document.getElementById('assoc-body').replaceChildren(...ids.map(id => {
    const d = allDevices.get(id) || { id, name: `#${id}`, address: '?', port: '', status: '' };
    return h('tr', { dataset: { deviceId: id } },
      h('td', {}, h('strong', {}, d.name)),
      h('td', {}, `${d.address}:${d.port}`),
      h('td', {}, statusPill(d.status)),
      h('td', {}, id === mainId ? h('span', { class: 'pill main' }, 'Main')
                               : h('button', { type: 'button', onclick: () => setMain(id) }, 'Make main')),
      h('td', { class: 'deployment' }, deploymentCell(id, d)),
      h('td', { class: 'actions' }, h('button', { type: 'button', class: 'danger', 'aria-label': `Remove ${d.name}`,
        onclick: () => { assoc = assoc.filter(x => x !== id); if (mainId === id) mainId = null; renderMainSelect(); renderAssoc(); } }, 'Remove')));
  }));
  document.getElementById('assoc-empty').hidden = ids.length > 0;
}

// the Devices tab of a saved key: its last check per device, Check and
// Check all (devices added since the last save are checked once saved)
function saved(id) { return keyId && original && (original.devices || []).includes(id); }
function deploymentCell(id, d) {
  if (!keyId) return h('span', { class: 'muted' }, '—');
  if (!saved(id)) return h('span', { class: 'muted' }, 'Save to check');
  const b = h('button', { type: 'button', class: 'check', 'aria-label': `Check the key on ${d.name}` }, 'Check');
  b.addEventListener('click', () => checkDevices([id]));
  const dep = h('button', { type: 'button', class: 'deploy', 'aria-label': `Deploy the key on ${d.name}`,
                            onclick: () => deployTo([id], false) }, 'Deploy');
  const wd = h('button', { type: 'button', class: 'withdraw', 'aria-label': `Withdraw the key from ${d.name}`,
                           onclick: () => deployTo([id], true) }, 'Withdraw');
  // the state on a first line (last check, key version), the buttons under it
  return h('div', {}, h('div', { class: 'state' }, checkPill(checks.get(id)), ' ', versionNote(versions.get(id))),
           h('div', { class: 'edits' }, b, ' ', dep, ' ', wd));
}
// the last check and the key version of every saved device
async function loadChecks() {
  const r = await get(`/api/keys/${keyId}/devices`);
  checks = new Map(r.items.map(x => [x.id, x.check]));
  versions = new Map(r.items.map(x => [x.id, { version: x.version, behind: x.behind }]));
}
const checkAllBtn = document.getElementById('check-all');
const checkProgress = document.getElementById('check-progress');
async function checkDevices(ids) {
  for (const b of [checkAllBtn, ...document.querySelectorAll('#assoc-body button.check')]) b.disabled = true;
  for (const id of ids) {
    document.querySelector(`#assoc-body tr[data-device-id="${id}"] td.deployment`)
      ?.replaceChildren(h('span', { class: 'pill busy' }, 'Checking…'));
  }
  checkProgress.textContent = `Checking ${ids.length} device${ids.length === 1 ? '' : 's'}…`;
  try {
    const r = await runCheck(keyId, ids);
    checkProgress.textContent = `Checked ${r.total} device${r.total === 1 ? '' : 's'}: the key is deployed on ${r.deployed}.`;
    await loadChecks();
  } catch (e) {
    checkProgress.textContent = 'The check failed: ' + errorText(e);
  }
  checkAllBtn.disabled = false;
  renderAssoc();
}
checkAllBtn.addEventListener('click', () => checkDevices((original?.devices || []).slice()));

// Deploy / Withdraw (deploy.js): the saved devices, then their new checks
const deployAllBtn = document.getElementById('deploy-all');
const withdrawAllBtn = document.getElementById('withdraw-all');
async function deployTo(ids, withdraw) {
  const devices = ids.map(id => ({ id, name: allDevices.get(id)?.name ?? `#${id}` }));
  const r = await deployDialog({ id: keyId, name: original.name, username: original.username }, devices, withdraw);
  if (!r) return;
  checkProgress.textContent = `${withdraw ? 'Withdrawn from' : 'Deployed on'} ${r.done} of ${r.total} device${r.total === 1 ? '' : 's'}.`;
  try { await loadChecks(); } catch { /* kept as they were */ }
  renderAssoc();
}
deployAllBtn.addEventListener('click', () => deployTo((original?.devices || []).slice(), false));
withdrawAllBtn.addEventListener('click', () => deployTo((original?.devices || []).slice(), true));

// Register new device, inline
const regBox = document.getElementById('register-device');
const regOpen = document.getElementById('register-device-open');
function toggleRegister(open) {
  regBox.hidden = !open;
  regOpen.setAttribute('aria-expanded', String(open));
  if (open) document.getElementById('dev-name').focus();
}
regOpen.addEventListener('click', () => toggleRegister(regBox.hidden));
document.getElementById('register-device-cancel').addEventListener('click', () => toggleRegister(false));
document.getElementById('register-device-save').addEventListener('click', async () => {
  clearErrors(regBox);
  const dm = document.getElementById('device-msg');
  banner(dm, 'error', '');
  const v = n => document.getElementById('dev-' + n).value.trim();
  const body = { name: v('name'), address: v('address') };
  const port = v('port');
  if (port !== '') {
    if (!/^[0-9]+$/.test(port)) { setFieldError('port', 'The port is a number from 1 to 65535.', 'dev-'); return; }
    body.port = Number(port);
  }
  const tags = splitTags(v('tags'));
  if (tags.length) body.tags = tags;
  if (v('host_key')) body.host_key = v('host_key');
  if (!body.name) { setFieldError('name', 'Required', 'dev-'); return; }
  if (!body.address) { setFieldError('address', 'Required', 'dev-'); return; }
  try {
    const d = await post('/api/devices', body);
    allDevices.set(d.id, d);
    if (mainId === null) setMain(d.id); else { assoc.push(d.id); renderMainSelect(); renderAssoc(); }
    for (const n of ['name', 'address', 'tags', 'host_key']) document.getElementById('dev-' + n).value = '';
    document.getElementById('dev-port').value = '22';
    toggleRegister(false);
    banner(document.getElementById('page-msg'), 'ok', `Device "${d.name}" registered and added.`);
  } catch (e) {
    if (e instanceof ApiError && e.field && setFieldError(e.field, explain(e), 'dev-')) return;
    banner(dm, 'error', errorText(e));
  }
});

// the Devices modal
const modal = document.getElementById('devices-modal');
const modalList = document.getElementById('modal-list');
const modalFilter = document.getElementById('modal-filter');
function renderModal() {
  const f = modalFilter.value.trim().toLowerCase();
  const avail = [...allDevices.values()].filter(d => !assoc.includes(d.id))
    .filter(d => !f || d.name.toLowerCase().includes(f) || d.address.toLowerCase().includes(f))
    .sort((a, b) => a.name.localeCompare(b.name));
  modalList.replaceChildren(...avail.map(d => h('li', {},
    h('label', { class: 'check' }, h('input', { type: 'checkbox', value: d.id }),
      h('span', {}, h('strong', {}, d.name), ` — ${d.address}:${d.port}`, d.status === 'inactive' ? ' (inactive)' : '')))));
  document.getElementById('modal-empty').hidden = avail.length > 0;
}
document.getElementById('add-devices').addEventListener('click', () => {
  modalFilter.value = '';
  renderModal();
  modal.showModal();
  modalFilter.focus();
});
modalFilter.addEventListener('input', renderModal);
document.getElementById('modal-cancel').addEventListener('click', () => modal.close());
document.getElementById('modal-add').addEventListener('click', () => {
  for (const c of modalList.querySelectorAll('input:checked')) {
    const id = Number(c.value);
    if (!assoc.includes(id)) assoc.push(id);
  }
  modal.close();
  renderAssoc();
  document.getElementById('add-devices').focus();
});

/* ---------- rotation (a saved key) ---------- */

const rotateBtn = document.getElementById('rotate-open');
function keyHint() {
  document.getElementById('private_key-hint').textContent =
    `Stored: ${original.type}${original.bits ? ' ' + original.bits + ' bits' : ''}, ${original.fingerprint}` +
    (original.has_passphrase ? ', protected by a password' : '') + '. It is never shown.';
}
function showVersion() {
  const el = document.getElementById('key-version');
  const r = original.rotation || {};
  const parts = [`version ${original.version ?? 1}`];
  if (original.rotated_at) parts.push(`rotated ${whenText(original.rotated_at)}`);
  if (r.behind > 0) parts.push(`partially rotated (${r.behind} behind)`);
  if (r.running) parts.push('rotating…');
  if (r.next_at) parts.push(`next rotation ${whenText(r.next_at)}`);
  el.textContent = parts.join(' · ');
  el.hidden = false;
}
async function loadRotations() {
  const note = document.getElementById('rotations-note');
  try {
    const r = await get(`/api/keys/${keyId}/rotations`);
    document.getElementById('rotations-body').replaceChildren(...historyRows(r.items));
    document.getElementById('rotations-empty').hidden = r.items.length > 0;
    note.textContent = r.items.length ? `${r.items.length} rotation${r.items.length === 1 ? '' : 's'}, newest first` : '';
  } catch (e) {
    note.textContent = 'The history could not be loaded: ' + errorText(e);
  }
}
rotateBtn.addEventListener('click', async () => {
  const r = await rotateDialog(original);
  rotateBtn.focus();
  if (!r) return;
  // the key's new version, public key and the version of each device
  try {
    original = await get(`/api/keys/${keyId}`);
    keyHint();
    syncKeyFields();
    showVersion();
    await loadChecks();
  } catch (e) {
    banner(msg, 'error', 'The key could not be loaded again: ' + errorText(e));
  }
  renderAssoc();
  await loadRotations();
});

/* ---------- review and save ---------- */

function splitTags(s) {
  return s.split(',').map(x => x.trim()).filter(Boolean);
}

function deviceLabel(id) {
  const d = allDevices.get(id);
  return d ? `${d.name} (${d.address}:${d.port})` : `#${id}`;
}

function renderSummary() {
  const v = n => form.elements[n].value.trim();
  const rows = [
    ['Key name', v('name') || '—'],
    ['Status', form.elements.status.value === 'active' ? 'Active' : 'Inactive'],
    ['Tags', splitTags(v('tags')).join(', ') || '—'],
    ['SSH key owner', v('owner') || '—'],
    ['Username', v('username') || '—'],
    ['Private Key', generating() ? `Generated by the server (${form.elements.gen_type.selectedOptions[0].textContent}), never shown`
                    : priv.value.trim() ? 'Provided (stored encrypted, never shown again)'
                    : keyId ? 'Unchanged (stored)' : 'Missing'],
    ['Public Key', generating() ? 'Shown after saving, with its authorized_keys line'
                   : pub.value.trim() ? pub.value.trim().slice(0, 60) + (pub.value.trim().length > 60 ? '…' : '')
                   : 'Derived from the private key'],
    ['Key password', setPw.checked && pw.value ? 'Set (write-only)'
                     : keyId && !priv.value.trim() ? (original?.has_passphrase ? 'Unchanged (set)' : 'None') : 'None'],
    ['Rotation', rotationDays().value === null ? 'No schedule' : `Every ${rotationDays().value} day${rotationDays().value === 1 ? '' : 's'}`],
    ['Main device', mainId === null ? '—' : deviceLabel(mainId)],
    ['Devices', assoc.length ? assoc.map(deviceLabel).join(', ') : '—'],
  ];
  document.getElementById('summary').replaceChildren(...rows.flatMap(([k, val]) => [h('dt', {}, k), h('dd', {}, val)]));
}

// "Generate key pair" (new keys only): the server makes the pair; the
// private half never reaches the browser
const genRadio = document.getElementById('source-generate');
function generating() { return !keyId && genRadio.checked; }
function syncSource() {
  const gen = generating();
  document.getElementById('gen-type-field').hidden = !gen;
  document.getElementById('paste-fields').hidden = gen;
}
for (const r of form.elements.source) r.addEventListener('change', syncSource);

function showGenerated(k) {
  form.hidden = true;
  const box = document.getElementById('generated');
  document.getElementById('generated-what').textContent =
    `The SSH key "${k.name}" was generated and saved (${k.type}${k.bits ? ' ' + k.bits + ' bits' : ''}, ${k.fingerprint}).`;
  document.getElementById('generated-line').value = k.authorized_keys;
  box.hidden = false;
  document.getElementById('generated-line').focus();
}
document.getElementById('generated-copy').addEventListener('click', async () => {
  const line = document.getElementById('generated-line');
  const hint = document.getElementById('generated-hint');
  try {
    await navigator.clipboard.writeText(line.value);
  } catch {
    line.select();
    if (!document.execCommand('copy')) { hint.textContent = 'Copy failed: select the line and copy it.'; return; }
  }
  hint.textContent = 'Copied. Append it to ~/.ssh/authorized_keys of the username on every selected device.';
});

// "Rotate every (days)": empty is no schedule, else a whole number 1..3650
function rotationDays() {
  const s = form.elements.rotation_days.value.trim();
  if (s === '') return { value: null };
  const n = /^[0-9]{1,5}$/.test(s) ? Number(s) : NaN;
  if (!(n >= 1 && n <= 3650)) return { error: 'A whole number of days from 1 to 3650, or empty for no schedule.' };
  return { value: n };
}

function localCheck() {
  const errs = [];
  if (!form.elements.name.value.trim()) errs.push(['name', 'Required']);
  if (!form.elements.username.value.trim()) errs.push(['username', 'Required']);
  if (!keyId && !generating() && !priv.value.trim()) errs.push(['private_key', 'Required']);
  if (setPw.checked && !pw.value) errs.push(['passphrase', 'Enter the key password, or untick "Set current password".']);
  if (rotationDays().error) errs.push(['rotation_days', rotationDays().error]);
  return errs;
}

form.addEventListener('submit', async ev => {
  ev.preventDefault();
  clearErrors();
  const errs = localCheck();
  if (errs.length) {
    for (const [f, t] of errs) setFieldError(f, t);
    showTab(FIELD_TAB[errs[0][0]]);
    fieldInput(errs[0][0])?.focus();
    return;
  }
  const v = n => form.elements[n].value.trim();
  const body = {
    name: v('name'),
    status: form.elements.status.value,
    tags: splitTags(v('tags')),
    username: v('username'),
    devices: mainId !== null ? [mainId, ...assoc.filter(x => x !== mainId)] : [...assoc],
  };
  if (v('owner') || keyId) body.owner = v('owner');
  // null clears a schedule; a new key without one sends nothing
  if (rotationDays().value !== null || keyId) body.rotation_days = rotationDays().value;
  if (generating()) {
    body.type = form.elements.gen_type.value;
  } else if (priv.value.trim()) {
    body.private_key = priv.value.replace(/\r\n/g, '\n').trim() + '\n';
    if (pub.value.trim()) body.public_key = pub.value.trim();
    if (setPw.checked && pw.value) body.passphrase = pw.value;
  }
  if (mainId !== null) body.main_device = mainId;

  const save = document.getElementById('save');
  save.disabled = true;
  try {
    if (generating()) {
      showGenerated(await post('/api/keys/generate', body));
      return;
    }
    const k = keyId ? await patch(`/api/keys/${keyId}`, body) : await post('/api/keys', body);
    // nothing secret stays in the page
    priv.value = ''; pw.value = '';
    sessionStorage.setItem('segura-flash', `The SSH key "${k.name}" was saved (${k.type}, ${k.fingerprint}).`);
    location.assign('keys.html');
  } catch (e) {
    if (e instanceof ApiError && e.field && FIELD_TAB[e.field.replace(/\[.*$/, '')]) {
      const f = e.field.replace(/\[.*$/, '');
      setFieldError(f, explain(e));
      banner(document.getElementById('review-errors'), 'error',
        `Not saved: ${LABEL[f]} — ${explain(e)}`);
      showTab(FIELD_TAB[f]);
      fieldInput(f)?.focus();
    } else {
      banner(document.getElementById('review-errors'), 'error', 'Not saved: ' + errorText(e));
      showTab('review');
    }
  } finally {
    save.disabled = false;
  }
});

/* ---------- load ---------- */

try {
  const d = await get('/api/devices');
  allDevices = new Map(d.items.map(x => [x.id, x]));
} catch (e) {
  banner(msg, 'error', 'The devices could not be loaded: ' + errorText(e));
}

if (keyId) {
  document.getElementById('page-title').textContent = 'SSH Key registration: edit';
  try {
    original = await get(`/api/keys/${keyId}`);
  } catch (e) {
    banner(msg, 'error', e.status === 404 ? 'This SSH key does not exist.' : errorText(e));
    form.hidden = true;
    await new Promise(() => {}); // the page stops here
  }
  document.title = `Edit ${original.name} — Segura PAM Core`;
  form.elements.name.value = original.name;
  form.elements.status.value = original.status;
  form.elements.tags.value = (original.tags || []).join(', ');
  form.elements.owner.value = original.owner || '';
  form.elements.username.value = original.username || '';
  form.elements.rotation_days.value = original.rotation_days ?? '';
  priv.placeholder = 'Stored encrypted. Leave empty to keep it; paste a new private key to replace it.';
  keyHint();
  document.getElementById('source-field').hidden = true;
  checkAllBtn.hidden = deployAllBtn.hidden = withdrawAllBtn.hidden = !(original.devices || []).length;
  try { await loadChecks(); } catch { /* the column says "Not checked" */ }
  showVersion();
  rotateBtn.hidden = false;
  loadRotations();
  assoc = [...(original.devices || [])];
  mainId = original.main_device ?? null;
  syncKeyFields();
}
renderMainSelect();
renderAssoc();
// the tab the user chose while the key was loading stays chosen
showTab(current);
