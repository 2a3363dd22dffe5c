// A generic administration page: a table of a collection and a dialog
// form to add, edit and delete its items (devices, access groups, users).
import { get, post, patch, put, del, h, banner, errorText, confirmDialog, ApiError } from './api.js';

// field: { name, label, type: text|number|textarea|select|checkbox|tags|password|picks,
//          options: [[value,label]], hint, required, editHint, source: async () => [[id,label]] }
export async function crudPage(cfg) {
  const msg = document.getElementById('page-msg');
  const tbody = document.getElementById('items-body');
  const empty = document.getElementById('items-empty');
  const dialog = document.getElementById('item-dialog');
  const form = document.getElementById('item-form');
  const title = document.getElementById('item-dialog-title');
  const formMsg = document.getElementById('item-form-msg');
  let editing = null;
  let sources = {};

  document.getElementById('add-item').addEventListener('click', () => open(null));
  document.getElementById('item-cancel').addEventListener('click', () => dialog.close());

  function control(f, item) {
    const id = 'f-' + f.name;
    const v = item ? f.get ? f.get(item) : item[f.name] : f.default;
    const hintId = id + '-hint';
    const hint = (item && f.editHint) || f.hint;
    let input;
    if (f.type === 'checkbox') {
      input = h('input', { type: 'checkbox', id, name: f.name, checked: !!v });
      return h('div', { class: 'field' }, h('label', { class: 'check' }, input, f.label),
               hint ? h('div', { class: 'hint', id: hintId }, hint) : null);
    }
    if (f.type === 'picks') {
      const chosen = new Set(v || []);
      const list = (sources[f.name] || []).map(([val, label]) => h('li', {},
        h('label', { class: 'check' }, h('input', { type: 'checkbox', name: f.name, value: val, checked: chosen.has(val) }), label)));
      return h('fieldset', { class: 'field', id, style: 'border:1px solid var(--line);border-radius:6px;padding:8px 12px' },
        h('legend', { style: 'font-weight:600;font-size:13px' }, f.label),
        list.length ? h('ul', { class: 'picks', style: 'list-style:none;margin:0;padding:0;max-height:140px;overflow:auto' }, list)
                    : h('div', { class: 'hint' }, 'None registered yet.'));
    }
    if (f.type === 'select') {
      input = h('select', { id, name: f.name }, f.options.map(([val, label]) =>
        h('option', { value: val, selected: String(v ?? f.default) === String(val) }, label)));
    } else if (f.type === 'textarea') {
      input = h('textarea', { id, name: f.name, rows: 3, spellcheck: 'false' });
      input.value = v ?? '';
    } else {
      input = h('input', { id, name: f.name, type: f.type === 'password' ? 'password' : f.type === 'number' ? 'number' : 'text',
                           autocomplete: f.type === 'password' ? 'new-password' : 'off' });
      input.value = f.type === 'tags' ? (v || []).join(', ') : f.type === 'password' ? '' : (v ?? '');
    }
    if (hint) input.setAttribute('aria-describedby', hintId);
    return h('div', { class: 'field' }, h('label', { for: id }, f.label), input,
             hint ? h('div', { class: 'hint', id: hintId }, hint) : null);
  }

  async function open(item) {
    editing = item;
    banner(formMsg, 'error', '');
    for (const f of cfg.fields) if (f.source) sources[f.name] = await f.source();
    title.textContent = item ? `Edit ${cfg.noun}: ${item[cfg.titleField || 'name']}` : `Add ${cfg.noun}`;
    document.getElementById('item-fields').replaceChildren(...cfg.fields.map(f => control(f, item)));
    dialog.showModal();
    form.querySelector('input, select, textarea')?.focus();
  }

  function read() {
    const out = {};
    for (const f of cfg.fields) {
      const el = form.elements[f.name];
      if (f.type === 'checkbox') out[f.name] = el.checked;
      else if (f.type === 'picks') out[f.name] = [...form.querySelectorAll(`input[name="${f.name}"]:checked`)].map(c => Number(c.value));
      else if (f.type === 'tags') out[f.name] = el.value.split(',').map(x => x.trim()).filter(Boolean);
      else if (f.type === 'number') { if (el.value.trim() !== '') out[f.name] = Number(el.value); }
      else if (f.type === 'password') { if (el.value) out[f.name] = el.value; }
      else out[f.name] = el.value.trim();
    }
    return cfg.toBody ? cfg.toBody(out, editing) : out;
  }

  function fieldError(field, text) {
    const base = field.replace(/\[.*$/, '').split('.')[0];
    const el = document.getElementById('f-' + base);
    if (!el) return false;
    const box = el.closest('.field') || el;
    box.querySelector('.error')?.remove();
    const err = h('div', { class: 'error', id: 'f-' + base + '-error' }, text);
    box.append(err);
    el.setAttribute('aria-invalid', 'true');
    el.setAttribute('aria-describedby', [el.getAttribute('aria-describedby'), err.id].filter(Boolean).join(' '));
    el.focus();
    err.scrollIntoView({ block: 'nearest' });
    return true;
  }

  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    for (const e of form.querySelectorAll('.error')) e.remove();
    for (const e of form.querySelectorAll('[aria-invalid]')) e.removeAttribute('aria-invalid');
    banner(formMsg, 'error', '');
    const body = read();
    try {
      const method = editing ? (cfg.editMethod === 'PUT' ? put : patch) : post;
      const saved = editing ? await method(`${cfg.path}/${editing.id}`, body) : await post(cfg.path, body);
      dialog.close();
      banner(msg, 'ok', `${cfg.Noun} "${saved[cfg.titleField || 'name']}" saved.`);
      await load();
    } catch (e) {
      const text = e.code === 'conflict' ? 'This name is already taken.' : errorText(e);
      if (!(e instanceof ApiError && e.field && fieldError(e.field, text))) banner(formMsg, 'error', text);
    }
  });

  async function remove(item) {
    const name = item[cfg.titleField || 'name'];
    if (!await confirmDialog(`Delete ${cfg.noun}`, `Delete the ${cfg.noun} "${name}"?`)) return;
    try {
      await del(`${cfg.path}/${item.id}`);
      banner(msg, 'ok', `${cfg.Noun} "${name}" deleted.`);
      await load();
    } catch (e) {
      banner(msg, 'error', errorText(e));
    }
  }

  async function load() {
    let data;
    try { data = await get(cfg.path); } catch (e) { banner(msg, 'error', errorText(e)); return; }
    const ctx = cfg.context ? await cfg.context() : {};
    tbody.replaceChildren(...data.items.map(item => h('tr', { dataset: { id: item.id } },
      cfg.columns.map(c => h('td', { class: c.class }, c.render(item, ctx))),
      h('td', { class: 'actions' },
        h('button', { type: 'button', onclick: () => open(item), 'aria-label': `Edit ${item[cfg.titleField || 'name']}` }, 'Edit'), ' ',
        h('button', { type: 'button', class: 'danger', onclick: () => remove(item), 'aria-label': `Delete ${item[cfg.titleField || 'name']}` }, 'Delete')))));
    empty.hidden = data.items.length > 0;
  }

  await load();
}

// the page skeleton every administration page shares
export function crudSkeleton(heading, noun, columns) {
  document.getElementById('main').replaceChildren(
    h('p', { class: 'breadcrumb' }, 'Administration › ' + heading),
    h('div', { class: 'pagehead' }, h('h1', {}, heading), h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'primary', id: 'add-item', 'aria-haspopup': 'dialog' }, 'Add')),
    h('div', { id: 'page-msg', hidden: true }),
    h('section', { class: 'panel', 'aria-label': heading },
      h('table', {}, h('thead', {}, h('tr', {}, columns.map(c => h('th', { scope: 'col' }, c)),
        h('th', { scope: 'col' }, h('span', { class: 'skip' }, 'Actions')))), h('tbody', { id: 'items-body' })),
      h('div', { class: 'empty', id: 'items-empty', hidden: true }, `No ${noun}s yet.`)),
    h('dialog', { id: 'item-dialog', 'aria-labelledby': 'item-dialog-title' },
      h('form', { id: 'item-form', novalidate: true, autocomplete: 'off' },
        h('header', { id: 'item-dialog-title' }),
        h('div', { class: 'body' }, h('div', { id: 'item-form-msg', hidden: true }), h('div', { id: 'item-fields' })),
        h('footer', {}, h('button', { type: 'button', id: 'item-cancel' }, 'Cancel'),
          h('button', { type: 'submit', class: 'primary' }, 'Save')))));
}
