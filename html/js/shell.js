// The console frame: top bar (product, user, Log out) and side menu
// (Credentials > SSH > SSH Keys, and the administration pages).  Every
// page calls mountShell() first; it answers the logged-in user (/api/me)
// or goes to the login page.
import { get, post, h } from './api.js';

const NAV = [
  { group: 'Credentials', sub: 'SSH', items: [{ href: 'keys.html', label: 'SSH Keys', id: 'keys' }] },
  { group: 'Sessions', items: [{ href: 'sessions.html', label: 'Session audit', id: 'sessions' }] },
  { group: 'Administration', admin: true, items: [
    { href: 'devices.html', label: 'Devices', id: 'devices' },
    { href: 'groups.html', label: 'Access groups', id: 'groups' },
    { href: 'users.html', label: 'Users', id: 'users' },
  ] },
];

export async function mountShell(active, { adminOnly = false } = {}) {
  const me = await get('/api/me');

  const top = document.getElementById('topbar');
  const logout = h('button', { type: 'button', id: 'logout' }, 'Log out');
  logout.addEventListener('click', async () => {
    logout.disabled = true;
    try { await post('/api/logout', {}, { redirect: false }); } catch { /* gone anyway */ }
    location.assign('login.html');
  });
  top.replaceChildren(
    h('a', { class: 'brand', href: 'keys.html' }, 'Segura'),
    h('span', { class: 'product' }, 'PAM Core'),
    h('span', { class: 'spacer' }),
    h('span', { class: 'who', id: 'whoami' },
      'Signed in as ', h('strong', {}, me.display_name || me.username),
      me.admin ? h('span', { class: 'role' }, 'Administrator') : null),
    logout);

  const nav = document.getElementById('sidenav');
  const root = h('ul');
  for (const g of NAV) {
    if (g.admin && !me.admin) continue;
    const links = h('ul', {}, g.items.map(i => h('li', {},
      h('a', { href: i.href, 'aria-current': i.id === active ? 'page' : null }, i.label))));
    root.append(h('li', {}, h('div', { class: 'group' }, g.group),
      g.sub ? h('div', { class: 'sub' }, g.sub) : null, links));
  }
  nav.replaceChildren(root);

  if (adminOnly && !me.admin) {
    document.getElementById('main').replaceChildren(
      h('div', { class: 'banner error', role: 'alert' }, 'This page is for administrators.'));
    await new Promise(() => {}); // the page stops here
  }
  return me;
}
