// Pure helpers for triggers (no DOM): the field catalogue and its fallback,
// operator labels, which value input an operator takes, defaults for a new
// trigger, variant keys and shares, and the JSON paths in the server's
// validation errors ("conditions.all[1].value: …"). Shapes follow
// /work/triggers-design.md ("Trigger JSON", "REST API").

export const STRING_OPS = ['equals', 'not_equals', 'contains', 'not_contains', 'starts_with', 'ends_with', 'wildcard', 'regex', 'in', 'not_in', 'exists', 'not_exists'];
export const NUMBER_OPS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'between'];
const TIME_OPS = ['between', 'before', 'after'];
const NO_VALUE = ['exists', 'not_exists', 'seen', 'not_seen'];

export const OP_LABELS = {
  equals: 'is', not_equals: 'is not', contains: 'contains', not_contains: 'does not contain',
  starts_with: 'starts with', ends_with: 'ends with', wildcard: 'matches pattern (* ?)', regex: 'matches regex',
  in: 'is one of', not_in: 'is none of', exists: 'is present', not_exists: 'is absent',
  eq: '=', ne: '≠', gt: '>', gte: '≥', lt: '<', lte: '≤', between: 'is between',
  is: 'is', before: 'is before', after: 'is after', seen: 'happened', not_seen: 'did not happen',
};

export const DAYS = [['mon', 'Mon'], ['tue', 'Tue'], ['wed', 'Wed'], ['thu', 'Thu'], ['fri', 'Fri'], ['sat', 'Sat'], ['sun', 'Sun']];

// Used only when GET …/triggers/fields fails: the table of the contract.
const f = (field, label, type, ops, needsName = false) => ({ field, label, type, ops, needs_name: needsName });
export const FALLBACK_FIELDS = [
  f('url', 'Current URL', 'string', STRING_OPS),
  f('title', 'Page title', 'string', STRING_OPS),
  f('visited_url', 'URL visited earlier in the visit', 'string', STRING_OPS),
  f('time_on_page', 'Time on page (s)', 'number', NUMBER_OPS),
  f('time_on_site', 'Time on site (s)', 'number', NUMBER_OPS),
  f('pages_in_visit', 'Pages viewed in the visit', 'number', NUMBER_OPS),
  f('visits', 'Number of visits', 'number', NUMBER_OPS),
  f('referrer', 'Referrer', 'string', STRING_OPS),
  ...['source', 'medium', 'campaign', 'term', 'content'].map((k) => f(`utm_${k}`, `UTM ${k}`, 'string', STRING_OPS)),
  f('campaign_tag', 'Other campaign tag', 'string', STRING_OPS, true),
  f('country', 'Country (ISO code)', 'string', STRING_OPS),
  f('country_name', 'Country name', 'string', STRING_OPS),
  f('city', 'City', 'string', STRING_OPS),
  f('browser', 'Browser', 'string', STRING_OPS),
  f('os', 'Operating system', 'string', STRING_OPS),
  f('device', 'Device type', 'string', STRING_OPS),
  f('language', 'Language', 'string', STRING_OPS),
  f('customer', 'Customer (has name or email)', 'boolean', ['is']),
  f('property', 'Visitor property', 'property', [...STRING_OPS, ...NUMBER_OPS], true),
  f('event', 'Custom event in this visit', 'event', ['seen', 'not_seen'], true),
  f('time_of_day', 'Time of day (site time zone)', 'time', TIME_OPS),
  f('day_of_week', 'Day of week (site time zone)', 'day', ['in']),
  f('business_hours', 'Within business hours', 'boolean', ['is']),
  f('agents_online', 'An agent is online', 'boolean', ['is']),
];

// Groups for the field picker (fields the server adds later go to "Other").
export const FIELD_GROUPS = [
  ['Page', ['url', 'title', 'visited_url', 'time_on_page']],
  ['Visit', ['time_on_site', 'pages_in_visit', 'visits', 'referrer', 'utm_source', 'utm_medium', 'utm_campaign', 'utm_term', 'utm_content', 'campaign_tag']],
  ['Visitor', ['country', 'country_name', 'city', 'browser', 'os', 'device', 'language', 'customer', 'property', 'event']],
  ['Time and team', ['time_of_day', 'day_of_week', 'business_hours', 'agents_online']],
];

// Input hints per field: placeholder, unit after a number, suggestions.
export const FIELD_HINTS = {
  url: { placeholder: '/pricing' },
  visited_url: { placeholder: '/pricing' },
  title: { placeholder: 'Pricing' },
  time_on_page: { unit: 's', placeholder: '30' },
  time_on_site: { unit: 's', placeholder: '60' },
  referrer: { placeholder: 'google.com' },
  utm_source: { placeholder: 'ads' },
  country: { placeholder: 'CZ' },
  language: { placeholder: 'cs' },
  device: { suggest: ['desktop', 'mobile', 'tablet', 'feature_phone', 'appliance', 'crawler', 'unknown'] },
  browser: { suggest: ['Chrome', 'Firefox', 'Safari', 'Edge', 'Opera'] },
  os: { suggest: ['Windows 10', 'Mac OSX', 'iOS', 'Android', 'Linux'] },
};

export const FALLBACK_PLACEHOLDERS = ['name', 'first_name', 'email', 'city', 'country', 'browser', 'os', 'page_title', 'utm_campaign', 'property.NAME'];

// {fields: [...], byField: Map, placeholders: [...], fallback: bool}
export function catalogue(res) {
  const list = res && Array.isArray(res.fields) ? res.fields.filter((x) => x && typeof x.field === 'string' && Array.isArray(x.ops)) : null;
  const fields = list && list.length ? list : FALLBACK_FIELDS;
  const placeholders = res && Array.isArray(res.placeholders) ? res.placeholders.filter((p) => typeof p === 'string') : FALLBACK_PLACEHOLDERS;
  return { fields, byField: new Map(fields.map((x) => [x.field, x])), placeholders, fallback: fields === FALLBACK_FIELDS };
}

// Which input an operator takes: none, text, regex, list, number,
// number_range, time, time_range, days, bool.
export function valueKind(type, op) {
  if (NO_VALUE.includes(op)) return 'none';
  if (type === 'day') return 'days';
  if (type === 'time') return op === 'between' ? 'time_range' : 'time';
  if (type === 'boolean' || op === 'is') return 'bool';
  if (op === 'between') return 'number_range';
  if (NUMBER_OPS.includes(op)) return 'number';
  if (op === 'in' || op === 'not_in') return 'list';
  if (op === 'regex') return 'regex';
  return 'text';
}

export function defaultValue(kind) {
  switch (kind) {
    case 'list': case 'days': return [];
    case 'number_range': return [null, null];
    case 'time_range': return ['09:00', '17:00'];
    case 'time': return '09:00';
    case 'bool': return true;
    case 'number': return null;
    case 'none': return undefined;
    default: return '';
  }
}

// Whether `value` is a complete value of `kind` (client-side check before
// asking the server; the server's validation is the real one).
export function valueProblem(kind, value) {
  const num = (x) => typeof x === 'number' && Number.isFinite(x);
  const time = (x) => typeof x === 'string' && /^([01]\d|2[0-3]):[0-5]\d$/.test(x);
  switch (kind) {
    case 'none': return null;
    case 'text': case 'regex': return typeof value === 'string' && value !== '' ? null : 'enter a value';
    case 'list': return Array.isArray(value) && value.length ? null : 'enter at least one value (one per line)';
    case 'number': return num(value) ? null : 'enter a number';
    case 'number_range':
      if (!Array.isArray(value) || !num(value[0]) || !num(value[1])) return 'enter both numbers';
      return value[0] <= value[1] ? null : 'the first number must not be greater than the second';
    case 'time': return time(value) ? null : 'enter a time (HH:MM)';
    case 'time_range': return Array.isArray(value) && time(value[0]) && time(value[1]) ? null : 'enter both times (HH:MM)';
    case 'days': return Array.isArray(value) && value.length ? null : 'pick at least one day';
    case 'bool': return typeof value === 'boolean' ? null : 'pick yes or no';
    default: return null;
  }
}

// Limits the engine enforces (engage/src/triggers/model.rs, conditions.rs);
// the server's validation stays the authority.
export const MAX_NAME_CHARS = 100;
export const MAX_MESSAGE_CHARS = 2000;
export const MAX_WEIGHT = 100;
export const MAX_VALUE_CHARS = 500;
export const MAX_FIELD_NAME_CHARS = 64;
export const MAX_GOAL_WINDOW_SECS = 30 * 86400;
export const MAX_COOLDOWN_SECS = 365 * 86400;
export const MAX_VARIANTS = 5;
export const MAX_CONDITIONS = 50;
export const MAX_DEPTH = 5;
const KEYS = 'abcdefghijklmnopqrstuvwxyz';

export function nextVariantKey(used) {
  for (const k of KEYS) if (!used.includes(k)) return k;
  for (let i = 1; ; i++) if (!used.includes(`v${i}`)) return `v${i}`;
}

export function variantLabel(key) {
  return key == null ? 'Control group' : `Variant ${/^[a-z]$/.test(key) ? key.toUpperCase() : key}`;
}

// Percent of matching visitors each variant reaches, and the control share.
export function shares(variants, controlPercent) {
  const control = Math.min(90, Math.max(0, Number(controlPercent) || 0));
  const weights = variants.map((v) => Math.max(0, Number(v.weight) || 0));
  const sum = weights.reduce((a, b) => a + b, 0);
  return { control, variants: weights.map((w) => (sum ? ((100 - control) * w) / sum : 0)) };
}

export const LIMIT_MODES = [
  ['once_per_visitor', 'Once per visitor'],
  ['once_per_visit', 'Once per visit'],
  ['cooldown', 'Every time it matches, with a pause between'],
];

export function newTrigger(me) {
  const agent = me && me.agent;
  return {
    name: '',
    enabled: false,
    priority: 0,
    conditions: { all: [{ field: 'url', op: 'contains', value: '' }] },
    delay_secs: 0,
    open_widget: false,
    variants: [{ key: 'a', author: agent && typeof agent.id === 'number' ? { agent_id: agent.id } : { bot: 'Porchlight' }, text: '', weight: 1 }],
    control_percent: 0,
    limit: { mode: 'once_per_visitor' },
    goal: null,
  };
}

// What we send for create/update/preview: the trigger as loaded (fields
// this console does not know survive) minus what only the server sets.
const RETURNED_ONLY = ['site', 'created_ms', 'updated_ms', 'stats'];
export function forServer(trigger) {
  const out = { ...trigger };
  for (const k of RETURNED_ONLY) delete out[k];
  return out;
}

// "conditions.all[1].value: takes a number" -> {path, text}; a message
// without a path gives path null.
export function splitError(message) {
  const m = /^([A-Za-z_][\w]*(?:\[\d+\]|\.[A-Za-z_][\w]*)*): ([\s\S]*)$/.exec(String(message || ''));
  return m ? { path: m[1], text: m[2] } : { path: null, text: String(message || '') };
}

// Whether `prefix` is `path` or one of its ancestors ("a.b" of "a.b[2].c").
export function pathStartsWith(path, prefix) {
  if (!path.startsWith(prefix)) return false;
  const next = path.charAt(prefix.length);
  return next === '' || next === '.' || next === '[';
}

// Seconds as the largest unit that divides them: [n, unitSeconds].
export const UNITS = [[86400, 'days'], [3600, 'hours'], [60, 'minutes'], [1, 'seconds']];
export function splitDuration(secs) {
  const s = Math.max(0, Math.round(Number(secs) || 0));
  for (const [u] of UNITS) if (s && s % u === 0) return [s / u, u];
  return [s, 1];
}

export function humanDuration(secs) {
  const [n, u] = splitDuration(secs);
  const name = UNITS.find(([x]) => x === u)[1];
  return `${n} ${n === 1 ? name.slice(0, -1) : name}`;
}

export function percent(fraction, digits = 1) {
  const x = Number(fraction);
  if (!Number.isFinite(x)) return '—';
  const p = x * 100;
  return `${p === 0 || p === 100 ? p.toFixed(0) : p.toFixed(digits)}%`;
}

// A JSON path as the form names it: "conditions.all[1].any[0].value" ->
// "Condition 2.1", "variants[1].text" -> "Variant B".
const PATH_NAMES = {
  name: 'Name', priority: 'Priority', enabled: 'Enabled', conditions: 'Conditions', variants: 'Message',
  control_percent: 'Control group', delay_secs: 'Delay', open_widget: 'Open the widget', limit: 'Limit', goal: 'Goal',
};
export function describePath(path, variantKeys = []) {
  if (!path) return '';
  const head = /^[A-Za-z_]\w*/.exec(path)[0];
  if (head === 'conditions') {
    const idx = [...path.matchAll(/\[(\d+)\]/g)].map((m) => Number(m[1]) + 1);
    return idx.length ? `Condition ${idx.join('.')}` : 'Conditions';
  }
  if (head === 'variants') {
    const m = /^variants\[(\d+)\]/.exec(path);
    if (m && variantKeys.length > 1) return variantLabel(variantKeys[Number(m[1])] ?? m[1]);
    return 'Message';
  }
  return PATH_NAMES[head] || head;
}

// ---- stats ------------------------------------------------------------------

export const STAGES = [
  ['fired', 'Fired'], ['delivered', 'Delivered'], ['seen', 'Seen'], ['replied', 'Replied'], ['goal', 'Goal'],
];

// A stats row's rate for `stage` (a fraction of fired): the server's, or
// computed from the counts.
export function rate(row, stage) {
  const r = row && row.rates && row.rates[stage];
  if (typeof r === 'number' && Number.isFinite(r)) return r;
  const fired = count(row, 'fired');
  return fired ? count(row, stage) / fired : 0;
}

export function count(row, stage) {
  const n = row && row[stage];
  return typeof n === 'number' && Number.isFinite(n) ? n : 0;
}

const MIN_SAMPLE = 30; // fires per arm before we say anything about chance

// Each variant's goal rate against the control group's, in plain words:
// [{variant, text, verdict, kind: 'better' | 'worse' | 'same' | 'unclear'}],
// or one {text, kind: 'info'} when there is nothing to compare.
export function compareToControl(variants, control, { hasGoal, controlPercent, label = variantLabel }) {
  const anyGoal = [...variants, control].some((r) => count(r, 'goal') > 0);
  if (!hasGoal && !anyGoal) {
    return [{ kind: 'info', text: 'This trigger has no goal event. Set one in the editor to see whether the message leads visitors to it.' }];
  }
  if (!control || count(control, 'fired') === 0) {
    return [{
      kind: 'info',
      text: controlPercent > 0
        ? 'No visitor has fallen into the control group in this period yet, so there is nothing to compare with.'
        : 'There is no control group, so there is nothing to compare with. Give the control group a share in the editor (10 % is a good start) to measure whether the message itself causes the goal.',
    }];
  }
  const nc = count(control, 'fired');
  const gc = count(control, 'goal');
  const rc = gc / nc;
  return variants.map((row) => {
    const name = label(row.variant);
    const n = count(row, 'fired');
    if (!n) return { variant: row.variant, kind: 'unclear', text: `${name} did not fire in this period.`, verdict: '' };
    const g = count(row, 'goal');
    const rv = g / n;
    const points = (rv - rc) * 100;
    let text = `${name}: ${percent(rv)} reached the goal (${g} of ${n}), against ${percent(rc)} (${gc} of ${nc}) in the control group`;
    if (Math.abs(points) < 0.05) text += ' — the same rate.';
    else if (rc > 0) text += ` — ${Math.abs(points).toFixed(1)} percentage points ${points > 0 ? 'higher' : 'lower'} (${(rv / rc).toFixed(1)}× the control group's rate).`;
    else text += ` — ${Math.abs(points).toFixed(1)} percentage points higher.`;
    let verdict;
    let kind = 'unclear';
    if (n < MIN_SAMPLE || nc < MIN_SAMPLE) {
      verdict = `Too few visitors yet to tell whether this is more than chance (wait for at least ${MIN_SAMPLE} in each group).`;
    } else {
      const p = (g + gc) / (n + nc);
      const se = Math.sqrt(p * (1 - p) * (1 / n + 1 / nc));
      const z = se > 0 ? (rv - rc) / se : 0;
      if (Math.abs(z) >= 1.96) {
        kind = z > 0 ? 'better' : 'worse';
        verdict = z > 0 ? 'The message very likely helps (95 % confidence).' : 'The message very likely puts visitors off (95 % confidence).';
      } else {
        kind = 'same';
        verdict = 'The difference could still be chance.';
      }
    }
    return { variant: row.variant, kind, text, verdict };
  });
}
