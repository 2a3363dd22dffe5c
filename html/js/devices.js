import { h, statusPill, tagList } from './api.js';
import { mountShell } from './shell.js';
import { crudPage, crudSkeleton } from './crud.js';

await mountShell('devices', { adminOnly: true });
crudSkeleton('Devices', 'device', ['Name', 'Address', 'Status', 'Tags', 'Host key']);
await crudPage({
  path: '/api/devices', noun: 'device', Noun: 'Device',
  columns: [
    { render: d => h('strong', {}, d.name) },
    { class: 'mono', render: d => `${d.address}:${d.port}` },
    { render: d => statusPill(d.status) },
    { render: d => tagList(d.tags) },
    { class: 'fp', render: d => d.host_key_fingerprint || h('span', { class: 'reason' }, 'not pinned') },
  ],
  fields: [
    { name: 'name', label: 'Device name' },
    { name: 'description', label: 'Description' },
    { name: 'address', label: 'Address', hint: 'Host name or IP address.' },
    { name: 'port', label: 'Port', type: 'number', default: 22 },
    { name: 'status', label: 'Status', type: 'select', options: [['active', 'Active'], ['inactive', 'Inactive']], default: 'active' },
    { name: 'tags', label: 'Tags', type: 'tags', hint: 'Separate tags with commas.' },
    { name: 'host_key', label: 'Host key', type: 'textarea',
      hint: 'The device\'s public host key line (ssh-keyscan), pinned. Empty: not pinned.' },
  ],
  toBody: (b) => ({ ...b, host_key: b.host_key ? b.host_key : null }),
});
