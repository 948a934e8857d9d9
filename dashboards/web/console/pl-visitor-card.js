// <pl-visitor-card id="visitor-card">: side panel with everything known about
// one live visitor. The owner (live panel) calls open(), onUpsert(),
// onRemoved(), tick() and sets `now` (server-aligned clock). Every value is
// rendered as text into <dd data-field="json_key">.
//
// The editable contact (name, email, phone, tags, notes, conversations) is a
// <pl-contact id="card-contact"> at the top.
//
// Actions: "Open conversation" (#card-open-conversation: a dialog sends the
// first message, then the console goes to #/inbox/<id>) and block / unblock
// (#card-block). With data-context="chat" (inside the chat view, which has
// its own block button) the actions row is hidden.

import { api } from './api.js';
import { blockDialog, openConversationDialog, unblock } from './dialogs.js';
import './pl-contact.js';
import { h } from './dom.js';
import * as f from './format.js';

const REFRESH_MS = 500; // at most 2 GETs per second while deltas stream in

const STATUS = {
  loading: '',
  ready: '',
  left: 'Visitor left',
  gone: 'This visitor is no longer live',
  error: 'Could not load visitor details',
};

class PlVisitorCard extends HTMLElement {
  constructor() {
    super();
    this.siteKey = null;
    this.visitorId = null;
    this.data = null;
    this.gen = 0; // bumped whenever the shown visitor changes
    this.seq = 0; // request counter
    this.applied = 0; // newest response applied
    this.lastFetch = 0;
    this.timer = 0;
    this.now = () => Date.now();
    this.onKey = (e) => {
      if (e.key === 'Escape' && !this.hidden) this.close();
    };
  }

  connectedCallback() {
    document.addEventListener('keydown', this.onKey);
    if (!this.body) this.build();
  }

  build() {
    this.id = 'visitor-card';
    this.hidden = true;
    this.setAttribute('role', 'complementary');
    this.setAttribute('aria-label', 'Visitor details');
    this.titleEl = h('h2', { id: 'card-title', class: 'card-title' });
    this.subEl = h('p', { id: 'card-subtitle', class: 'card-sub' });
    this.statusEl = h('p', { id: 'card-status', class: 'card-status', role: 'status', hidden: true });
    this.body = h('div', { id: 'card-body', class: 'card-body' });
    this.openBtn = h('button', {
      id: 'card-open-conversation', class: 'btn btn-primary btn-sm', type: 'button', text: 'Open conversation',
      onclick: () => this.openConversation(),
    });
    this.blockBtn = h('button', {
      id: 'card-block', class: 'btn btn-sm', type: 'button', text: 'Block', onclick: () => this.toggleBlock(),
    });
    this.actions = h('div', { id: 'card-actions', class: 'card-actions' }, this.openBtn, this.blockBtn);
    // The editable contact (name, email, phone, tags, notes, conversations). Inside the chat
    // view, which shows its own, the card has none.
    this.contact = null;
    if (this.dataset.context !== 'chat') {
      this.contact = document.createElement('pl-contact');
      this.contact.id = 'card-contact';
    }
    this.append(
      h(
        'header',
        { class: 'card-head' },
        h('div', { class: 'card-heading' }, this.titleEl, this.subEl),
        h('button', {
          id: 'card-close', class: 'btn btn-icon', type: 'button', 'aria-label': 'Close visitor details',
          text: '×', onclick: () => this.close(),
        }),
      ),
      this.actions,
      this.statusEl,
      ...(this.contact ? [this.contact] : []),
      this.body,
    );
  }

  get blocked() {
    return f.segmentsOf(this.data).includes('blocked');
  }

  renderActions() {
    if (!this.actions) return;
    this.actions.hidden = this.dataset.context === 'chat';
    const blocked = this.blocked;
    this.blockBtn.textContent = blocked ? 'Unblock' : 'Block';
    this.blockBtn.dataset.blocked = String(blocked);
    this.blockBtn.classList.toggle('btn-danger-ghost', !blocked);
    this.openBtn.disabled = blocked || this.state === 'gone';
    this.openBtn.title = blocked ? 'Unblock the visitor to chat with them' : '';
  }

  async openConversation() {
    const site = this.siteKey;
    const id = this.visitorId;
    if (!site || !id) return;
    const res = await openConversationDialog(site, id, f.visitorLabel(this.data || {}));
    const conv = res && res.conversation;
    if (conv && conv.id != null) location.hash = `#/inbox/${conv.id}`;
  }

  async toggleBlock() {
    const site = this.siteKey;
    const id = this.visitorId;
    if (!site || !id || this.blockBtn.disabled) return;
    const wasBlocked = this.blocked;
    if (!wasBlocked) {
      const block = await blockDialog(site, id, f.visitorLabel(this.data || {}));
      if (!block) return;
    } else {
      this.blockBtn.disabled = true;
      try {
        await unblock(site, id);
      } catch (e) {
        this.blockBtn.disabled = false;
        if (e.status !== 401) this.flash(`Could not unblock: ${e.message}`);
        return;
      }
      this.blockBtn.disabled = false;
    }
    if (this.visitorId !== id) return;
    // Show it now; the live delta (segments) and the refresh confirm it.
    const segs = f.segmentsOf(this.data).filter((s) => s !== 'blocked');
    if (!wasBlocked) segs.push('blocked');
    this.data = { ...this.data, segments: segs };
    this.render();
    this.refresh();
  }

  flash(msg) {
    this.statusEl.textContent = msg;
    this.statusEl.hidden = false;
    this.statusEl.className = 'card-status status-error';
  }

  disconnectedCallback() {
    document.removeEventListener('keydown', this.onKey);
    this.reset();
  }

  reset() {
    this.gen++;
    clearTimeout(this.timer);
    this.timer = 0;
    if (this.abort) this.abort.abort();
    this.abort = null;
  }

  // Show a visitor; `row` (from the live list) renders at once while the
  // full card loads.
  open(siteKey, id, row) {
    if (!this.body) this.build();
    if (this.visitorId !== id || this.siteKey !== siteKey) {
      this.reset();
      this.siteKey = siteKey;
      this.visitorId = id;
      this.data = null;
      this.abort = new AbortController();
      this.body.scrollTop = 0;
    }
    if (row) this.data = { ...this.data, ...row };
    if (this.contact) this.contact.open(siteKey, id);
    this.hidden = false;
    this.setState('loading');
    this.render();
    this.load();
  }

  close() {
    if (this.hidden && !this.visitorId) return;
    this.reset();
    this.visitorId = null;
    this.data = null;
    this.hidden = true;
    this.dispatchEvent(new CustomEvent('pl-card-close', { bubbles: true }));
  }

  // A delta upserted this visitor: show the new row fields now, then
  // re-fetch the full card (throttled).
  onUpsert(row) {
    if (!this.visitorId || row.id !== this.visitorId) return;
    this.data = { ...this.data, ...row };
    if (this.state === 'left' || this.state === 'gone') this.setState('ready');
    this.render();
    this.refresh();
  }

  onRemoved() {
    if (!this.visitorId) return;
    clearTimeout(this.timer);
    this.timer = 0;
    this.setState('left');
  }

  refresh() {
    if (!this.visitorId || this.timer) return;
    const wait = this.lastFetch + REFRESH_MS - Date.now();
    if (wait <= 0) this.load();
    else {
      this.timer = setTimeout(() => {
        this.timer = 0;
        this.load();
      }, wait);
    }
  }

  async load() {
    const gen = this.gen;
    const seq = ++this.seq;
    this.lastFetch = Date.now();
    const path = `/api/sites/${encodeURIComponent(this.siteKey)}/visitors/${encodeURIComponent(this.visitorId)}`;
    try {
      const res = await api.get(path, { signal: this.abort && this.abort.signal });
      // Ignore answers for another visitor, or older than one already shown
      // (but do not drop a slow answer just because a newer request started).
      if (gen !== this.gen || seq < this.applied) return;
      this.applied = seq;
      const v = res && res.visitor;
      if (!v || typeof v !== 'object') throw new Error('bad response');
      this.data = v;
      if (this.state !== 'left') this.setState('ready');
      this.render();
    } catch (e) {
      if (gen !== this.gen || (e && e.name === 'AbortError')) return;
      if (e.status === 404) this.setState('gone');
      else if (e.status !== 401 && this.state !== 'left') this.setState('error');
    }
  }

  setState(state) {
    this.state = state;
    this.dataset.state = state;
    const msg = STATUS[state];
    this.statusEl.textContent = msg;
    this.statusEl.hidden = !msg;
    this.statusEl.className = `card-status status-${state}`;
    this.renderActions();
  }

  // Live clocks only; the rest re-renders on data changes.
  tick() {
    if (this.hidden || !this.data || !this.live) return;
    const v = this.data;
    const now = this.now();
    this.live.page.textContent = f.elapsed(v.page_since, v.left, now);
    this.live.site.textContent = f.elapsed(v.visit_started, v.left, now);
  }

  render() {
    const v = this.data || {};
    const id = obj(v.identity);
    const camp = obj(v.campaign);
    const now = this.now();
    const fl = f.flag(v.country_code);
    this.renderActions();
    this.titleEl.replaceChildren(
      fl ? h('span', { class: 'card-flag', title: v.country || '', text: fl }) : '',
      f.visitorLabel(v),
    );
    this.subEl.textContent = [v.email, f.place(v)].filter(Boolean).join(' · ');

    this.live = {
      page: dd('time_on_page', f.elapsed(v.page_since, v.left, now)),
      site: dd('time_on_site', f.elapsed(v.visit_started, v.left, now)),
    };
    const other = Object.entries(obj(camp.other)).map(([k, val]) => field(k, `campaign.other.${k}`, val));
    const props = Object.entries(obj(id.props)).map(([k, val]) => field(k, `props.${k}`, val));

    this.body.replaceChildren(
      section('Visitor', [
        field('Visitor', 'number', v.number != null ? `#${v.number}` : null),
      ]),
      section('Now', [
        field('Page', 'title', v.title),
        field('URL', 'url', link(v.url)),
        [dt('Time on page'), this.live.page],
        [dt('Time on site'), this.live.site],
        field('Pages', 'pages', v.pages),
        field('Status', 'segments', statusBadges(v)),
      ]),
      section('Location', [
        field('Country', 'country', v.country),
        field('Country code', 'country_code', v.country_code),
        field('Region', 'region', v.region),
        field('City', 'city', v.city),
        field('Time zone', 'time_zone', v.time_zone),
        field('Coordinates', 'coordinates', coords(v.latitude, v.longitude)),
        field('IP', 'ip', v.ip),
      ]),
      section('Technology', [
        field('Browser', 'browser', v.browser),
        field('Version', 'browser_version', v.browser_version),
        field('OS', 'os', v.os),
        field('OS version', 'os_version', v.os_version),
        field('Device', 'device', v.device),
        field('Language', 'language', v.language),
        field('Screen', 'screen', screenSize(v.screen)),
      ]),
      section('Acquisition', [
        field('Landing page', 'landing_url', link(v.landing_url)),
        field('Referrer', 'referrer', link(v.referrer)),
        field('Source', 'utm_source', camp.source ?? v.utm_source),
        field('Medium', 'utm_medium', camp.medium ?? v.utm_medium),
        field('Campaign', 'utm_campaign', camp.name ?? v.utm_campaign),
        field('Term', 'utm_term', camp.term),
        field('Content', 'utm_content', camp.content),
        other,
      ]),
      section('Visits', [
        field('Visits', 'visits', v.visits),
        field('First seen', 'first_seen', v.first_seen != null ? f.dateTime(v.first_seen) : null),
        field('Visit started', 'visit_started', v.visit_started != null ? f.dateTime(v.visit_started) : null),
        field('Last activity', 'last_activity', v.last_activity != null ? f.dateTime(v.last_activity) : null),
        v.left != null ? field('Left', 'left', f.dateTime(v.left)) : null,
      ]),
      h(
        'section',
        { class: 'card-section', id: 'card-props-section' },
        h('h3', { text: 'Custom properties' }),
        props.length ? h('dl', { class: 'fields', id: 'card-props' }, props) : h('p', { class: 'muted', text: 'None' }),
      ),
      h(
        'section',
        { class: 'card-section' },
        h('h3', { text: 'Events' }),
        eventsList(v.events),
      ),
      h(
        'section',
        { class: 'card-section' },
        h('h3', { text: 'Pages this visit' }),
        historyList(v.history, v.url),
      ),
    );
  }
}

function obj(v) {
  return v && typeof v === 'object' && !Array.isArray(v) ? v : {};
}

function dt(label) {
  return h('dt', { text: label });
}

function dd(key, value) {
  const el = h('dd', { 'data-field': key });
  if (value instanceof Node) el.append(value);
  else {
    const t = f.text(value);
    el.textContent = t;
    if (t === f.EMPTY) el.classList.add('empty');
  }
  return el;
}

function field(label, key, value) {
  return [dt(label), dd(key, value)];
}

function section(title, fields) {
  return h('section', { class: 'card-section' }, h('h3', { text: title }), h('dl', { class: 'fields' }, fields));
}

// A link only for http(s) URLs; anything else is shown as plain text.
function link(url, label = url) {
  if (typeof url !== 'string' || !url) return null;
  try {
    const u = new URL(url);
    if (u.protocol === 'http:' || u.protocol === 'https:') {
      return h('a', { href: u.href, target: '_blank', rel: 'noopener noreferrer nofollow', text: label });
    }
  } catch {
    /* fall through */
  }
  return label;
}

function coords(lat, lon) {
  if (!Number.isFinite(lat) || !Number.isFinite(lon)) return null;
  const href = `https://www.openstreetmap.org/?mlat=${lat}&mlon=${lon}#map=10/${lat}/${lon}`;
  return h('a', { href, target: '_blank', rel: 'noopener noreferrer', text: `${lat.toFixed(4)}, ${lon.toFixed(4)}` });
}

function screenSize(s) {
  return Array.isArray(s) && s.length === 2 ? `${s[0]}×${s[1]}` : null;
}

function statusBadges(v) {
  const list = f.badges(v);
  const segs = f.segmentsOf(v).filter((s) => s === 'active');
  const all = [...segs.map((k) => ({ key: k, label: k })), ...list];
  if (!all.length) return null;
  return h('span', { class: 'badges' }, all.map((b) => h('span', { class: `badge badge-${b.key}`, 'data-badge': b.key, text: b.label })));
}

function propsText(p) {
  return Object.entries(obj(p))
    .map(([k, val]) => `${k}: ${typeof val === 'object' ? JSON.stringify(val) : val}`)
    .join(', ');
}

function eventsList(events) {
  const list = Array.isArray(events) ? events.filter((e) => e && typeof e === 'object') : [];
  if (!list.length) return h('p', { class: 'muted', id: 'card-events-empty', text: 'No events' });
  return h(
    'ul',
    { id: 'card-events', class: 'timeline' },
    list.map((e) =>
      h(
        'li',
        { 'data-event': String(e.name ?? '') },
        h('span', { class: 'ev-time', text: f.clockTime(e.at) }),
        h('span', { class: 'ev-name', text: f.text(e.name) }),
        h('span', { class: 'ev-props', text: propsText(e.props) }),
      ),
    ),
  );
}

// Page history of this visit, oldest first; the current page is marked.
function historyList(history, currentUrl) {
  const list = (Array.isArray(history) ? history.filter((p) => p && typeof p === 'object') : [])
    .slice()
    .sort((a, b) => (a.at || 0) - (b.at || 0));
  if (!list.length) return h('p', { class: 'muted', id: 'card-history-empty', text: 'No pages yet' });
  return h(
    'ul',
    { id: 'card-history', class: 'timeline' },
    list.map((p, i) =>
      h(
        'li',
        { class: i === list.length - 1 && p.url === currentUrl ? 'current' : null },
        h('span', { class: 'h-time', text: f.clockTime(p.at) }),
        h('span', { class: 'h-title', text: p.title || f.pathOf(p.url) || f.EMPTY }),
        h('span', { class: 'h-url', title: typeof p.url === 'string' ? p.url : null }, link(p.url, f.pathOf(p.url)) ?? f.EMPTY),
      ),
    ),
  );
}

if (!customElements.get('pl-visitor-card')) customElements.define('pl-visitor-card', PlVisitorCard);
