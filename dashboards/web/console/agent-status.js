// The agent's availability (online / away / offline), chosen in the header.
// For now it only lives in this browser's localStorage and mutes
// notifications while "offline"; nothing is sent to the server yet (the
// server side of agent status — routing, the widget's offline form — comes
// with issue 3's availability work).

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

export function setAgentStatus(status) {
  if (!STATUSES.some(([k]) => k === status)) return;
  try {
    localStorage.setItem(KEY, status);
  } catch {
    /* storage disabled */
  }
}
