// Watching and moderating a live session in the browser: the Session audit
// offers Watch for a live session; the watcher's page is the terminal,
// read only, with a banner naming whose session it is; what the session
// prints appears on it; the owner's page says it is watched; Lock drops
// the owner's keystrokes and both pages say so; Unlock restores them; End
// with a message closes the owner's terminal with the message shown.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env, launch, login, keygen, apiCall, terminalLines, screenshot, story } from './lib.mjs';

let b, owner, watcher;
before(async () => {
  b = await launch();
  owner = b.page;
  await login(owner);
});
after(async () => { await b?.close(); });
const step = story(test, () => watcher || owner);

const ids = {};

const rows = p => terminalLines(p).then(l => l.map(r => r.trim()));

async function waitRow(p, text, timeout = 20000) {
  await p.waitForFunction(t => [...document.querySelectorAll('.xterm-rows > div')]
    .some(r => r.textContent.replace(/\u00a0/g, ' ').trim() === t), text, { timeout })
    .catch(async e => {
      e.message += `\nscreen:\n${(await rows(p)).filter(Boolean).join('\n')}`;
      throw e;
    });
}

async function waitPrompt(p) {
  await p.waitForFunction(() => {
    const r = [...document.querySelectorAll('.xterm-rows > div')]
      .map(x => x.textContent.replace(/\u00a0/g, ' ').trimEnd()).filter(Boolean);
    return r.length && /[#$] ?$/.test(r[r.length - 1]);
  }, null, { timeout: 20000 });
}

async function run(cmd) {
  await waitPrompt(owner);
  await owner.locator('.xterm-helper-textarea').focus();
  await owner.keyboard.type(cmd, { delay: 5 });
  await owner.keyboard.press('Enter');
}

step('set-up: a device, a deployed key, a group, and a session of the administrator', async () => {
  const key = keygen('ed25519', { authorize: true });
  const d = await apiCall(owner, 'POST', '/api/devices', {
    name: 'watch-sshd', address: '127.0.0.1', port: env.sshdPort, host_key: env.sshdHostKey });
  assert.equal(d.status, 201, JSON.stringify(d.body));
  ids.device = d.body.id;
  const k = await apiCall(owner, 'POST', '/api/keys', {
    name: 'watch-ed25519', username: env.sshdUser, private_key: key.priv,
    main_device: ids.device, devices: [ids.device] });
  assert.equal(k.status, 201, JSON.stringify(k.body));
  ids.key = k.body.id;
  const me = (await apiCall(owner, 'GET', '/api/me')).body;
  const g = await apiCall(owner, 'POST', '/api/groups', {
    name: 'watch-operators', permissions: { use_credentials: true, access_devices: true, remote_session: true },
    members: [me.id], keys: [ids.key], devices: [ids.device] });
  assert.equal(g.status, 201, JSON.stringify(g.body));
  await owner.goto(env.url + `/terminal.html?key=${ids.key}&device=${ids.device}`);
  await owner.locator('#term-state').filter({ hasText: 'Connected' }).waitFor({ timeout: 30000 });
  await run('echo before-$((20+1))');
  await waitRow(owner, 'before-21');
});

step('the Session audit offers Watch; the watcher sees the screen, read only', async () => {
  watcher = await b.context.newPage();
  await watcher.goto(env.url + '/sessions.html');
  const live = watcher.locator('#sessions-body tr', { hasText: 'Live' }).filter({ hasText: 'watch-sshd' });
  await live.waitFor();
  const link = live.getByRole('link', { name: /^Watch the session of / });
  const href = await link.getAttribute('href');
  assert.match(href, /^terminal\.html\?watch=[0-9a-f-]{36}$/);
  await screenshot(watcher, '70-sessions-watch');
  await watcher.goto(env.url + '/' + href);
  await watcher.locator('#term-state').filter({ hasText: 'Watching' }).waitFor({ timeout: 20000 });
  await watcher.locator('#term-notice').filter({ hasText: `Watching the session of ${env.admin} on watch-sshd` }).waitFor();
  await waitRow(watcher, 'before-21');
  await owner.locator('#term-notice').filter({ hasText: 'You are being watched' }).waitFor({ timeout: 10000 });
  await run('echo live-$((6*7))');
  await waitRow(watcher, 'live-42');
  // typing on the watcher's page sends nothing
  await watcher.locator('.xterm-helper-textarea').focus();
  await watcher.keyboard.type('echo from-the-watcher\n');
  await run('echo still-$((2+2))');
  await waitRow(owner, 'still-4');
  await waitRow(watcher, 'still-4');
  assert.ok(!(await rows(owner)).some(r => r.includes('from-the-watcher')), 'the watcher typed nothing into the session');
  assert.equal(await watcher.locator('#term-banner').isVisible(), false, 'no error on the watcher page');
  await screenshot(watcher, '71-terminal-watching');
  await screenshot(owner, '72-terminal-watched');
});

step('Lock drops the owner\'s keys and both pages say so; Unlock restores them', async () => {
  await watcher.getByRole('button', { name: 'Lock input' }).click();
  await owner.locator('#term-notice').filter({ hasText: `Input locked by ${env.admin}` }).waitFor({ timeout: 10000 });
  await watcher.getByRole('button', { name: 'Unlock input' }).waitFor();
  await watcher.locator('#term-notice').filter({ hasText: 'input is locked' }).waitFor();
  await screenshot(owner, '73-terminal-locked');
  await owner.locator('.xterm-helper-textarea').focus();
  await owner.keyboard.type('echo typed-while-locked', { delay: 5 });
  await owner.keyboard.press('Enter');
  await watcher.getByRole('button', { name: 'Unlock input' }).click();
  await watcher.getByRole('button', { name: 'Lock input' }).waitFor();
  await owner.waitForFunction(() => !document.getElementById('term-notice').textContent.includes('locked'),
    null, { timeout: 10000 });
  await run('echo unlocked-$((5*5))');
  await waitRow(owner, 'unlocked-25');
  await waitRow(watcher, 'unlocked-25');
  assert.ok(!(await rows(owner)).some(r => r.includes('typed-while-locked')), 'the keys typed while locked never reached the shell');
});

step('End with a message: the owner\'s terminal closes with the message', async () => {
  await watcher.getByRole('button', { name: 'End session' }).click();
  const d = watcher.getByRole('dialog', { name: 'End session' });
  await d.getByLabel('Message for the user:').fill('Maintenance now, back at 18:00');
  await screenshot(watcher, '74-watch-end-dialog');
  await d.getByRole('button', { name: 'End session' }).click();
  await owner.locator('#term-banner')
    .filter({ hasText: 'An administrator ended this session. Their message: “Maintenance now, back at 18:00”' })
    .waitFor({ timeout: 20000 });
  await owner.locator('#term-state').filter({ hasText: 'Disconnected' }).waitFor();
  await watcher.locator('#term-banner').filter({ hasText: 'Maintenance now, back at 18:00' }).waitFor({ timeout: 20000 });
  await screenshot(owner, '75-terminal-ended-with-message');
});
