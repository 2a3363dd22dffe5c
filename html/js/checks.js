// Deployment checks of a key (POST /api/keys/{id}/check): what a result
// says, as a pill, and a key's summary ("deployed on 3 of 4").
import { h, post } from './api.js';

export const CHECK_TEXT = {
  deployed: 'Deployed',
  refused: 'Refused',
  unreachable: 'Unreachable',
  timeout: 'Timed out',
  host_key_mismatch: 'Host key mismatch',
  host_key_unknown: 'Host key unknown',
  error: 'Check failed',
};

const CHECK_HELP = {
  deployed: 'The device accepted the key.',
  refused: 'The device refused the key: is the public line in ~/.ssh/authorized_keys of the username?',
  unreachable: 'No connection to the device.',
  timeout: 'The device did not answer in time.',
  host_key_mismatch: 'The device presented another host key than the pinned one.',
  host_key_unknown: 'No host key is pinned for the device and the policy is strict.',
  error: 'The check could not run: see the server log.',
};

// the last check of one device: a pill, with the detail and time as title
export function checkPill(check) {
  if (!check) return h('span', { class: 'muted' }, 'Not checked');
  const when = new Date(check.checked_at).toLocaleString();
  const title = [CHECK_HELP[check.result], check.detail, `Checked ${when}`].filter(Boolean).join('\n');
  const kind = check.result === 'deployed' ? 'ok' : check.result === 'timeout' || check.result === 'unreachable' ? 'warn' : 'bad';
  return h('span', { class: `pill ${kind}`, title, dataset: { result: check.result } },
    CHECK_TEXT[check.result] ?? check.result);
}

export function deploymentText(dep) {
  if (!dep || !dep.devices) return 'no devices';
  if (!dep.checked) return 'not checked';
  return `deployed on ${dep.deployed} of ${dep.devices}`;
}

// runs a check; devices: ids, or null for every device the caller may check
export async function runCheck(keyId, devices) {
  return post(`/api/keys/${keyId}/check`, devices ? { devices } : {});
}
