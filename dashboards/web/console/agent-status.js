// The agent's availability (online / away / offline), chosen in the header.
// Sent to the server (PUT /api/me/status: the widget turns into the offline
// form when no agent is online) and remembered in this browser's
// localStorage as the initial value; "offline" also mutes notifications.

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
