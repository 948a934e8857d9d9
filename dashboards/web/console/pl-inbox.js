// <pl-inbox>: the agent's conversations. Tabs (mine / others' / unassigned /
// missed / resolved, each with its unread count), a collapsible filter bar
// (agent, tag, rating, page URL, IP, date range) and a search box, the
// conversation list, and the chat view beside it.
//
// The app calls setup(service, me) once and show(conversationId | null) on
// every #/inbox route. The list follows the InboxService's frames at once
// (items update in place) and re-fetches shortly after for membership.

import { api } from './api.js';
import { agents } from './agents.js';
import { TABS, isUnread, shortTime, tabOf, visitorLabel } from './conversations.js';
import { h } from './dom.js';
import { flag } from './format.js';
import { enableNotifications, notificationState, setSoundEnabled, soundEnabled } from './notify.js';
import './pl-chat-view.js';

const REFETCH_MS = 800; // at most one list re-fetch per this, after frames
const LIMIT = 200;
const STATUS_TEXT = { connecting: 'Connecting…', open: 'Live', reconnecting: 'Reconnecting…' };

const FILTERS = ['agent', 'tag', 'rating', 'url', 'ip', 'from', 'to', 'site'];

class PlInbox extends HTMLElement {
  constructor() {
    super();
    this.service = null;
    this.agentId = null;
    this.sites = [];
    this.tab = 'mine';
    this.items = [];
    this.byId = new Map();
    this.selectedId = null;
    this.seq = 0;
    this.loaded = false;
    this.refetchTimer = 0;
    this.lastFetch = 0;
    this.onFrame = (e) => this.frame(e.detail);
    this.onResync = () => this.load();
    this.onCounts = (e) => this.renderCounts(e.detail);
    this.onState = (e) => this.setStatus(e.detail);
  }

  setup(service, me) {
    this.service = service;
    this.agentId = me && me.agent ? me.agent.id : null;
    this.sites = (me && Array.isArray(me.sites) ? me.sites : []).filter((s) => s && typeof s.key === 'string');
    if (!this.listEl) this.build();
    this.chat.setup(service, this.agentId);
    agents.load().then(() => {
      this.renderAgentFilter();
      this.renderList();
      if (this.chat.conv) this.chat.renderHead();
    });
  }

  connectedCallback() {
    if (!this.listEl) this.build();
    if (this.service) {
      this.service.addEventListener('frame', this.onFrame);
      this.service.addEventListener('resync', this.onResync);
      this.service.addEventListener('counts', this.onCounts);
      this.service.addEventListener('state', this.onState);
      this.service.listActive = true;
      this.setStatus(this.service.state);
      if (this.service.counts) this.renderCounts(this.service.counts);
    }
    clearInterval(this.ticker);
    this.ticker = setInterval(() => this.renderTimes(), 30000);
    this.renderNotifyButton();
    this.load();
  }

  disconnectedCallback() {
    if (this.service) {
      this.service.removeEventListener('frame', this.onFrame);
      this.service.removeEventListener('resync', this.onResync);
      this.service.removeEventListener('counts', this.onCounts);
      this.service.removeEventListener('state', this.onState);
      this.service.listActive = false;
    }
    clearInterval(this.ticker);
    clearTimeout(this.refetchTimer);
    this.refetchTimer = 0;
  }

  build() {
    this.tabs = new Map();
    const tabBar = h(
      'div',
      { id: 'inbox-tabs', class: 'inbox-tabs', role: 'tablist', 'aria-label': 'Inbox' },
      TABS.map(([key, label]) => {
        const count = h('span', { class: 'count', text: '' });
        const button = h(
          'button',
          { type: 'button', class: 'inbox-tab', role: 'tab', 'data-tab': key, 'aria-selected': 'false', onclick: () => this.setTab(key) },
          h('span', { class: 'label', text: label }),
          count,
        );
        this.tabs.set(key, { button, count });
        return button;
      }),
    );
    this.statusEl = h('span', { id: 'inbox-status', class: 'live-status', role: 'status' });
    this.notifyBtn = h('button', { id: 'notify-enable', class: 'btn btn-sm', type: 'button', onclick: () => this.enableNotifications() });
    this.soundBtn = h('button', {
      id: 'sound-toggle', class: 'btn btn-sm', type: 'button', 'aria-pressed': 'true',
      onclick: () => {
        setSoundEnabled(!soundEnabled());
        this.renderNotifyButton();
      },
    });

    this.search = h('input', {
      id: 'inbox-search', class: 'search', type: 'search', autocomplete: 'off', spellcheck: 'false',
      placeholder: 'Search messages, names, emails', 'aria-label': 'Search conversations',
      oninput: () => this.filtersChanged(),
    });
    this.filterToggle = h(
      'button',
      {
        id: 'filters-toggle', class: 'btn btn-sm', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'inbox-filters',
        onclick: () => this.toggleFilters(),
      },
      'Filters',
      (this.filterCount = h('span', { class: 'count', hidden: true })),
    );

    const input = (key, attrs) => h('input', { id: `filter-${key}`, class: 'filter-input', autocomplete: 'off', oninput: () => this.filtersChanged(), onchange: () => this.filtersChanged(), ...attrs });
    const field = (label, key, control) => h('label', { class: 'filter-field', for: `filter-${key}` }, h('span', { text: label }), control);
    this.f = {
      agent: h('select', { id: 'filter-agent', class: 'filter-input', onchange: () => this.filtersChanged() }),
      tag: input('tag', { type: 'text', placeholder: 'vip' }),
      rating: h(
        'select',
        { id: 'filter-rating', class: 'filter-input', onchange: () => this.filtersChanged() },
        h('option', { value: '', text: 'Any' }),
        [5, 4, 3, 2, 1].map((n) => h('option', { value: String(n), text: `${'★'.repeat(n)} ${n}` })),
      ),
      url: input('url', { type: 'text', placeholder: '/pricing' }),
      ip: input('ip', { type: 'text', placeholder: '203.0.113.' }),
      from: input('from', { type: 'date' }),
      to: input('to', { type: 'date' }),
      site: h('select', { id: 'filter-site', class: 'filter-input', onchange: () => this.filtersChanged() }),
    };
    this.f.site.append(h('option', { value: '', text: 'All sites' }), ...this.sites.map((s) => h('option', { value: s.key, text: s.name || s.key })));
    this.renderAgentFilter();
    this.filtersEl = h(
      'div',
      { id: 'inbox-filters', class: 'inbox-filters', hidden: true },
      field('Agent', 'agent', this.f.agent),
      field('Tag', 'tag', this.f.tag),
      field('Rating', 'rating', this.f.rating),
      field('Page URL', 'url', this.f.url),
      field('IP', 'ip', this.f.ip),
      field('From', 'from', this.f.from),
      field('To', 'to', this.f.to),
      this.sites.length > 1 ? field('Site', 'site', this.f.site) : null,
      h('button', { id: 'filters-clear', class: 'btn btn-sm btn-ghost', type: 'button', text: 'Clear filters', onclick: () => this.clearFilters() }),
    );

    this.listEl = h('div', { id: 'conversation-list', class: 'conversation-list', role: 'list', 'aria-label': 'Conversations' });
    this.emptyEl = h('p', { id: 'inbox-empty', class: 'list-empty inbox-empty', hidden: true });
    this.listError = h('p', { id: 'inbox-error', class: 'chat-error', role: 'alert', hidden: true });
    this.chat = document.createElement('pl-chat-view');
    this.placeholder = h(
      'div',
      { id: 'chat-empty', class: 'chat-empty' },
      h('p', { text: 'Select a conversation' }),
      h('p', { class: 'muted', text: 'Or start one from a live visitor: Visitors → a visitor → Open conversation.' }),
    );

    this.listEl.addEventListener('click', (e) => {
      const item = e.target.closest('.conversation-item');
      if (item) this.select(item.dataset.conversationId);
    });
    this.listEl.addEventListener('keydown', (e) => {
      const item = e.target.closest('.conversation-item');
      if (!item) return;
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        this.select(item.dataset.conversationId);
      } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        const sib = e.key === 'ArrowDown' ? item.nextElementSibling : item.previousElementSibling;
        if (sib) sib.focus();
      }
    });

    this.body = h(
      'div',
      { class: 'inbox-body' },
      h('div', { class: 'inbox-list-wrap' }, this.listError, this.listEl, this.emptyEl),
      this.placeholder,
      this.chat,
    );
    this.append(
      h(
        'div',
        { class: 'toolbar inbox-toolbar' },
        h(
          'div',
          { class: 'toolbar-row' },
          tabBar,
          h('span', { class: 'grow' }),
          this.statusEl,
          this.soundBtn,
          this.notifyBtn,
        ),
        h('div', { class: 'toolbar-row' }, this.search, this.filterToggle, (this.summary = h('span', { id: 'inbox-summary', class: 'list-summary' }))),
        this.filtersEl,
      ),
      this.body,
    );
    this.setTab(this.tab, false);
  }

  // ---- routing ---------------------------------------------------------------

  show(id) {
    if (!this.listEl) this.build();
    const n = id == null || id === '' ? null : Number(id);
    this.selectedId = Number.isFinite(n) ? n : null;
    this.body.classList.toggle('has-chat', this.selectedId != null);
    this.classList.toggle('has-chat', this.selectedId != null);
    this.placeholder.hidden = this.selectedId != null;
    if (this.selectedId == null) this.chat.close();
    else this.chat.open(this.selectedId, this.byId.get(this.selectedId));
    this.markSelected();
  }

  select(id) {
    if (id == null) return;
    location.hash = `#/inbox/${id}`;
  }

  // ---- tabs, filters -------------------------------------------------------------

  setTab(key, reload = true) {
    this.tab = key;
    for (const [k, { button }] of this.tabs) {
      button.setAttribute('aria-selected', String(k === key));
      button.classList.toggle('selected', k === key);
    }
    if (reload) {
      this.items = [];
      this.loaded = false;
      this.renderList();
      this.load();
    }
  }

  toggleFilters(open = this.filtersEl.hidden) {
    this.filtersEl.hidden = !open;
    this.filterToggle.setAttribute('aria-expanded', String(open));
  }

  renderAgentFilter() {
    if (!this.f) return;
    const value = this.f.agent.value;
    const list = Array.isArray(agents.list) ? agents.list : null;
    const opts = [h('option', { value: '', text: 'Any agent' })];
    if (this.agentId != null) opts.push(h('option', { value: String(this.agentId), text: 'Me' }));
    if (list) {
      for (const a of list) if (a.id !== this.agentId) opts.push(h('option', { value: String(a.id), text: a.name || a.email }));
    }
    this.f.agent.replaceChildren(...opts);
    this.f.agent.value = value;
  }

  filterValues() {
    const v = {};
    for (const k of FILTERS) v[k] = String(this.f[k].value || '').trim();
    return v;
  }

  clearFilters() {
    for (const k of FILTERS) this.f[k].value = '';
    this.search.value = '';
    this.filtersChanged(true);
  }

  filtersChanged(now = false) {
    const n = FILTERS.filter((k) => this.f[k].value).length;
    this.filterCount.textContent = String(n);
    this.filterCount.hidden = !n;
    clearTimeout(this.filterTimer);
    this.filterTimer = setTimeout(() => {
      this.items = [];
      this.loaded = false;
      this.load();
    }, now ? 0 : 300);
  }

  query() {
    const v = this.filterValues();
    const p = new URLSearchParams();
    p.set('tab', this.tab);
    p.set('limit', String(LIMIT));
    if (v.site) p.set('site', v.site);
    if (v.agent) p.set('agent', v.agent);
    if (v.tag) p.set('tag', v.tag.toLowerCase());
    if (v.rating) p.set('rating', v.rating);
    if (v.url) p.set('url', v.url);
    if (v.ip) p.set('ip', v.ip);
    const day = (s, end) => {
      const d = new Date(`${s}T${end ? '23:59:59.999' : '00:00:00'}`);
      return Number.isFinite(d.getTime()) ? String(d.getTime()) : null;
    };
    if (v.from && day(v.from)) p.set('from', day(v.from));
    if (v.to && day(v.to, true)) p.set('to', day(v.to, true));
    const q = this.search.value.trim();
    if (q) p.set('q', q);
    return `/api/inbox?${p}`;
  }

  // ---- loading ---------------------------------------------------------------

  async load() {
    if (!this.isConnected) return;
    clearTimeout(this.refetchTimer);
    this.refetchTimer = 0;
    const seq = ++this.seq;
    this.lastFetch = Date.now();
    if (this.abort) this.abort.abort();
    this.abort = new AbortController();
    if (!this.loaded) this.renderList();
    try {
      const res = await api.get(this.query(), { signal: this.abort.signal });
      if (seq !== this.seq) return;
      const list = Array.isArray(res && res.conversations) ? res.conversations.filter((c) => c && c.id != null) : [];
      this.items = list;
      this.loaded = true;
      this.listError.hidden = true;
      if (this.service) {
        this.service.remember(list);
        this.service.setCounts(res.counts);
      }
      this.renderList();
      const sel = this.selectedId != null ? this.byId.get(this.selectedId) : null;
      if (sel && sel.visitor && this.chat.conv && this.chat.conv.id === sel.id) {
        this.chat.visitor = { ...sel.visitor, ...(this.chat.visitor || {}), online: sel.visitor.online };
        this.chat.renderHead();
      }
    } catch (e) {
      if (seq !== this.seq || (e && e.name === 'AbortError')) return;
      if (e.status === 401) return;
      this.listError.textContent = `Could not load conversations: ${e.message}`;
      this.listError.hidden = false;
      this.loaded = true;
      this.renderList();
    }
  }

  // A trailing, throttled re-fetch after live frames.
  scheduleRefetch() {
    if (this.refetchTimer) return;
    const wait = Math.max(150, this.lastFetch + REFETCH_MS - Date.now());
    this.refetchTimer = setTimeout(() => {
      this.refetchTimer = 0;
      this.load();
    }, wait);
  }

  frame(msg) {
    if (msg.type === 'block') return;
    if (msg.type === 'typing') {
      const item = this.listEl.querySelector(`.conversation-item[data-conversation-id="${Number(msg.conversation_id)}"]`);
      if (item && msg.who && msg.who.kind === 'visitor') {
        item.classList.toggle('is-typing', !!msg.typing);
        clearTimeout(item._typingTimer);
        if (msg.typing) item._typingTimer = setTimeout(() => item.classList.remove('is-typing'), 6000);
      }
      return;
    }
    const c = msg.conversation;
    if (!c || c.id == null) return;
    const i = this.items.findIndex((x) => x.id === c.id);
    if (i >= 0) {
      const old = this.items[i];
      if ((c.updated_ms || 0) >= (old.updated_ms || 0)) {
        const next = { ...c, visitor: old.visitor, unread: isUnread(c, this.agentId) };
        if (this.matchesTab(next)) this.items[i] = next;
        else this.items.splice(i, 1);
        this.items.sort((a, b) => (b.last_message_ms || 0) - (a.last_message_ms || 0) || b.id - a.id);
        this.renderList();
      }
    }
    this.scheduleRefetch();
  }

  matchesTab(c) {
    return tabOf(c, this.agentId) === this.tab;
  }

  // ---- rendering -------------------------------------------------------------

  renderCounts(counts) {
    for (const [key, { button, count }] of this.tabs) {
      const c = (counts && counts[key]) || {};
      const unread = Number(c.unread) || 0;
      const total = Number(c.total) || 0;
      count.textContent = unread ? String(unread) : total ? String(total) : '';
      count.classList.toggle('unread', unread > 0);
      count.hidden = !unread && !total;
      button.title = `${total} conversation${total === 1 ? '' : 's'}, ${unread} unread`;
      button.dataset.unread = String(unread);
      button.dataset.total = String(total);
    }
  }

  renderList() {
    if (!this.listEl) return;
    const now = Date.now();
    const byId = new Map();
    const els = this.items.map((c) => {
      byId.set(c.id, c);
      return this.renderItem(c, now);
    });
    this.byId = byId;
    this.listEl.replaceChildren(...els);
    this.markSelected();
    let msg = '';
    if (!this.loaded) msg = 'Loading conversations…';
    else if (!this.items.length) {
      const filtered = FILTERS.some((k) => this.f[k].value) || this.search.value.trim();
      msg = filtered ? 'No conversations match these filters.' : 'No conversations here.';
    }
    this.emptyEl.textContent = msg;
    this.emptyEl.hidden = !msg;
    this.summary.textContent = this.loaded ? `${this.items.length}${this.items.length >= LIMIT ? '+' : ''} conversation${this.items.length === 1 ? '' : 's'}` : '';
  }

  renderItem(c, now) {
    const v = c.visitor || {};
    const unread = c.unread != null ? !!c.unread : isUnread(c, this.agentId);
    const state = c.state === 'resolved' ? 'resolved' : c.missed ? 'missed' : 'open';
    const fl = flag(v.country_code);
    const el = h(
      'div',
      {
        class: `conversation-item${unread ? ' unread' : ''}`, role: 'listitem', tabindex: '0',
        dataset: { conversationId: String(c.id), state, unread: String(unread) },
      },
      h(
        'div',
        { class: 'ci-top' },
        h('span', { class: 'ci-dot', 'aria-label': unread ? 'unread' : null, title: unread ? 'Unread' : null }),
        fl ? h('span', { class: 'ci-flag', text: fl }) : null,
        h('span', { class: 'ci-name', text: visitorLabel(c, v) }),
        v.online ? h('span', { class: 'online-dot', title: 'On the site now' }) : null,
        h('span', { class: 'grow' }),
        h('time', { class: 'ci-time', title: new Date(c.last_message_ms).toLocaleString(), text: shortTime(c.last_message_ms, now), dataset: { ms: String(c.last_message_ms) } }),
      ),
      h('div', { class: 'ci-preview' }, h('span', { class: 'ci-typing', text: 'typing…' }), h('span', { class: 'ci-preview-text', text: c.last_message_preview || c.subject || '' })),
      h(
        'div',
        { class: 'ci-bottom' },
        state !== 'open' ? h('span', { class: `badge badge-state-${state} ci-state`, text: state }) : null,
        c.origin && c.origin.kind === 'trigger'
          ? h('span', { class: 'badge badge-trigger ci-trigger', 'data-trigger-id': String(c.origin.trigger_id), title: 'Started by a trigger message', text: 'trigger' })
          : null,
        (c.tags || []).map((t) => h('span', { class: 'tag', text: t })),
        h('span', { class: 'grow' }),
        c.assigned_agent != null && c.assigned_agent !== this.agentId ? h('span', { class: 'ci-agent', text: agents.fullName(c.assigned_agent) }) : null,
        this.sites.length > 1 ? h('span', { class: 'ci-site', text: c.site }) : null,
      ),
    );
    return el;
  }

  markSelected() {
    for (const el of this.listEl.children) {
      const sel = Number(el.dataset.conversationId) === this.selectedId;
      el.classList.toggle('selected', sel);
      if (sel) el.setAttribute('aria-current', 'true');
      else el.removeAttribute('aria-current');
    }
  }

  renderTimes() {
    const now = Date.now();
    for (const t of this.listEl.querySelectorAll('time.ci-time')) t.textContent = shortTime(Number(t.dataset.ms), now);
  }

  setStatus(state) {
    this.statusEl.dataset.state = state;
    this.statusEl.textContent = STATUS_TEXT[state] || state;
  }

  // ---- notifications -----------------------------------------------------------

  renderNotifyButton() {
    if (!this.notifyBtn) return;
    const st = notificationState();
    this.notifyBtn.hidden = st === 'unsupported';
    this.notifyBtn.disabled = st !== 'default';
    this.notifyBtn.dataset.permission = st;
    this.notifyBtn.textContent = st === 'granted' ? 'Notifications on' : st === 'denied' ? 'Notifications blocked' : 'Enable notifications';
    this.notifyBtn.title = st === 'denied' ? 'Allow notifications for this site in your browser settings' : '';
    const on = soundEnabled();
    this.soundBtn.textContent = on ? '🔔 Sound on' : '🔕 Sound off';
    this.soundBtn.setAttribute('aria-pressed', String(on));
  }

  async enableNotifications() {
    await enableNotifications();
    this.renderNotifyButton();
  }
}

if (!customElements.get('pl-inbox')) customElements.define('pl-inbox', PlInbox);
