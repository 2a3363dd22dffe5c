import { post, get, param, banner, errorText } from './api.js';

const form = document.getElementById('login-form');
const err = document.getElementById('login-error');

function next() {
  const n = param('next');
  // only a path of this site
  return n && n.startsWith('/') && !n.startsWith('//') ? n : 'keys.html';
}

// already logged in: go on
get('/api/me', { redirect: false }).then(() => location.replace(next())).catch(() => {});

form.addEventListener('submit', async ev => {
  ev.preventDefault();
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) {
    banner(err, 'error', 'Enter your user name and password.');
    return;
  }
  const btn = document.getElementById('login-submit');
  btn.disabled = true;
  banner(err, 'error', '');
  try {
    await post('/api/login', { username, password }, { redirect: false });
    location.assign(next());
  } catch (e) {
    if (e.status === 429) banner(err, 'error', 'Too many failed attempts for this user name or from this address: wait a while and try again.');
    else banner(err, 'error', errorText(e));
    form.password.value = '';
    form.password.focus();
  } finally {
    btn.disabled = false;
  }
});
