// Tiny DOM builder. Everything goes through createElement / textContent /
// setAttribute, so visitor-supplied strings can never become markup.

// Links may only point at http(s) URLs or same-site paths; anything else
// (javascript:, data:, ...) is dropped.
export function isSafeHref(v) {
  if (typeof v !== 'string') return false;
  if (/^\/(?!\/)|^#/.test(v)) return true;
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

// h('a', {class: 'x', href, text: 'label', onclick: fn}, ...children)
// Children are Nodes or strings (strings become text nodes); null/false skipped.
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'href' && !isSafeHref(v)) continue;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}
