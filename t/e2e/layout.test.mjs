// Every screen at 1280x800, 1024x768 and on a narrow window (400 px): nothing wider
// than the window, nothing cut; and the keyboard alone reaches what the
// mouse does (skip link, the Products and Actions menus, the tabs, the
// Devices modal).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env, launch, login, keygen, apiCall, screenshot, story } from './lib.mjs';

let b, page;
before(async () => { b = await launch(); page = b.page; await login(page); });
after(async () => { await b?.close(); });
const step = story(test, () => page);

let keyId;

// what overflows the window: the page itself, or an element that sticks
// out of the viewport or of its panel on the right (a cut cell, a button
// pushed off)
async function overflow() {
  return page.evaluate(() => {
    const w = document.documentElement.clientWidth;
    const out = [];
    if (document.documentElement.scrollWidth > w + 1) out.push(`page ${document.documentElement.scrollWidth} > ${w}`);
    for (const el of document.querySelectorAll('main *, header *, nav *')) {
      const r = el.getBoundingClientRect();
      if (!r.width || getComputedStyle(el).visibility === 'hidden') continue;
      if (el.closest('[hidden], dialog:not([open]), .skip')) continue;
      const name = `${el.tagName.toLowerCase()}#${el.id}.${el.className}`;
      if (r.right > w + 1) out.push(`${name} right ${Math.round(r.right)} > ${w}`);
      // nor out of its panel (a table wider than its box)
      const panel = el.parentElement?.closest('.panel');
      if (panel && r.right > panel.getBoundingClientRect().right + 1) out.push(`${name} sticks out of its panel`);
    }
    return out.slice(0, 5);
  });
}

const PAGES = [
  ['keys', 'keys.html', 'SSH keys'],
  ['key-edit', 'key-edit.html', 'SSH Key registration'],
  ['remote-access', null, 'SSH Keys: Remote Access'],
  ['devices', 'devices.html', 'Devices'],
  ['groups', 'groups.html', 'Access groups'],
  ['users', 'users.html', 'Users'],
  ['sessions', 'sessions.html', 'Session audit'],
];

step('data to show', async () => {
  const dev = await apiCall(page, 'POST', '/api/devices', {
    name: 'layout-device-with-a-long-name', address: 'a-rather-long-host-name.example.internal',
    port: 2222, tags: ['prod', 'eu-west', 'database'], description: 'The primary database of the billing system' });
  assert.equal(dev.status, 201, JSON.stringify(dev.body));
  const k = keygen('ed25519');
  const key = await apiCall(page, 'POST', '/api/keys', {
    name: 'layout-key', owner: 'platform team', username: 'deploy', tags: ['prod', 'billing'],
    private_key: k.priv, main_device: dev.body.id });
  assert.equal(key.status, 201, JSON.stringify(key.body));
  keyId = key.body.id;
  PAGES[2][1] = `remote-access.html?key=${keyId}`;
  // a group with every permission (the widest row of its page), no members
  const g = await apiCall(page, 'POST', '/api/groups', {
    name: 'layout-group-with-every-permission', description: 'for the layout test',
    permissions: { use_credentials: true, access_devices: true, remote_session: true },
    members: [], keys: [keyId], devices: [dev.body.id] });
  assert.equal(g.status, 201, JSON.stringify(g.body));
});

// the login page, in a browser of its own (this one is logged in, and the
// login page sends a logged-in user on)
step('the login card sits in the middle of the window at every size', async () => {
  const lb = await launch();
  try {
    for (const [w, h, tag] of [[1280, 800, 'wide'], [1024, 768, 'mid'], [400, 780, 'narrow']]) {
      await lb.page.setViewportSize({ width: w, height: h });
      await lb.page.goto(env.url + '/login.html');
      await lb.page.getByRole('button', { name: 'Log in' }).waitFor();
      const card = await lb.page.locator('.login-card').boundingBox();
      const dx = Math.abs(card.x + card.width / 2 - w / 2);
      const dy = Math.abs(card.y + card.height / 2 - h / 2);
      assert.ok(dx < 2 && dy < 2, `the login card is centred at ${w}x${h} (off by ${dx}, ${dy})`);
      assert.ok(card.x >= 0 && card.x + card.width <= w, `and fits at ${w}x${h}`);
      await screenshot(lb.page, `29-${tag}-login`);
    }
  } finally {
    await lb.close();
  }
});

for (const [w, h, tag] of [[1280, 800, 'wide'], [1024, 768, 'mid'], [400, 780, 'narrow']]) {
  step(`every screen at ${w}x${h} fits the window`, async () => {
    await page.setViewportSize({ width: w, height: h });
    for (const [name, path, heading] of PAGES) {
      await page.goto(env.url + '/' + path);
      await page.getByRole('heading', { name: heading, exact: true }).waitFor();
      await page.waitForLoadState('networkidle');
      if (name === 'keys' || name === 'remote-access') await page.locator('tbody tr').first().waitFor();
      assert.deepEqual(await overflow(), [], `${name} at ${w}x${h}`);
      await screenshot(page, `30-${tag}-${name}`);
    }
    // the registration tabs, each
    await page.goto(env.url + '/key-edit.html');
    for (const t of ['Key data', 'Devices', 'Review']) {
      await page.getByRole('tab', { name: t }).click();
      assert.deepEqual(await overflow(), [], `key-edit ${t} at ${w}x${h}`);
      await screenshot(page, `31-${tag}-key-edit-${t.replace(' ', '-').toLowerCase()}`);
    }
    // a dialog
    await page.goto(env.url + '/devices.html');
    await page.getByRole('button', { name: 'Add' }).click();
    const d = page.getByRole('dialog', { name: 'Add device' });
    await d.waitFor();
    const box = await d.boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= w, `the dialog fits: ${JSON.stringify(box)}`);
    await screenshot(page, `32-${tag}-dialog`);
    await page.keyboard.press('Escape');
    await d.waitFor({ state: 'hidden' });
  });
}

step('narrow: the menu and a key row read as cards', async () => {
  await page.setViewportSize({ width: 400, height: 780 });
  await page.goto(env.url + '/keys.html');
  const row = page.locator('#keys-body tr', { hasText: 'layout-key' });
  await row.waitFor();
  // each cell names its column
  assert.equal(await row.locator('td[data-label="Owner"]').textContent(), 'platform team');
  assert.equal(await row.locator('td[data-label="Main device"]').textContent(), 'layout-device-with-a-long-name');
  await row.getByRole('button', { name: 'Actions for layout-key' }).click();
  const menu = page.getByRole('menu', { name: 'Actions for layout-key' });
  const box = await menu.boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= 400, `the Actions menu is on screen: ${JSON.stringify(box)}`);
  await screenshot(page, '33-narrow-actions');
  await page.keyboard.press('Escape');
  await page.setViewportSize({ width: 1360, height: 860 });
});

step('the keyboard alone: skip link, Products and Actions menus', async () => {
  await page.goto(env.url + '/keys.html');
  await page.locator('#keys-body tr').first().waitFor();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'main');

  // Products: Enter opens, the item has focus, Escape gives focus back
  const products = page.getByRole('button', { name: 'Products' });
  await products.focus();
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'PAM Core');
  await page.keyboard.press('Escape');
  assert.equal(await products.getAttribute('aria-expanded'), 'false');
  assert.equal(await page.evaluate(() => document.activeElement.textContent.trim()), 'Products▾');

  // Actions: Enter opens on the first item, arrows move, Escape closes
  const actions = page.getByRole('button', { name: 'Actions for layout-key' });
  await actions.focus();
  await page.keyboard.press('Enter');
  const focused = () => page.evaluate(() => document.activeElement.textContent);
  assert.equal(await focused(), 'Start session with a key');
  await page.keyboard.press('ArrowDown');
  assert.equal(await focused(), 'Edit');
  await page.keyboard.press('ArrowUp');
  await page.keyboard.press('ArrowUp');
  assert.equal(await focused(), 'Delete', 'the arrows wrap around');
  await page.keyboard.press('Escape');
  assert.equal(await actions.getAttribute('aria-expanded'), 'false');
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Actions for layout-key');

  // Enter on the first item follows it
  await page.keyboard.press('Enter');
  await page.keyboard.press('Enter');
  await page.waitForURL(/remote-access\.html\?key=/);
});

step('the keyboard alone: the registration tabs and the Devices modal', async () => {
  await page.goto(env.url + '/key-edit.html');
  const tab = n => page.getByRole('tab', { name: n });
  await tab('Information').focus();
  await page.keyboard.press('ArrowRight');
  assert.equal(await tab('Key data').getAttribute('aria-selected'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-keydata');
  await page.keyboard.press('End');
  assert.equal(await tab('Review').getAttribute('aria-selected'), 'true');
  await page.keyboard.press('Home');
  assert.equal(await tab('Information').getAttribute('aria-selected'), 'true');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await tab('Review').getAttribute('aria-selected'), 'true', 'the arrows wrap around');

  // Devices: Add opens the modal with the search focused; Escape closes it
  await tab('Devices').click();
  await page.getByRole('button', { name: 'Add', exact: true }).focus();
  await page.keyboard.press('Enter');
  const modal = page.getByRole('dialog', { name: 'Devices' });
  await modal.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'modal-filter');
  await page.keyboard.type('layout-device');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Space');
  assert.equal(await modal.getByRole('checkbox', { name: /layout-device/ }).isChecked(), true);
  await page.keyboard.press('Escape');
  await modal.waitFor({ state: 'hidden' });
  assert.equal(await page.locator('#assoc-body tr').count(), 0, 'Escape adds nothing');
  assert.deepEqual(b.problems.filter(p => !/status of (401|403|404|422)/.test(p)), []);
});
