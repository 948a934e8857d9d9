// The condition builder: nested all/any groups of conditions, edited in
// place. A model tree (groups and conditions) owns one element each; edits
// change the model and only the affected controls, so focus stays where it
// is. Every row and control carries data-path, the JSON path the server
// uses in its validation errors ("conditions.all[1].any[0].value"), so the
// editor can point at the row an error names.
//
//   const b = new ConditionBuilder({onChange});
//   b.setCatalogue(cat); b.load(trigger.conditions); … b.value(); b.problems();

import { h } from './dom.js';
import {
  DAYS, FIELD_GROUPS, FIELD_HINTS, MAX_CONDITIONS, MAX_DEPTH, MAX_FIELD_NAME_CHARS, MAX_VALUE_CHARS, NUMBER_OPS, OP_LABELS, STRING_OPS,
  catalogue, defaultValue, valueKind, valueProblem,
} from './trigger-model.js';

const NAME_PLACEHOLDER = { property: 'property name', event: 'event name', campaign_tag: 'tag, e.g. gclid' };
let uid = 0;

export class ConditionBuilder {
  constructor({ onChange = () => {} } = {}) {
    this.onChange = onChange;
    this.cat = catalogue(null);
    this.id = `cb${++uid}`;
    this.lists = h('div', { hidden: true }); // datalists of suggestions
    this.el = h('div', { class: 'cb' });
    this.root = newGroup('all', []);
  }

  setCatalogue(cat) {
    this.cat = cat;
    this.lists.replaceChildren();
    if (this.root) this.render();
  }

  load(conditions) {
    let root = toNode(conditions);
    if (!root || root.type !== 'group') root = newGroup('all', root ? [root] : []);
    this.root = root;
    this.render();
  }

  // The conditions as the API takes them.
  value() {
    return serialize(this.root, this.cat);
  }

  // Incomplete parts, as [{path, text}], before asking the server.
  problems() {
    const out = [];
    const walk = (node, path) => {
      if (node.type === 'group') {
        if (!node.children.length) out.push({ path, text: 'this group is empty: add a condition or remove the group' });
        node.children.forEach((c, i) => walk(c, `${path}.${node.mode}[${i}]`));
        return;
      }
      const info = this.cat.byField.get(node.field);
      if (!node.field) out.push({ path: `${path}.field`, text: 'pick a field' });
      else if (info && !info.ops.includes(node.op)) out.push({ path: `${path}.op`, text: 'pick an operator' });
      if (needsName(node, info) && !String(node.name || '').trim()) out.push({ path: `${path}.name`, text: `enter the ${NAME_PLACEHOLDER[node.field] || 'name'}` });
      const problem = valueProblem(valueKind(info && info.type, node.op), node.value);
      if (problem) out.push({ path: `${path}.value`, text: problem });
      if (node.property) {
        if (!String(node.property.name || '').trim()) out.push({ path: `${path}.property.name`, text: 'enter the property name' });
        const p = valueProblem(valueKind('property', node.property.op), node.property.value);
        if (p) out.push({ path: `${path}.property.value`, text: p });
      }
    };
    walk(this.root, 'conditions');
    return out;
  }

  count(node = this.root) {
    return node.type === 'group' ? node.children.reduce((n, c) => n + this.count(c), 0) : 1;
  }

  // ---- rendering ----------------------------------------------------------

  render() {
    this.el.replaceChildren(this.groupEl(this.root, null, 1), this.lists);
    this.renumber();
  }

  groupEl(group, parent, depth) {
    const mode = h('select', { class: 'ws-input cb-mode', onchange: () => { group.mode = mode.value; this.renumber(); this.onChange(); } },
      h('option', { value: 'all', text: 'all' }), h('option', { value: 'any', text: 'any' }));
    mode.value = group.mode;
    const list = h('ul', { class: 'cb-list' });
    const addCond = h('button', { type: 'button', class: 'btn btn-xs cb-add-condition', text: '+ Condition', onclick: () => this.add(group, newCondition(this.cat), depth) });
    const addGroup = depth < MAX_DEPTH
      ? h('button', { type: 'button', class: 'btn btn-xs cb-add-group', text: '+ Group', onclick: () => this.add(group, newGroup(group.mode === 'all' ? 'any' : 'all', [newCondition(this.cat)]), depth) })
      : null;
    const remove = parent
      ? h('button', { type: 'button', class: 'btn btn-xs btn-danger-ghost cb-remove', text: 'Remove group', onclick: () => this.remove(group, parent) })
      : null;
    const box = h('fieldset', { class: `cb-group${parent ? '' : ' cb-root'}` },
      h('legend', { class: 'cb-legend' }, parent ? null : h('span', { text: 'Visitors who match ' }), mode, h('span', { text: parent ? ' of these:' : ' of these conditions:' })),
      list,
      h('div', { class: 'cb-group-actions' }, addCond, addGroup, h('span', { class: 'grow' }), remove));
    group.ui = { box, mode, list, addCond, addGroup, remove };
    group.depth = depth;
    for (const child of group.children) list.append(this.itemEl(child, group, depth));
    group.el = parent ? h('li', { class: 'cb-item cb-item-group' }, box) : box;
    return group.el;
  }

  itemEl(node, parent, depth) {
    return node.type === 'group' ? this.groupEl(node, parent, depth + 1) : this.condEl(node, parent);
  }

  condEl(cond, parent) {
    const fieldSel = h('select', { class: 'ws-input cb-field', onchange: () => this.setField(cond, fieldSel.value) });
    this.fillFields(fieldSel, cond.field);
    const opSel = h('select', { class: 'ws-input cb-op', onchange: () => this.setOp(cond, opSel.value) });
    const name = h('input', { class: 'ws-input cb-name', type: 'text', maxlength: String(MAX_FIELD_NAME_CHARS), autocomplete: 'off', spellcheck: 'false', oninput: () => { cond.name = name.value; this.onChange(); } });
    const valueBox = h('span', { class: 'cb-value' });
    const propToggle = h('button', { type: 'button', class: 'btn btn-xs cb-prop-toggle', onclick: () => this.toggleProperty(cond) });
    const propRow = h('div', { class: 'cb-prop' });
    const remove = h('button', { type: 'button', class: 'btn btn-xs btn-icon cb-remove', text: '×', onclick: () => this.remove(cond, parent) });
    cond.ui = { fieldSel, opSel, name, valueBox, propToggle, propRow, remove };
    cond.el = h('li', { class: 'cb-item cb-cond' },
      h('div', { class: 'cb-row' }, fieldSel, name, opSel, valueBox, propToggle, h('span', { class: 'grow' }), remove),
      propRow);
    this.refreshCond(cond);
    return cond.el;
  }

  fillFields(sel, current) {
    const seen = new Set();
    const opt = (info) => {
      seen.add(info.field);
      return h('option', { value: info.field, text: info.label || info.field });
    };
    const groups = FIELD_GROUPS.map(([label, names]) => {
      const infos = names.map((n) => this.cat.byField.get(n)).filter(Boolean);
      return infos.length ? h('optgroup', { label }, infos.map(opt)) : null;
    });
    const rest = this.cat.fields.filter((x) => !seen.has(x.field));
    sel.replaceChildren(...groups.filter(Boolean), rest.length ? h('optgroup', { label: 'Other' }, rest.map(opt)) : null);
    if (current && !this.cat.byField.has(current)) sel.append(h('option', { value: current, text: `${current} (unknown field)` }));
    if (!current) sel.prepend(h('option', { value: '', text: 'Pick a field…' }));
    sel.value = current || '';
  }

  // Name, operator, value and property controls for the condition's field.
  refreshCond(cond) {
    const { opSel, name, propToggle } = cond.ui;
    const info = this.cat.byField.get(cond.field);
    const ops = info ? info.ops : cond.op ? [cond.op] : [];
    opSel.replaceChildren(...ops.map((op) => h('option', { value: op, text: OP_LABELS[op] || op })));
    opSel.value = cond.op;
    const withName = needsName(cond, info);
    name.hidden = !withName;
    name.placeholder = NAME_PLACEHOLDER[cond.field] || 'name';
    name.value = withName ? cond.name || '' : '';
    const isEvent = cond.field === 'event' || (info && info.type === 'event');
    propToggle.hidden = !isEvent;
    if (!isEvent) cond.property = null;
    propToggle.textContent = cond.property ? '− Property' : '+ Property';
    propToggle.setAttribute('aria-expanded', String(!!cond.property));
    this.refreshValue(cond);
    this.refreshProperty(cond);
  }

  refreshValue(cond) {
    const info = this.cat.byField.get(cond.field);
    const kind = valueKind(info && info.type, cond.op);
    cond.ui.valueBox.replaceChildren(...this.valueControls(kind, cond.value, (v) => { cond.value = v; this.onChange(); }, cond.field));
    cond.ui.valueBox.dataset.kind = kind;
  }

  refreshProperty(cond) {
    const row = cond.ui.propRow;
    if (!cond.property) {
      row.replaceChildren();
      row.hidden = true;
      return;
    }
    const p = cond.property;
    const ops = propertyOps(this.cat);
    const name = h('input', { class: 'ws-input cb-prop-name', type: 'text', maxlength: String(MAX_FIELD_NAME_CHARS), placeholder: 'property name', autocomplete: 'off', spellcheck: 'false', value: p.name || '', oninput: () => { p.name = name.value; this.onChange(); } });
    const op = h('select', { class: 'ws-input cb-prop-op' }, ops.map((o) => h('option', { value: o, text: OP_LABELS[o] || o })));
    op.value = p.op;
    const valueBox = h('span', { class: 'cb-value' });
    const fill = () => valueBox.replaceChildren(...this.valueControls(valueKind('property', p.op), p.value, (v) => { p.value = v; this.onChange(); }, 'property'));
    op.addEventListener('change', () => {
      const before = valueKind('property', p.op);
      p.op = op.value;
      if (valueKind('property', p.op) !== before) p.value = defaultValue(valueKind('property', p.op));
      fill();
      this.renumber();
      this.onChange();
    });
    fill();
    row.hidden = false;
    row.replaceChildren(h('span', { class: 'cb-prop-label', text: 'with property' }), name, op, valueBox);
    cond.ui.prop = { name, op, valueBox };
  }

  // Inputs for one value; onValue gets the parsed value on every edit.
  valueControls(kind, value, onValue, field) {
    const hints = FIELD_HINTS[field] || {};
    const num = (v, label) => {
      const input = h('input', { class: 'ws-input cb-num', type: 'number', step: 'any', inputmode: 'decimal', placeholder: hints.placeholder || '', 'data-label': label });
      input.value = typeof v === 'number' && Number.isFinite(v) ? String(v) : '';
      return input;
    };
    const parseNum = (input) => (input.value.trim() === '' || !Number.isFinite(Number(input.value)) ? null : Number(input.value));
    const time = (v, label) => h('input', { class: 'ws-input cb-time', type: 'time', value: typeof v === 'string' ? v : '', 'data-label': label });
    const unit = hints.unit ? h('span', { class: 'cb-unit', text: hints.unit }) : null;
    switch (kind) {
      case 'none':
        return [];
      case 'text':
      case 'regex': {
        const input = h('input', {
          class: `ws-input cb-text${kind === 'regex' ? ' ws-mono' : ''}`, type: 'text', maxlength: String(MAX_VALUE_CHARS), autocomplete: 'off', spellcheck: 'false',
          placeholder: kind === 'regex' ? '^/pricing(/|$)' : hints.placeholder || '', list: hints.suggest ? this.suggestions(field, hints.suggest) : null, 'data-label': 'Value',
          oninput: () => onValue(input.value),
        });
        input.value = typeof value === 'string' ? value : '';
        return [input];
      }
      case 'list': {
        const area = h('textarea', { class: 'ws-input cb-list-values', rows: '2', spellcheck: 'false', placeholder: 'one value per line', 'data-label': 'Values, one per line' });
        area.value = (Array.isArray(value) ? value : []).map(String).join('\n');
        area.addEventListener('input', () => onValue(area.value.split('\n').map((x) => x.trim()).filter(Boolean)));
        return [area];
      }
      case 'number': {
        const input = num(value, 'Value');
        input.addEventListener('input', () => onValue(parseNum(input)));
        return [input, unit];
      }
      case 'number_range': {
        const v = Array.isArray(value) ? value : [null, null];
        const lo = num(v[0], 'From');
        const hi = num(v[1], 'To');
        const emit = () => onValue([parseNum(lo), parseNum(hi)]);
        lo.addEventListener('input', emit);
        hi.addEventListener('input', emit);
        return [lo, h('span', { class: 'cb-and', text: 'and' }), hi, unit];
      }
      case 'time': {
        const input = time(value, 'Time');
        input.addEventListener('input', () => onValue(input.value));
        return [input];
      }
      case 'time_range': {
        const v = Array.isArray(value) ? value : ['', ''];
        const lo = time(v[0], 'From');
        const hi = time(v[1], 'To');
        const emit = () => onValue([lo.value, hi.value]);
        lo.addEventListener('input', emit);
        hi.addEventListener('input', emit);
        return [lo, h('span', { class: 'cb-and', text: 'and' }), hi];
      }
      case 'days': {
        const chosen = new Set(Array.isArray(value) ? value : []);
        const boxes = DAYS.map(([key, label]) => {
          const box = h('input', { type: 'checkbox', value: key, checked: chosen.has(key) });
          return [box, h('label', { class: 'cb-day' }, box, h('span', { text: label }))];
        });
        const emit = () => onValue(boxes.filter(([b]) => b.checked).map(([b]) => b.value));
        for (const [b] of boxes) b.addEventListener('change', emit);
        return [h('span', { class: 'cb-days', role: 'group', 'data-label': 'Days' }, boxes.map(([, l]) => l))];
      }
      case 'bool': {
        const sel = h('select', { class: 'ws-input cb-bool', 'data-label': 'Value' }, h('option', { value: 'true', text: 'yes' }), h('option', { value: 'false', text: 'no' }));
        sel.value = value === false ? 'false' : 'true';
        sel.addEventListener('change', () => onValue(sel.value === 'true'));
        return [sel];
      }
      default:
        return [];
    }
  }

  suggestions(field, values) {
    const id = `${this.id}-suggest-${field}`;
    if (!this.lists.querySelector(`datalist[id="${id}"]`)) this.lists.append(h('datalist', { id }, values.map((v) => h('option', { value: v }))));
    return id;
  }

  // ---- edits --------------------------------------------------------------

  setField(cond, field) {
    const info = this.cat.byField.get(field);
    const before = valueKind(this.cat.byField.get(cond.field)?.type, cond.op);
    cond.field = field;
    if (!info || !info.ops.includes(cond.op)) cond.op = info ? info.ops[0] : '';
    const kind = valueKind(info && info.type, cond.op);
    if (kind !== before) cond.value = defaultValue(kind);
    if (!needsName(cond, info)) cond.name = undefined;
    this.refreshCond(cond);
    cond.ui.fieldSel.querySelector('option[value=""]')?.remove();
    this.renumber();
    this.onChange();
  }

  setOp(cond, op) {
    const type = this.cat.byField.get(cond.field)?.type;
    const before = valueKind(type, cond.op);
    cond.op = op;
    const kind = valueKind(type, op);
    if (kind !== before) {
      cond.value = defaultValue(kind);
      this.refreshValue(cond);
      this.renumber();
    }
    this.onChange();
  }

  toggleProperty(cond) {
    cond.property = cond.property ? null : { name: '', op: 'equals', value: '' };
    this.refreshCond(cond);
    this.renumber();
    (cond.property ? cond.ui.prop.name : cond.ui.propToggle).focus();
    this.onChange();
  }

  add(group, node, depth) {
    if (this.count() + this.count(node) > MAX_CONDITIONS) return;
    group.children.push(node);
    group.ui.list.append(this.itemEl(node, group, depth));
    this.renumber();
    firstControl(node).focus();
    this.onChange();
  }

  remove(node, parent) {
    const i = parent.children.indexOf(node);
    if (i < 0) return;
    parent.children.splice(i, 1);
    node.el.remove();
    this.renumber();
    const next = parent.children[i] || parent.children[i - 1];
    (next ? firstControl(next) : parent.ui.addCond).focus();
    this.onChange();
  }

  // Paths, labels and button states after any structural change.
  renumber() {
    const full = this.count() >= MAX_CONDITIONS;
    const set = (el, path) => el && el.setAttribute('data-path', path);
    const walk = (node, path, label) => {
      if (node.type === 'group') {
        const u = node.ui;
        set(node.el, path);
        u.list.dataset.mode = node.mode;
        u.mode.value = node.mode;
        u.mode.setAttribute('aria-label', `Match all or any (${label || 'top level'})`);
        u.addCond.disabled = full;
        u.addCond.setAttribute('aria-label', `Add a condition to ${label || 'the top level'}`);
        if (u.addGroup) {
          u.addGroup.disabled = full;
          u.addGroup.setAttribute('aria-label', `Add a group to ${label || 'the top level'}`);
        }
        if (u.remove) u.remove.setAttribute('aria-label', `Remove ${label}`);
        node.children.forEach((c, i) => {
          const n = label ? `${label.replace(/^(group|condition) /, '')}.${i + 1}` : String(i + 1);
          walk(c, `${path}.${node.mode}[${i}]`, `${c.type === 'group' ? 'group' : 'condition'} ${n}`);
        });
        return;
      }
      const u = node.ui;
      set(node.el, path);
      set(u.fieldSel, `${path}.field`);
      set(u.opSel, `${path}.op`);
      set(u.name, `${path}.name`);
      set(u.valueBox, `${path}.value`);
      set(u.propRow, `${path}.property`);
      u.fieldSel.setAttribute('aria-label', `Field (${label})`);
      u.opSel.setAttribute('aria-label', `Operator (${label})`);
      u.name.setAttribute('aria-label', `Name (${label})`);
      u.propToggle.setAttribute('aria-label', `${node.property ? 'Remove the' : 'Add a'} property filter (${label})`);
      u.remove.setAttribute('aria-label', `Remove ${label}`);
      labelValues(u.valueBox, label);
      if (node.property && u.prop) {
        labelValues(u.prop.valueBox, `property of ${label}`);
        set(u.prop.name, `${path}.property.name`);
        set(u.prop.op, `${path}.property.op`);
        set(u.prop.valueBox, `${path}.property.value`);
        u.prop.name.setAttribute('aria-label', `Property name (${label})`);
        u.prop.op.setAttribute('aria-label', `Property operator (${label})`);
      }
    };
    walk(this.root, 'conditions', '');
  }
}

// ---- model ------------------------------------------------------------------

function newGroup(mode, children) {
  return { type: 'group', mode, children };
}

function newCondition(cat) {
  const info = cat.byField.get('url') || cat.fields[0];
  const op = info.ops.includes('contains') ? 'contains' : info.ops[0];
  return { type: 'cond', field: info.field, op, value: defaultValue(valueKind(info.type, op)), name: undefined, property: null, extra: {} };
}

function toNode(json) {
  if (!json || typeof json !== 'object') return null;
  for (const mode of ['all', 'any']) {
    if (Array.isArray(json[mode])) return newGroup(mode, json[mode].map(toNode).filter(Boolean));
  }
  if (typeof json.field !== 'string') return null;
  const { field, op, value, name, property, ...extra } = json;
  const prop = property && typeof property === 'object'
    ? { name: typeof property.name === 'string' ? property.name : '', op: typeof property.op === 'string' ? property.op : 'equals', value: property.value }
    : null;
  return { type: 'cond', field, op: typeof op === 'string' ? op : '', value, name: typeof name === 'string' ? name : undefined, property: prop, extra };
}

function serialize(node, cat) {
  if (node.type === 'group') return { [node.mode]: node.children.map((c) => serialize(c, cat)) };
  const info = cat.byField.get(node.field);
  const out = { ...node.extra, field: node.field, op: node.op };
  if (needsName(node, info)) out.name = String(node.name || '').trim();
  if (valueKind(info && info.type, node.op) !== 'none' && node.value !== undefined) out.value = node.value;
  if (node.property) {
    const p = { name: String(node.property.name || '').trim(), op: node.property.op };
    if (valueKind('property', p.op) !== 'none') p.value = node.property.value;
    out.property = p;
  }
  return out;
}

// Value inputs carry data-label ("Value", "From", …); the accessible name
// adds which condition they belong to.
function labelValues(box, label) {
  for (const el of box.querySelectorAll('[data-label]')) el.setAttribute('aria-label', `${el.dataset.label} (${label})`);
}

function needsName(cond, info) {
  return info ? !!info.needs_name : typeof cond.name === 'string';
}

function propertyOps(cat) {
  const info = cat.byField.get('property');
  return info ? info.ops : [...STRING_OPS, ...NUMBER_OPS];
}

function firstControl(node) {
  if (node.type !== 'group') return node.ui.fieldSel;
  return node.children.length ? firstControl(node.children[0]) : node.ui.mode;
}
