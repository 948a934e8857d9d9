// <pl-leads>: what visitors left in the widget's offline form (#/leads),
// newest first, across every site the agent can see. A lead whose visitor is
// live right now links to them in the live panel (#/visitors/<site>/<id>).

import { api } from './api.js';
import { h, isSafeHref } from './dom.js';
import { dateTime } from './format.js';
import { shortTime } from './conversations.js';

const LIVE_CHECKS = 30; // at most this many visitors looked up per load

class PlLeads extends HTMLElement {
  constructor() {
    super();
    this.sites = [];
    this.seq = 0;
  }

  setup(me) {
    this.sites = (me && Array.isArray(me.sites) ? me.sites : []).filter((s) => s && typeof s.key === 'string' && s.key);
  }

  connectedCallback() {
    if (!this.listEl) this.build();
    this.load();
  }

  build() {
    this.statusEl = h('span', { id: 'leads-status', class: 'ws-status', role: 'status' });
    this.listEl = h('ul', { id: 'leads-list', class: 'leads-list', 'aria-label': 'Leads' });
    this.emptyEl = h('p', { id: 'leads-empty', class: 'list-empty', hidden: true, text: 'No leads yet. They appear here when visitors use the offline form.' });
    this.append(
      h('div', { class: 'toolbar' }, h('div', { class: 'toolbar-row' },
        h('h1', { class: 'page-title', text: 'Leads' }),
        this.statusEl,
        h('span', { class: 'grow' }),
        h('button', { id: 'leads-refresh', class: 'btn btn-sm', type: 'button', text: 'Refresh', onclick: () => this.load() }))),
      h('div', { class: 'leads-body' }, this.listEl, this.emptyEl),
    );
  }

  async load() {
    const seq = ++this.seq;
    this.statusEl.textContent = 'Loading…';
    this.statusEl.dataset.kind = '';
    const results = await Promise.allSettled(
      this.sites.map((s) => api.get(`/api/sites/${encodeURIComponent(s.key)}/leads`)),
    );
    if (seq !== this.seq) return;
    const leads = [];
    const failed = [];
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') {
        for (const l of (r.value && Array.isArray(r.value.leads) ? r.value.leads : [])) {
          if (l && typeof l === 'object') leads.push({ ...l, site: typeof l.site === 'string' ? l.site : this.sites[i].key });
        }
      } else failed.push(`${this.sites[i].name || this.sites[i].key}: ${r.reason && r.reason.message}`);
    });
    leads.sort((a, b) => (b.created_ms || 0) - (a.created_ms || 0));
    this.leads = leads;
    this.render();
    this.statusEl.textContent = failed.length ? `Could not load leads (${failed.join('; ')})` : `${leads.length} lead${leads.length === 1 ? '' : 's'}`;
    this.statusEl.dataset.kind = failed.length ? 'error' : '';
    this.checkLive(seq);
  }

  render() {
    const many = this.sites.length > 1;
    const siteName = (key) => {
      const s = this.sites.find((x) => x.key === key);
      return s ? s.name || s.key : key;
    };
    this.listEl.replaceChildren(...this.leads.map((l) => {
      const email = typeof l.email === 'string' ? l.email : '';
      const emailEl = h('a', { class: 'lead-email', text: email });
      if (/^[^\s@<>]+@[^\s@<>]+$/.test(email)) emailEl.href = `mailto:${email}`;
      const page = typeof l.page_url === 'string' ? l.page_url : '';
      const t = typeof l.created_ms === 'number' ? l.created_ms : null;
      return h(
        'li',
        { class: 'lead-item', 'data-lead-id': String(l.id), 'data-site': l.site, 'data-visitor': typeof l.visitor_id === 'string' ? l.visitor_id : null },
        h('div', { class: 'lead-head' },
          h('span', { class: 'lead-name', text: (typeof l.name === 'string' && l.name) || 'No name' }),
          emailEl,
          l.phone ? h('span', { class: 'lead-phone', text: String(l.phone) }) : null,
          h('span', { class: 'grow' }),
          many ? h('span', { class: 'lead-site', text: siteName(l.site) }) : null,
          h('time', { class: 'lead-time', datetime: t == null ? null : new Date(t).toISOString(), title: dateTime(t), text: t == null ? '' : shortTime(t) })),
        h('p', { class: 'lead-message', text: typeof l.message === 'string' ? l.message : '' }),
        h('div', { class: 'lead-meta' },
          page ? h('span', { class: 'lead-page' }, 'From ', isSafeHref(page) ? h('a', { href: page, target: '_blank', rel: 'noopener noreferrer', text: page }) : page) : null,
          h('span', { class: 'lead-live' })),
      );
    }));
    this.emptyEl.hidden = this.leads.length > 0;
  }

  // Whether each lead's visitor is on the site now (GET .../visitors/{id}: 404 when not live).
  async checkLive(seq) {
    const seen = new Set();
    const todo = [];
    for (const l of this.leads) {
      const k = `${l.site}/${l.visitor_id}`;
      if (typeof l.visitor_id !== 'string' || !l.visitor_id || seen.has(k)) continue;
      seen.add(k);
      todo.push(l);
      if (todo.length >= LIVE_CHECKS) break;
    }
    await Promise.all(todo.map(async (l) => {
      let live = false;
      try {
        await api.get(`/api/sites/${encodeURIComponent(l.site)}/visitors/${encodeURIComponent(l.visitor_id)}`);
        live = true;
      } catch {
        live = false;
      }
      if (seq !== this.seq || !live) return;
      for (const item of this.listEl.children) {
        if (item.dataset.site !== l.site || item.dataset.visitor !== l.visitor_id) continue;
        item.querySelector('.lead-live').replaceChildren(h('a', {
          class: 'lead-visitor', href: `#/visitors/${encodeURIComponent(l.site)}/${encodeURIComponent(l.visitor_id)}`, text: 'Visitor is live — open',
        }));
      }
    }));
  }
}

customElements.define('pl-leads', PlLeads);
