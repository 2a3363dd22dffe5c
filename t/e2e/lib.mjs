// Shared helpers of the browser tests: the stack t/e2e/run started (from
// the environment), Debian's chromium through playwright-core, screenshots.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, appendFileSync, readFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the browser tests through t/e2e/run`);
  return v;
}

export const env = {
  url: need('SEGURA_E2E_URL'),
  admin: need('SEGURA_E2E_ADMIN'),
  password: need('SEGURA_E2E_PASSWORD'),
  sshdPort: Number(need('SEGURA_E2E_SSHD_PORT')),
  sshdUser: need('SEGURA_E2E_SSHD_USER'),
  sshdHostKey: need('SEGURA_E2E_SSHD_HOST_KEY'),
  authorizedKeys: need('SEGURA_E2E_AUTHORIZED_KEYS'),
  tmp: need('SEGURA_E2E_TMP'),
  shots: need('SEGURA_E2E_SCREENSHOTS'),
};

// one browser per test file, with a fresh profile
export async function launch() {
  const profile = mkdtempSync(join(env.tmp, 'chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 60000,
    viewport: { width: 1360, height: 860 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context.setDefaultTimeout(20000);
  context.setDefaultNavigationTimeout(20000);
  // a page that breaks its Content-Security-Policy (tools/ui-headers.conf)
  // says so on the console, which every test file reads
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', e =>
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
  });
  const page = context.pages()[0] || await context.newPage();
  const problems = [];
  page.on('pageerror', e => problems.push(`pageerror: ${e.message}`));
  page.on('console', m => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  return {
    context, page, problems,
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export async function screenshot(page, name) {
  mkdirSync(env.shots, { recursive: true });
  const file = join(env.shots, name.replace(/[^A-Za-z0-9._-]+/g, '_') + '.png');
  await page.screenshot({ path: file, fullPage: true }).catch(() => {});
  return file;
}

// runs fn; on failure keeps a screenshot of the page and rethrows
export async function shotOnFailure(page, name, fn) {
  try {
    return await fn();
  } catch (e) {
    const f = await screenshot(page, 'FAIL-' + name);
    e.message += `\n(screenshot: ${f})`;
    throw e;
  }
}

// steps of one story: each a test; after a failure the rest are skipped
export function story(test, getPage) {
  let broken = null;
  return (name, fn) => test(name, async t => {
    if (broken) { t.skip(`an earlier step failed: ${broken}`); return; }
    try {
      await shotOnFailure(getPage(), name, fn);
    } catch (e) {
      broken = name;
      throw e;
    }
  });
}

export async function login(page, user = env.admin, password = env.password) {
  await page.goto(env.url + '/login.html');
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(/\/keys\.html/);
}

// a fresh key pair made with ssh-keygen; returns { priv, pub, fingerprint, path }
let serial = 0;
export function keygen(type = 'ed25519', { bits, format, passphrase = '', authorize = false } = {}) {
  const path = join(env.tmp, `key-${process.pid}-${++serial}`);
  const args = ['-q', '-t', type, '-N', passphrase, '-C', `e2e-${serial}`, '-f', path];
  if (bits) args.push('-b', String(bits));
  if (format) args.push('-m', format);
  execFileSync('ssh-keygen', args);
  const pub = readFileSync(path + '.pub', 'utf8').trim();
  if (authorize) appendFileSync(env.authorizedKeys, pub + '\n');
  const fingerprint = execFileSync('ssh-keygen', ['-lf', path + '.pub'], { encoding: 'utf8' }).split(' ')[1];
  return { priv: readFileSync(path, 'utf8'), pub, fingerprint, path };
}

// the API, as the logged-in browser (same cookie jar)
export async function apiCall(page, method, path, data) {
  const res = await page.request.fetch(env.url + path, {
    method, data, headers: data ? { 'Content-Type': 'application/json' } : {},
  });
  const body = await res.json().catch(() => null);
  return { status: res.status(), body };
}

// the text on the xterm.js screen (DOM renderer), one string per row
export async function terminalLines(page) {
  return page.$$eval('.xterm-rows > div', rows => rows.map(r => r.textContent.replace(/\u00a0/g, ' ').trimEnd()));
}
