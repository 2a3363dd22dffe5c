// The whole workflow in the browser: log in, register a device and an SSH
// key through the registration tabs, grant them, open Remote Access, start
// a session, run a command, exit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env, launch, login, keygen, apiCall, terminalLines, screenshot, story } from './lib.mjs';

let b, page;
before(async () => { b = await launch(); page = b.page; });
after(async () => { await b?.close(); });
const step = story(test, () => page);

const key = keygen('rsa', { bits: 3072, format: 'PEM', authorize: true });
const other = keygen('ed25519');
let keyId, deviceId;

step('the administrator logs in and sees the console', async () => {
  await page.goto(env.url + '/');
  await page.waitForURL(/login\.html/);
  await page.getByLabel('User name').fill(env.admin);
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'Wrong user name or password' }).waitFor();
  await screenshot(page, '01-login-refused');
  await login(page);
  await page.locator('#whoami').filter({ hasText: 'Ada Admin' }).waitFor();
  await page.getByRole('button', { name: 'Log out' }).waitFor();
  const nav = page.getByRole('navigation', { name: 'Main menu' });
  await nav.getByRole('link', { name: 'SSH Keys' }).waitFor();
  assert.equal(await nav.getByRole('link', { name: 'SSH Keys' }).getAttribute('aria-current'), 'page');
  await page.getByRole('heading', { name: 'SSH keys' }).waitFor();
  await screenshot(page, '02-keys-empty');
});

step('an SSH key is registered through the tabs, with a new device', async () => {
  await page.getByRole('link', { name: 'Add' }).click();
  await page.waitForURL(/key-edit\.html/);
  await page.getByRole('heading', { name: 'SSH Key registration' }).waitFor();

  // Information
  await page.getByLabel('Key name').fill('e2e-rsa');
  await page.getByLabel('Status').selectOption('active');
  await page.getByLabel('Tags', { exact: true }).fill('e2e, lab');
  await page.getByLabel('SSH key owner').fill('ops team');

  // Key data, with the public key of another key: refused by the API
  await page.getByRole('tab', { name: 'Key data' }).click();
  await page.getByLabel('Username').fill(env.sshdUser);
  await page.getByLabel('Private Key').fill(key.priv);
  await page.getByLabel('Public Key').fill(other.pub);
  await screenshot(page, '03-key-data');

  // Devices: register the test sshd inline, it becomes the main device
  await page.getByRole('tab', { name: 'Devices' }).click();
  await page.getByRole('button', { name: 'Register new device' }).click();
  await page.getByLabel('Device name').fill('test-sshd');
  await page.getByLabel('Device address').fill('127.0.0.1');
  await page.getByLabel('Device port').fill(String(env.sshdPort));
  await page.getByLabel('Device host key').fill(env.sshdHostKey + ' pinned');
  await page.getByRole('button', { name: 'Register device' }).click();
  await page.getByText('Device "test-sshd" registered and added.').waitFor();
  const mainText = await page.locator('#main_device option:checked').textContent();
  assert.match(mainText, /^test-sshd \(127\.0\.0\.1:\d+\)$/);
  await page.locator('#assoc-body tr', { hasText: 'test-sshd' }).getByText('Main').waitFor();
  await screenshot(page, '04-devices');

  // Review, Save: the mismatch is shown next to Public Key, on Key data
  await page.getByRole('tab', { name: 'Review' }).click();
  const summary = page.locator('#summary');
  await summary.getByText('e2e-rsa').waitFor();
  await summary.getByText('Provided (stored encrypted, never shown again)').waitFor();
  await screenshot(page, '05-review');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#public_key-error').waitFor();
  assert.equal(await page.getByRole('tab', { name: /Key data/ }).getAttribute('aria-selected'), 'true');
  assert.match(await page.locator('#public_key-error').textContent(), /does not belong to this private key/);
  assert.equal(await page.getByLabel('Public Key').getAttribute('aria-invalid'), 'true');
  await screenshot(page, '06-validation-error');

  // the right public key; Save
  await page.getByLabel('Public Key').fill(key.pub);
  await page.getByRole('tab', { name: /Review/ }).click();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(/keys\.html/);
  await page.getByText(/The SSH key "e2e-rsa" was saved/).waitFor();

  const row = page.locator('#keys-body tr', { hasText: 'e2e-rsa' });
  await row.waitFor();
  const cells = await row.locator('td').allTextContents();
  assert.equal(cells[1], 'ssh-rsa (3072)');
  assert.equal(cells[2], key.fingerprint);
  assert.equal(cells[3], env.sshdUser);
  assert.equal(cells[4], 'Active');
  assert.equal(cells[6], 'test-sshd');
  keyId = Number(await row.getAttribute('data-key-id'));
  const devs = await apiCall(page, 'GET', '/api/devices');
  deviceId = devs.body.items.find(d => d.name === 'test-sshd').id;
  await screenshot(page, '07-keys-report');

  // the private key never comes back
  const k = await apiCall(page, 'GET', `/api/keys/${keyId}`);
  assert.equal(k.body.private_key, undefined);
  assert.ok(!JSON.stringify(k.body).includes('PRIVATE KEY'));
});

step('Remote Access explains why a session cannot start, then allows it once granted', async () => {
  const row = page.locator('#keys-body tr', { hasText: 'e2e-rsa' });
  await row.getByRole('button', { name: 'Actions for e2e-rsa' }).click();
  await screenshot(page, '08-actions-menu');
  await page.getByRole('menuitem', { name: 'Start session with a key' }).click();
  await page.waitForURL(/remote-access\.html\?key=/);
  await page.getByRole('heading', { name: 'SSH Keys: Remote Access' }).waitFor();
  const drow = page.locator('#access-body tr', { hasText: 'test-sshd' });
  await drow.getByText('You are not a member of any access group.').waitFor();
  assert.ok(await drow.getByRole('button', { name: /Start session/ }).isDisabled());
  await screenshot(page, '09-remote-access-denied');

  // the grant, on the Access groups page
  const remoteAccess = page.url();
  await page.getByRole('navigation', { name: 'Main menu' }).getByRole('link', { name: 'Access groups' }).click();
  await page.waitForURL(/groups\.html/);
  await page.getByRole('button', { name: 'Add' }).click();
  const d = page.getByRole('dialog', { name: 'Add access group' });
  await d.getByLabel('Group name').fill('e2e-operators');
  await d.getByLabel('Use credentials').check();
  await d.getByLabel('Access devices').check();
  await d.getByLabel('Remote sessions').check();
  await d.getByRole('group', { name: 'Members' }).getByLabel(env.admin).check();
  await d.getByRole('group', { name: 'SSH keys' }).getByLabel('e2e-rsa').check();
  await d.getByRole('group', { name: 'Devices' }).getByLabel(/test-sshd/).check();
  await screenshot(page, '10a-group-dialog');
  await d.getByRole('button', { name: 'Save' }).click();
  const grow = page.locator('#items-body tr', { hasText: 'e2e-operators' });
  await grow.waitFor();
  assert.match(await grow.textContent(), /Use credentials.*Access devices.*Remote sessions/);
  await screenshot(page, '10b-groups');
  const g = (await apiCall(page, 'GET', '/api/groups')).body.items.find(x => x.name === 'e2e-operators');
  assert.deepEqual([g.keys, g.devices], [[keyId], [deviceId]]);

  await page.goto(remoteAccess);
  await drow.getByText('Allowed').waitFor();
  await drow.getByText('Main').waitFor();
  await screenshot(page, '10-remote-access-allowed');
});

step('Start session opens a terminal on the device; echo hello; exit', async () => {
  await page.locator('#access-body tr', { hasText: 'test-sshd' }).getByRole('link', { name: /Start session/ }).click();
  await page.waitForURL(/terminal\.html\?key=\d+&device=\d+/);
  await page.locator('#term-state').filter({ hasText: 'Connected' }).waitFor({ timeout: 30000 });
  await page.locator('#term-title').filter({ hasText: 'e2e-rsa → test-sshd' }).waitFor();

  // the shell's prompt first, then type
  await page.waitForFunction(() => [...document.querySelectorAll('.xterm-rows > div')]
    .some(r => /[#$>] ?$/.test(r.textContent.replace(/\u00a0/g, ' ').trimEnd())), null, { timeout: 20000 });
  await page.locator('.xterm-helper-textarea').focus();
  await page.keyboard.type('echo hello', { delay: 10 });
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => [...document.querySelectorAll('.xterm-rows > div')]
    .some(r => r.textContent.replace(/\u00a0/g, ' ').trim() === 'hello'), null, { timeout: 20000 });
  await screenshot(page, '11-terminal-hello');

  // the terminal follows the window size
  await page.setViewportSize({ width: 900, height: 600 });
  await page.keyboard.type('stty size', { delay: 10 });
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => [...document.querySelectorAll('.xterm-rows > div')]
    .some(r => /^\d+ \d+$/.test(r.textContent.replace(/\u00a0/g, ' ').trim())), null, { timeout: 20000 });
  const size = (await terminalLines(page)).map(l => l.trim()).find(l => /^\d+ \d+$/.test(l));
  const [rows, cols] = size.split(' ').map(Number);
  assert.ok(cols < 120 && rows < 40, `stty size after the resize: ${size}`);

  await page.keyboard.type('exit', { delay: 10 });
  await page.keyboard.press('Enter');
  await page.locator('#term-banner').filter({ hasText: 'Session ended (exit 0)' }).waitFor({ timeout: 20000 });
  assert.equal((await page.locator('#term-state').textContent()).trim(), 'Disconnected');
  await screenshot(page, '12-terminal-exit');
});

step('the session is in the audit and logging out ends the login', async () => {
  const s = await apiCall(page, 'GET', '/api/sessions');
  assert.equal(s.status, 200);
  assert.ok(s.body.items.some(x => x.key_id === keyId && x.device_id === deviceId), 'an audit row');
  await page.goto(env.url + '/keys.html');
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL(/login\.html/);
  await page.goto(env.url + '/keys.html');
  await page.waitForURL(/login\.html\?next=/);
  assert.deepEqual(b.problems.filter(p => !/status of 4\d\d/.test(p)), []);
});
