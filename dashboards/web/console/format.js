// Pure formatting helpers (no DOM), shared by the list and the card.

export const SEGMENTS = [
  ['all', 'All'],
  ['active', 'Active'],
  ['on_chat', 'On chat'],
  ['customers', 'Customers'],
  ['auto_messaged', 'Auto-messaged'],
  ['blocked', 'Blocked'],
];

// Status badges shown per visitor; keys are the segment names.
const BADGES = [
  ['on_chat', 'on chat'],
  ['customers', 'customer'],
  ['auto_messaged', 'auto-messaged'],
  ['blocked', 'blocked'],
];

export const EMPTY = '—';

export function segmentsOf(v) {
  return Array.isArray(v && v.segments) ? v.segments : [];
}

export function badges(v) {
  const segs = segmentsOf(v);
  const out = BADGES.filter(([k]) => segs.includes(k)).map(([key, label]) => ({ key, label }));
  if (v.left) out.push({ key: 'left', label: 'left' });
  else if (!segs.includes('active')) out.push({ key: 'idle', label: 'idle' });
  return out;
}

// Flag emoji from an ISO 3166 alpha-2 code (two regional indicator symbols).
export function flag(cc) {
  if (typeof cc !== 'string') return '';
  const c = cc.toUpperCase();
  if (!/^[A-Z]{2}$/.test(c)) return '';
  return String.fromCodePoint(0x1f1e6 + c.charCodeAt(0) - 65, 0x1f1e6 + c.charCodeAt(1) - 65);
}

// mm:ss below an hour, h:mm:ss above.
export function duration(ms) {
  const s = Math.max(0, Math.floor((Number(ms) || 0) / 1000));
  const hh = Math.floor(s / 3600);
  const p = (n) => String(n).padStart(2, '0');
  const mmss = `${p(Math.floor((s % 3600) / 60))}:${p(s % 60)}`;
  return hh ? `${hh}:${mmss}` : mmss;
}

// Elapsed time since `since`, frozen at `left` for visitors who left.
export function elapsed(since, left, now) {
  if (typeof since !== 'number') return EMPTY;
  return duration((typeof left === 'number' ? left : now) - since);
}

export function clockTime(ms) {
  return typeof ms === 'number' ? new Date(ms).toLocaleTimeString() : EMPTY;
}

export function dateTime(ms) {
  return typeof ms === 'number' ? new Date(ms).toLocaleString() : EMPTY;
}

export function pathOf(url) {
  if (typeof url !== 'string') return '';
  try {
    const u = new URL(url);
    return u.pathname + u.search + u.hash;
  } catch {
    return url;
  }
}

export function hostOf(url) {
  if (typeof url !== 'string') return '';
  try {
    return new URL(url).hostname || url;
  } catch {
    return url;
  }
}

export function visitorLabel(v) {
  return v.name || (v.number != null ? `#${v.number}` : 'Visitor');
}

// utm_source / utm_campaign, else the referring host, else "direct".
export function source(v) {
  const utm = [v.utm_source, v.utm_campaign].filter(Boolean).join(' / ');
  if (utm) return utm;
  if (v.referrer) return hostOf(v.referrer);
  return 'direct';
}

function major(version) {
  return typeof version === 'string' ? version.split('.')[0] : version;
}

// "Chrome 120 · Linux · desktop"
export function tech(v) {
  const browser = [v.browser, major(v.browser_version)].filter(Boolean).join(' ');
  const os = [v.os, v.os_version].filter(Boolean).join(' ');
  return [browser, os, v.device].filter(Boolean).join(' · ');
}

export function place(v) {
  return [v.city, v.region, v.country].filter(Boolean).join(', ');
}

// Display text for a scalar; empty values get a dash.
export function text(v) {
  if (v == null || v === '') return EMPTY;
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}
