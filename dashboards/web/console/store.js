// The live visitor set of one site. Visitors live in a Map by id; the sorted
// and the filtered arrays are rebuilt lazily (at most once per frame, when
// the list asks for them), so a burst of deltas costs one sort.

import { segmentsOf } from './format.js';

export class VisitorStore {
  constructor() {
    this.map = new Map();
    this.hay = new Map(); // id -> lowercase search text
    this.counts = {};
    this.skew = 0; // server clock minus ours
    this.ready = false; // a snapshot has arrived
    this.segment = 'all';
    this.query = '';
    this.sorted = null;
    this.view = null;
  }

  clear() {
    this.map.clear();
    this.hay.clear();
    this.counts = {};
    this.ready = false;
    this.sorted = this.view = null;
  }

  // Returns {upserted: [rows], removed: [ids]} for listeners (the card).
  apply(msg) {
    if (typeof msg.now === 'number') this.skew = msg.now - Date.now();
    if (msg.counts && typeof msg.counts === 'object') this.counts = msg.counts;
    const upserted = [];
    const removed = [];
    if (msg.type === 'snapshot') {
      const before = new Set(this.map.keys());
      this.map.clear();
      this.hay.clear();
      for (const row of list(msg.visitors)) if (this.put(row)) upserted.push(row);
      for (const id of before) if (!this.map.has(id)) removed.push(id);
      this.ready = true;
    } else if (msg.type === 'delta') {
      for (const row of list(msg.upsert)) if (this.put(row)) upserted.push(row);
      for (const id of list(msg.remove)) {
        if (this.map.delete(id)) {
          this.hay.delete(id);
          removed.push(id);
        }
      }
    } else {
      return null;
    }
    this.sorted = this.view = null;
    return { upserted, removed };
  }

  put(row) {
    if (!row || typeof row !== 'object' || typeof row.id !== 'string') return false;
    this.map.set(row.id, row);
    const parts = [row.name, row.email, row.city, row.url, row.number != null ? `#${row.number}` : ''];
    this.hay.set(row.id, parts.filter((p) => p != null).join('\n').toLowerCase());
    return true;
  }

  get(id) {
    return this.map.get(id);
  }

  get size() {
    return this.map.size;
  }

  serverNow() {
    return Date.now() + this.skew;
  }

  setFilter(segment, query) {
    const q = String(query || '').trim().toLowerCase();
    if (segment === this.segment && q === this.query) return;
    this.segment = segment;
    this.query = q;
    this.view = null;
  }

  // Newest activity first; id breaks ties so rows do not jitter.
  items() {
    if (!this.sorted) {
      this.sorted = Array.from(this.map.values()).sort(
        (a, b) => (b.last_activity || 0) - (a.last_activity || 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
      );
    }
    if (!this.view) {
      const seg = this.segment;
      const q = this.query;
      this.view =
        seg === 'all' && !q
          ? this.sorted
          : this.sorted.filter(
              (v) => (seg === 'all' || segmentsOf(v).includes(seg)) && (!q || this.hay.get(v.id).includes(q)),
            );
    }
    return this.view;
  }
}

function list(v) {
  return Array.isArray(v) ? v : [];
}
