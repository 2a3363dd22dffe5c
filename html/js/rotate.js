// Key rotation in the UI (POST /api/keys/{id}/rotate, GET
// /api/keys/{id}/rotations): the Rotate dialog (a new key type or the same,
// or a retry of the devices still on an older version; a progress state
// while the server works; then the result per device), the wording of
// every rotation and device result, and the history table of the key
// page's Rotations tab.  Administrators only: the server refuses others.
import { h, post, errorText } from './api.js';

export const TYPE_LABEL = {
  ed25519: 'Ed25519',
  'rsa-3072': 'RSA 3072 bits',
  'rsa-4096': 'RSA 4096 bits',
  'ecdsa-p256': 'ECDSA P-256',
  'ecdsa-p384': 'ECDSA P-384',
};

// what a device's result says: a short label, and a sentence for a person
export const ITEM_TEXT = {
  rotated: 'Rotated',
  old_accepted: 'Old key still accepted',
  refused: 'Refused',
  unreachable: 'Unreachable',
  timeout: 'Timed out',
  host_key_mismatch: 'Host key mismatch',
  host_key_unknown: 'Host key unknown',
  exec_failed: 'Command failed',
  verify_failed: 'New key not accepted',
  error: 'Failed',
};

export const ITEM_HELP = {
  rotated: 'The new key was added and is used; the old key\'s line was removed and the device refuses the old key.',
  old_accepted: 'Switched to the new key, but the device still accepts the old key: removing its line failed.',
  refused: 'The device refused the key it had: not rotated, it keeps its version. Deploy the key on it, or put its old key back and retry.',
  unreachable: 'No connection to the device: not rotated, it keeps its version.',
  timeout: 'The device did not answer in time: not rotated, it keeps its version.',
  host_key_mismatch: 'The device presented another host key than the pinned one: not rotated.',
  host_key_unknown: 'No host key is pinned for the device and the policy is strict: not rotated.',
  exec_failed: 'The edit of ~/.ssh/authorized_keys on the device failed: not rotated.',
  verify_failed: 'The new line was added, but the device did not accept the new key: not rotated, it keeps its version.',
  error: 'Not rotated: see the server log.',
};

export const STATUS_TEXT = {
  running: 'Running',
  rotated: 'Rotated',
  partial: 'Partially rotated',
  failed: 'Failed',
  interrupted: 'Interrupted',
};

function kind(result) {
  if (result === 'rotated') return 'ok';
  if (result === 'old_accepted' || result === 'partial' || result === 'timeout' || result === 'unreachable') return 'warn';
  if (result === 'running') return 'busy';
  return 'bad';
}

export function itemPill(result) {
  return h('span', { class: `pill ${kind(result)}`, title: ITEM_HELP[result] || '', dataset: { result } },
    ITEM_TEXT[result] ?? result);
}

export function statusPill(status) {
  return h('span', { class: `pill ${kind(status === 'rotated' ? 'rotated' : status)}`, dataset: { status } },
    STATUS_TEXT[status] ?? status);
}

const plural = (n, one, many = one + 's') => `${n} ${n === 1 ? one : many}`;

// one sentence for a whole rotation (after its status pill)
export function summaryText(r) {
  const to = r.to_version ?? r.from_version;
  // the devices that still use an older version than the key's
  const behind = (r.items || []).filter(x => x.version != null && x.version !== to).length;
  const pending = behind ? ` ${plural(behind, 'device')} ${behind === 1 ? 'keeps its' : 'keep their'} older key until a retry succeeds (rotation pending).` : '';
  switch (r.status) {
  case 'rotated':
    return r.total ? `${r.total === 1 ? 'The device uses' : `All ${r.total} devices use`} version ${to} of the key; the old key is removed.`
                   : `A new key pair, version ${to} (the key has no devices).`;
  case 'partial':
    return `${r.rotated} of ${plural(r.total, 'device')} rotated to version ${to}.${pending}`;
  case 'failed':
    return `No device took the new key: nothing switched, the key stays at version ${r.from_version}.`;
  case 'interrupted':
    return `The worker running it was lost. Devices that switched use version ${to}; retry for the rest.`;
  case 'running':
    return 'Still running.';
  default:
    return '';
  }
}

export function whenText(ts) {
  return ts ? new Date(ts).toLocaleString() : '—';
}

// the devices of one rotation, as a table
export function itemsTable(items, id) {
  if (!items?.length) return h('div', { class: 'muted small' }, 'No devices.');
  return h('table', { class: 'items', id },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Device'), h('th', { scope: 'col' }, 'Result'),
      h('th', { scope: 'col' }, 'Detail'), h('th', { scope: 'col', class: 'num' }, 'Version'))),
    h('tbody', {}, items.map(x => h('tr', { dataset: { deviceId: x.device, result: x.result } },
      h('td', {}, h('strong', {}, x.name ?? `#${x.device}`),
        x.address ? h('div', { class: 'muted small mono' }, `${x.address}:${x.port}`) : null),
      h('td', {}, itemPill(x.result), h('div', { class: 'muted small' }, ITEM_HELP[x.result] ?? '')),
      h('td', { class: 'small' }, x.detail || h('span', { class: 'muted' }, '—')),
      h('td', { class: 'num', dataset: { version: x.version ?? '' } },
        x.version == null ? '—'
          : x.from_version != null && x.from_version !== x.version ? `${x.from_version} → ${x.version}`
          : String(x.version))))));
}

// the Rotate dialog.  key: the key as GET /api/keys/{id} answers it.
// Resolves with the rotation once the dialog is closed, or null if none ran.
export function rotateDialog(key) {
  return new Promise(resolve => {
    let answer = null;
    let busy = false;
    const behind = key.rotation?.behind ?? 0;
    const running = !!key.rotation?.running;
    const now = key.type + (key.bits ? ` ${key.bits} bits` : '');
    const type = h('select', { id: 'rotate-type' },
      h('option', { value: '', selected: true }, `Same as now (${now})`),
      Object.entries(TYPE_LABEL).map(([v, l]) => h('option', { value: v }, l)));
    const modeNew = h('input', { type: 'radio', name: 'rotate-mode', value: 'new', id: 'rotate-mode-new', checked: true });
    const modeRetry = h('input', { type: 'radio', name: 'rotate-mode', value: 'retry', id: 'rotate-mode-retry' });
    const err = h('div', { class: 'banner error', role: 'alert', hidden: true });
    const status = h('div', { role: 'status', 'aria-live': 'polite', id: 'rotate-status' });
    const result = h('div', { id: 'rotate-result', hidden: true });
    const go = h('button', { type: 'button', class: 'primary', id: 'rotate-go', disabled: running }, 'Start');
    const close = h('button', { type: 'button', id: 'rotate-close' }, 'Cancel');
    const devs = key.devices?.length ?? 0;
    const form = h('div', { id: 'rotate-form' },
      h('p', {}, devs
        ? `Makes a new key pair (version ${(key.version ?? 1) + 1}) and, on each of the key's ${plural(devs, 'device')}, ` +
          `logs in as ${key.username} with the key it uses now, adds the new key's line to ~/.ssh/authorized_keys, ` +
          'checks that the new key is accepted, then removes the old key\'s line. A device that fails keeps its ' +
          'current key and is reported; sessions already open are not affected.'
        : `Makes a new key pair (version ${(key.version ?? 1) + 1}). The key has no devices: nothing changes on any device.`),
      running ? h('div', { class: 'banner warn' }, 'A rotation of this key is running: wait for it to end (see the Rotations tab).') : null,
      behind ? h('fieldset', { class: 'field', id: 'rotate-mode' },
        h('legend', {}, 'What to rotate'),
        h('label', { class: 'check' }, modeNew, 'A new key pair for every device'),
        h('label', { class: 'check' }, modeRetry,
          `Retry only devices behind (${plural(behind, 'device')} still on an older version) with the current key`)) : null,
      h('div', { class: 'field', id: 'rotate-type-field' },
        h('label', { for: 'rotate-type' }, 'New key type'), type,
        h('div', { class: 'hint' }, 'The private key is made by the server and goes straight into the vault.')));
    const d = h('dialog', { 'aria-labelledby': 'rotate-title', id: 'rotate-dialog', class: 'wide' },
      h('header', { id: 'rotate-title' }, `Rotate ${key.name}`),
      h('div', { class: 'body' }, err, form, status, result),
      h('footer', {}, close, go));
    const pick = () => {
      document.getElementById('rotate-type-field').hidden = modeRetry.checked;
      go.textContent = modeRetry.checked ? 'Start retry' : 'Start';
    };
    modeNew.addEventListener('change', pick);
    modeRetry.addEventListener('change', pick);
    const done = () => { if (busy) return; d.close(); d.remove(); resolve(answer); };
    close.addEventListener('click', done);
    // the request runs until every device has answered: the dialog stays
    d.addEventListener('cancel', ev => { ev.preventDefault(); done(); });
    go.addEventListener('click', async () => {
      err.hidden = true;
      const retry = modeRetry.checked;
      const body = retry ? { retry: true } : type.value ? { type: type.value } : {};
      busy = true;
      go.disabled = close.disabled = true;
      form.hidden = true;
      status.replaceChildren(h('p', { class: 'progress' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }),
        retry ? `Retrying ${plural(behind, 'device')} behind…` : `Rotating on ${plural(devs, 'device')}…`),
        h('p', { class: 'muted small' }, 'Each device is changed and checked; the answer comes when the last one has answered.'));
      d.dataset.state = 'running';
      try {
        answer = await post(`/api/keys/${key.id}/rotate`, body);
        d.dataset.state = 'done';
        status.replaceChildren(h('p', {}, statusPill(answer.status), ' ', h('span', { id: 'rotate-summary' }, summaryText(answer))));
        if (answer.detail) status.append(h('p', { class: 'muted small' }, answer.detail));
        result.replaceChildren(itemsTable(answer.items, 'rotate-items'));
        result.hidden = false;
        go.hidden = true;
      } catch (e) {
        d.dataset.state = 'error';
        status.replaceChildren();
        err.textContent = e.code === 'conflict'
          ? 'A rotation of this key is already running: see the Rotations tab.'
          : `The rotation could not run: ${errorText(e)}`;
        err.hidden = false;
        form.hidden = false;
        go.disabled = e.code === 'conflict';
      }
      busy = false;
      close.disabled = false;
      close.textContent = 'Close';
      close.focus();
    });
    document.body.append(d);
    d.showModal();
    (running ? close : behind ? modeNew : type).focus();
  });
}

// the Rotations tab: one row per rotation, newest first; a row opens to
// its devices
export function historyRows(items) {
  return items.flatMap(r => {
    const detailId = `rotation-${r.id}-items`;
    const btn = h('button', { type: 'button', class: 'link', 'aria-expanded': 'false', 'aria-controls': detailId,
                              'aria-label': `Devices of rotation ${r.id}` }, 'Devices');
    const sub = h('tr', { id: detailId, class: 'sub', hidden: true },
      h('td', { colspan: 8 }, h('p', { class: 'small' }, summaryText(r)),
        r.detail ? h('p', { class: 'muted small' }, r.detail) : null, itemsTable(r.items)));
    btn.addEventListener('click', () => {
      const open = sub.hidden;
      sub.hidden = !open;
      btn.setAttribute('aria-expanded', String(open));
    });
    const row = h('tr', { dataset: { rotationId: r.id, status: r.status } },
      h('td', { class: 'nowrap' }, whenText(r.started_at)),
      h('td', {}, statusPill(r.status)),
      h('td', {}, r.trigger === 'schedule' ? 'Schedule' : 'Manual', r.retry ? h('div', { class: 'muted small' }, 'retry') : null),
      h('td', { class: 'nowrap' }, `${r.from_version} → ${r.to_version ?? '—'}`),
      h('td', { class: 'nowrap' }, `${r.rotated} of ${r.total}`),
      h('td', {}, r.started_by_name ?? h('span', { class: 'muted' }, r.trigger === 'schedule' ? 'schedule' : '—')),
      h('td', { class: 'nowrap' }, r.ended_at ? whenText(r.ended_at) : h('span', { class: 'muted' }, 'running')),
      h('td', { class: 'actions' }, btn));
    return [row, sub];
  });
}

// "version 2", or "uses version 1; rotation pending" for a device behind
export function versionNote(d) {
  if (d?.version == null) return null;
  return d.behind
    ? h('span', { class: 'pill warn behind', dataset: { behind: '' }, title: 'A rotation did not reach this device: it still logs in with an older key. Retry from the key page (Rotate).' },
      `uses version ${d.version}; rotation pending`)
    : h('span', { class: 'muted small', dataset: { version: d.version } }, `version ${d.version}`);
}

// the SSH keys report: "partially rotated (N behind)", "next rotation …"
export function rotationLines(k) {
  const out = [];
  if (k.rotation?.behind > 0) {
    out.push(h('div', { class: 'small warn-text', dataset: { rotation: 'partial' } },
      `partially rotated (${k.rotation.behind} behind)`));
  }
  if (k.rotation?.running) out.push(h('div', { class: 'muted small', dataset: { rotation: 'running' } }, 'rotating…'));
  if (k.rotation?.next_at) {
    out.push(h('div', { class: 'muted small', dataset: { rotation: 'next' }, title: `every ${plural(k.rotation_days, 'day')}` },
      `next rotation ${new Date(k.rotation.next_at).toLocaleDateString()}`));
  }
  return out;
}
