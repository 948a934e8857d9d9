// <pl-trigger-matches>: "Who matches right now" in the trigger editor. The
// editor hands it the draft on every change; it asks POST …/triggers/preview
// (debounced, stale answers dropped) and lists the live visitors the trigger
// would fire for, with the live panel's summary columns. For a saved trigger
// an owner or admin can test-fire a variant on one of them
// (POST …/triggers/{id}/test), which ignores conditions and limits.
//
// Events: 'pl-preview-error' {detail: {message}} when the server rejects the
// draft (message null once it accepts it again); 'pl-preview-as' {detail:
// {id, label}} when "Preview message" is clicked on a visitor.

import { h } from './dom.js';
import { elapsed, flag, pathOf, visitorLabel } from './format.js';
import { describePath, splitError, variantLabel } from './trigger-model.js';
import { errorText, triggersApi } from './triggers-api.js';

const DEBOUNCE = 600; // ms after the last edit
const REFRESH = 15000; // re-ask while the page is visible: visitors come and go

class PlTriggerMatches extends HTMLElement {
  constructor() {
    super();
    this.site = null;
    this.triggerId = null;
    this.variants = [];
    this.canTest = false;
    this.draft = null;
    this.seq = 0;
    this.ctrl = null;
    this.timer = 0;
    this.ticker = 0;
    this.visitors = [];
  }

  connectedCallback() {
    if (!this.listEl) this.build();
    clearInterval(this.ticker);
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  disconnectedCallback() {
    clearInterval(this.ticker);
    clearTimeout(this.timer);
    if (this.ctrl) this.ctrl.abort();
  }

  build() {
    this.countEl = h('span', { id: 'tm-count', class: 'tm-count' });
    this.statusEl = h('span', { id: 'tm-status', class: 'ws-status', role: 'status' });
    this.refreshBtn = h('button', { id: 'tm-refresh', type: 'button', class: 'btn btn-xs', text: 'Refresh', onclick: () => this.run() });
    this.variantSel = h('select', { id: 'tm-variant', class: 'select-sm', 'aria-label': 'Variant to test-fire' });
    this.testBar = h('div', { class: 'tm-test-bar' },
      h('label', { class: 'ws-hint', for: 'tm-variant', text: 'Test-fire sends' }), this.variantSel,
      h('span', { class: 'ws-hint', text: 'as last saved, now, ignoring conditions and limits; it is not counted in the stats.' }));
    this.noteEl = h('p', { class: 'ws-hint tm-note', hidden: true });
    this.listEl = h('ul', { id: 'tm-list', class: 'tm-list', 'aria-label': 'Visitors who match' });
    this.append(h('section', { class: 'ws-section tm' },
      h('div', { class: 'tm-head' }, h('h2', { text: 'Who matches right now' }), h('span', { class: 'grow' }), this.refreshBtn),
      h('div', { class: 'tm-summary', 'aria-live': 'polite' }, this.countEl, this.statusEl),
      this.testBar, this.noteEl, this.listEl));
    this.configure({});
  }

  // {site, triggerId, variants (as saved), canTest}
  configure({ site = this.site, triggerId = null, variants = [], canTest = false }) {
    if (!this.listEl) this.build();
    if (site !== this.site) this.clear();
    this.site = site;
    this.triggerId = triggerId;
    this.variants = Array.isArray(variants) ? variants.filter((v) => v && typeof v.key === 'string') : [];
    this.canEdit = canTest;
    this.canTest = canTest && triggerId != null && this.variants.length > 0;
    this.variantSel.replaceChildren(...this.variants.map((v) => h('option', { value: v.key, text: this.variants.length > 1 ? variantLabel(v.key) : 'the message' })));
    this.variantSel.disabled = this.variants.length < 2;
    this.testBar.hidden = !this.canTest;
    this.renderRows();
  }

  clear() {
    this.visitors = [];
    this.count = null;
    this.draft = null;
    if (this.listEl) {
      this.listEl.replaceChildren();
      this.countEl.textContent = '';
      this.setStatus('');
    }
  }

  // The draft changed: ask again after a pause.
  update(draft) {
    this.draft = draft;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.run(), DEBOUNCE);
  }

  // The draft cannot be asked about yet (incomplete): say why.
  idle(reason) {
    this.draft = null;
    clearTimeout(this.timer);
    if (this.ctrl) this.ctrl.abort();
    this.seq++;
    this.visitors = [];
    this.count = null;
    this.listEl.replaceChildren();
    this.noteEl.hidden = true;
    this.countEl.textContent = '';
    this.setStatus(reason);
  }

  async run() {
    clearTimeout(this.timer);
    if (!this.draft || !this.site) return;
    if (this.ctrl) this.ctrl.abort();
    const seq = ++this.seq;
    const ctrl = (this.ctrl = new AbortController());
    this.setStatus('Checking…');
    this.refreshBtn.disabled = true;
    try {
      const res = await triggersApi.preview(this.site, this.draft, { signal: ctrl.signal });
      if (seq !== this.seq) return;
      this.visitors = Array.isArray(res && res.visitors) ? res.visitors.filter((v) => v && typeof v.id === 'string') : [];
      this.count = Number.isFinite(res && res.count) ? res.count : this.visitors.length;
      this.setStatus(`Updated ${new Date().toLocaleTimeString()}`);
      this.renderRows();
      this.dispatchEvent(new CustomEvent('pl-preview-error', { bubbles: true, detail: { message: null } }));
    } catch (err) {
      if (err.name === 'AbortError' || seq !== this.seq) return;
      this.countEl.textContent = '';
      if (err.status === 400 || err.status === 422) {
        // The draft is invalid: the editor marks the row; the old list would mislead.
        const { path, text } = splitError(err.message);
        this.visitors = [];
        this.count = null;
        this.listEl.replaceChildren();
        this.noteEl.hidden = true;
        this.setStatus(`Cannot check this draft. ${path ? `${describePath(path)}: ` : ''}${text}`, 'error');
      } else {
        this.setStatus(errorText(err), 'error');
      }
      if (err.status === 400 || err.status === 422) this.dispatchEvent(new CustomEvent('pl-preview-error', { bubbles: true, detail: { message: err.message } }));
    } finally {
      if (seq === this.seq) {
        this.refreshBtn.disabled = false;
        this.schedule();
      }
    }
  }

  // Re-ask every REFRESH ms while the editor is on screen and the tab visible.
  schedule() {
    clearTimeout(this.timer);
    if (!this.isConnected) return;
    this.timer = setTimeout(() => {
      if (document.visibilityState === 'visible') this.run();
      else this.schedule();
    }, REFRESH);
  }

  setStatus(text, kind = '') {
    this.statusEl.textContent = text;
    this.statusEl.dataset.kind = kind;
  }

  renderRows() {
    if (this.count == null) {
      this.noteEl.hidden = true;
      return;
    }
    const n = this.count;
    this.countEl.textContent = n === 0 ? 'Nobody right now' : `${n} visitor${n === 1 ? '' : 's'}`;
    this.countEl.dataset.count = String(n);
    const shown = this.visitors.length;
    const notes = [];
    if (n > shown) notes.push(`Showing the first ${shown}.`);
    if (this.canEdit && this.triggerId == null && shown) notes.push('Save the trigger to test-fire it on one of them.');
    this.noteEl.textContent = notes.join(' ');
    this.noteEl.hidden = !notes.length;
    const now = Date.now();
    this.listEl.replaceChildren(...this.visitors.map((v) => this.row(v, now)));
  }

  row(v, now) {
    const label = visitorLabel(v);
    const path = pathOf(v.url);
    const place = [v.city, v.country].filter(Boolean).join(', ');
    const time = h('span', { class: 'tm-time', title: 'Time on site' });
    time.textContent = elapsed(v.visit_started, v.left, now);
    const result = h('span', { class: 'tm-result', role: 'status' });
    const actions = h('div', { class: 'tm-actions' },
      h('button', { type: 'button', class: 'btn btn-xs tm-preview', text: 'Preview message', 'aria-label': `Preview the message as ${label}`,
        onclick: () => this.dispatchEvent(new CustomEvent('pl-preview-as', { bubbles: true, detail: { id: v.id, label } })) }));
    if (this.canTest) {
      const fire = h('button', { type: 'button', class: 'btn btn-xs tm-fire', text: 'Test-fire', 'aria-label': `Test-fire on ${label}` });
      fire.addEventListener('click', () => this.testFire(v, fire, result));
      actions.append(fire);
    }
    const item = h('li', { class: 'tm-row', 'data-visitor-id': v.id },
      h('div', { class: 'tm-who' },
        h('a', { class: 'tm-name', href: `#/visitors/${encodeURIComponent(this.site)}/${encodeURIComponent(v.id)}`, text: label, title: 'Open in the live panel' }),
        v.email ? h('span', { class: 'tm-email sub', text: v.email }) : null),
      h('div', { class: 'tm-loc' }, h('span', { class: 'v-flag', text: flag(v.country_code) }), h('span', { text: place || '—' })),
      h('div', { class: 'tm-page', title: v.url || '' }, h('span', { class: 'tm-title', text: v.title || path || '—' }), path && v.title ? h('span', { class: 'tm-path sub', text: path }) : null),
      time,
      actions,
      result);
    item._visitor = v;
    return item;
  }

  async testFire(v, button, result) {
    if (this.triggerId == null) return;
    button.disabled = true;
    result.textContent = 'Sending…';
    result.dataset.kind = '';
    const body = { visitor_id: v.id };
    if (this.variantSel.value) body.variant = this.variantSel.value;
    try {
      const res = await triggersApi.test(this.site, this.triggerId, body);
      const id = res && res.conversation_id;
      result.replaceChildren('Sent. ', id != null ? h('a', { href: `#/inbox/${encodeURIComponent(String(id))}`, text: `Conversation #${id}` }) : null);
      result.dataset.kind = 'ok';
    } catch (err) {
      // 404: the visitor left (or the trigger or variant is gone); 409: blocked or
      // already chatting. The server's message says which.
      result.textContent = `Not sent: ${errorText(err)}`;
      result.dataset.kind = 'error';
    } finally {
      button.disabled = false;
    }
  }

  tick() {
    if (!this.listEl) return;
    const now = Date.now();
    for (const item of this.listEl.children) {
      const v = item._visitor;
      if (v) item.querySelector('.tm-time').textContent = elapsed(v.visit_started, v.left, now);
    }
  }
}

if (!customElements.get('pl-trigger-matches')) customElements.define('pl-trigger-matches', PlTriggerMatches);
