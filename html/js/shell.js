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
    productsMenu(),
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

  labelCells(document.getElementById('main'));

  if (adminOnly && !me.admin) {
    document.getElementById('main').replaceChildren(
      h('div', { class: 'banner error', role: 'alert' }, 'This page is for administrators.'));
    await new Promise(() => {}); // the page stops here
  }
  return me;
}

// The Products menu of the navigation bar (hover or click): PAM Core is
// the product this console is; the menu says so where the product
// document tells people to look for it.
function productsMenu() {
  const items = [h('a', { role: 'menuitem', href: 'keys.html', 'aria-current': 'page' }, 'PAM Core')];
  const menu = h('div', { role: 'menu', id: 'products-menu', 'aria-label': 'Products', hidden: true }, items);
  const btn = h('button', { type: 'button', class: 'products', 'aria-haspopup': 'menu',
                            'aria-expanded': 'false', 'aria-controls': 'products-menu' },
    'Products', h('span', { 'aria-hidden': 'true' }, '▾'));
  const wrap = h('div', { class: 'menu-wrap products-wrap' }, btn, menu);
  const open = show => {
    menu.hidden = !show;
    btn.setAttribute('aria-expanded', String(show));
  };
  btn.addEventListener('click', () => {
    open(menu.hidden);
    if (!menu.hidden) items[0].focus();
  });
  wrap.addEventListener('mouseenter', () => open(true));
  wrap.addEventListener('mouseleave', () => { if (!wrap.contains(document.activeElement)) open(false); });
  wrap.addEventListener('focusout', ev => { if (!wrap.contains(ev.relatedTarget)) open(false); });
  wrap.addEventListener('keydown', ev => {
    if (ev.key === 'Escape' && !menu.hidden) { open(false); btn.focus(); }
  });
  return wrap;
}

// On a narrow window the tables become cards, one row per card, and each
// cell shows its column's name (CSS: td::before { content: attr(data-label) }).
// Rows are drawn by the pages at any time: label them as they come.
function labelCells(root) {
  const label = () => {
    for (const table of root.querySelectorAll('table')) {
      const heads = [...table.querySelectorAll('thead th')].map(th => th.textContent.trim());
      for (const tr of table.querySelectorAll('tbody tr')) {
        [...tr.children].forEach((td, i) => {
          if (heads[i] && td.dataset.label !== heads[i]) td.dataset.label = heads[i];
        });
      }
    }
  };
  label();
  new MutationObserver(label).observe(root, { childList: true, subtree: true });
}
