// The triggers REST API (/api/sites/{key}/triggers…, see
// /work/triggers-design.md "REST API"). Errors are api.js ApiErrors: a 400's
// message is the server's "<json path>: <what is wrong>".

import { request } from './api.js';
import { catalogue } from './trigger-model.js';

const base = (site) => `/api/sites/${encodeURIComponent(site)}/triggers`;
const one = (site, id) => `${base(site)}/${encodeURIComponent(String(id))}`;

const fieldCache = new Map(); // site -> Promise<catalogue>

export const triggersApi = {
  list: (site, opts) => request('GET', base(site), undefined, opts),
  get: (site, id, opts) => request('GET', one(site, id), undefined, opts),
  create: (site, trigger) => request('POST', base(site), trigger),
  update: (site, id, trigger) => request('PUT', one(site, id), trigger),
  patch: (site, id, changes) => request('PATCH', one(site, id), changes),
  remove: (site, id) => request('DELETE', one(site, id)),
  // {text, visitor_id?} -> {text}
  render: (site, body, opts) => request('POST', `${base(site)}/render`, body, opts),
  // draft -> {count, visitors}
  preview: (site, draft, opts) => request('POST', `${base(site)}/preview`, draft, opts),
  // {visitor_id, variant?} -> {conversation_id}
  test: (site, id, body) => request('POST', `${one(site, id)}/test`, body),
  stats: (site, id, from, to, opts) => request('GET', `${one(site, id)}/stats?from=${Math.floor(from)}&to=${Math.floor(to)}`, undefined, opts),
  // Live visitors (for "preview the message as …").
  visitors: (site, opts) => request('GET', `/api/sites/${encodeURIComponent(site)}/visitors?limit=100`, undefined, opts),

  // The field/operator catalogue, once per site; if the server cannot give
  // it, the contract's table (catalogue().fallback is then true).
  fields(site) {
    if (!fieldCache.has(site)) {
      const p = request('GET', `${base(site)}/fields`).then(catalogue, (err) => {
        fieldCache.delete(site);
        if (err && err.status === 401) throw err;
        return { ...catalogue(null), error: err && err.message };
      });
      fieldCache.set(site, p);
    }
    return fieldCache.get(site);
  },
};

// A trigger's name for "started by trigger …" (null when it is gone or not
// readable), asked once per trigger.
const names = new Map();
export function triggerName(site, id) {
  const key = `${site}\n${id}`;
  if (!names.has(key)) {
    names.set(key, triggersApi.get(site, id).then((t) => (t && typeof t.name === 'string' && t.name) || null, () => {
      names.delete(key);
      return null;
    }));
  }
  return names.get(key);
}

export function siteLink(site) {
  return `#/triggers/${encodeURIComponent(site)}`;
}

export function editLink(site, id) {
  return `${siteLink(site)}/${id == null ? 'new' : encodeURIComponent(String(id))}`;
}

export function statsLink(site, id) {
  return `${editLink(site, id)}/stats`;
}

// An API error as a sentence for the person at the console.
export function errorText(err) {
  if (!err) return '';
  if (err.status === 403) return 'You may not do this (owners and admins edit triggers).';
  return err.message || 'Something went wrong';
}
