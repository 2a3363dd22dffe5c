import { h, statusPill } from './api.js';
import { mountShell } from './shell.js';
import { crudPage, crudSkeleton } from './crud.js';

await mountShell('users', { adminOnly: true });
crudSkeleton('Users', 'user', ['User name', 'Display name', 'Role', 'Status', 'Password']);
await crudPage({
  path: '/api/users', noun: 'user', Noun: 'User', titleField: 'username',
  columns: [
    { render: u => h('strong', {}, u.username) },
    { render: u => u.display_name || '—' },
    { render: u => u.admin ? 'Administrator' : 'User' },
    { render: u => statusPill(u.status) },
    { render: u => u.has_password ? 'Set' : h('span', { class: 'reason' }, 'none') },
  ],
  fields: [
    { name: 'username', label: 'User name' },
    { name: 'display_name', label: 'Display name' },
    { name: 'password', label: 'Password', type: 'password', hint: '8 characters or more.',
      editHint: 'Leave empty to keep the current password.' },
    { name: 'admin', label: 'Administrator', type: 'checkbox' },
    { name: 'status', label: 'Status', type: 'select', options: [['active', 'Active'], ['inactive', 'Inactive']], default: 'active' },
  ],
  toBody: (b, editing) => {
    if (!editing) return b;
    // only what changed: an administrator may not demote or deactivate themselves
    const out = {};
    for (const [k, v] of Object.entries(b)) if (k === 'password' || v !== editing[k]) out[k] = v;
    return out;
  },
});
