// <pl-saved-replies id="saved-replies">: the settings page's saved replies
// (canned answers) of one site, for every agent with access to it: a list
// with edit and delete, and a form to add one. In the chat, typing "/" and
// the shortcut inserts the text.

import { h } from './dom.js';
import { createReply, deleteReply, savedReplies, updateReply, CHANGED } from './saved-replies.js';

class PlSavedReplies extends HTMLElement {
  constructor() {
    super();
    this.sites = [];
    this.siteKey = null;
    this.editing = null; // id of the reply in the form, or null for a new one
    this.onChanged = (e) => {
      if (e.detail && e.detail.site === this.siteKey) this.load();
    };
  }

  setup(me) {
    this.sites = (me && Array.isArray(me.sites) ? me.sites : []).filter((s) => s && typeof s.key === 'string');
    this.siteKey = this.sites.length ? this.sites[0].key : null;
    if (!this.list) this.build();
    this.siteSel.replaceChildren(...this.sites.map((s) => h('option', { value: s.key, text: s.name || s.key })));
    this.siteSel.value = this.siteKey || '';
    this.siteSel.parentElement.hidden = this.sites.length < 2;
  }

  connectedCallback() {
    if (!this.list) this.build();
    window.addEventListener(CHANGED, this.onChanged);
    this.load();
  }

  disconnectedCallback() {
    window.removeEventListener(CHANGED, this.onChanged);
  }

  build() {
    this.id = 'saved-replies';
    this.classList.add('settings-section');
    this.siteSel = h('select', { id: 'replies-site', class: 'select-sm', onchange: () => { this.siteKey = this.siteSel.value; this.reset(); this.load(); } });
    this.list = h('ul', { id: 'replies-list', class: 'replies-list' });
    this.shortcut = h('input', { id: 'reply-shortcut', class: 'dialog-input', type: 'text', maxlength: '33', placeholder: 'shortcut, e.g. pricing', autocomplete: 'off', spellcheck: 'false' });
    this.text = h('textarea', { id: 'reply-text', class: 'dialog-text', rows: '3', maxlength: '5000', placeholder: 'The reply your team inserts with /shortcut' });
    this.saveBtn = h('button', { id: 'reply-save', class: 'btn btn-primary btn-sm', type: 'submit', text: 'Add reply' });
    this.cancelBtn = h('button', { id: 'reply-cancel', class: 'btn btn-sm', type: 'button', text: 'Cancel', hidden: true, onclick: () => this.reset() });
    this.status = h('p', { id: 'reply-status', class: 'form-error', role: 'alert', hidden: true });
    this.form = h(
      'form',
      { id: 'reply-form', class: 'reply-form', onsubmit: (e) => { e.preventDefault(); this.save(); } },
      h('label', { for: 'reply-shortcut', text: 'Shortcut' }),
      this.shortcut,
      h('label', { for: 'reply-text', text: 'Text' }),
      this.text,
      this.status,
      h('div', { class: 'dialog-actions' }, this.cancelBtn, this.saveBtn),
    );
    this.append(
      h('h2', { text: 'Saved replies' }),
      h('p', { class: 'muted', text: 'Canned answers for the chat: type / and the shortcut in the composer, or pick one when you open a conversation.' }),
      h('label', { class: 'replies-site' }, 'Site ', this.siteSel),
      this.list,
      this.form,
    );
  }

  async load() {
    const site = this.siteKey;
    if (!site) return;
    const replies = await savedReplies(site);
    if (site !== this.siteKey) return;
    this.list.replaceChildren(
      ...(replies.length
        ? replies.map((r) =>
          h(
            'li',
            { class: 'reply-item', dataset: { replyId: String(r.id), shortcut: r.shortcut } },
            h('code', { class: 'reply-shortcut', text: `/${r.shortcut}` }),
            h('span', { class: 'reply-text', text: r.text }),
            h('button', { class: 'btn btn-xs reply-edit', type: 'button', text: 'Edit', onclick: () => this.edit(r) }),
            h('button', { class: 'btn btn-xs btn-danger-ghost reply-delete', type: 'button', text: 'Delete', onclick: () => this.remove(r) }),
          ))
        : [h('li', { class: 'muted', id: 'replies-empty', text: 'No saved replies yet.' })]),
    );
  }

  edit(r) {
    this.editing = r.id;
    this.shortcut.value = r.shortcut;
    this.text.value = r.text;
    this.saveBtn.textContent = 'Save reply';
    this.cancelBtn.hidden = false;
    this.shortcut.focus();
  }

  reset() {
    this.editing = null;
    this.shortcut.value = '';
    this.text.value = '';
    this.saveBtn.textContent = 'Add reply';
    this.cancelBtn.hidden = true;
    this.showError('');
  }

  showError(msg) {
    this.status.textContent = msg;
    this.status.hidden = !msg;
  }

  async save() {
    const site = this.siteKey;
    if (!site) return;
    this.saveBtn.disabled = true;
    this.showError('');
    try {
      if (this.editing != null) await updateReply(site, this.editing, this.shortcut.value, this.text.value);
      else await createReply(site, this.shortcut.value, this.text.value);
      this.reset();
    } catch (e) {
      if (e.status !== 401) this.showError(e.message);
    } finally {
      this.saveBtn.disabled = false;
    }
  }

  async remove(r) {
    try {
      await deleteReply(this.siteKey, r.id);
      if (this.editing === r.id) this.reset();
    } catch (e) {
      if (e.status !== 401) this.showError(e.message);
    }
  }
}

if (!customElements.get('pl-saved-replies')) customElements.define('pl-saved-replies', PlSavedReplies);
