// <pl-contact>: the contact behind a visitor, as agents keep it (seeds 001,
// 004): name, email and phone editable, contact tags, notes every agent of the
// site sees (author and time), and the visitor's conversations. Works for a
// visitor who left too. The visitor card (live panel) and the chat view's side
// each hold one; open(site, visitorId, {conversationId}) shows a visitor.
//
// GET /api/sites/{key}/visitors/{id}/contact; PATCH …/contact; POST/DELETE
// …/notes and …/tags. Everything visitor- or agent-supplied is set with
// textContent / value, never as markup. An edit dispatches
// 'pl-contact-changed' (detail: {identity}) so the owner can rename the
// visitor in its header.

import { request, api } from './api.js';
import { h } from './dom.js';
import * as f from './format.js';

const FIELDS = [
  ['name', 'Name', 'text', 100],
  ['email', 'Email', 'email', 254],
  ['phone', 'Phone', 'tel', 40],
];

class PlContact extends HTMLElement {
  constructor() {
    super();
    this.site = null;
    this.visitorId = null;
    this.current = null; // the conversation the owner shows, if any
    this.data = null; // {contact, conversations}
    this.gen = 0;
  }

  connectedCallback() {
    if (!this.form) this.build();
  }

  build() {
    this.classList.add('contact');
    this.hidden = true;
    this.inputs = {};
    const rows = FIELDS.map(([key, label, type, max]) => {
      const input = h('input', {
        class: `contact-input contact-${key}`, type, maxlength: String(max), autocomplete: 'off',
        'aria-label': label, oninput: () => this.dirty(),
      });
      this.inputs[key] = input;
      return h('label', { class: 'contact-row' }, h('span', { class: 'contact-label', text: label }), input);
    });
    this.saveBtn = h('button', { class: 'btn btn-primary btn-xs contact-save', type: 'submit', text: 'Save', disabled: true });
    this.statusEl = h('p', { class: 'contact-status', role: 'status' });
    this.form = h(
      'form',
      { class: 'contact-form', onsubmit: (e) => { e.preventDefault(); this.save(); } },
      rows,
      h('div', { class: 'contact-actions' }, this.statusEl, this.saveBtn),
    );
    this.tagsEl = h('ul', { class: 'contact-tags chips' });
    this.tagInput = h('input', {
      class: 'contact-tag-input', type: 'text', maxlength: '32', placeholder: 'Add a tag', 'aria-label': 'Add a contact tag',
      onkeydown: (e) => {
        if (e.key === 'Enter') {
          e.preventDefault();
          this.addTag();
        }
      },
    });
    this.notesEl = h('ul', { class: 'contact-notes' });
    this.noteText = h('textarea', { class: 'contact-note-text', rows: '2', maxlength: '2000', placeholder: 'A note for your team', 'aria-label': 'New note' });
    this.noteBtn = h('button', { class: 'btn btn-xs contact-note-add', type: 'button', text: 'Add note', onclick: () => this.addNote() });
    this.convsEl = h('ul', { class: 'contact-conversations past-list' });
    this.append(
      h('section', { class: 'card-section' }, h('h3', { text: 'Contact' }), this.form),
      h('section', { class: 'card-section' }, h('h3', { text: 'Tags' }), this.tagsEl, this.tagInput),
      h('section', { class: 'card-section' }, h('h3', { text: 'Notes' }), this.notesEl, this.noteText, this.noteBtn),
      h('section', { class: 'card-section' }, h('h3', { text: 'Conversations' }), this.convsEl),
    );
  }

  path(suffix = '') {
    return `/api/sites/${encodeURIComponent(this.site)}/visitors/${encodeURIComponent(this.visitorId)}${suffix}`;
  }

  open(site, visitorId, { conversationId = null } = {}) {
    if (!this.form) this.build();
    const same = this.site === site && this.visitorId === visitorId;
    this.site = site;
    this.visitorId = visitorId;
    this.current = conversationId;
    if (!same) {
      this.data = null;
      this.statusEl.textContent = '';
    }
    this.load();
  }

  close() {
    this.gen++;
    this.site = this.visitorId = this.data = null;
    this.hidden = true;
  }

  async load() {
    const gen = ++this.gen;
    try {
      const res = await api.get(this.path('/contact'));
      if (gen !== this.gen) return;
      this.data = res;
      this.hidden = false;
      this.render();
    } catch (e) {
      if (gen !== this.gen) return;
      // A visitor the site never saw (or no access): nothing to show.
      this.hidden = true;
    }
  }

  get contact() {
    return (this.data && this.data.contact) || {};
  }

  render() {
    const c = this.contact;
    const identity = c.identity || {};
    for (const [key] of FIELDS) {
      if (document.activeElement !== this.inputs[key]) this.inputs[key].value = identity[key] || '';
    }
    this.dirty();
    this.renderTags();
    this.renderNotes();
    const convs = Array.isArray(this.data && this.data.conversations) ? this.data.conversations : [];
    this.convsEl.replaceChildren(
      ...(convs.length
        ? convs.map((p) =>
          h(
            'li',
            { dataset: { conversationId: String(p.id) }, class: p.id === this.current ? 'current' : null },
            h(
              'a',
              { href: `#/inbox/${p.id}` },
              h('span', { class: 'past-date', text: new Date(p.created_ms).toLocaleDateString() }),
              h('span', { class: `badge badge-state-${p.state === 'resolved' ? 'resolved' : 'open'}`, text: p.state === 'resolved' ? 'resolved' : 'open' }),
              h('span', { class: 'past-preview', text: p.last_message_preview || p.subject || '' }),
            ),
          ))
        : [h('li', { class: 'muted', text: 'None yet' })]),
    );
  }

  renderTags() {
    const tags = Array.isArray(this.contact.tags) ? this.contact.tags : [];
    this.tagsEl.replaceChildren(
      ...tags.map((tag) =>
        h(
          'li',
          { class: 'chip contact-tag', dataset: { tag } },
          h('span', { text: tag }),
          h('button', { class: 'chip-remove', type: 'button', 'aria-label': `Remove tag ${tag}`, text: '×', onclick: () => this.removeTag(tag) }),
        )),
    );
  }

  renderNotes() {
    const notes = Array.isArray(this.contact.notes) ? this.contact.notes : [];
    this.notesEl.replaceChildren(
      ...notes.map((n) =>
        h(
          'li',
          { class: 'contact-note', dataset: { noteId: String(n.id) } },
          h('div', { class: 'note-meta' }, h('span', { class: 'note-author', text: n.author_name || `Agent #${n.author_id}` }), ' · ', h('time', { text: f.dateTime(n.created_ms) })),
          h('div', { class: 'note-text', text: n.text }),
          h('button', { class: 'btn btn-xs btn-danger-ghost note-delete', type: 'button', text: 'Delete', onclick: () => this.deleteNote(n) }),
        )),
    );
  }

  // Which fields differ from what is stored.
  changes() {
    const identity = this.contact.identity || {};
    const out = {};
    for (const [key] of FIELDS) {
      const value = this.inputs[key].value.trim();
      if (value !== (identity[key] || '')) out[key] = value || null;
    }
    return out;
  }

  dirty() {
    this.saveBtn.disabled = !Object.keys(this.changes()).length;
  }

  say(msg, error = false) {
    this.statusEl.textContent = msg;
    this.statusEl.classList.toggle('status-error', error);
  }

  async save() {
    const edit = this.changes();
    if (!Object.keys(edit).length) return;
    this.saveBtn.disabled = true;
    try {
      const res = await request('PATCH', this.path('/contact'), edit);
      const identity = (res && res.identity) || {};
      this.data = { ...this.data, contact: { ...this.contact, identity } };
      for (const [key] of FIELDS) this.inputs[key].value = identity[key] || '';
      this.say('Saved');
      this.dispatchEvent(new CustomEvent('pl-contact-changed', { bubbles: true, detail: { identity } }));
    } catch (e) {
      if (e.status !== 401) this.say(e.message, true);
    }
    this.dirty();
  }

  async addTag() {
    const tag = this.tagInput.value.trim();
    if (!tag) return;
    try {
      const res = await request('POST', this.path('/tags'), { tag });
      this.tagInput.value = '';
      this.setTags(res && res.tags);
    } catch (e) {
      if (e.status !== 401) this.say(e.message, true);
    }
  }

  async removeTag(tag) {
    try {
      const res = await request('DELETE', this.path(`/tags/${encodeURIComponent(tag)}`));
      this.setTags(res && res.tags);
    } catch (e) {
      if (e.status !== 401) this.say(e.message, true);
    }
  }

  setTags(tags) {
    if (!Array.isArray(tags)) return;
    this.data = { ...this.data, contact: { ...this.contact, tags } };
    this.renderTags();
  }

  async addNote() {
    const text = this.noteText.value.trim();
    if (!text) return;
    this.noteBtn.disabled = true;
    try {
      const res = await request('POST', this.path('/notes'), { text });
      this.noteText.value = '';
      const notes = [...(this.contact.notes || []), res.note];
      this.data = { ...this.data, contact: { ...this.contact, notes } };
      this.renderNotes();
    } catch (e) {
      if (e.status !== 401) this.say(e.message, true);
    } finally {
      this.noteBtn.disabled = false;
    }
  }

  async deleteNote(note) {
    try {
      await request('DELETE', this.path(`/notes/${note.id}`));
      const notes = (this.contact.notes || []).filter((n) => n.id !== note.id);
      this.data = { ...this.data, contact: { ...this.contact, notes } };
      this.renderNotes();
    } catch (e) {
      if (e.status !== 401) this.say(e.message, true);
    }
  }
}

if (!customElements.get('pl-contact')) customElements.define('pl-contact', PlContact);
