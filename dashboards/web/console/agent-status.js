// The agent's availability (online / away / offline), chosen in the header.
// The server keeps it (PUT /api/me/status; GET /api/me says it at sign-in):
// only online agents make the widget available. "offline" also mutes
// notifications; the choice is mirrored in localStorage for that.

import { api } from './api.js';

const KEY = 'porchlight.console.status';
export const STATUSES = [
  ['online', 'Online'],
  ['away', 'Away'],
  ['offline', 'Offline'],
];

export function agentStatus() {
  try {
    const s = localStorage.getItem(KEY);
    return STATUSES.some(([k]) => k === s) ? s : 'online';
  } catch {
    return 'online';
  }
}

// Tells the server; rejects with the ApiError when it refuses.
export function sendAgentStatus(status) {
  return api.put('/api/me/status', { status });
}

export function setAgentStatus(status) {
  if (!STATUSES.some(([k]) => k === status)) return;
  try {
    localStorage.setItem(KEY, status);
  } catch {
    /* storage disabled */
  }
}
