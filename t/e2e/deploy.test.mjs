// Deploy and withdraw in the browser: a generated key goes onto a device
// with a one-time password from the key's Devices tab (the dialog, the
// result per device, the check pill); a second key goes on via the first
// (the dialog's key choice); then the first comes off again from the
// Remote Access report.  The device is an OpenSSH server that reads the
// user's own ~/.ssh/authorized_keys, with a throwaway login user made by
// t/e2e/run (root only; skipped otherwise).  Screenshots 76-79.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { env, launch, login, apiCall, screenshot, story } from './lib.mjs';

const dep = {
  port: Number(process.env.SEGURA_E2E_DEPLOY_PORT || 0),
  user: process.env.SEGURA_E2E_DEPLOY_USER,
  password: process.env.SEGURA_E2E_DEPLOY_PASSWORD,
  home: process.env.SEGURA_E2E_DEPLOY_HOME,
};
const skip = !dep.port && 'no deploy device (t/e2e/run makes one as root)';

let b, page;
before(async () => {
  if (skip) return;
  b = await launch();
  page = b.page;
  await login(page);
});
after(async () => { await b?.close(); });
const step = skip ? (name) => test(name, { skip }, () => {}) : story(test, () => page);

let devId, keyId, line;
const file = () => `${dep.home}/.ssh/authorized_keys`;

step('a generated key and a device whose user has no ~/.ssh', async () => {
  let r = await apiCall(page, 'POST', '/api/devices', { name: 'deploy-dev', address: '127.0.0.1', port: dep.port });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  devId = r.body.id;
  r = await apiCall(page, 'POST', '/api/keys/generate', {
    name: 'e2e-deploy', username: dep.user, devices: [devId], main_device: devId });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  keyId = r.body.id;
  line = r.body.authorized_keys;
  assert.equal(existsSync(`${dep.home}/.ssh`), false);
});

step('Devices tab: Deploy with a one-time password, the result per device', async () => {
  await page.goto(env.url + `/key-edit.html?id=${keyId}`);
  // the key is loaded (its buttons shown) before the tabs are used
  await page.waitForFunction(() => document.getElementById('deploy-all')?.hidden === false);
  await page.getByRole('tab', { name: 'Devices' }).click();
  await page.getByRole('button', { name: 'Deploy the key on deploy-dev' }).click();
  const dialog = page.getByRole('dialog', { name: /Deploy e2e-deploy on deploy-dev/ });
  await dialog.waitFor();
  await dialog.getByLabel(`Password of ${dep.user} on the device`).fill(dep.password);
  await screenshot(page, '76-deploy-dialog');
  await dialog.getByRole('button', { name: 'Deploy', exact: true }).click();
  await dialog.getByText('1 of 1 device done.').waitFor();
  await dialog.locator('#deploy-results [data-result="deployed"]').waitFor();
  assert.doesNotMatch(await page.content(), new RegExp(dep.password), 'the password is not in the page');
  await screenshot(page, '77-deploy-result');
  await dialog.getByRole('button', { name: 'Close' }).click();
  await page.locator(`#assoc-body tr[data-device-id="${devId}"] td.deployment`).getByText('Deployed').waitFor();
  assert.equal(readFileSync(file(), 'utf8'), line + '\n', 'one line on the device');
  assert.equal(statSync(file()).mode & 0o777, 0o600);
  assert.equal(statSync(`${dep.home}/.ssh`).mode & 0o777, 0o700);
});

let key2, line2;
step('Remote Access: Deploy a second key via the first', async () => {
  const r = await apiCall(page, 'POST', '/api/keys/generate', {
    name: 'e2e-deploy-2', username: dep.user, devices: [devId], main_device: devId });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  key2 = r.body.id;
  line2 = r.body.authorized_keys;
  await page.goto(env.url + `/remote-access.html?key=${key2}`);
  await page.getByRole('button', { name: 'Deploy the key on deploy-dev' }).click();
  const dialog = page.getByRole('dialog', { name: /Deploy e2e-deploy-2 on deploy-dev/ });
  await dialog.getByLabel('Another registered key, already deployed there').check();
  await dialog.getByLabel('Key', { exact: true }).selectOption(String(keyId));
  await dialog.getByRole('button', { name: 'Deploy', exact: true }).click();
  await dialog.locator('#deploy-results [data-result="deployed"]').waitFor();
  await dialog.getByRole('button', { name: 'Close' }).click();
  await page.locator(`tr[data-device-id="${devId}"] td.deployment`).getByText('Deployed').waitFor();
  assert.equal(readFileSync(file(), 'utf8'), `${line}\n${line2}\n`, 'both lines');
});

step('Remote Access: Withdraw from all, a wrong password first', async () => {
  await page.goto(env.url + `/remote-access.html?key=${keyId}`);
  const row = page.locator(`tr[data-device-id="${devId}"] td.deployment`);
  await row.getByText('Deployed').waitFor();
  await page.getByRole('button', { name: 'Withdraw from all' }).click();
  let dialog = page.getByRole('dialog', { name: /Withdraw e2e-deploy/ });
  await dialog.getByLabel(/Password of/).fill(dep.password + '-wrong');
  await dialog.getByRole('button', { name: 'Withdraw', exact: true }).click();
  await dialog.locator('#deploy-results [data-result="auth_failed"]').waitFor();
  await dialog.getByText('Login refused').waitFor();
  await screenshot(page, '78-withdraw-refused');
  await dialog.getByRole('button', { name: 'Close' }).click();
  assert.equal(readFileSync(file(), 'utf8'), `${line}\n${line2}\n`, 'nothing changed');

  await page.getByRole('button', { name: 'Withdraw from all' }).click();
  dialog = page.getByRole('dialog', { name: /Withdraw e2e-deploy/ });
  await dialog.getByLabel(/Password of/).fill(dep.password);
  await dialog.getByRole('button', { name: 'Withdraw', exact: true }).click();
  await dialog.locator('#deploy-results [data-result="withdrawn"]').waitFor();
  await screenshot(page, '79-withdrawn');
  await dialog.getByRole('button', { name: 'Close' }).click();
  await row.getByText('Refused').waitFor();
  assert.equal(readFileSync(file(), 'utf8'), line2 + '\n', 'only that line is gone');
});

step('clean up: the key and the device go', async () => {
  for (const p of [`/api/keys/${keyId}`, `/api/keys/${key2}`, `/api/devices/${devId}`]) {
    assert.equal((await apiCall(page, 'DELETE', p)).status, 200, p);
  }
});

step('no error on the console', async () => {
  assert.deepEqual(b.problems.filter(p => !/status of 401/.test(p)), []);
});
