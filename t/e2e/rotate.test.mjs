// Key rotation in the browser (issue 13 item 4): "Rotate every (days)" in
// the registration (checked before it is sent), then Rotate on the key
// page for a key on three OpenSSH devices of this test's own, one of which
// does not have the key: the dialog, its progress state while the server
// works, the result (2 rotated, 1 refused), the files on the devices, the
// Rotations tab, the behind device in the Devices tab and the Remote Access
// report, "partially rotated (1 behind)" in the SSH keys report; then
// Retry only devices behind, once the old line is on the third device.
// Screenshots 90-98.
//
// The devices: three sshds started here (each its own port, host key and
// HOME, as t/lib's sshds: HOME is set by the server, so the login shell
// reads no profile, and the authorized_keys file sshd reads is
// ~/.ssh/authorized_keys of that HOME, the file the rotation edits).
// They log in the user running the tests, with public keys only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, readFileSync, openSync, closeSync, chmodSync } from 'node:fs';
import { spawn, execFileSync } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import { env, launch, login, apiCall, screenshot, story } from './lib.mjs';

let b, page;
const sshds = [];   // { name, dir, home, port, hostKey, proc }

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function portOpen(port) {
  return new Promise(resolve => {
    const c = connect({ host: '127.0.0.1', port });
    c.on('connect', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

async function until(what, fn, seconds = 15) {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise(r => setTimeout(r, 100));
  }
}

async function startSshd(name) {
  const dir = join(env.tmp, `rotate-${name}`);
  const home = join(dir, 'home');
  mkdirSync(join(home, '.ssh'), { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o755);
  const keys = join(home, '.ssh', 'authorized_keys');
  writeFileSync(keys, '', { mode: 0o600 });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', join(dir, 'host_ed25519')]);
  const port = await freePort();
  writeFileSync(join(dir, 'sshd_config'), [
    `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${dir}/host_ed25519`, `PidFile ${dir}/sshd.pid`,
    `AuthorizedKeysFile ${keys}`, 'StrictModes no', 'UsePAM no', 'PasswordAuthentication no',
    'KbdInteractiveAuthentication no', 'PubkeyAuthentication yes', 'PermitRootLogin prohibit-password',
    'MaxStartups 100:30:200', 'LogLevel VERBOSE', 'PrintMotd no', 'PrintLastLog no', 'Banner none',
    `SetEnv HOME=${home}`, '',
  ].join('\n'));
  const log = join(dir, 'sshd.log');
  const fd = openSync(log, 'a');
  const proc = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  let exited = null;
  proc.on('exit', code => { exited = code ?? 'signal'; });
  const s = { name, dir, home, keys, port, proc,
              hostKey: readFileSync(join(dir, 'host_ed25519.pub'), 'utf8').trim() };
  sshds.push(s);
  await until(`sshd ${name} listening`, async () => {
    if (exited !== null) throw new Error(`sshd ${name} exited (${exited}): ${readFileSync(log, 'utf8')}`);
    return /Server listening on/.test(readFileSync(log, 'utf8')) && await portOpen(port);
  });
  return s;
}

before(async () => {
  b = await launch();
  page = b.page;
  await login(page);
});
after(async () => {
  await b?.close();
  for (const s of sshds) {
    if (s.proc.exitCode !== null || s.proc.signalCode !== null) continue;
    const gone = new Promise(r => s.proc.once('exit', r));
    s.proc.kill('SIGTERM');
    await Promise.race([gone, new Promise(r => setTimeout(r, 5000))]);
    if (s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill('SIGKILL');
  }
});
const step = story(test, () => page);

let keyId, oldLine, newLine;
const dev = {};       // name -> device id
const file = n => readFileSync(sshds.find(s => s.name === n).keys, 'utf8');
const base64 = line => line.split(' ')[1];

async function openKeyPage() {
  await page.goto(env.url + `/key-edit.html?id=${keyId}`);
  // the key is loaded (its Rotate button shown) before the tabs are used
  await page.waitForFunction(() => document.getElementById('rotate-open')?.hidden === false);
}

step('three devices; a key deployed on two of them', async () => {
  for (const n of ['rot-a', 'rot-b', 'rot-c']) {
    const s = await startSshd(n);
    const r = await apiCall(page, 'POST', '/api/devices', {
      name: n, address: '127.0.0.1', port: s.port, host_key: s.hostKey });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    dev[n] = r.body.id;
  }
  const r = await apiCall(page, 'POST', '/api/keys/generate', {
    name: 'e2e-rotate', username: env.sshdUser, devices: [dev['rot-a'], dev['rot-b'], dev['rot-c']],
    main_device: dev['rot-a'] });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  keyId = r.body.id;
  oldLine = r.body.authorized_keys;
  assert.equal(r.body.version, 1);
  assert.equal(r.body.rotation_days, null);
  // an operator's line and comment on rot-a: the rotation keeps them
  writeFileSync(sshds[0].keys, `# kept by the rotation\n${oldLine}\n`);
  writeFileSync(sshds[1].keys, `${oldLine}\n`);
  // rot-c: the key is not there
});

step('registration: Rotate every (days) is checked, then saved', async () => {
  await openKeyPage();
  await page.getByRole('tab', { name: 'Key data' }).click();
  const days = page.getByLabel('Rotate every (days)');
  assert.equal(await days.inputValue(), '', 'no schedule yet');
  await days.fill('0');
  await page.getByRole('tab', { name: 'Review' }).click();
  await page.getByRole('button', { name: 'Save' }).click();
  // not sent: the field's own error, on its tab
  await page.locator('#rotation_days-error').getByText(/from 1 to 3650/).waitFor();
  assert.equal(await page.getByRole('tab', { name: /Key data/ }).getAttribute('aria-selected'), 'true');
  assert.equal(await days.getAttribute('aria-invalid'), 'true');
  await screenshot(page, '90-rotation-days-invalid');
  assert.equal((await apiCall(page, 'GET', `/api/keys/${keyId}`)).body.rotation_days, null, 'nothing was saved');
  await days.fill('30');
  await page.getByRole('tab', { name: 'Review' }).click();
  await page.locator('#summary').getByText('Every 30 days').waitFor();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(/\/keys\.html/);
  const k = (await apiCall(page, 'GET', `/api/keys/${keyId}`)).body;
  assert.equal(k.rotation_days, 30);
  assert.ok(k.rotation?.next_at, 'a next rotation: ' + JSON.stringify(k.rotation));
  await page.locator(`tr[data-key-id="${keyId}"] [data-rotation="next"]`).getByText(/^next rotation /).waitFor();
});

step('Rotate: the dialog, and its progress while the server works', async () => {
  await openKeyPage();
  await page.getByRole('button', { name: 'Rotate' }).click();
  const dialog = page.getByRole('dialog', { name: 'Rotate e2e-rotate' });
  await dialog.waitFor();
  const type = dialog.getByLabel('New key type');
  assert.equal(await type.inputValue(), '', 'the same type as now by default');
  assert.match(await type.locator('option:checked').textContent(), /^Same as now \(ssh-ed25519 256 bits\)$/);
  assert.equal(await dialog.getByText(/Retry only devices behind/).count(), 0, 'no device is behind yet');
  await screenshot(page, '91-rotate-dialog');

  // the answer is held back until the progress state has been seen
  let release;
  const held = new Promise(r => { release = r; });
  let sent = null;
  await page.route('**/api/keys/*/rotate', async route => {
    sent = route.request().postDataJSON();
    const res = await route.fetch({ timeout: 120000 });
    await held;
    await route.fulfill({ response: res });
  });
  await dialog.getByRole('button', { name: 'Start' }).click();
  await page.locator('#rotate-dialog[data-state="running"]').waitFor();
  await dialog.getByText('Rotating on 3 devices…').waitFor();
  assert.equal(await dialog.getByRole('button', { name: 'Cancel' }).isDisabled(), true, 'no closing while it runs');
  await screenshot(page, '92-rotate-running');
  release();
  await page.locator('#rotate-dialog[data-state="done"]').waitFor({ timeout: 120000 });
  await page.unroute('**/api/keys/*/rotate');
  assert.deepEqual(sent, {}, 'the same type: an empty body');
});

step('Rotate: 2 rotated, 1 refused; the devices\' files', async () => {
  const dialog = page.getByRole('dialog', { name: 'Rotate e2e-rotate' });
  await dialog.locator('[data-status="partial"]').getByText('Partially rotated').waitFor();
  assert.equal(await dialog.locator('#rotate-summary').textContent(),
    '2 of 3 devices rotated to version 2. 1 device keeps its older key until a retry succeeds (rotation pending).');
  const item = n => dialog.locator(`#rotate-items tr[data-device-id="${dev[n]}"]`);
  for (const n of ['rot-a', 'rot-b']) {
    assert.equal(await item(n).getAttribute('data-result'), 'rotated', n);
    assert.equal(await item(n).locator('td[data-version]').textContent(), '1 → 2', n);
  }
  assert.equal(await item('rot-c').getAttribute('data-result'), 'refused');
  await item('rot-c').getByText('Refused', { exact: true }).waitFor();
  await item('rot-c').getByText(/refused the key it had: not rotated, it keeps its version/).waitFor();
  assert.equal(await item('rot-c').locator('td[data-version]').textContent(), '1');
  await screenshot(page, '93-rotate-result');
  await dialog.getByRole('button', { name: 'Close' }).click();
  await dialog.waitFor({ state: 'detached' });

  const k = (await apiCall(page, 'GET', `/api/keys/${keyId}`)).body;
  assert.equal(k.version, 2);
  assert.equal(k.rotation.behind, 1);
  newLine = `${k.public_key} segura-key-${keyId}`;
  assert.notEqual(base64(newLine), base64(oldLine), 'a new key pair');
  for (const [n, before] of [['rot-a', '# kept by the rotation\n'], ['rot-b', '']]) {
    const text = file(n);
    assert.ok(!text.includes(base64(oldLine)), `${n}: the old key's line is gone`);
    assert.ok(text.startsWith(before), `${n}: the other lines are kept`);
    assert.equal(text.split('\n').filter(l => l.includes(base64(newLine))).length, 1, `${n}: the new line, once`);
  }
  assert.equal(file('rot-c'), '', 'rot-c: untouched');
});

step('Devices tab: the behind device is marked, the others use version 2', async () => {
  // (the page refreshed the key after the dialog: no reload)
  await page.locator('#key-version').getByText(/version 2 · rotated .* · partially rotated \(1 behind\)/).waitFor();
  await page.getByRole('tab', { name: 'Devices' }).click();
  const cell = n => page.locator(`#assoc-body tr[data-device-id="${dev[n]}"] td.deployment`);
  await cell('rot-c').getByText('uses version 1; rotation pending').waitFor();
  for (const n of ['rot-a', 'rot-b']) {
    await cell(n).getByText('version 2', { exact: true }).waitFor();
    assert.equal(await cell(n).locator('[data-behind]').count(), 0, n);
  }
  await screenshot(page, '94-devices-behind');
});

step('Rotations tab: the rotation, newest first, and its devices', async () => {
  await page.getByRole('tab', { name: 'Rotations' }).click();
  const rows = page.locator('#rotations-body tr[data-rotation-id]');
  await rows.first().waitFor();
  assert.equal(await rows.count(), 1);
  const row = rows.first();
  assert.equal(await row.getAttribute('data-status'), 'partial');
  const cells = (await row.locator('td').allTextContents()).map(s => s.trim());
  assert.equal(cells[1], 'Partially rotated');
  assert.equal(cells[2], 'Manual');
  assert.equal(cells[3], '1 → 2');
  assert.equal(cells[4], '2 of 3');
  assert.match(cells[5], /^(admin|Ada Admin)$/, 'who started it');
  const id = await row.getAttribute('data-rotation-id');
  const more = page.getByRole('button', { name: `Devices of rotation ${id}` });
  assert.equal(await more.getAttribute('aria-expanded'), 'false');
  await more.click();
  const sub = page.locator(`#rotation-${id}-items`);
  await sub.waitFor();
  assert.equal(await sub.locator('tbody tr').count(), 3);
  await sub.locator(`tr[data-device-id="${dev['rot-c']}"][data-result="refused"]`).waitFor();
  await screenshot(page, '95-rotations-tab');
});

step('the SSH keys report and Remote Access say so', async () => {
  await page.goto(env.url + '/keys.html');
  const row = page.locator(`tr[data-key-id="${keyId}"]`);
  await row.locator('[data-rotation="partial"]').getByText('partially rotated (1 behind)').waitFor();
  await row.locator('[data-rotation="next"]').getByText(/^next rotation /).waitFor();
  await screenshot(page, '96-keys-partial');
  await page.goto(env.url + `/remote-access.html?key=${keyId}`);
  const cell = n => page.locator(`tr[data-device-id="${dev[n]}"] td.deployment`);
  await cell('rot-c').getByText('uses version 1; rotation pending').waitFor();
  await cell('rot-a').getByText('version 2', { exact: true }).waitFor();
  await screenshot(page, '97-remote-access-behind');
});

step('Retry only devices behind: the third device catches up', async () => {
  // the operator puts the old line on rot-c: now it accepts the key it has
  writeFileSync(sshds[2].keys, `${oldLine}\n`);
  await openKeyPage();
  await page.getByRole('button', { name: 'Rotate' }).click();
  const dialog = page.getByRole('dialog', { name: 'Rotate e2e-rotate' });
  await dialog.getByLabel(/Retry only devices behind \(1 device still on an older version\)/).check();
  assert.equal(await dialog.getByLabel('New key type').isVisible(), false, 'no key type for a retry');
  await dialog.getByRole('button', { name: 'Start retry' }).click();
  await page.locator('#rotate-dialog[data-state="done"]').waitFor({ timeout: 120000 });
  const item = dialog.locator(`#rotate-items tr[data-device-id="${dev['rot-c']}"]`);
  assert.equal(await item.getAttribute('data-result'), 'rotated');
  assert.equal(await item.locator('td[data-version]').textContent(), '1 → 2');
  await dialog.locator('[data-status="rotated"]').waitFor();
  assert.equal(await dialog.locator('#rotate-summary').textContent(),
    'The device uses version 2 of the key; the old key is removed.');
  await screenshot(page, '98-retry-result');
  await dialog.getByRole('button', { name: 'Close' }).click();
  const text = file('rot-c');
  assert.ok(!text.includes(base64(oldLine)), 'rot-c: the old line is gone');
  assert.ok(text.includes(base64(newLine)), 'rot-c: the current key\'s line');
  await page.getByRole('tab', { name: 'Devices' }).click();
  await page.locator(`#assoc-body tr[data-device-id="${dev['rot-c']}"] td.deployment`)
    .getByText('version 2', { exact: true }).waitFor();
  assert.equal(await page.locator('#assoc-body [data-behind]').count(), 0, 'no device behind');
  const k = (await apiCall(page, 'GET', `/api/keys/${keyId}`)).body;
  assert.equal(k.rotation.behind, 0);
  await page.getByRole('tab', { name: 'Rotations' }).click();
  const rows = page.locator('#rotations-body tr[data-rotation-id]');
  await until('two rotations in the history', async () => await rows.count() === 2);
  // newest first: the retry
  assert.equal(await rows.first().getAttribute('data-status'), 'rotated');
  assert.match(await rows.first().locator('td').nth(2).textContent(), /Manual\s*retry/);
});

step('clean up: the key and the devices go', async () => {
  for (const p of [`/api/keys/${keyId}`, ...Object.values(dev).map(id => `/api/devices/${id}`)]) {
    assert.equal((await apiCall(page, 'DELETE', p)).status, 200, p);
  }
});

step('no error on the console', async () => {
  assert.deepEqual(b.problems.filter(p => !/status of 401/.test(p)), []);
});
