// <pl-trigger-editor>: create or edit one trigger (#/triggers/<site>/new,
// #/triggers/<site>/<id>). Name, priority and on/off; the condition builder;
// the message variants with a placeholder preview; limits; the goal; and,
// beside the form, "who matches right now" for the draft.
//
// GET …/triggers/fields (catalogue), GET …/triggers/{id}; POST (new) or PUT
// (existing) the whole trigger. Problems found here and the server's 400
// ("<json path>: <what>") show next to Save, and the row the path names is
// marked (aria-invalid, a message under it) and focused. Owners and admins
// edit; other agents see the form read-only.

import { h } from './dom.js';
import { confirmDialog } from './dialogs.js';
import { ConditionBuilder } from './condition-builder.js';
import { MessageSection } from './trigger-message.js';
import './pl-trigger-matches.js';
import {
  LIMIT_MODES, MAX_COOLDOWN_SECS, MAX_GOAL_WINDOW_SECS, MAX_NAME_CHARS, UNITS, describePath, forServer, humanDuration, newTrigger,
  pathStartsWith, splitDuration, splitError,
} from './trigger-model.js';
import { editLink, errorText, siteLink, statsLink, triggersApi } from './triggers-api.js';

const I32 = 2147483647;

class PlTriggerEditor extends HTMLElement {
  constructor() {
    super();
    this.me = null;
    this.canEdit = false;
    this.site = null;
    this.triggerId = null;
    this.loaded = null; // the trigger as last loaded or saved
    this.baseline = ''; // collect() as JSON when loaded or saved
    this.seq = 0;
    this.errorSource = null; // 'save' | 'preview' | null: who marked the rows
    this.onUnload = (e) => {
      if (!this.isDirty()) return;
      e.preventDefault();
      e.returnValue = '';
    };
    // Links away (the nav, "Triggers") ask before dropping unsaved changes.
    this.onLinkClick = (e) => {
      const a = e.target.closest && e.target.closest('a[href^="#"]');
      if (!a || e.defaultPrevented || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || !this.isDirty()) return;
      e.preventDefault();
      const href = a.getAttribute('href');
      confirmDialog({ id: 'tr-discard-dialog', title: 'Leave without saving?', text: 'Your changes to this trigger are not saved.', confirm: 'Leave', danger: true })
        .then((ok) => {
          if (!ok) return;
          this.baseline = JSON.stringify(this.collect());
          location.hash = href;
        });
    };
  }

  setup(me) {
    this.me = me;
    const role = me && me.agent && me.agent.role;
    this.canEdit = role === 'owner' || role === 'admin';
  }

  connectedCallback() {
    if (!this.form) this.build();
    window.addEventListener('beforeunload', this.onUnload);
    document.addEventListener('click', this.onLinkClick, true);
  }

  disconnectedCallback() {
    window.removeEventListener('beforeunload', this.onUnload);
    document.removeEventListener('click', this.onLinkClick, true);
  }

  build() {
    const changed = () => this.changed();
    const field = (label, control, hint) =>
      h('label', { class: 'ws-field' }, h('span', { class: 'ws-label', text: label }), control, hint ? h('span', { class: 'ws-hint', text: hint }) : null);
    const section = (id, title, ...kids) => h('fieldset', { id, class: 'ws-section' }, h('legend', { text: title }), kids);

    this.backLink = h('a', { id: 'tr-back', class: 'btn btn-sm', href: '#/triggers', text: '← Triggers' });
    this.titleEl = h('h1', { id: 'tr-title', class: 'page-title' });
    this.siteEl = h('span', { class: 'site-name' });
    this.statsLink = h('a', { id: 'tr-stats-link', class: 'btn btn-sm', text: 'Stats', hidden: true });

    this.f = {
      name: h('input', { id: 'tr-name', class: 'ws-input', type: 'text', maxlength: String(MAX_NAME_CHARS), required: true, 'data-path': 'name', placeholder: 'Spring pricing offer', oninput: changed }),
      priority: h('input', { id: 'tr-priority', class: 'ws-input ws-num', type: 'number', step: '1', 'data-path': 'priority', oninput: changed }),
      enabled: h('input', { id: 'tr-enabled', type: 'checkbox', role: 'switch', 'data-path': 'enabled', onchange: changed }),
      limit: h('select', { id: 'tr-limit', class: 'ws-input', 'data-path': 'limit', onchange: () => { this.renderLimit(); changed(); } },
        LIMIT_MODES.map(([v, t]) => h('option', { value: v, text: t }))),
      goalOn: h('input', { id: 'tr-goal-on', type: 'checkbox', 'data-path': 'goal', onchange: () => { this.renderGoal(); changed(); } }),
      goalEvent: h('input', { id: 'tr-goal-event', class: 'ws-input', type: 'text', maxlength: '64', 'data-path': 'goal.event', placeholder: 'purchase', autocomplete: 'off', spellcheck: 'false', oninput: changed }),
    };
    this.cooldown = durationControl('tr-cooldown', 'limit.cooldown_secs', changed);
    this.goalWindow = durationControl('tr-goal-window', 'goal.window_secs', changed);
    this.cooldownField = field('Pause between messages to the same visitor', this.cooldown.el);
    this.goalFields = h('div', { class: 'ws-row' },
      field('Goal event', this.f.goalEvent, "What the site sends with porchlight('track', 'purchase')."),
      field('Counts if it happens within', this.goalWindow.el, 'after the trigger fired'));

    this.builder = new ConditionBuilder({ onChange: changed });
    this.catalogueNote = h('p', { class: 'ws-hint tr-note', hidden: true });
    this.message = new MessageSection({ onChange: changed });

    this.status = h('span', { id: 'tr-status', class: 'ws-status', role: 'status' });
    this.saveBtn = h('button', { id: 'tr-save', class: 'btn btn-primary', type: 'submit', text: 'Save' });
    this.readOnlyNote = h('p', { class: 'ws-hint', text: 'Only owners and admins can change triggers.' });

    this.fields = h('fieldset', { class: 'tr-fields' },
      section('tr-basics', 'Trigger',
        field('Name', this.f.name),
        h('div', { class: 'ws-row' },
          field('Priority', this.f.priority, 'When several triggers match, the highest priority fires.'),
          h('label', { class: 'ws-check tr-enabled' }, this.f.enabled, h('span', { text: 'On: fire for visitors who match' })))),
      section('tr-conditions', 'Conditions', this.catalogueNote, this.builder.el),
      section('tr-message', 'Message', this.message.el),
      section('tr-limits', 'Limits',
        field('How often', this.f.limit, 'Never for blocked visitors or visitors already chatting.'),
        this.cooldownField),
      section('tr-goal', 'Goal',
        h('label', { class: 'ws-check' }, this.f.goalOn, h('span', { text: 'Count visitors who reach a goal after the message' })),
        this.goalFields));
    this.form = h('form', { id: 'tr-form', class: 'ws-form tr-form', novalidate: true, onsubmit: (e) => { e.preventDefault(); this.save(); } },
      this.fields,
      h('div', { class: 'ws-actions tr-save-bar' }, this.saveBtn, this.status, this.readOnlyNote));
    this.form.addEventListener('input', (e) => this.unmark(e.target));
    this.form.addEventListener('change', (e) => this.unmark(e.target));

    this.matches = document.createElement('pl-trigger-matches');
    this.matches.addEventListener('pl-preview-error', (e) => this.onPreviewError(e.detail.message));
    this.matches.addEventListener('pl-preview-as', (e) => {
      this.message.previewFor(e.detail.id, e.detail.label);
      document.getElementById('tr-preview-visitor')?.scrollIntoView({ block: 'center', behavior: 'smooth' });
    });

    this.append(
      h('div', { class: 'toolbar' }, h('div', { class: 'toolbar-row tr-toolbar' }, this.backLink, this.titleEl, this.siteEl, h('span', { class: 'grow' }), this.statsLink)),
      h('div', { class: 'tr-body' }, this.form, h('aside', { class: 'tr-side' }, this.matches)));
  }

  // Loads trigger `id` of `site` (null: a new one).
  async open(site, id, siteName) {
    if (!this.form) this.build();
    const seq = ++this.seq;
    this.site = site;
    this.triggerId = id;
    this.backLink.href = siteLink(site);
    this.siteEl.textContent = siteName || site;
    this.statsLink.hidden = true;
    this.titleEl.textContent = id == null ? 'New trigger' : 'Trigger';
    this.fields.disabled = true;
    this.saveBtn.hidden = !this.canEdit;
    this.readOnlyNote.hidden = this.canEdit;
    this.clearMarks();
    this.setStatus('Loading…');
    this.message.setSite(site);
    this.matches.configure({ site, triggerId: null, variants: [], canTest: false });
    this.matches.idle('');
    try {
      const [cat, trigger] = await Promise.all([
        triggersApi.fields(site),
        id == null ? Promise.resolve(newTrigger(this.me)) : triggersApi.get(site, id),
      ]);
      if (seq !== this.seq) return;
      this.builder.setCatalogue(cat);
      this.message.setPlaceholders(cat.placeholders);
      this.catalogueNote.hidden = !cat.error;
      this.catalogueNote.textContent = cat.error ? `The server's field list could not be loaded (${cat.error}); showing the built-in list.` : '';
      this.fill(trigger && typeof trigger === 'object' ? trigger : newTrigger(this.me));
      this.fields.disabled = !this.canEdit;
      this.setStatus('');
      if (id == null && this.canEdit) this.f.name.focus();
    } catch (err) {
      if (seq !== this.seq) return;
      this.setStatus(err.status === 404 ? 'This trigger does not exist (any more).' : `Could not load the trigger: ${errorText(err)}`, 'error');
    }
  }

  fill(t) {
    this.loaded = t;
    const f = this.f;
    f.name.value = typeof t.name === 'string' ? t.name : '';
    f.priority.value = String(Number.isInteger(t.priority) ? t.priority : 0);
    f.enabled.checked = t.enabled === true;
    this.builder.load(t.conditions);
    this.message.load(t);
    const limit = t.limit && typeof t.limit === 'object' ? t.limit : { mode: 'once_per_visitor' };
    f.limit.value = LIMIT_MODES.some(([m]) => m === limit.mode) ? limit.mode : 'once_per_visitor';
    this.cooldown.set(Number.isFinite(limit.cooldown_secs) ? limit.cooldown_secs : 600);
    const goal = t.goal && typeof t.goal === 'object' ? t.goal : null;
    f.goalOn.checked = !!goal;
    f.goalEvent.value = goal && typeof goal.event === 'string' ? goal.event : '';
    this.goalWindow.set(goal && Number.isFinite(goal.window_secs) ? goal.window_secs : 86400);
    this.renderLimit();
    this.renderGoal();
    this.baseline = JSON.stringify(this.collect());
    this.afterSaveOrLoad();
    this.changed();
  }

  afterSaveOrLoad() {
    const t = this.loaded;
    if (this.triggerId != null) {
      this.titleEl.textContent = t.name || `Trigger #${this.triggerId}`;
      this.statsLink.href = statsLink(this.site, this.triggerId);
      this.statsLink.hidden = false;
    }
    this.matches.configure({ site: this.site, triggerId: this.triggerId, variants: t.variants, canTest: this.canEdit });
  }

  renderLimit() {
    this.cooldownField.hidden = this.f.limit.value !== 'cooldown';
  }

  renderGoal() {
    this.goalFields.hidden = !this.f.goalOn.checked;
  }

  // The form as a trigger, over what was loaded (unknown fields survive).
  collect() {
    const f = this.f;
    const out = forServer({ ...(this.loaded || {}) });
    delete out.id;
    if (this.triggerId != null) out.id = this.triggerId;
    out.name = f.name.value.trim();
    out.priority = Number.isInteger(Number(f.priority.value)) && f.priority.value.trim() !== '' ? Number(f.priority.value) : 0;
    out.enabled = f.enabled.checked;
    out.conditions = this.builder.value();
    this.message.apply(out);
    out.limit = f.limit.value === 'cooldown' ? { mode: 'cooldown', cooldown_secs: this.cooldown.get() } : { mode: f.limit.value };
    out.goal = f.goalOn.checked ? { ...((this.loaded && this.loaded.goal) || {}), event: f.goalEvent.value.trim(), window_secs: this.goalWindow.get() } : null;
    return out;
  }

  problems() {
    const f = this.f;
    const out = [];
    if (!f.name.value.trim()) out.push({ path: 'name', text: 'give the trigger a name' });
    const p = Number(f.priority.value);
    if (f.priority.value.trim() === '' || !Number.isInteger(p) || Math.abs(p) > I32) out.push({ path: 'priority', text: 'the priority is a whole number' });
    out.push(...this.builder.problems(), ...this.message.problems());
    const cooldown = this.cooldown.get();
    if (f.limit.value === 'cooldown' && !(cooldown >= 1 && cooldown <= MAX_COOLDOWN_SECS)) {
      out.push({ path: 'limit.cooldown_secs', text: `enter how long to wait between messages (at most ${humanDuration(MAX_COOLDOWN_SECS)})` });
    }
    if (f.goalOn.checked) {
      const span = this.goalWindow.get();
      if (!f.goalEvent.value.trim()) out.push({ path: 'goal.event', text: 'enter the event name' });
      if (!(span >= 1 && span <= MAX_GOAL_WINDOW_SECS)) out.push({ path: 'goal.window_secs', text: `enter how long the goal counts (at most ${humanDuration(MAX_GOAL_WINDOW_SECS)})` });
    }
    return out;
  }

  isDirty() {
    return !!this.loaded && this.canEdit && this.isConnected && JSON.stringify(this.collect()) !== this.baseline;
  }

  // After any edit: the unsaved mark, and "who matches" for the draft.
  changed() {
    if (!this.loaded) return;
    const dirty = this.isDirty();
    this.form.classList.toggle('dirty', dirty);
    if (dirty && this.status.dataset.kind === 'ok') this.setStatus('');
    if (this.builder.problems().length) {
      this.matches.idle('Complete the conditions to see who matches.');
      return;
    }
    this.matches.update(this.previewDraft());
  }

  // The draft for POST …/preview: on (a switched-off draft still shows who it
  // would reach) and with stand-ins for what only the message needs, so the
  // conditions can be tried before the message is written.
  previewDraft() {
    const d = this.collect();
    d.enabled = true;
    if (!d.name) d.name = 'Draft';
    for (const v of d.variants) {
      if (!v.text.trim()) v.text = '…';
      if (v.author && 'bot' in v.author && !v.author.bot) v.author = { bot: 'Porchlight' };
    }
    if (d.goal && (!d.goal.event || !(d.goal.window_secs >= 1))) d.goal = null;
    return d;
  }

  setStatus(text, kind = '') {
    this.status.textContent = text;
    this.status.dataset.kind = kind;
    this.status.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  }

  async save() {
    if (!this.canEdit || this.saving || !this.loaded) return;
    const problems = this.problems();
    this.clearMarks();
    if (problems.length) {
      this.mark(problems, 'save', true);
      const first = problems[0];
      this.setStatus(`${problems.length === 1 ? '' : `${problems.length} things to fix. `}${describePath(first.path, this.variantKeys())}: ${first.text}.`, 'error');
      return;
    }
    this.saving = true;
    this.saveBtn.disabled = true;
    this.setStatus('Saving…');
    const site = this.site;
    const id = this.triggerId;
    const seq = this.seq;
    const body = this.collect();
    try {
      const res = id == null ? await triggersApi.create(site, body) : await triggersApi.update(site, id, body);
      if (seq !== this.seq) return;
      const saved = res && typeof res === 'object' ? res : body;
      this.loaded = saved;
      if (id == null && saved.id != null) {
        this.triggerId = saved.id;
        history.replaceState(null, '', editLink(site, saved.id));
      }
      this.baseline = JSON.stringify(this.collect());
      this.afterSaveOrLoad();
      this.changed();
      this.setStatus(id == null ? 'Created.' : 'Saved.', 'ok');
    } catch (err) {
      if (seq !== this.seq) return;
      if (err.status === 400 || err.status === 422) {
        const { path, text } = splitError(err.message);
        const where = path && this.mark([{ path, text }], 'save', true);
        this.setStatus(where ? `${describePath(path, this.variantKeys())}: ${text}` : err.message, 'error');
      } else {
        this.setStatus(`Could not save: ${errorText(err)}`, 'error');
      }
    } finally {
      this.saving = false;
      this.saveBtn.disabled = false;
    }
  }

  variantKeys() {
    return (this.collect().variants || []).map((v) => v.key);
  }

  onPreviewError(message) {
    if (message == null) {
      if (this.errorSource === 'preview') this.clearMarks();
      return;
    }
    if (this.errorSource === 'save') return;
    const { path, text } = splitError(message);
    this.clearMarks();
    if (path) this.mark([{ path, text }], 'preview', false);
  }

  // ---- marking the rows errors name -----------------------------------------

  // Marks the element each path names (the deepest element whose data-path
  // is the path or an ancestor of it). Returns the first element marked.
  mark(problems, source, focus) {
    const all = [...this.form.querySelectorAll('[data-path]')];
    let first = null;
    for (const { path, text } of problems) {
      let best = null;
      for (const el of all) {
        const p = el.getAttribute('data-path');
        if (pathStartsWith(path, p) && (!best || p.length > best.getAttribute('data-path').length)) best = el;
      }
      if (!best) continue;
      this.errorSource = source;
      const row = best.closest('.cb-item, .tv-variant, .ws-field, .ws-check, .ws-section') || best;
      row.classList.add('tr-row-invalid');
      const control = isControl(best) ? best : best.querySelector('input, select, textarea');
      const msgId = `tr-err-${Math.random().toString(36).slice(2, 9)}`;
      const msg = h('p', { class: 'tr-inline-error', id: msgId, text: text });
      const anchor = row.classList.contains('cb-item') ? row.firstElementChild : row;
      if (anchor === row) row.append(msg);
      else anchor.after(msg);
      if (control) {
        control.setAttribute('aria-invalid', 'true');
        control.setAttribute('aria-describedby', msgId);
      }
      if (!first) first = control || best;
    }
    if (first && focus) {
      first.scrollIntoView({ block: 'center' });
      if (typeof first.focus === 'function') first.focus({ preventScroll: true });
    }
    return first;
  }

  clearMarks() {
    if (!this.form) return;
    this.errorSource = null;
    for (const el of this.form.querySelectorAll('.tr-inline-error')) el.remove();
    for (const el of this.form.querySelectorAll('.tr-row-invalid')) el.classList.remove('tr-row-invalid');
    for (const el of this.form.querySelectorAll('[aria-invalid]')) {
      el.removeAttribute('aria-invalid');
      el.removeAttribute('aria-describedby');
    }
  }

  // An edit inside a marked row clears that row's mark.
  unmark(target) {
    const row = target && target.closest && target.closest('.tr-row-invalid');
    if (!row) return;
    row.classList.remove('tr-row-invalid');
    for (const el of row.querySelectorAll(':scope > .tr-inline-error, :scope > .cb-row + .tr-inline-error')) el.remove();
    for (const el of row.querySelectorAll('[aria-invalid]')) {
      el.removeAttribute('aria-invalid');
      el.removeAttribute('aria-describedby');
    }
    if (!this.form.querySelector('.tr-row-invalid')) this.errorSource = null;
  }
}

function isControl(el) {
  return el instanceof HTMLInputElement || el instanceof HTMLSelectElement || el instanceof HTMLTextAreaElement;
}

// A number and a unit (seconds … days) for a duration in seconds.
function durationControl(id, path, onChange) {
  const n = h('input', { id, class: 'ws-input ws-num', type: 'number', min: '1', step: '1', 'data-path': path, oninput: onChange });
  const unit = h('select', { class: 'ws-input', 'aria-label': 'Unit', onchange: onChange }, UNITS.map(([s, name]) => h('option', { value: String(s), text: name })));
  return {
    el: h('span', { class: 'tr-duration' }, n, unit),
    get() {
      const x = Number(n.value);
      return n.value.trim() !== '' && Number.isFinite(x) ? Math.round(x * Number(unit.value)) : 0;
    },
    set(secs) {
      const [count, u] = splitDuration(secs);
      n.value = String(count);
      unit.value = String(u);
    },
  };
}

if (!customElements.get('pl-trigger-editor')) customElements.define('pl-trigger-editor', PlTriggerEditor);
