// The editor's "Message" section: message variants (author, text with
// placeholders, weight; up to 5), the control-group share, the delay and
// "open the widget". As the marketer types, each variant's text is rendered
// by POST …/triggers/render (debounced), as the sample visitor or as a live
// visitor picked from the list, so placeholders and fallbacks can be checked.

import { agents } from './agents.js';
import { h } from './dom.js';
import { visitorLabel } from './format.js';
import { MAX_MESSAGE_CHARS, MAX_VARIANTS, MAX_WEIGHT, nextVariantKey, shares, splitError, variantLabel } from './trigger-model.js';
import { triggersApi } from './triggers-api.js';

const RENDER_DELAY = 400; // ms after the last keystroke
const VISITORS_TTL = 10000; // refresh the "preview as" list at most this often

export class MessageSection {
  constructor({ onChange = () => {} } = {}) {
    this.onChange = onChange;
    this.site = null;
    this.placeholders = [];
    this.variants = []; // [{data, ui, render: {timer, ctrl, seq}}]
    this.visitorsAt = 0;
    this.build();
  }

  build() {
    const changed = () => { this.renderShares(); this.onChange(); };
    this.previewAs = h('select', { id: 'tr-preview-visitor', class: 'ws-input', onchange: () => this.renderAll(), onfocus: () => this.loadVisitors() },
      h('option', { value: '', text: 'A sample visitor (Jana from Prague)' }));
    this.list = h('div', { class: 'tv-list' });
    this.addBtn = h('button', { id: 'tr-add-variant', type: 'button', class: 'btn btn-sm', text: '+ Add a variant (A/B test)', onclick: () => this.addVariant() });
    this.control = h('input', { id: 'tr-control', class: 'ws-input ws-num', type: 'number', min: '0', max: '90', step: '1', 'data-path': 'control_percent', oninput: changed });
    this.controlHint = h('span', { class: 'ws-hint', id: 'tr-control-hint' });
    this.delay = h('input', { id: 'tr-delay', class: 'ws-input ws-num', type: 'number', min: '0', max: '3600', step: '1', 'data-path': 'delay_secs', oninput: () => this.onChange() });
    this.openWidget = h('input', { id: 'tr-open-widget', type: 'checkbox', 'data-path': 'open_widget', onchange: () => this.onChange() });
    const field = (label, control, hint) => h('label', { class: 'ws-field' }, h('span', { class: 'ws-label', text: label }), control, hint);
    this.el = h('div', { class: 'tv' },
      field('Preview placeholders as', this.previewAs, h('span', { class: 'ws-hint', text: 'Placeholders such as {name|there} are filled in for each visitor when the message is sent.' })),
      this.list,
      h('div', { class: 'ws-actions' }, this.addBtn),
      h('div', { class: 'ws-row' },
        field('Control group (%)', this.control, this.controlHint),
        field('Delay (seconds)', this.delay, h('span', { class: 'ws-hint', text: 'Wait this long after the visitor matches; 0 sends at once.' }))),
      h('label', { class: 'ws-check' }, this.openWidget, h('span', { text: 'Open the chat window when the message arrives' })));
    agents.load().then(() => this.refreshAuthors());
  }

  setSite(site) {
    if (site === this.site) return;
    this.site = site;
    this.visitorsAt = 0;
    this.previewAs.replaceChildren(this.previewAs.firstElementChild);
    this.previewAs.value = '';
  }

  setPlaceholders(list) {
    this.placeholders = Array.isArray(list) ? list : [];
    for (const v of this.variants) this.fillPlaceholderPicker(v.ui.insert);
  }

  load(trigger) {
    for (const v of this.variants) abort(v);
    this.variants = [];
    this.list.replaceChildren();
    const list = Array.isArray(trigger.variants) && trigger.variants.length ? trigger.variants : [{ key: 'a', author: { bot: 'Porchlight' }, text: '', weight: 1 }];
    for (const data of list) this.appendVariant({ ...data });
    this.control.value = String(Number.isFinite(trigger.control_percent) ? trigger.control_percent : 0);
    this.delay.value = String(Number.isFinite(trigger.delay_secs) ? trigger.delay_secs : 0);
    this.openWidget.checked = trigger.open_widget === true;
    this.afterListChange();
    this.renderAll();
  }

  // Writes this section's part of the trigger into `out`.
  apply(out) {
    out.variants = this.variants.map(({ data, ui }) => {
      const v = { ...data, text: ui.text.value, weight: intOr(ui.weight.value, data.weight) };
      v.author = ui.author.value === 'bot' ? { bot: ui.bot.value.trim() } : { agent_id: Number(ui.author.value.slice(6)) };
      return v;
    });
    out.control_percent = intOr(this.control.value, 0);
    out.delay_secs = intOr(this.delay.value, 0);
    out.open_widget = this.openWidget.checked;
    return out;
  }

  problems() {
    const out = [];
    this.variants.forEach(({ ui }, i) => {
      if (ui.author.value === 'bot' && !ui.bot.value.trim()) out.push({ path: `variants[${i}].author`, text: 'enter the name the message is sent as' });
      if (!ui.text.value.trim()) out.push({ path: `variants[${i}].text`, text: 'write the message' });
      if (this.variants.length > 1 && !isInt(ui.weight.value, 1, MAX_WEIGHT)) out.push({ path: `variants[${i}].weight`, text: `the weight is a whole number from 1 to ${MAX_WEIGHT}` });
    });
    if (!isInt(this.control.value, 0, 90)) out.push({ path: 'control_percent', text: 'the control group is a whole percentage from 0 to 90' });
    if (!isInt(this.delay.value, 0, 3600)) out.push({ path: 'delay_secs', text: 'the delay is a whole number of seconds from 0 to 3600' });
    return out;
  }

  // ---- variants -----------------------------------------------------------

  appendVariant(data) {
    const v = { data, render: { timer: 0, ctrl: null, seq: 0 } };
    const author = h('select', { class: 'ws-input tv-author', onchange: () => { this.syncBot(v); this.renderOne(v); this.onChange(); } });
    const bot = h('input', { class: 'ws-input tv-bot', type: 'text', maxlength: '100', placeholder: 'Bot name', 'aria-label': 'Bot name', oninput: () => this.onChange() });
    const text = h('textarea', { class: 'ws-input tv-text', rows: '3', maxlength: String(MAX_MESSAGE_CHARS), placeholder: 'Hi {first_name|there}! Anything I can help you with?', oninput: () => { this.scheduleRender(v); this.onChange(); } });
    const insert = h('select', { class: 'ws-input tv-insert', onchange: () => this.insertPlaceholder(v) });
    const weight = h('input', { class: 'ws-input ws-num tv-weight', type: 'number', min: '1', max: String(MAX_WEIGHT), step: '1', oninput: () => { this.renderShares(); this.onChange(); } });
    const remove = h('button', { type: 'button', class: 'btn btn-xs btn-danger-ghost tv-remove', text: 'Remove', onclick: () => this.removeVariant(v) });
    const title = h('span', { class: 'tv-title' });
    const share = h('span', { class: 'tv-share ws-hint' });
    const preview = h('span', { class: 'tv-preview-text' });
    const previewBox = h('div', { class: 'tv-preview', 'aria-live': 'polite' }, h('span', { class: 'tv-preview-label', text: 'Preview' }), preview);
    const weightField = h('label', { class: 'ws-field tv-weight-field' }, h('span', { class: 'ws-label', text: 'Weight' }), weight);
    const box = h('div', { class: 'tv-variant' },
      h('div', { class: 'tv-head' }, title, share, h('span', { class: 'grow' }), remove),
      h('div', { class: 'ws-row' },
        h('label', { class: 'ws-field tv-author-field' }, h('span', { class: 'ws-label', text: 'Sent as' }), author),
        h('label', { class: 'ws-field tv-bot-field' }, h('span', { class: 'ws-label', text: 'Bot name' }), bot),
        weightField),
      h('label', { class: 'ws-field' }, h('span', { class: 'ws-label', text: 'Message' }), text),
      h('div', { class: 'tv-tools' }, insert),
      previewBox);
    v.ui = { box, author, bot, text, insert, weight, weightField, remove, title, share, preview, previewBox };
    text.value = typeof data.text === 'string' ? data.text : '';
    weight.value = String(Number.isFinite(data.weight) ? data.weight : 1);
    const a = data.author || {};
    bot.value = typeof a.bot === 'string' ? a.bot : 'Porchlight';
    this.fillAuthors(author, typeof a.agent_id === 'number' ? `agent:${a.agent_id}` : 'bot');
    this.syncBot(v);
    this.fillPlaceholderPicker(insert);
    this.variants.push(v);
    this.list.append(box);
    return v;
  }

  addVariant() {
    if (this.variants.length >= MAX_VARIANTS) return;
    const last = this.variants[this.variants.length - 1];
    const key = nextVariantKey(this.variants.map((x) => x.data.key));
    const data = { key, author: last ? this.apply({}).variants.at(-1).author : { bot: 'Porchlight' }, text: '', weight: 1 };
    const v = this.appendVariant(data);
    this.afterListChange();
    v.ui.text.focus();
    this.renderOne(v);
    this.onChange();
  }

  removeVariant(v) {
    const i = this.variants.indexOf(v);
    if (i < 0 || this.variants.length < 2) return;
    abort(v);
    this.variants.splice(i, 1);
    v.ui.box.remove();
    this.afterListChange();
    (this.variants[i] || this.variants[i - 1]).ui.text.focus();
    this.onChange();
  }

  // Titles, paths, remove buttons and shares after variants come or go.
  afterListChange() {
    const many = this.variants.length > 1;
    this.variants.forEach((v, i) => {
      const u = v.ui;
      const label = variantLabel(v.data.key);
      u.title.textContent = many ? label : 'Message';
      u.box.dataset.variant = v.data.key;
      u.box.setAttribute('data-path', `variants[${i}]`);
      u.author.setAttribute('data-path', `variants[${i}].author`);
      u.bot.setAttribute('data-path', `variants[${i}].author.bot`);
      u.text.setAttribute('data-path', `variants[${i}].text`);
      u.weight.setAttribute('data-path', `variants[${i}].weight`);
      u.text.setAttribute('aria-label', `Message text (${label})`);
      u.author.setAttribute('aria-label', `Sent as (${label})`);
      u.weight.setAttribute('aria-label', `Weight (${label})`);
      u.insert.setAttribute('aria-label', `Insert a placeholder (${label})`);
      u.remove.setAttribute('aria-label', `Remove ${label}`);
      u.remove.hidden = !many;
      u.weightField.hidden = !many;
    });
    this.addBtn.disabled = this.variants.length >= MAX_VARIANTS;
    this.addBtn.title = this.addBtn.disabled ? `At most ${MAX_VARIANTS} variants` : '';
    this.renderShares();
  }

  renderShares() {
    const data = this.variants.map((v) => ({ weight: intOr(v.ui.weight.value, 0) }));
    const s = shares(data, intOr(this.control.value, 0));
    this.variants.forEach((v, i) => { v.ui.share.textContent = `≈ ${Math.round(s.variants[i])}% of matching visitors`; });
    this.controlHint.textContent = s.control
      ? `${s.control}% of matching visitors get nothing, to measure what the message itself changes.`
      : 'Everyone who matches gets a message. A control group measures whether the message causes the goal.';
  }

  // ---- authors ------------------------------------------------------------

  fillAuthors(sel, current) {
    const list = agents.list || [];
    const opts = [h('option', { value: 'bot', text: 'A bot name…' })];
    const ids = new Set();
    for (const a of list) {
      ids.add(a.id);
      opts.push(h('option', { value: `agent:${a.id}`, text: a.name || a.email || `Agent #${a.id}` }));
    }
    const m = /^agent:(\d+)$/.exec(current);
    if (m && !ids.has(Number(m[1]))) opts.push(h('option', { value: current, text: agents.fullName(Number(m[1])) }));
    sel.replaceChildren(...opts);
    sel.value = current;
  }

  refreshAuthors() {
    for (const v of this.variants) this.fillAuthors(v.ui.author, v.ui.author.value);
  }

  syncBot(v) {
    v.ui.bot.closest('.tv-bot-field').hidden = v.ui.author.value !== 'bot';
  }

  // ---- placeholders and the rendered preview ------------------------------

  fillPlaceholderPicker(sel) {
    // "property", "property.*" or "property.NAME" all offer {property.NAME}.
    const names = [...new Set(this.placeholders.map((p) => (/^property(\.\*|\.|\.NAME)?$/.test(p) ? 'property.NAME' : p)))];
    sel.replaceChildren(h('option', { value: '', text: 'Insert a placeholder…' }),
      ...names.map((p) => h('option', { value: p, text: `{${p}}` })));
    sel.value = '';
  }

  insertPlaceholder(v) {
    const name = v.ui.insert.value;
    v.ui.insert.value = '';
    if (!name) return;
    const area = v.ui.text;
    const token = `{${name}}`;
    const start = area.selectionStart ?? area.value.length;
    const end = area.selectionEnd ?? start;
    area.setRangeText(token, start, end, 'end');
    area.focus();
    // {property.NAME}: select NAME so the marketer types the property over it.
    const at = token.indexOf('NAME');
    if (at >= 0) area.setSelectionRange(start + at, start + at + 4);
    area.dispatchEvent(new Event('input', { bubbles: true }));
  }

  scheduleRender(v) {
    clearTimeout(v.render.timer);
    v.render.timer = setTimeout(() => this.renderOne(v), RENDER_DELAY);
  }

  renderAll() {
    for (const v of this.variants) this.renderOne(v);
  }

  async renderOne(v) {
    clearTimeout(v.render.timer);
    if (v.render.ctrl) v.render.ctrl.abort();
    const text = v.ui.text.value;
    const out = v.ui.preview;
    v.ui.previewBox.dataset.state = '';
    if (!text.trim() || !this.site) {
      out.textContent = 'The rendered message appears here as you type.';
      v.ui.previewBox.dataset.state = 'empty';
      return;
    }
    const seq = ++v.render.seq;
    const ctrl = (v.render.ctrl = new AbortController());
    const body = { text };
    if (this.previewAs.value) body.visitor_id = this.previewAs.value;
    try {
      const res = await triggersApi.render(this.site, body, { signal: ctrl.signal });
      if (seq !== v.render.seq) return;
      out.textContent = res && typeof res.text === 'string' ? res.text : '';
    } catch (err) {
      if (err.name === 'AbortError' || seq !== v.render.seq) return;
      // A 400 names the path "text" (the body's field): the message alone is clearer here.
      out.textContent = err.status === 404 && body.visitor_id ? 'That visitor has left: pick another one.' : splitError(err.message).text;
      v.ui.previewBox.dataset.state = 'error';
    }
  }

  async loadVisitors() {
    if (!this.site || Date.now() - this.visitorsAt < VISITORS_TTL) return;
    this.visitorsAt = Date.now();
    const site = this.site;
    try {
      const res = await triggersApi.visitors(site);
      if (site !== this.site) return;
      const current = this.previewAs.value;
      const rows = Array.isArray(res && res.visitors) ? res.visitors.filter((x) => x && typeof x.id === 'string') : [];
      const opts = rows.map((x) => h('option', { value: x.id, text: [visitorLabel(x), x.city || x.country, x.title || x.url].filter(Boolean).join(' · ') }));
      if (current && !rows.some((x) => x.id === current)) opts.unshift(h('option', { value: current, text: 'The visitor picked before (left?)' }));
      this.previewAs.replaceChildren(h('option', { value: '', text: 'A sample visitor (Jana from Prague)' }),
        rows.length ? h('optgroup', { label: 'Live visitors' }, opts) : h('option', { value: '', disabled: true, text: 'No live visitors right now' }));
      this.previewAs.value = current;
    } catch {
      this.visitorsAt = 0;
    }
  }

  // Previews this visitor (e.g. from "who matches right now").
  previewFor(id, label) {
    if (![...this.previewAs.options].some((o) => o.value === id)) this.previewAs.append(h('option', { value: id, text: label }));
    this.previewAs.value = id;
    this.renderAll();
  }
}

function abort(v) {
  clearTimeout(v.render.timer);
  if (v.render.ctrl) v.render.ctrl.abort();
  v.render.seq++;
}

function isInt(text, lo, hi) {
  const n = Number(text);
  return String(text).trim() !== '' && Number.isInteger(n) && n >= lo && n <= hi;
}

function intOr(text, fallback) {
  const n = Number(text);
  return String(text).trim() !== '' && Number.isInteger(n) ? n : fallback;
}
