import { get, h } from './api.js';
import { mountShell } from './shell.js';
import { crudPage, crudSkeleton } from './crud.js';

await mountShell('groups', { adminOnly: true });
crudSkeleton('Access groups', 'access group', ['Name', 'Permissions', 'Members', 'SSH keys', 'Devices']);

const PERMS = [['use_credentials', 'Use credentials'], ['access_devices', 'Access devices'], ['remote_session', 'Remote sessions'], ['audit_sessions', 'Audit sessions']];
const names = async (path, label) => (await get(path)).items.map(x => [x.id, label(x)]);
const lookup = async () => ({
  users: new Map((await get('/api/users')).items.map(u => [u.id, u.username])),
  keys: new Map((await get('/api/keys')).items.map(k => [k.id, k.name])),
  devices: new Map((await get('/api/devices')).items.map(d => [d.id, d.name])),
});
const list = (ids, map) => (ids || []).map(i => h('span', { class: 'tag' }, map.get(i) ?? `#${i}`));

await crudPage({
  path: '/api/groups', noun: 'access group', Noun: 'Access group', editMethod: 'PUT',
  context: lookup,
  columns: [
    { render: g => h('strong', {}, g.name) },
    { render: g => PERMS.filter(([p]) => g.permissions?.[p]).map(([, l]) => h('span', { class: 'pill ok', style: 'margin-right:4px' }, l)) },
    { render: (g, c) => list(g.members, c.users) },
    { render: (g, c) => list(g.keys, c.keys) },
    { render: (g, c) => list(g.devices, c.devices) },
  ],
  fields: [
    { name: 'name', label: 'Group name' },
    { name: 'description', label: 'Description' },
    ...PERMS.map(([p, l]) => ({ name: p, label: l, type: 'checkbox', get: g => g.permissions?.[p] })),
    { name: 'members', label: 'Members', type: 'picks', source: () => names('/api/users', u => u.username) },
    { name: 'keys', label: 'SSH keys', type: 'picks', source: () => names('/api/keys', k => k.name) },
    { name: 'devices', label: 'Devices', type: 'picks', source: () => names('/api/devices', d => `${d.name} (${d.address})`) },
  ],
  toBody: b => ({
    name: b.name, description: b.description,
    permissions: Object.fromEntries(PERMS.map(([p]) => [p, b[p]])),
    members: b.members, keys: b.keys, devices: b.devices,
  }),
});
