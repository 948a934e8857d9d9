// Saved replies of each site (GET /api/sites/{key}/saved-replies), cached per
// site for the composer and the "Open conversation" dialog, and refreshed
// whenever the settings page changes one (a 'pl-saved-replies' window event).

import { api, request } from './api.js';

const cache = new Map(); // site key -> Promise<[reply]>
export const CHANGED = 'pl-saved-replies';

const path = (site) => `/api/sites/${encodeURIComponent(site)}/saved-replies`;

export function savedReplies(site) {
  if (!site) return Promise.resolve([]);
  if (!cache.has(site)) {
    const p = api
      .get(path(site))
      .then((res) => (Array.isArray(res && res.saved_replies) ? res.saved_replies : []))
      .catch(() => {
        cache.delete(site); // try again next time
        return [];
      });
    cache.set(site, p);
  }
  return cache.get(site);
}

function changed(site) {
  cache.delete(site);
  window.dispatchEvent(new CustomEvent(CHANGED, { detail: { site } }));
}

export async function createReply(site, shortcut, text) {
  const res = await request('POST', path(site), { shortcut, text });
  changed(site);
  return res && res.saved_reply;
}

export async function updateReply(site, id, shortcut, text) {
  const res = await request('PUT', `${path(site)}/${id}`, { shortcut, text });
  changed(site);
  return res && res.saved_reply;
}

export async function deleteReply(site, id) {
  await request('DELETE', `${path(site)}/${id}`);
  changed(site);
}

// Replies whose shortcut starts with `prefix` (without the slash), best first.
export function matching(replies, prefix) {
  const p = String(prefix || '').toLowerCase();
  return replies
    .filter((r) => r && typeof r.shortcut === 'string' && r.shortcut.startsWith(p))
    .sort((a, b) => (a.shortcut === p ? -1 : b.shortcut === p ? 1 : a.shortcut.localeCompare(b.shortcut)));
}
