// Virtualized visitor list: only the rows in (or near) the viewport exist in
// the DOM. A spacer gives the scroller its full height; the visible rows sit
// in normal flow inside a "window" element translated to the first one, so
// DOM order always equals display order. Row elements are reused per visitor
// id and only rewritten when that visitor's row object changed.

import { h } from './dom.js';
import { badges, elapsed, flag, pathOf, source, tech, visitorLabel } from './format.js';

export const ROW_H = 52; // px; mirrored into CSS as --row-h
const OVERSCAN = 6;

export const COLUMNS = [
  ['c-visitor', 'Visitor'],
  ['c-loc', 'Location'],
  ['c-page', 'Current page'],
  ['c-time', 'On site'],
  ['c-pages', 'Pages'],
  ['c-source', 'Source'],
  ['c-tech', 'Browser / OS'],
  ['c-status', 'Status'],
];

export class VisitorList {
  // el: the scroll container (#visitor-list). getItems(): current array.
  // now(): server-aligned clock. onOpen(id): row activated.
  // onRender(shown): after each render.
  constructor(el, { getItems, now, onOpen, onRender = () => {} }) {
    this.el = el;
    this.getItems = getItems;
    this.now = now;
    this.onRender = onRender;
    this.selectedId = null;
    this.rows = new Map(); // visitor id -> row element currently shown
    this.raf = 0;
    el.style.setProperty('--row-h', `${ROW_H}px`);
    this.spacer = h('div', { class: 'visitor-spacer', 'aria-hidden': 'true' });
    this.win = h('div', { class: 'visitor-window' });
    el.append(this.spacer, this.win);

    el.addEventListener('scroll', () => this.schedule(), { passive: true });
    const activate = (e) => {
      const row = e.target.closest('.visitor-row');
      if (row && this.win.contains(row) && row.dataset.visitorId) onOpen(row.dataset.visitorId);
    };
    el.addEventListener('click', activate);
    el.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        activate(e);
      } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        this.moveFocus(e);
      }
    });
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(el);
  }

  destroy() {
    cancelAnimationFrame(this.raf);
    this.resize.disconnect();
  }

  // Batch any number of changes into one render per frame.
  schedule() {
    if (!this.raf) {
      this.raf = requestAnimationFrame(() => {
        this.raf = 0;
        this.render();
      });
    }
  }

  select(id) {
    this.selectedId = id;
    this.schedule();
  }

  render() {
    const items = this.getItems();
    const n = items.length;
    this.spacer.style.height = `${n * ROW_H}px`;
    const top = this.el.scrollTop;
    const height = this.el.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(n, Math.ceil((top + height) / ROW_H) + OVERSCAN);
    const want = items.slice(first, last);
    this.win.style.transform = `translateY(${first * ROW_H}px)`;

    // Recycle the elements of visitors that scrolled out.
    const wanted = new Set(want.map((v) => v.id));
    const free = [];
    for (const [id, el] of this.rows) if (!wanted.has(id)) free.push(el);

    const next = new Map();
    const now = this.now();
    let cursor = this.win.firstElementChild;
    for (const v of want) {
      let el = this.rows.get(v.id);
      if (!el) el = free.pop() || createRow();
      if (el._row !== v) fillRow(el, v, now);
      const sel = v.id === this.selectedId;
      if (el.classList.contains('selected') !== sel) {
        el.classList.toggle('selected', sel);
        if (sel) el.setAttribute('aria-current', 'true');
        else el.removeAttribute('aria-current');
      }
      next.set(v.id, el);
      // Keep DOM order == display order with minimal moves.
      if (el === cursor) cursor = cursor.nextElementSibling;
      else this.win.insertBefore(el, cursor);
    }
    for (const el of free) el.remove(); // leftovers: never keep stale rows in the DOM
    this.rows = next;
    this.onRender(n);
  }

  // Live "time on site" for the rows on screen only.
  tick() {
    const now = this.now();
    for (const el of this.rows.values()) {
      const v = el._row;
      el._cells.time.textContent = elapsed(v.visit_started, v.left, now);
    }
  }

  moveFocus(e) {
    const row = e.target.closest('.visitor-row');
    if (!row) return;
    e.preventDefault();
    const sib = e.key === 'ArrowDown' ? row.nextElementSibling : row.previousElementSibling;
    if (sib) {
      sib.focus();
    } else {
      // At the edge of the rendered window: scroll one row, then retry.
      this.el.scrollTop += e.key === 'ArrowDown' ? ROW_H : -ROW_H;
      this.render();
      const again = e.key === 'ArrowDown' ? row.nextElementSibling : row.previousElementSibling;
      if (again) again.focus();
    }
  }
}

function createRow() {
  const c = {};
  const span = (key, cls) => (c[key] = h('span', { class: cls }));
  const row = h(
    'div',
    { class: 'visitor-row', role: 'listitem', tabindex: '0' },
    h('div', { class: 'cell c-visitor' }, span('name', 'v-name'), span('email', 'v-email sub')),
    h('div', { class: 'cell c-loc' }, h('span', { class: 'line' }, span('flag', 'v-flag'), span('city', 'v-city')), span('country', 'v-country sub')),
    (c.page = h('div', { class: 'cell c-page' }, span('title', 'v-title'), span('path', 'v-path sub'))),
    h('div', { class: 'cell c-time' }, span('time', 'v-time')),
    h('div', { class: 'cell c-pages' }, span('pages', 'v-pages')),
    h('div', { class: 'cell c-source' }, span('source', 'v-source')),
    h('div', { class: 'cell c-tech' }, span('tech', 'v-tech')),
    (c.status = h('div', { class: 'cell c-status' })),
  );
  row._cells = c;
  return row;
}

function fillRow(el, v, now) {
  const c = el._cells;
  el._row = v;
  el.dataset.visitorId = v.id;
  el.classList.toggle('is-left', !!v.left);
  const label = visitorLabel(v);
  c.name.textContent = label;
  c.email.textContent = v.email || '';
  c.flag.textContent = flag(v.country_code);
  c.flag.title = v.country || '';
  c.city.textContent = v.city || v.country || '—';
  c.country.textContent = v.city ? [v.region, v.country].filter(Boolean).join(', ') : '';
  const path = pathOf(v.url);
  c.title.textContent = v.title || path || '—';
  c.path.textContent = path;
  c.path.title = v.url || '';
  c.page.title = v.url || '';
  c.time.textContent = elapsed(v.visit_started, v.left, now);
  c.pages.textContent = v.pages != null ? String(v.pages) : '—';
  c.source.textContent = source(v);
  c.source.title = v.referrer || '';
  c.tech.textContent = tech(v) || '—';
  c.status.replaceChildren(
    ...badges(v).map((b) => h('span', { class: `badge badge-${b.key}`, 'data-badge': b.key, text: b.label })),
  );
  el.setAttribute('aria-label', `${label}, ${v.title || path}`);
}
