// <pl-triggers>: the Triggers page (#/triggers…). It shows one of three
// views for the selected site:
//   #/triggers, #/triggers/<site>     the list (this file)
//   #/triggers/<site>/new, …/<id>     <pl-trigger-editor>
//   #/triggers/<site>/<id>/stats      <pl-trigger-stats>
// The list: GET /api/sites/{key}/triggers (sorted by priority desc, id; each
// with 7-day stats). On/off and priority are PATCHed in place; delete asks
// first. Any agent with the site may look; owners and admins change.

import { h } from './dom.js';
import { confirmDialog } from './dialogs.js';
import './pl-trigger-editor.js';
import './pl-trigger-stats.js';
import { LIMIT_MODES, count, humanDuration, percent, rate } from './trigger-model.js';
import { editLink, errorText, siteLink, statsLink, triggersApi } from './triggers-api.js';

const SAVED_SITE = 'porchlight.console.site';
const HEADLINE = [['fired', 'Fired'], ['seen', 'Seen'], ['replied', 'Replied'], ['goal', 'Goal']];

class PlTriggers extends HTMLElement {
  constructor() {
    super();
    this.sites = [];
    this.siteKey = null;
    this.canEdit = false;
    this.triggers = [];
    this.seq = 0;
  }

  setup(me) {
    this.sites = (me && Array.isArray(me.sites) ? me.sites : []).filter((s) => s && typeof s.key === 'string' && s.key);
    const role = me && me.agent && me.agent.role;
    this.canEdit = role === 'owner' || role === 'admin';
    if (!this.listView) this.build();
    this.editor.setup(me);
    let saved = null;
    try {
      saved = localStorage.getItem(SAVED_SITE);
    } catch {
      /* storage disabled */
    }
    const pick = this.sites.find((s) => s.key === saved) || this.sites[0];
    this.siteKey = pick ? pick.key : null;
  }

  build() {
    this.sitePicker = h('select', { id: 'triggers-site', class: 'site-picker', 'aria-label': 'Site', hidden: true,
      onchange: () => { location.hash = siteLink(this.sitePicker.value); } });
    this.siteName = h('span', { id: 'triggers-site-name', class: 'site-name' });
    this.status = h('span', { id: 'triggers-status', class: 'ws-status', role: 'status' });
    this.newLink = h('a', { id: 'trigger-new', class: 'btn btn-primary btn-sm', text: 'New trigger', hidden: true });
    this.tbody = h('tbody', { id: 'triggers-rows' });
    this.table = h('table', { id: 'triggers-table', class: 'tl-table', hidden: true },
      h('caption', { class: 'sr-only', text: 'Triggers, highest priority first, with the last 7 days' }),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', text: 'On' }),
        h('th', { scope: 'col', text: 'Trigger' }),
        h('th', { scope: 'col', text: 'Priority' }),
        HEADLINE.map(([, name]) => h('th', { scope: 'col', class: 'tl-num', text: name })),
        h('th', { scope: 'col' }, h('span', { class: 'sr-only', text: 'Actions' })))),
      this.tbody);
    this.emptyEl = h('div', { id: 'triggers-empty', class: 'list-empty tl-empty', hidden: true });
    this.listView = h('div', { class: 'tl' },
      h('div', { class: 'toolbar' }, h('div', { class: 'toolbar-row' },
        h('h1', { class: 'page-title', text: 'Triggers' }), this.sitePicker, this.siteName, this.status,
        h('span', { class: 'grow' }),
        h('button', { id: 'triggers-refresh', class: 'btn btn-sm', type: 'button', text: 'Refresh', onclick: () => this.load() }),
        this.newLink)),
      h('div', { class: 'tl-body' },
        h('p', { class: 'ws-hint tl-hint', text: 'A trigger sends a message to live visitors who match its conditions. At most one trigger fires per visitor at a time: the highest priority wins. Numbers are for the last 7 days.' }),
        h('div', { class: 'tl-scroll' }, this.table), this.emptyEl));
    this.editor = document.createElement('pl-trigger-editor');
    this.stats = document.createElement('pl-trigger-stats');
  }

  // route: {view: 'list' | 'edit' | 'stats', site, id}
  show(route) {
    if (!this.listView) this.build();
    const r = route || { view: 'list' };
    const site = r.site != null ? r.site : this.siteKey;
    const known = this.sites.find((s) => s.key === site);
    if (known && site !== this.siteKey) {
      this.siteKey = site;
      try {
        localStorage.setItem(SAVED_SITE, site);
      } catch {
        /* storage disabled */
      }
    }
    let view = known ? r.view : 'list';
    if (view === 'edit' && r.id == null && !this.canEdit) view = 'list';
    const target = { edit: this.editor, stats: this.stats }[view] || this.listView;
    if (this.firstElementChild !== target || this.childElementCount !== 1) this.replaceChildren(target);
    const name = known ? known.name || known.key : '';
    if (view === 'edit') this.editor.open(site, r.id, name);
    else if (view === 'stats') this.stats.open(site, r.id, name);
    else {
      this.renderSites();
      this.load(r.site != null && !known ? `You have no site "${r.site}".` : '');
    }
  }

  renderSites() {
    const many = this.sites.length > 1;
    this.sitePicker.hidden = !many;
    this.siteName.hidden = many;
    if (many) {
      this.sitePicker.replaceChildren(...this.sites.map((s) => h('option', { value: s.key, text: s.name || s.key })));
      this.sitePicker.value = this.siteKey;
    } else {
      this.siteName.textContent = this.sites.length ? this.sites[0].name || this.sites[0].key : 'No sites';
    }
    this.newLink.hidden = !this.canEdit || !this.siteKey;
    if (this.siteKey) this.newLink.href = editLink(this.siteKey, null);
  }

  setStatus(text, kind = '') {
    this.status.textContent = text;
    this.status.dataset.kind = kind;
    this.status.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  }

  // notice: shown once the list is loaded (e.g. an unknown site in the link).
  async load(notice = '') {
    const seq = ++this.seq;
    const site = this.siteKey;
    if (!site) {
      this.triggers = [];
      this.render('You do not have access to any site yet.');
      return;
    }
    this.setStatus('Loading…');
    try {
      const res = await triggersApi.list(site);
      if (seq !== this.seq) return;
      this.triggers = Array.isArray(res && res.triggers) ? res.triggers.filter((t) => t && t.id != null) : [];
      this.setStatus(notice, notice ? 'error' : '');
      this.render();
    } catch (err) {
      if (seq !== this.seq) return;
      this.setStatus(`Could not load the triggers: ${errorText(err)}`, 'error');
    }
  }

  sort() {
    this.triggers.sort((a, b) => (Number(b.priority) || 0) - (Number(a.priority) || 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  render(emptyText) {
    this.sort();
    this.tbody.replaceChildren(...this.triggers.map((t) => this.row(t)));
    const none = !this.triggers.length;
    this.table.hidden = none;
    this.emptyEl.hidden = !none;
    if (none) {
      this.emptyEl.replaceChildren(h('p', {
        text: emptyText || (this.canEdit
          ? 'No triggers yet. Create one to greet visitors who match conditions you choose, for example those who spend 30 seconds on your pricing page.'
          : 'No triggers yet. Owners and admins create them.'),
      }));
      if (!emptyText && this.canEdit) this.emptyEl.append(h('a', { class: 'btn btn-primary', href: editLink(this.siteKey, null), text: 'New trigger' }));
    }
  }

  row(t) {
    const name = typeof t.name === 'string' && t.name ? t.name : `Trigger #${t.id}`;
    const toggle = h('input', { type: 'checkbox', role: 'switch', class: 'tl-enabled', 'aria-label': `On: ${name}`, checked: t.enabled === true, disabled: !this.canEdit });
    toggle.addEventListener('change', () => this.setEnabled(t, toggle));
    const priority = h('input', { type: 'number', step: '1', class: 'ws-input tl-priority', 'aria-label': `Priority of ${name}`, value: String(Number.isInteger(t.priority) ? t.priority : 0), disabled: !this.canEdit });
    priority.addEventListener('change', () => this.setPriority(t, priority));
    priority.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter') return;
      e.preventDefault();
      this.setPriority(t, priority);
    });
    const stats = t.stats && typeof t.stats === 'object' ? t.stats : {};
    return h('tr', { class: `tl-row${t.enabled ? '' : ' tl-off'}`, 'data-trigger-id': String(t.id) },
      h('td', { class: 'tl-on', 'data-label': 'On' }, toggle),
      h('td', { class: 'tl-name' },
        h('a', { href: editLink(this.siteKey, t.id), class: 'tl-title', text: name }),
        h('span', { class: 'tl-sub', text: summary(t) })),
      h('td', { class: 'tl-priority-cell', 'data-label': 'Priority' }, priority),
      HEADLINE.map(([stage, label]) => h('td', { class: 'tl-num', 'data-stage': stage, 'data-label': label },
        h('span', { class: 'tl-count', text: String(count(stats, stage)) }),
        stage !== 'fired' && count(stats, 'fired') ? h('span', { class: 'tl-rate', text: percent(rate(stats, stage), 0) }) : null)),
      h('td', { class: 'tl-actions' },
        h('a', { class: 'btn btn-xs tl-edit', href: editLink(this.siteKey, t.id), text: this.canEdit ? 'Edit' : 'View', 'aria-label': `${this.canEdit ? 'Edit' : 'View'} ${name}` }),
        h('a', { class: 'btn btn-xs tl-stats', href: statsLink(this.siteKey, t.id), text: 'Stats', 'aria-label': `Stats of ${name}` }),
        this.canEdit ? h('button', { type: 'button', class: 'btn btn-xs btn-danger-ghost tl-delete', text: 'Delete', 'aria-label': `Delete ${name}`, onclick: () => this.remove(t) }) : null));
  }

  // Applies a PATCH answer (the trigger, without stats) to the list.
  merge(t, res) {
    if (res && typeof res === 'object') Object.assign(t, res, { stats: t.stats });
  }

  // While a PATCH is under way the control stays focusable (a disabled one
  // would drop the keyboard focus) but further edits wait for it.
  async setEnabled(t, toggle) {
    const want = toggle.checked;
    if (t.busy) {
      toggle.checked = !want;
      return;
    }
    t.busy = true;
    toggle.setAttribute('aria-busy', 'true');
    try {
      this.merge(t, await triggersApi.patch(this.siteKey, t.id, { enabled: want }));
      t.enabled = want;
      toggle.closest('tr').classList.toggle('tl-off', !want);
      this.setStatus(`${t.name || 'Trigger'} is ${want ? 'on' : 'off'}.`, 'ok');
    } catch (err) {
      toggle.checked = !want;
      this.setStatus(`Could not switch ${want ? 'on' : 'off'}: ${errorText(err)}`, 'error');
    } finally {
      t.busy = false;
      toggle.removeAttribute('aria-busy');
    }
  }

  async setPriority(t, input) {
    const value = Number(input.value);
    const before = Number.isInteger(t.priority) ? t.priority : 0;
    if (input.value.trim() === '' || !Number.isInteger(value) || Math.abs(value) > 2147483647) {
      input.value = String(before);
      this.setStatus('The priority is a whole number.', 'error');
      return;
    }
    if (value === before || t.busy) return;
    t.busy = true;
    input.readOnly = true;
    try {
      this.merge(t, await triggersApi.patch(this.siteKey, t.id, { priority: value }));
      t.priority = value;
      t.busy = false;
      this.setStatus(`Priority of ${t.name || 'the trigger'} is ${value}.`, 'ok');
      const hadFocus = document.activeElement === input;
      this.render();
      if (hadFocus) this.tbody.querySelector(`tr[data-trigger-id="${CSS.escape(String(t.id))}"] .tl-priority`)?.focus();
    } catch (err) {
      input.value = String(before);
      this.setStatus(`Could not change the priority: ${errorText(err)}`, 'error');
    } finally {
      t.busy = false;
      input.readOnly = false;
    }
  }

  async remove(t) {
    const name = t.name || `Trigger #${t.id}`;
    const ok = await confirmDialog({
      id: 'trigger-delete-dialog', title: `Delete "${name}"?`, text: 'It stops firing at once. This cannot be undone.', confirm: 'Delete', danger: true,
    });
    if (!ok) return;
    try {
      await triggersApi.remove(this.siteKey, t.id);
      // By id: the list may have been reloaded while the dialog was open.
      this.triggers = this.triggers.filter((x) => x.id !== t.id);
      this.render();
      this.setStatus(`Deleted ${name}.`, 'ok');
    } catch (err) {
      this.setStatus(`Could not delete ${name}: ${errorText(err)}`, 'error');
    }
  }
}

// "Once per visitor · 2 variants · 10 % control · after 5 s"
function summary(t) {
  const parts = [];
  const limit = t.limit || {};
  const mode = LIMIT_MODES.find(([m]) => m === limit.mode);
  if (limit.mode === 'cooldown') parts.push(`At most every ${humanDuration(limit.cooldown_secs)}`);
  else if (mode) parts.push(mode[1]);
  const n = Array.isArray(t.variants) ? t.variants.length : 0;
  if (n > 1) parts.push(`${n} variants`);
  if (Number(t.control_percent) > 0) parts.push(`${t.control_percent} % control`);
  if (Number(t.delay_secs) > 0) parts.push(`after ${humanDuration(t.delay_secs)}`);
  if (t.goal && t.goal.event) parts.push(`goal: ${t.goal.event}`);
  return parts.join(' · ');
}

if (!customElements.get('pl-triggers')) customElements.define('pl-triggers', PlTriggers);
