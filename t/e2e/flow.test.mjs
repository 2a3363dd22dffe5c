// The whole workflow in the browser, as the issue and the product document
// tell it: the administrator logs in, registers a device inline and an RSA
// PEM key with a passphrase through the registration tabs, adds a user and
// grants them the key and device in an access group; the user logs in, opens
// the key's Actions -> Start session with a key -> Start session, runs a
// command, resizes the window and exits.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env, launch, login, keygen, apiCall, terminalLines, screenshot, story } from './lib.mjs';

let b, page;
before(async () => { b = await launch(); page = b.page; });
after(async () => { await b?.close(); });
const step = story(test, () => page);

const passphrase = 'flow-' + Math.random().toString(36).slice(2) + '-pass';
const key = keygen('rsa', { bits: 3072, format: 'PEM', passphrase, authorize: true });
const other = keygen('ed25519');
const operator = { user: 'olga', name: 'Olga Operator', password: 'olga-' + Math.random().toString(36).slice(2) };
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

  // Key data: the private key loaded from its file, the public key of
  // another key pasted (refused by the API on Save), the key's password
  await page.getByRole('tab', { name: 'Key data' }).click();
  await page.getByLabel('Username').fill(env.sshdUser);
  const chooser = page.waitForEvent('filechooser');
  await page.getByRole('button', { name: 'Load the private key from a file' }).click();
  await (await chooser).setFiles(key.path);
  await page.waitForFunction(() => document.getElementById('private_key').value.includes('BEGIN RSA PRIVATE KEY'));
  assert.match(await page.getByLabel('Private Key', { exact: true }).inputValue(), /Proc-Type: 4,ENCRYPTED/);
  await page.getByLabel('Public Key', { exact: true }).fill(other.pub);
  await page.getByLabel('Set current password').check();
  await page.getByLabel('Key password').fill(passphrase);
  await screenshot(page, '03-key-data');

  // Devices: register the test sshd inline, it becomes the main device
  await page.getByRole('tab', { name: 'Devices' }).click();
  await page.getByRole('button', { name: 'Register new device' }).click();
  await page.getByLabel('Device name').fill('test-sshd');
  await page.getByLabel('Device address').fill('127.0.0.1');
  await page.getByLabel('Device port').fill(String(env.sshdPort));
  await page.getByLabel('Device tags').fill('lab, loopback');
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
  await summary.getByText('Set (write-only)').waitFor();
  const review = await summary.textContent();
  assert.ok(!review.includes(passphrase) && !review.includes('PRIVATE KEY'), 'no secret on the Review tab');
  await screenshot(page, '05-review');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#public_key-error').waitFor();
  assert.equal(await page.getByRole('tab', { name: /Key data/ }).getAttribute('aria-selected'), 'true');
  assert.match(await page.locator('#public_key-error').textContent(), /does not belong to this private key/);
  assert.equal(await page.getByLabel('Public Key', { exact: true }).getAttribute('aria-invalid'), 'true');
  await screenshot(page, '06-validation-error');

  // the right public key, from its file; Save
  const pubChooser = page.waitForEvent('filechooser');
  await page.getByRole('button', { name: 'Load the public key from a file' }).click();
  await (await pubChooser).setFiles(key.path + '.pub');
  await page.waitForFunction(pub => document.getElementById('public_key').value === pub, key.pub);
  assert.equal(await page.locator('#public_key-error').count(), 0, 'the error went with the change');
  await page.getByRole('tab', { name: /Review/ }).click();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(/keys\.html/);
  await page.getByText(/The SSH key "e2e-rsa" was saved/).waitFor();

  const row = page.locator('#keys-body tr', { hasText: 'e2e-rsa' });
  await row.waitFor();
  const cells = await row.locator('td').allTextContents();
  assert.equal(cells[1], 'ssh-rsa (3072)' + key.fingerprint);
  assert.equal(cells[2], env.sshdUser);
  assert.equal(cells[3], 'ops team');
  assert.equal(cells[4], 'Active');
  assert.deepEqual(await row.locator('.tag').allTextContents(), ['e2e', 'lab']);
  assert.equal(cells[6], 'test-sshd');
  assert.equal(cells[7], '1not checked', 'one device, its deployment not checked yet');
  keyId = Number(await row.getAttribute('data-key-id'));
  const devs = await apiCall(page, 'GET', '/api/devices');
  deviceId = devs.body.items.find(d => d.name === 'test-sshd').id;
  await screenshot(page, '07-keys-report');

  // the private key and its password never come back
  const k = await apiCall(page, 'GET', `/api/keys/${keyId}`);
  assert.equal(k.body.private_key, undefined);
  assert.equal(k.body.has_passphrase, true);
  assert.ok(!JSON.stringify(k.body).includes('PRIVATE KEY'));
  assert.ok(!JSON.stringify(k.body).includes(passphrase));
});

step('Remote Access says why not; the administrator adds a user and grants them the key', async () => {
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

  // a user for the operator, on the Users page
  const nav = page.getByRole('navigation', { name: 'Main menu' });
  await nav.getByRole('link', { name: 'Users' }).click();
  await page.waitForURL(/users\.html/);
  await page.getByRole('button', { name: 'Add' }).click();
  const u = page.getByRole('dialog', { name: 'Add user' });
  await u.getByLabel('User name').fill(operator.user);
  await u.getByLabel('Display name').fill(operator.name);
  await u.getByLabel('Password').fill(operator.password);
  await u.getByRole('button', { name: 'Save' }).click();
  await page.locator('#items-body tr', { hasText: operator.user }).waitFor();

  // the grant, on the Access groups page
  await nav.getByRole('link', { name: 'Access groups' }).click();
  await page.waitForURL(/groups\.html/);
  await page.getByRole('button', { name: 'Add' }).click();
  const d = page.getByRole('dialog', { name: 'Add access group' });
  await d.getByLabel('Group name').fill('e2e-operators');
  await d.getByLabel('Use credentials').check();
  await d.getByLabel('Access devices').check();
  await d.getByLabel('Remote sessions').check();
  await d.getByRole('group', { name: 'Members' }).getByLabel(operator.user).check();
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
  assert.equal(g.members.length, 1, 'the operator alone');

  // the administrator is not in the group: still no session for them
  await page.goto(env.url + `/remote-access.html?key=${keyId}`);
  await drow.getByText('You are not a member of any access group.').waitFor();
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL(/login\.html/);
});

step('the operator logs in: Actions, Start session with a key, Start session', async () => {
  await login(page, operator.user, operator.password);
  await page.locator('#whoami').filter({ hasText: operator.name }).waitFor();
  const row = page.locator('#keys-body tr', { hasText: 'e2e-rsa' });
  await row.getByRole('button', { name: 'Actions for e2e-rsa' }).click();
  assert.deepEqual(await page.getByRole('menuitem').allTextContents(), ['Start session with a key'],
                   'an operator may only start sessions');
  await page.getByRole('menuitem', { name: 'Start session with a key' }).click();
  await page.waitForURL(/remote-access\.html\?key=/);
  const drow = page.locator('#access-body tr', { hasText: 'test-sshd' });
  await drow.getByText('Allowed').waitFor();
  await drow.getByText('Main').waitFor();
  await drow.getByText('loopback').waitFor();
  await screenshot(page, '10-remote-access-allowed');

  await drow.getByRole('link', { name: /Start session/ }).click();
  await page.waitForURL(/terminal\.html\?key=\d+&device=\d+/);
  await page.locator('#term-state').filter({ hasText: 'Connected' }).waitFor({ timeout: 30000 });
  await page.locator('#term-title').filter({ hasText: 'test-sshd' }).waitFor();
  assert.match(await page.title(), /test-sshd/, 'the tab title names the device');

  // the shell's prompt first, then type
  await page.waitForFunction(() => [...document.querySelectorAll('.xterm-rows > div')]
    .some(r => /[#$>] ?$/.test(r.textContent.replace(/\u00a0/g, ' ').trimEnd())), null, { timeout: 20000 });
  await page.locator('.xterm-helper-textarea').focus();
  await page.keyboard.type('echo $((6*7))', { delay: 10 });
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => [...document.querySelectorAll('.xterm-rows > div')]
    .some(r => r.textContent.replace(/\u00a0/g, ' ').trim() === '42'), null, { timeout: 20000 });
  await screenshot(page, '11-terminal-42');
});

// `stty size` prints "rows cols"; the line after the command that asked
async function sttySize(marker) {
  await page.keyboard.type(`echo ${marker}; stty size`, { delay: 5 });
  await page.keyboard.press('Enter');
  await page.waitForFunction(m => {
    const rows = [...document.querySelectorAll('.xterm-rows > div')].map(r => r.textContent.replace(/\u00a0/g, ' ').trim());
    const i = rows.lastIndexOf(m);
    return i >= 0 && /^\d+ \d+$/.test(rows[i + 1] || '');
  }, marker, { timeout: 20000 });
  const rows = (await terminalLines(page)).map(l => l.trim());
  const [r, c] = rows[rows.lastIndexOf(marker) + 1].split(' ').map(Number);
  return { rows: r, cols: c };
}

step('the terminal follows the window size; exit shows the exit banner', async () => {
  const before = await sttySize('size-one');
  // the xterm.js grid, as drawn
  const drawnRows = () => page.locator('.xterm-rows > div').count();
  assert.equal(before.rows, await drawnRows(), `stty size ${before.rows} ${before.cols} matches the screen`);

  await page.setViewportSize({ width: 900, height: 600 });
  await page.waitForFunction(n => document.querySelectorAll('.xterm-rows > div').length < n, before.rows);
  const after = await sttySize('size-two');
  assert.ok(after.cols < before.cols && after.rows < before.rows,
            `stty size follows: ${before.rows}x${before.cols} -> ${after.rows}x${after.cols}`);
  assert.equal(after.rows, await drawnRows(), 'and matches the screen again');
  await screenshot(page, '11b-terminal-resized');

  await page.keyboard.type('exit', { delay: 10 });
  await page.keyboard.press('Enter');
  await page.locator('#term-banner').filter({ hasText: 'Session ended (exit 0)' }).waitFor({ timeout: 20000 });
  assert.equal((await page.locator('#term-state').textContent()).trim(), 'Disconnected');
  await screenshot(page, '12-terminal-exit');
  await page.setViewportSize({ width: 1360, height: 860 });
});

step('the session is in the audit and logging out ends the login', async () => {
  const s = await apiCall(page, 'GET', '/api/sessions');
  assert.equal(s.status, 200);
  const mine = s.body.items.find(x => x.key_id === keyId && x.device_id === deviceId);
  assert.ok(mine, 'an audit row');
  assert.equal(mine.username, operator.user);
  assert.equal(mine.exit_status, 0);

  // and on the Session audit page
  await page.goto(env.url + '/keys.html');
  await page.getByRole('navigation', { name: 'Main menu' }).getByRole('link', { name: 'Session audit' }).click();
  await page.getByRole('heading', { name: 'Session audit' }).waitFor();
  const row = page.locator('#sessions-body tr', { hasText: 'e2e-rsa' });
  await row.waitFor();
  assert.match(await row.textContent(), new RegExp(`${operator.user}.*e2e-rsa.*test-sshd.*Shell exited \\(exit 0\\)`));
  await screenshot(page, '13-sessions');
  await page.goto(env.url + '/keys.html');
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL(/login\.html/);
  await page.goto(env.url + '/keys.html');
  await page.waitForURL(/login\.html\?next=/);
  assert.deepEqual(b.problems.filter(p => !/status of 4\d\d/.test(p)), []);
});
