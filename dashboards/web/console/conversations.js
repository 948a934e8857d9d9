// Pure helpers for conversations and messages (no DOM): inbox tabs, unread
// marks, labels and the text of system events. Shapes follow
// engage/src/conversations/model.rs (serde: `origin`/`author`/events tagged
// with "kind", message bodies tagged with "type").

export const TABS = [
  ['mine', 'Mine'],
  ['others', "Others'"],
  ['unassigned', 'Unassigned'],
  ['missed', 'Missed'],
  ['resolved', 'Resolved'],
];

// Tabs whose unread conversations need this agent's attention: the header's
// Inbox badge, the document title and notifications count these only.
export const ATTENTION_TABS = ['mine', 'unassigned', 'missed'];

export function agentRead(c, agentId) {
  const marks = c && Array.isArray(c.agent_read_seq) ? c.agent_read_seq : [];
  for (const m of marks) if (Array.isArray(m) && m[0] === agentId) return Number(m[1]) || 0;
  return 0;
}

// Whether the visitor wrote something this agent has not read (the server's
// Conversation::unread_for_agent).
export function isUnread(c, agentId) {
  return (Number(c && c.last_visitor_seq) || 0) > agentRead(c, agentId);
}

export function isParticipant(c, agentId) {
  return !!c && Array.isArray(c.participants) && c.participants.includes(agentId);
}

// The tab a conversation belongs in for an agent (engage's InboxTab::of), or
// null when it is in none.
export function tabOf(c, agentId) {
  if (!c || !c.last_seq) return null;
  const trigger = c.origin && c.origin.kind === 'trigger';
  if (c.state === 'resolved') return 'resolved';
  if (trigger && c.last_visitor_message_ms == null && c.assigned_agent == null) return null;
  if (c.assigned_agent === agentId || isParticipant(c, agentId)) return 'mine';
  if (c.assigned_agent != null) return 'others';
  return c.missed ? 'missed' : 'unassigned';
}

// Whether new visitor messages in `c` are this agent's business (mine or
// nobody's yet): what notifications are raised for.
export function concernsMe(c, agentId) {
  const tab = tabOf(c, agentId);
  return tab === 'mine' || tab === 'unassigned' || tab === 'missed' || (c && c.assigned_agent == null);
}

export function visitorLabel(c, visitor) {
  const v = visitor || (c && c.visitor) || {};
  const pre = (c && c.prechat) || {};
  const name = v.name || pre.name;
  if (name) return String(name);
  if (v.number != null) return `#${v.number}`;
  return 'Visitor';
}

// "Anna" for an agent id, through a resolver that knows names (agents.js).
function who(nameOf, id, fallback) {
  return fallback || nameOf(id);
}

// The line shown for a system event message.
export function eventText(event, nameOf = (id) => `Agent #${id}`) {
  const e = event || {};
  switch (e.kind) {
    case 'agent_joined':
      return `${who(nameOf, e.agent_id, e.name)} joined the conversation`;
    case 'agent_left':
      return `${who(nameOf, e.agent_id, e.name)} left the conversation`;
    case 'agent_invited':
      return `${nameOf(e.by)} invited ${who(nameOf, e.agent_id, e.name)}`;
    case 'assigned':
      return `Assigned to ${who(nameOf, e.agent_id, e.name)}`;
    case 'resolved':
      return e.by != null ? `Resolved by ${nameOf(e.by)}` : 'Resolved';
    case 'reopened':
      return 'Reopened';
    case 'rated':
      return `Visitor rated the conversation ${Number(e.score) || '?'}/5`;
    case 'missed':
      return 'Missed: the visitor left before anyone answered';
    case 'visitor_blocked':
      return 'Visitor blocked';
    default:
      return String(e.kind || 'event').replace(/_/g, ' ');
  }
}

// The text a message shows in a notification or a preview.
export function messageText(m) {
  const b = (m && m.body) || {};
  if (b.type === 'text' || b.type === 'note') return String(b.text || '');
  if (b.type === 'attachment') return b.text || `📎 ${(b.attachment && b.attachment.name) || 'attachment'}`;
  if (b.type === 'event') return eventText(b.event);
  return '';
}

// "now", "5m", "3h", "Mon", "12 Mar" for list rows.
export function shortTime(ms, now = Date.now()) {
  if (typeof ms !== 'number') return '';
  const d = Math.max(0, now - ms);
  if (d < 60e3) return 'now';
  if (d < 3600e3) return `${Math.floor(d / 60e3)}m`;
  const then = new Date(ms);
  if (d < 86400e3 && then.getDate() === new Date(now).getDate()) {
    return then.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }
  if (d < 6 * 86400e3) return then.toLocaleDateString([], { weekday: 'short' });
  return then.toLocaleDateString([], { day: 'numeric', month: 'short' });
}

export function fileSize(n) {
  const b = Number(n) || 0;
  if (b < 1024) return `${b} B`;
  if (b < 1024 * 1024) return `${(b / 1024).toFixed(b < 10240 ? 1 : 0)} KB`;
  return `${(b / 1024 / 1024).toFixed(1)} MB`;
}

// "a, B ,a," -> ["a", "b"] (the server stores tags trimmed and lowercase).
export function parseTags(text) {
  const out = [];
  for (const t of String(text || '').split(',')) {
    const tag = t.trim().toLowerCase();
    if (tag && !out.includes(tag)) out.push(tag);
  }
  return out;
}

export function sameList(a, b) {
  return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => x === b[i]);
}

// An idempotency key for a message (the server returns the same message for
// a retry with the same key).
export function clientId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return 'c-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function attachmentUrl(conversationId, attachmentId) {
  return `/api/conversations/${encodeURIComponent(conversationId)}/attachments/${encodeURIComponent(attachmentId)}`;
}
