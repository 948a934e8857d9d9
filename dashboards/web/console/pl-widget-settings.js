// <pl-widget-settings>: one site's widget settings (#/settings, owners and
// admins). Appearance, visibility and page rules, business hours with a time
// zone, after-hours and offline behaviour, and the embed code to copy.
//
// GET /api/sites/{key}/widget -> {settings, embed}; PUT the same {settings}
// back. Fields this form does not know are kept as loaded and sent back
// unchanged. A 400's error (e.g. an unknown time zone) shows in
// #settings-status next to the Save button.

import { api } from './api.js';
import { h } from './dom.js';

const SAVED_SITE = 'porchlight.console.site';
const DAYS = [
  ['mon', 'Monday'], ['tue', 'Tuesday'], ['wed', 'Wednesday'], ['thu', 'Thursday'],
  ['fri', 'Friday'], ['sat', 'Saturday'], ['sun', 'Sunday'],
];
const ZONES = [
  'UTC', 'Europe/London', 'Europe/Dublin', 'Europe/Lisbon', 'Europe/Paris', 'Europe/Berlin', 'Europe/Madrid',
  'Europe/Rome', 'Europe/Amsterdam', 'Europe/Brussels', 'Europe/Vienna', 'Europe/Zurich', 'Europe/Stockholm',
  'Europe/Oslo', 'Europe/Copenhagen', 'Europe/Helsinki', 'Europe/Warsaw', 'Europe/Prague', 'Europe/Budapest',
  'Europe/Bucharest', 'Europe/Athens', 'Europe/Istanbul', 'Europe/Kyiv', 'Europe/Moscow',
  'America/New_York', 'America/Chicago', 'America/Denver', 'America/Phoenix', 'America/Los_Angeles',
  'America/Anchorage', 'America/Toronto', 'America/Vancouver', 'America/Mexico_City', 'America/Bogota',
  'America/Lima', 'America/Santiago', 'America/Sao_Paulo', 'America/Argentina/Buenos_Aires', 'Pacific/Honolulu',
  'Africa/Cairo', 'Africa/Johannesburg', 'Africa/Lagos', 'Africa/Nairobi', 'Asia/Dubai', 'Asia/Jerusalem',
  'Asia/Karachi', 'Asia/Kolkata', 'Asia/Dhaka', 'Asia/Bangkok', 'Asia/Jakarta', 'Asia/Singapore',
  'Asia/Hong_Kong', 'Asia/Shanghai', 'Asia/Taipei', 'Asia/Seoul', 'Asia/Tokyo', 'Australia/Perth',
  'Australia/Adelaide', 'Australia/Brisbane', 'Australia/Sydney', 'Pacific/Auckland',
];

const str = (v, d = '') => (typeof v === 'string' ? v : d);

class PlWidgetSettings extends HTMLElement {
  constructor() {
    super();
    this.sites = [];
    this.siteKey = null;
    this.loaded = null; // settings as the server last sent them
    this.seq = 0;
  }

  setup(me) {
    this.sites = (me && Array.isArray(me.sites) ? me.sites : []).filter((s) => s && typeof s.key === 'string' && s.key);
    let saved = null;
    try {
      saved = localStorage.getItem(SAVED_SITE);
    } catch {
      /* storage disabled */
    }
    const pick = this.sites.find((s) => s.key === saved) || this.sites[0];
    this.siteKey = pick ? pick.key : null;
    if (!this.form) this.build();
    this.renderSites();
  }

  connectedCallback() {
    if (!this.form) this.build();
    this.load();
  }

  build() {
    const field = (label, control, hint) =>
      h('label', { class: 'ws-field' }, h('span', { class: 'ws-label', text: label }), control, hint && h('span', { class: 'ws-hint', text: hint }));
    const select = (id, options) =>
      h('select', { id, class: 'ws-input' }, options.map(([v, t]) => h('option', { value: v, text: t })));

    this.sitePicker = h('select', { id: 'settings-site', class: 'site-picker', 'aria-label': 'Site', hidden: true, onchange: () => this.pickSite(this.sitePicker.value) });
    this.siteName = h('span', { id: 'settings-site-name', class: 'site-name' });

    this.f = {
      name: h('input', { id: 'ws-name', class: 'ws-input', type: 'text', maxlength: '200' }),
      welcome: h('textarea', { id: 'ws-welcome', class: 'ws-input', rows: '2', maxlength: '2000' }),
      color: h('input', { id: 'ws-color', class: 'ws-color', type: 'color', value: '#2563eb' }),
      align: select('ws-align', [['right', 'Bottom right'], ['left', 'Bottom left']]),
      offset: h('input', { id: 'ws-offset', class: 'ws-input ws-num', type: 'number', min: '0', max: '1000', step: '1', value: '25' }),
      prechat: h('input', { id: 'ws-prechat', type: 'checkbox' }),
      visibility: select('ws-visibility', [
        ['visible', 'Always visible'], ['conversation', 'Only once the visitor has a conversation'], ['hidden', 'Hidden (messages still arrive)'],
      ]),
      pagesMode: select('ws-pages-mode', [['all', 'On every page'], ['whitelist', 'Only on these pages'], ['blacklist', 'Everywhere except these pages']]),
      patterns: h('textarea', { id: 'ws-pages-patterns', class: 'ws-input ws-mono', rows: '4', spellcheck: 'false', placeholder: '/pricing*\n/checkout' }),
      bhEnabled: h('input', { id: 'ws-bh-enabled', type: 'checkbox', onchange: () => this.renderHours() }),
      tz: h('input', { id: 'ws-bh-tz', class: 'ws-input', type: 'text', list: 'ws-tz-list', autocomplete: 'off', spellcheck: 'false', placeholder: 'Europe/Warsaw' }),
      ahMode: select('ws-ah-mode', [['message', 'Show a message and the offline form'], ['hide', 'Hide the widget']]),
      ahMessage: h('textarea', { id: 'ws-ah-message', class: 'ws-input', rows: '2', maxlength: '2000' }),
      offline: h('textarea', { id: 'ws-offline-message', class: 'ws-input', rows: '2', maxlength: '2000' }),
    };
    this.f.ahMode.addEventListener('change', () => this.renderHours());
    this.f.pagesMode.addEventListener('change', () => this.renderHours());

    let zones = ZONES.slice();
    try {
      const own = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (own && !zones.includes(own)) zones.unshift(own);
    } catch {
      /* no Intl */
    }
    const tzList = h('datalist', { id: 'ws-tz-list' }, zones.map((z) => h('option', { value: z })));

    this.days = new Map();
    const dayRows = DAYS.map(([key, label]) => {
      const list = h('div', { class: 'bh-intervals' });
      const closed = h('span', { class: 'bh-closed', text: 'Closed' });
      const add = h('button', { type: 'button', class: 'btn btn-xs bh-add', text: '+ Hours', 'aria-label': `Add opening hours on ${label}`, onclick: () => { this.addInterval(key, '09:00', '17:00'); this.renderHours(); } });
      this.days.set(key, { list, closed, label });
      return h('div', { class: 'bh-day', 'data-day': key }, h('span', { class: 'bh-day-name', text: label }), h('div', { class: 'bh-day-body' }, closed, list), add);
    });

    this.status = h('span', { id: 'settings-status', class: 'ws-status', role: 'status', 'aria-live': 'polite' });
    this.saveBtn = h('button', { id: 'settings-save', class: 'btn btn-primary', type: 'submit', text: 'Save' });
    this.embed = h('textarea', { id: 'embed-code', class: 'ws-input ws-mono embed-code', readonly: true, rows: '6', spellcheck: 'false', 'aria-label': 'Embed code' });
    this.copyBtn = h('button', { id: 'embed-copy', class: 'btn btn-sm', type: 'button', text: 'Copy', onclick: () => this.copy() });
    this.copyStatus = h('span', { id: 'embed-copy-status', class: 'ws-hint', role: 'status' });
    this.hoursBox = h('div', { class: 'bh-days' }, dayRows);
    this.patternsField = field('Page patterns (one per line)', this.f.patterns, '/path matches exactly, /path* matches the path and everything below it, * matches anything.');
    this.ahMessageField = field('After-hours message', this.f.ahMessage);

    const section = (title, ...kids) => h('fieldset', { class: 'ws-section' }, h('legend', { text: title }), kids);
    this.form = h(
      'form',
      { id: 'settings-form', class: 'ws-form', novalidate: true, onsubmit: (e) => { e.preventDefault(); this.save(); } },
      section(
        'Appearance',
        field('Title', this.f.name),
        field('Welcome message', this.f.welcome),
        h('div', { class: 'ws-row' },
          field('Accent color', this.f.color),
          field('Launcher position', this.f.align),
          field('Distance from the bottom (px)', this.f.offset)),
        h('label', { class: 'ws-check' }, this.f.prechat, h('span', { text: 'Ask for name, email and subject before the chat starts (pre-chat form)' })),
      ),
      section(
        'Where the launcher shows',
        field('Visibility', this.f.visibility),
        field('Pages', this.f.pagesMode),
        this.patternsField,
      ),
      section(
        'Business hours',
        h('label', { class: 'ws-check' }, this.f.bhEnabled, h('span', { text: 'Use business hours' })),
        field('Time zone', this.f.tz),
        tzList,
        this.hoursBox,
        field('After hours', this.f.ahMode),
        this.ahMessageField,
      ),
      section(
        'When no agent is online',
        field('Offline message (shown above the form that collects leads)', this.f.offline),
      ),
      h('div', { class: 'ws-actions' }, this.saveBtn, this.status),
    );

    this.append(
      h('div', { class: 'toolbar' }, h('div', { class: 'toolbar-row' }, h('h1', { class: 'page-title', text: 'Widget settings' }), this.sitePicker, this.siteName)),
      h(
        'div',
        { class: 'ws-body' },
        this.form,
        h('section', { class: 'ws-section ws-embed' },
          h('h2', { text: 'Embed code' }),
          h('p', { class: 'ws-hint', text: 'Paste this before </head> on every page of the site.' }),
          this.embed,
          h('div', { class: 'ws-actions' }, this.copyBtn, this.copyStatus)),
      ),
    );
    this.renderHours();
  }

  renderSites() {
    if (!this.sitePicker) return;
    this.sitePicker.replaceChildren(...this.sites.map((s) => h('option', { value: s.key, text: s.name || s.key, selected: s.key === this.siteKey })));
    this.sitePicker.hidden = this.sites.length < 2;
    const one = this.sites.length === 1 ? this.sites[0] : null;
    this.siteName.textContent = one ? one.name || one.key : '';
    this.siteName.hidden = !one;
  }

  pickSite(key) {
    if (key === this.siteKey) return;
    this.siteKey = key;
    try {
      localStorage.setItem(SAVED_SITE, key);
    } catch {
      /* storage disabled */
    }
    this.load();
  }

  setStatus(text, kind = '') {
    this.status.textContent = text;
    this.status.dataset.kind = kind;
    this.status.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  }

  async load() {
    if (!this.form) return;
    const seq = ++this.seq;
    if (!this.siteKey) {
      this.setStatus('You do not have access to any site.', 'error');
      this.form.inert = true;
      return;
    }
    this.form.inert = true;
    this.setStatus('Loading…');
    try {
      const res = await api.get(`/api/sites/${encodeURIComponent(this.siteKey)}/widget`);
      if (seq !== this.seq) return;
      this.fill(res);
      this.setStatus('');
      this.form.inert = false;
    } catch (err) {
      if (seq !== this.seq) return;
      this.setStatus(`Could not load the settings: ${err.message}`, 'error');
    }
  }

  fill(res) {
    const s = (res && res.settings && typeof res.settings === 'object') ? res.settings : {};
    this.loaded = s;
    const f = this.f;
    const l = s.launcher || {};
    const p = s.pages || {};
    const bh = s.business_hours || {};
    const ah = s.after_hours || {};
    f.name.value = str(s.name);
    f.welcome.value = str(s.welcome);
    f.color.value = /^#[0-9a-f]{6}$/i.test(s.color) ? s.color.toLowerCase() : '#2563eb';
    f.align.value = l.align === 'left' ? 'left' : 'right';
    f.offset.value = String(Number.isFinite(l.offset) ? l.offset : 25);
    f.prechat.checked = s.prechat === true;
    f.visibility.value = ['visible', 'conversation', 'hidden'].includes(s.visibility) ? s.visibility : 'visible';
    f.pagesMode.value = ['all', 'whitelist', 'blacklist'].includes(p.mode) ? p.mode : 'all';
    f.patterns.value = (Array.isArray(p.patterns) ? p.patterns : []).filter((x) => typeof x === 'string').join('\n');
    f.bhEnabled.checked = bh.enabled === true;
    f.tz.value = str(bh.time_zone);
    for (const { list } of this.days.values()) list.replaceChildren();
    for (const d of Array.isArray(bh.days) ? bh.days : []) {
      if (d && this.days.has(d.day)) this.addInterval(d.day, str(d.open), str(d.close));
    }
    f.ahMode.value = ah.mode === 'hide' ? 'hide' : 'message';
    f.ahMessage.value = str(ah.message, str(s.after_hours_message));
    f.offline.value = str(s.offline_message);
    this.embed.value = str(res && res.embed);
    this.renderHours();
  }

  addInterval(day, open, close) {
    const { list, label } = this.days.get(day);
    const row = h(
      'div',
      { class: 'bh-interval' },
      h('input', { type: 'time', class: 'ws-input bh-open', value: open, required: true, 'aria-label': `${label} opens` }),
      h('span', { text: '–' }),
      h('input', { type: 'time', class: 'ws-input bh-close', value: close, required: true, 'aria-label': `${label} closes` }),
    );
    row.append(h('button', { type: 'button', class: 'btn btn-xs bh-remove', text: 'Remove', 'aria-label': `Remove these hours on ${label}`, onclick: () => { row.remove(); this.renderHours(); } }));
    list.append(row);
  }

  renderHours() {
    const on = this.f.bhEnabled.checked;
    this.hoursBox.classList.toggle('disabled', !on);
    this.f.tz.required = on;
    for (const { list, closed } of this.days.values()) closed.hidden = list.childElementCount > 0;
    this.ahMessageField.hidden = this.f.ahMode.value === 'hide';
    this.patternsField.hidden = this.f.pagesMode.value === 'all';
  }

  // The form as settings, over what was loaded (unknown fields survive).
  collect() {
    const f = this.f;
    const days = [];
    for (const [key, { list, label }] of this.days) {
      for (const row of list.children) {
        const open = row.querySelector('.bh-open').value;
        const close = row.querySelector('.bh-close').value;
        if (!open || !close) throw new Error(`${label}: fill in both the opening and the closing time, or remove the row.`);
        if (close <= open) throw new Error(`${label}: ${open}–${close} closes before it opens.`);
        days.push({ day: key, open, close });
      }
    }
    const tz = f.tz.value.trim();
    if (f.bhEnabled.checked && !tz) throw new Error('Business hours need a time zone.');
    const offset = Number(f.offset.value);
    if (!Number.isInteger(offset) || offset < 0 || offset > 1000) throw new Error('The distance from the bottom is a whole number of pixels from 0 to 1000.');
    const prev = this.loaded || {};
    return {
      ...prev,
      name: f.name.value.trim(),
      welcome: f.welcome.value.trim(),
      color: f.color.value,
      launcher: { ...(prev.launcher || {}), align: f.align.value, offset },
      prechat: f.prechat.checked,
      visibility: f.visibility.value,
      pages: {
        ...(prev.pages || {}),
        mode: f.pagesMode.value,
        patterns: f.patterns.value.split('\n').map((x) => x.trim()).filter(Boolean),
      },
      business_hours: { ...(prev.business_hours || {}), enabled: f.bhEnabled.checked, time_zone: tz, days },
      after_hours: { ...(prev.after_hours || {}), mode: f.ahMode.value, message: f.ahMessage.value.trim() },
      offline_message: f.offline.value.trim(),
    };
  }

  async save() {
    if (!this.siteKey || this.saving) return;
    let settings;
    try {
      settings = this.collect();
    } catch (err) {
      this.setStatus(err.message, 'error');
      return;
    }
    this.saving = true;
    this.saveBtn.disabled = true;
    this.setStatus('Saving…');
    const key = this.siteKey;
    try {
      const res = await api.put(`/api/sites/${encodeURIComponent(key)}/widget`, { settings });
      if (key === this.siteKey) {
        this.fill(res);
        this.setStatus('Saved.', 'ok');
      }
    } catch (err) {
      this.setStatus(err.status === 400 || err.status === 422 ? err.message : `Could not save: ${err.message}`, 'error');
    } finally {
      this.saving = false;
      this.saveBtn.disabled = false;
    }
  }

  async copy() {
    const text = this.embed.value;
    try {
      await navigator.clipboard.writeText(text);
      this.copyStatus.textContent = 'Copied.';
    } catch {
      this.embed.focus();
      this.embed.select();
      this.copyStatus.textContent = 'Press Ctrl+C (⌘C) to copy.';
    }
    clearTimeout(this.copyTimer);
    this.copyTimer = setTimeout(() => { this.copyStatus.textContent = ''; }, 3000);
  }
}

customElements.define('pl-widget-settings', PlWidgetSettings);
