// <pl-live-panel>: live visitors of one site. Owns the WebSocket, the visitor
// store, the segment chips, the search box, the virtualized list and the
// visitor card. The app calls setSites(sites) after inserting it.

import { api } from './api.js';
import { h } from './dom.js';
import { SEGMENTS } from './format.js';
import { LiveSocket, liveUrl } from './live-socket.js';
import { VisitorStore } from './store.js';
import { COLUMNS, VisitorList } from './visitor-list.js';
import './pl-visitor-card.js';

const SAVED_SITE = 'porchlight.console.site';
const STATUS_TEXT = { connecting: 'Connecting…', open: 'Live', reconnecting: 'Reconnecting…' };

class PlLivePanel extends HTMLElement {
  constructor() {
    super();
    this.store = new VisitorStore();
    this.sites = [];
    this.siteKey = null;
    this.segment = 'all';
    this.socket = null;
    this.ticker = 0;
  }

  connectedCallback() {
    if (!this.list) this.build();
    clearInterval(this.ticker);
    this.ticker = setInterval(() => this.tick(), 1000);
    if (this.siteKey && !this.socket) this.connect();
  }

  disconnectedCallback() {
    clearInterval(this.ticker);
    this.stopSocket();
  }

  setSites(sites) {
    if (!this.list) this.build();
    this.sites = (Array.isArray(sites) ? sites : []).filter((s) => s && typeof s.key === 'string' && s.key);
    let saved = null;
    try {
      saved = localStorage.getItem(SAVED_SITE);
    } catch {
      /* storage disabled */
    }
    const pick = this.sites.find((s) => s.key === saved) || this.sites[0];
    this.siteKey = undefined; // force selectSite to (re)connect
    this.selectSite(pick ? pick.key : null);
  }

  build() {
    this.sitePicker = h('select', {
      id: 'site-picker', class: 'site-picker', 'aria-label': 'Site', hidden: true,
      onchange: () => this.selectSite(this.sitePicker.value),
    });
    this.siteName = h('span', { id: 'site-name', class: 'site-name' });
    this.statusEl = h('span', { id: 'live-status', class: 'live-status', role: 'status' });
    this.summary = h('span', { id: 'list-summary', class: 'list-summary' });

    this.chips = new Map();
    const chipBar = h(
      'div',
      { id: 'segment-chips', class: 'chips', role: 'group', 'aria-label': 'Segments' },
      SEGMENTS.map(([key, label]) => {
        const count = h('span', { class: 'count', text: '0' });
        const button = h(
          'button',
          { type: 'button', class: 'chip', 'data-segment': key, 'aria-pressed': 'false', onclick: () => this.setSegment(key) },
          h('span', { class: 'label', text: label }),
          count,
        );
        this.chips.set(key, { button, count });
        return button;
      }),
    );
    this.search = h('input', {
      id: 'visitor-search', class: 'search', type: 'search', autocomplete: 'off', spellcheck: 'false',
      placeholder: 'Search name, email, city, URL, #number', 'aria-label': 'Search visitors',
      oninput: () => this.applyFilter(),
    });

    this.listEl = h('div', { id: 'visitor-list', class: 'visitor-list', role: 'list', 'aria-label': 'Live visitors' });
    this.emptyEl = h('div', { id: 'list-empty', class: 'list-empty', hidden: true });
    this.card = document.createElement('pl-visitor-card');

    this.append(
      h(
        'div',
        { class: 'toolbar' },
        h('div', { class: 'toolbar-row' }, this.sitePicker, this.siteName, this.statusEl, h('span', { class: 'grow' }), this.summary),
        h('div', { class: 'toolbar-row' }, chipBar, this.search),
      ),
      h(
        'div',
        { class: 'live-body' },
        h(
          'div',
          { class: 'list-wrap' },
          h('div', { class: 'list-header', 'aria-hidden': 'true' }, COLUMNS.map(([cls, label]) => h('div', { class: `cell ${cls}`, text: label }))),
          this.listEl,
          this.emptyEl,
        ),
        this.card,
      ),
    );

    this.list = new VisitorList(this.listEl, {
      getItems: () => this.store.items(),
      now: () => this.store.serverNow(),
      onOpen: (id) => this.openVisitor(id),
      onRender: (n) => this.afterRender(n),
    });
    this.card.now = () => this.store.serverNow();
    this.addEventListener('pl-card-close', () => this.list.select(null));
    this.setSegment('all');
    this.setStatus('connecting');
  }

  selectSite(key) {
    if (key === this.siteKey) return;
    this.stopSocket();
    this.card.close();
    this.store.clear();
    this.siteKey = key;
    if (key) {
      try {
        localStorage.setItem(SAVED_SITE, key);
      } catch {
        /* storage disabled */
      }
    }
    this.renderSites();
    this.updateCounts();
    this.listEl.scrollTop = 0;
    this.list.schedule();
    if (key && this.isConnected) this.connect();
  }

  renderSites() {
    const many = this.sites.length > 1;
    this.sitePicker.hidden = !many;
    this.siteName.hidden = many;
    if (many) {
      this.sitePicker.replaceChildren(
        ...this.sites.map((s) => h('option', { value: s.key, text: s.name || s.key, selected: s.key === this.siteKey })),
      );
      this.sitePicker.value = this.siteKey;
    } else {
      this.siteName.textContent = this.sites.length ? this.sites[0].name || this.sites[0].key : 'No sites';
    }
  }

  connect() {
    this.socket = new LiveSocket(liveUrl(this.siteKey), {
      onMessage: (m) => this.onMessage(m),
      onState: (s) => this.setStatus(s),
      // A socket that died before any data may mean the session expired:
      // the API call shows the login on 401 (see api.js).
      onDrop: (got) => {
        if (!got) api.get('/api/me').catch(() => {});
      },
    });
    this.socket.start();
  }

  stopSocket() {
    if (this.socket) this.socket.stop();
    this.socket = null;
  }

  onMessage(msg) {
    const changes = this.store.apply(msg);
    if (!changes) return;
    this.updateCounts();
    const cid = this.card.visitorId;
    if (cid) {
      if (changes.removed.includes(cid)) this.card.onRemoved();
      else {
        const row = changes.upserted.find((r) => r.id === cid);
        if (row) this.card.onUpsert(row);
      }
    }
    this.list.schedule();
  }

  updateCounts() {
    const counts = this.store.counts || {};
    for (const [key, { count }] of this.chips) {
      const n = counts[key];
      count.textContent = Number.isFinite(n) ? String(n) : '0';
    }
  }

  setSegment(key) {
    this.segment = key;
    for (const [k, { button }] of this.chips) {
      button.setAttribute('aria-pressed', String(k === key));
      button.classList.toggle('selected', k === key);
    }
    this.applyFilter();
  }

  applyFilter() {
    this.store.setFilter(this.segment, this.search.value);
    this.listEl.scrollTop = 0;
    this.list.schedule();
  }

  setStatus(state) {
    this.statusEl.dataset.state = state;
    this.statusEl.textContent = STATUS_TEXT[state] || state;
  }

  // From a link (#/visitors/<site>/<id>): switch to the site and open the
  // visitor's card as soon as the live data has them.
  focusVisitor(site, id) {
    if (site !== this.siteKey && this.sites.some((s) => s.key === site)) this.selectSite(site);
    if (site !== this.siteKey) return;
    this.pendingVisitor = id;
    if (this.store.get(id)) {
      this.pendingVisitor = null;
      this.openVisitor(id);
    }
  }

  openVisitor(id) {
    const row = this.store.get(id);
    if (!row) return;
    this.list.select(id);
    this.card.open(this.siteKey, id, row);
  }

  afterRender(shown) {
    if (this.pendingVisitor && this.store.get(this.pendingVisitor)) {
      const id = this.pendingVisitor;
      this.pendingVisitor = null;
      this.openVisitor(id);
    }
    const total = this.store.size;
    this.summary.textContent =
      shown === total ? `${total} visitor${total === 1 ? '' : 's'}` : `${shown} of ${total} visitors`;
    let msg = '';
    if (!this.siteKey) msg = 'You do not have access to any site yet.';
    else if (!this.store.ready) msg = 'Connecting to live data…';
    else if (!total) msg = 'No visitors on the site right now.';
    else if (!shown) msg = 'No visitors match this filter.';
    this.emptyEl.textContent = msg;
    this.emptyEl.hidden = !msg;
  }

  tick() {
    this.list.tick();
    this.card.tick();
  }
}

if (!customElements.get('pl-live-panel')) customElements.define('pl-live-panel', PlLivePanel);
