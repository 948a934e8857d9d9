// <pl-trigger-stats>: one trigger's funnel (#/triggers/<site>/<id>/stats).
// A period (today, 7 days, 30 days or custom dates; stats are kept per UTC
// day, so periods are whole UTC days) → GET …/triggers/{id}/stats?from&to.
// One row per variant: fired → delivered → seen → replied → goal, counts and
// rates of fired; the control group (fired and goal only: it gets nothing);
// the total; and, in words, each variant's goal rate against the control's.

import { h } from './dom.js';
import { STAGES, compareToControl, count, humanDuration, percent, rate, variantLabel } from './trigger-model.js';
import { editLink, errorText, siteLink, triggersApi } from './triggers-api.js';

const DAY = 86400000;
const PERIODS = [['today', 'Today'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days'], ['custom', 'Custom dates…']];

const utcDay = (ms) => Math.floor(ms / DAY) * DAY;
const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);
const dayText = (ms) => new Date(ms).toLocaleDateString(undefined, { timeZone: 'UTC', day: 'numeric', month: 'short', year: 'numeric' });

class PlTriggerStats extends HTMLElement {
  constructor() {
    super();
    this.site = null;
    this.triggerId = null;
    this.trigger = null;
    this.seq = 0;
  }

  connectedCallback() {
    if (!this.table) this.build();
  }

  build() {
    this.backLink = h('a', { id: 'ts-back', class: 'btn btn-sm', href: '#/triggers', text: '← Triggers' });
    this.titleEl = h('h1', { id: 'ts-title', class: 'page-title', text: 'Trigger stats' });
    this.siteEl = h('span', { class: 'site-name' });
    this.editLink = h('a', { id: 'ts-edit', class: 'btn btn-sm', text: 'Edit' });
    this.period = h('select', { id: 'ts-period', class: 'ws-input', onchange: () => this.periodChanged() },
      PERIODS.map(([v, t]) => h('option', { value: v, text: t })));
    this.period.value = '7d';
    this.from = h('input', { id: 'ts-from', class: 'ws-input', type: 'date', 'aria-label': 'From (UTC day)' });
    this.to = h('input', { id: 'ts-to', class: 'ws-input', type: 'date', 'aria-label': 'To (UTC day, included)' });
    this.customBox = h('form', { class: 'ts-custom', hidden: true, onsubmit: (e) => { e.preventDefault(); this.load(); } },
      this.from, h('span', { text: '–' }), this.to, h('button', { id: 'ts-apply', class: 'btn btn-sm', type: 'submit', text: 'Show' }));
    this.periodText = h('span', { id: 'ts-period-text', class: 'ws-hint' });
    this.status = h('span', { id: 'ts-status', class: 'ws-status', role: 'status' });
    this.refreshBtn = h('button', { id: 'ts-refresh', class: 'btn btn-sm', type: 'button', text: 'Refresh', onclick: () => this.load() });
    this.table = h('table', { id: 'ts-table', class: 'ts-table' });
    this.compareList = h('ul', { id: 'ts-compare', class: 'ts-compare' });
    this.append(
      h('div', { class: 'toolbar' },
        h('div', { class: 'toolbar-row tr-toolbar' }, this.backLink, this.titleEl, this.siteEl, h('span', { class: 'grow' }), this.editLink),
        h('div', { class: 'toolbar-row ts-period-row' },
          h('label', { class: 'ws-label', for: 'ts-period', text: 'Period' }), this.period, this.customBox, this.periodText, h('span', { class: 'grow' }), this.status, this.refreshBtn)),
      h('div', { class: 'ts-body' },
        h('section', { class: 'ws-section' }, h('h2', { text: 'Funnel' }),
          h('p', { class: 'ws-hint', text: 'Rates are shares of the visitors the trigger fired for. The control group matched but got no message; in the total, delivered, seen and replied are shares of those who were sent one.' }),
          h('div', { class: 'ts-scroll' }, this.table)),
        h('section', { class: 'ws-section' }, h('h2', { text: 'Does the message make a difference?' }), this.compareList)));
  }

  async open(site, id, siteName) {
    if (!this.table) this.build();
    const changed = site !== this.site || id !== this.triggerId;
    this.site = site;
    this.triggerId = id;
    this.backLink.href = siteLink(site);
    this.editLink.href = editLink(site, id);
    this.siteEl.textContent = siteName || site;
    this.trigger = null; // it may have been edited since
    if (changed) {
      this.titleEl.textContent = `Trigger #${id}`;
      this.table.replaceChildren();
      this.compareList.replaceChildren();
    }
    if (!this.from.value) {
      const today = utcDay(Date.now());
      this.from.value = isoDay(today - 6 * DAY);
      this.to.value = isoDay(today);
    }
    this.periodChanged();
  }

  periodChanged() {
    this.customBox.hidden = this.period.value !== 'custom';
    if (this.period.value === 'custom') this.from.focus();
    this.load();
  }

  // [from, to) in ms for the chosen period, or a message.
  range() {
    const now = Date.now();
    const today = utcDay(now);
    switch (this.period.value) {
      case 'today': return { from: today, to: now };
      case '30d': return { from: today - 29 * DAY, to: now };
      case 'custom': {
        const from = Date.parse(`${this.from.value}T00:00:00Z`);
        const to = Date.parse(`${this.to.value}T00:00:00Z`);
        if (!Number.isFinite(from) || !Number.isFinite(to)) return { error: 'Pick both dates.' };
        if (to < from) return { error: 'The end date is before the start date.' };
        return { from, to: to + DAY };
      }
      default: return { from: today - 6 * DAY, to: now };
    }
  }

  async load() {
    if (!this.site || this.triggerId == null) return;
    const r = this.range();
    if (r.error) {
      this.setStatus(r.error, 'error');
      return;
    }
    const last = Math.max(r.from, r.to - 1);
    this.periodText.textContent = utcDay(r.from) === utcDay(last)
      ? `${dayText(r.from)} (UTC)`
      : `${dayText(r.from)} – ${dayText(last)} (UTC days)`;
    const seq = ++this.seq;
    this.setStatus('Loading…');
    this.refreshBtn.disabled = true;
    try {
      const [trigger, stats] = await Promise.all([
        this.trigger ? Promise.resolve(this.trigger) : triggersApi.get(this.site, this.triggerId),
        triggersApi.stats(this.site, this.triggerId, r.from, r.to),
      ]);
      if (seq !== this.seq) return;
      this.trigger = trigger && typeof trigger === 'object' ? trigger : {};
      this.titleEl.textContent = this.trigger.name || `Trigger #${this.triggerId}`;
      this.render(stats || {});
      this.setStatus('');
    } catch (err) {
      if (seq !== this.seq) return;
      this.setStatus(err.status === 404 ? 'This trigger does not exist (any more).' : `Could not load the stats: ${errorText(err)}`, 'error');
    } finally {
      if (seq === this.seq) this.refreshBtn.disabled = false;
    }
  }

  setStatus(text, kind = '') {
    this.status.textContent = text;
    this.status.dataset.kind = kind;
    this.status.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  }

  render(stats) {
    const t = this.trigger || {};
    const defined = Array.isArray(t.variants) ? t.variants.filter((v) => v && typeof v.key === 'string') : [];
    const rows = Array.isArray(stats.variants) ? stats.variants.filter((x) => x && typeof x === 'object') : [];
    const control = rows.find((x) => x.variant == null) || null;
    // Variants in the trigger's order (zeros for ones that did not fire),
    // then keys the trigger no longer has.
    const byKey = new Map(rows.filter((x) => x.variant != null).map((x) => [String(x.variant), x]));
    const variants = defined.map((v) => byKey.get(v.key) || { variant: v.key });
    for (const [key, row] of byKey) if (!defined.some((v) => v.key === key)) variants.push(row);
    const single = variants.length === 1 && defined.length === 1;
    const label = (key) => (key == null ? 'Control group' : single ? 'Message' : variantLabel(key));
    const textOf = (key) => defined.find((v) => v.key === key)?.text;

    const head = h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Variant' }), STAGES.map(([, name]) => h('th', { scope: 'col', text: name }))));
    const body = h('tbody', {}, variants.map((row) => this.row(row, label(row.variant), textOf(row.variant), false)));
    if (control || Number(t.control_percent) > 0) body.append(this.row(control || { variant: null }, 'Control group', 'Matched but got no message', true));
    // The total is summed here, so that its rates mean something whether or
    // not the server's `total` counts the control group: delivered, seen and
    // replied as shares of the visitors who were sent a message, the goal as
    // a share of everyone the trigger fired for.
    const sent = sum(variants);
    const total = sum([...variants, control].filter(Boolean));
    const share = (n, d) => (d ? n / d : 0);
    total.rates = {
      delivered: share(total.delivered, sent.fired), seen: share(total.seen, sent.fired),
      replied: share(total.replied, sent.fired), goal: share(total.goal, total.fired),
    };
    const foot = h('tfoot', {}, this.row({ ...total, variant: 'total' }, 'Total', null, false, 'total'));
    this.table.replaceChildren(h('caption', { class: 'sr-only', text: 'Funnel per variant' }), head, body, foot);

    const hasGoal = !!(t.goal && t.goal.event);
    const notes = compareToControl(variants, control, { hasGoal, controlPercent: Number(t.control_percent) || 0, label });
    if (hasGoal) notes.unshift({ kind: 'info', text: `Goal: the event "${t.goal.event}" within ${humanDuration(t.goal.window_secs)} after the trigger fired.` });
    this.compareList.replaceChildren(...notes.map((n) => h('li', { class: `ts-note ts-${n.kind}`, 'data-variant': n.variant == null ? null : String(n.variant) },
      h('span', { text: n.text }), n.verdict ? h('strong', { class: 'ts-verdict', text: ` ${n.verdict}` }) : null)));
  }

  row(data, name, sub, isControl, key) {
    const variantKey = key || (isControl ? 'control' : String(data.variant));
    const fired = count(data, 'fired');
    const cells = STAGES.map(([stage, stageName]) => {
      const td = h('td', { 'data-stage': stage, 'data-label': stageName });
      if (isControl && stage !== 'fired' && stage !== 'goal') {
        td.append(h('span', { class: 'ts-count ts-none', text: '—', title: 'The control group gets no message' }));
        return td;
      }
      const n = count(data, stage);
      td.append(h('span', { class: 'ts-count', text: String(n) }));
      if (stage !== 'fired') {
        const r = rate(data, stage);
        const bar = h('span', { class: 'ts-bar-fill' });
        bar.style.width = `${Math.max(0, Math.min(100, r * 100))}%`;
        td.append(h('span', { class: 'ts-rate', text: fired ? percent(r) : '—' }), h('span', { class: 'ts-bar', 'aria-hidden': 'true' }, bar));
      }
      return td;
    });
    return h('tr', { class: `ts-row${isControl ? ' ts-control' : ''}`, 'data-variant': variantKey },
      h('th', { scope: 'row', class: 'ts-variant' }, h('span', { class: 'ts-name', text: name }),
        sub ? h('span', { class: 'ts-sub', text: sub }) : null),
      cells);
  }
}

function sum(rows) {
  const out = {};
  for (const [stage] of STAGES) out[stage] = rows.reduce((n, r) => n + count(r, stage), 0);
  return out;
}

if (!customElements.get('pl-trigger-stats')) customElements.define('pl-trigger-stats', PlTriggerStats);
