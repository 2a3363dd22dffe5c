// Deploy and withdraw a key's public line on devices (POST
// /api/keys/{id}/deploy and /withdraw): a dialog that asks how to log in
// (another registered key, or a one-time password that is sent once and
// kept nowhere), then shows the result per device.
import { get, h, post, errorText } from './api.js';
import { CHECK_TEXT } from './checks.js';

export const DEPLOY_TEXT = {
  deployed: 'Deployed',
  withdrawn: 'Withdrawn',
  unchanged: 'Unchanged',
  verify_failed: 'Not verified',
  auth_failed: 'Login refused',
  unreachable: 'Unreachable',
  timeout: 'Timed out',
  host_key_mismatch: 'Host key mismatch',
  host_key_unknown: 'Host key unknown',
  exec_failed: 'Command failed',
  error: 'Failed',
};

const DEPLOY_HELP = {
  deployed: 'The line was added to ~/.ssh/authorized_keys and the device accepts the key.',
  withdrawn: 'The line was removed from ~/.ssh/authorized_keys and the device refuses the key.',
  unchanged: 'Nothing to do: the file already was as asked.',
  verify_failed: 'The file was changed, but the check of the key disagrees (see the detail).',
  auth_failed: 'The device refused the password or the key used to log in.',
  unreachable: 'No connection to the device.',
  timeout: 'The device did not answer in time.',
  host_key_mismatch: 'The device presented another host key than the pinned one.',
  host_key_unknown: 'No host key is pinned for the device and the policy is strict.',
  exec_failed: 'The command on the device failed (see the detail).',
  error: 'See the server log.',
};

const OK = new Set(['deployed', 'withdrawn', 'unchanged']);

export function deployPill(result) {
  const kind = OK.has(result) ? 'ok' : result === 'timeout' || result === 'unreachable' ? 'warn' : 'bad';
  return h('span', { class: `pill ${kind}`, title: DEPLOY_HELP[result] || '', dataset: { result } },
    DEPLOY_TEXT[result] ?? result);
}

// opens the dialog; key: {id, name, username}; devices: [{id, name}];
// resolves with the answer once it is closed, or null if nothing ran
export function deployDialog(key, devices, withdraw) {
  const verb = withdraw ? 'Withdraw' : 'Deploy';
  const where = devices.length === 1 ? devices[0].name : `${devices.length} devices`;
  return new Promise(resolve => {
    let answer = null;
    const pw = h('input', { type: 'password', id: 'deploy-password', autocomplete: 'off', maxlength: '1024' });
    const viaKey = h('select', { id: 'deploy-via-key', disabled: true },
      h('option', { value: '' }, 'Loading keys…'));
    const usePw = h('input', { type: 'radio', name: 'deploy-via', value: 'password', id: 'deploy-via-password', checked: true });
    const useKey = h('input', { type: 'radio', name: 'deploy-via', value: 'key', id: 'deploy-via-key-radio' });
    const err = h('div', { class: 'banner error', role: 'alert', hidden: true });
    const results = h('ul', { class: 'picks', id: 'deploy-results', hidden: true });
    const status = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
    const go = h('button', { type: 'button', class: 'primary', id: 'deploy-go' }, verb);
    const close = h('button', { type: 'button', id: 'deploy-close' }, 'Cancel');
    const form = h('div', { id: 'deploy-form' },
      h('p', {}, withdraw
        ? `Removes the key's line from ~/.ssh/authorized_keys of ${key.username} on ${where}; other lines are kept.`
        : `Adds the key's line to ~/.ssh/authorized_keys of ${key.username} on ${where} (once; ~/.ssh 0700 and the file 0600 when new).`),
      h('p', {}, `Log in as ${key.username} with:`),
      h('div', { class: 'field' }, h('label', { class: 'check' }, usePw, 'A one-time password (used once, never stored)')),
      h('div', { class: 'field', id: 'deploy-password-field' },
        h('label', { for: 'deploy-password' }, `Password of ${key.username} on the device`), pw),
      h('div', { class: 'field' }, h('label', { class: 'check' }, useKey, 'Another registered key, already deployed there')),
      h('div', { class: 'field', id: 'deploy-key-field', hidden: true },
        h('label', { for: 'deploy-via-key' }, 'Key'), viaKey));
    const d = h('dialog', { 'aria-labelledby': 'deploy-title', id: 'deploy-dialog' },
      h('header', { id: 'deploy-title' }, `${verb} ${key.name} on ${where}`),
      h('div', { class: 'body' }, err, form, status, results),
      h('footer', {}, close, go));
    const pick = () => {
      document.getElementById('deploy-password-field').hidden = !usePw.checked;
      document.getElementById('deploy-key-field').hidden = !useKey.checked;
      viaKey.disabled = !useKey.checked;
    };
    usePw.addEventListener('change', pick);
    useKey.addEventListener('change', pick);
    const done = () => { pw.value = ''; d.close(); d.remove(); resolve(answer); };
    close.addEventListener('click', done);
    d.addEventListener('cancel', ev => { ev.preventDefault(); done(); });
    go.addEventListener('click', async () => {
      err.hidden = true;
      let via;
      if (usePw.checked) {
        if (!pw.value) { err.textContent = 'Enter the password, or choose a key.'; err.hidden = false; pw.focus(); return; }
        via = { password: pw.value };
      } else {
        if (!viaKey.value) { err.textContent = 'Choose a key.'; err.hidden = false; return; }
        via = { key: Number(viaKey.value) };
      }
      // the password leaves the page once: no copy stays in the form
      pw.value = '';
      go.disabled = true;
      form.hidden = true;
      status.textContent = `${withdraw ? 'Withdrawing from' : 'Deploying to'} ${where}…`;
      try {
        answer = await post(`/api/keys/${key.id}/${withdraw ? 'withdraw' : 'deploy'}`,
                            { devices: devices.map(x => x.id), via });
        via = null;
        status.textContent = `${answer.done} of ${answer.total} device${answer.total === 1 ? '' : 's'} done.`;
        results.replaceChildren(...answer.items.map(x => h('li', { dataset: { deviceId: x.device } },
          h('strong', {}, x.name ?? `#${x.device}`), ' ', deployPill(x.result),
          x.check ? h('span', { class: 'muted small' }, ` check: ${CHECK_TEXT[x.check] ?? x.check}`) : null,
          x.detail ? h('div', { class: 'muted small' }, x.detail) : null)));
        results.hidden = false;
        go.hidden = true;
      } catch (e) {
        status.textContent = '';
        err.textContent = `${verb} failed: ${errorText(e)}`;
        err.hidden = false;
        form.hidden = false;
        go.disabled = false;
      }
      close.textContent = 'Close';
      close.focus();
    });
    document.body.append(d);
    d.showModal();
    pw.focus();
    get('/api/keys').then(r => {
      viaKey.replaceChildren(h('option', { value: '' }, 'Choose a key'),
        ...r.items.filter(k => k.id !== key.id || withdraw)
          .map(k => h('option', { value: k.id }, `${k.name} (${k.username})`)));
    }).catch(() => viaKey.replaceChildren(h('option', { value: '' }, 'The keys cannot be listed')));
  });
}
