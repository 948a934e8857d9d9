// The console's conversation feed, alive on every route once signed in:
// the /api/inbox/live WebSocket (reconnecting with LiveSocket's backoff),
// the tab counts (for the header's Inbox badge) and notifications.
//
// Events (this is an EventTarget):
//   'frame'  detail = a message/conversation/typing/block frame
//   'resync' the feed (re)connected or fell behind: re-fetch what you show
//   'counts' detail = {mine: {total, unread}, ...}
//   'state'  detail = 'connecting' | 'open' | 'reconnecting'

import { api } from './api.js';
import { agentStatus } from './agent-status.js';
import { agents } from './agents.js';
import { concernsMe, messageText, visitorLabel, ATTENTION_TABS } from './conversations.js';
import { LiveSocket } from './live-socket.js';
import { beep, notify } from './notify.js';

const COUNTS_EVERY_MS = 1000; // at most one counts refresh per second from frames

export function inboxLiveUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/api/inbox/live`;
}

export class InboxService extends EventTarget {
  constructor(me) {
    super();
    this.agentId = me && me.agent ? me.agent.id : null;
    this.counts = null;
    this.state = 'connecting';
    this.socket = null;
    this.known = new Map(); // conversation id -> {visitor} summaries seen in inbox lists
    this.invitedTo = new Set(); // conversations this agent was told about an invitation to
    this.countsTimer = 0;
    this.countsAt = 0;
    this.countsBusy = false;
    // Set by the inbox while it shows a list: it re-fetches (and reports
    // counts) itself, so the service need not ask separately.
    this.listActive = false;
  }

  start() {
    if (this.socket) return;
    this.socket = new LiveSocket(inboxLiveUrl(), {
      onMessage: (m) => this.onFrame(m),
      onState: (s) => {
        this.state = s;
        this.emit('state', s);
      },
      onDrop: (got) => {
        if (!got) api.get('/api/me').catch(() => {});
      },
    });
    this.socket.start();
    this.refreshCounts(true);
  }

  stop() {
    if (this.socket) this.socket.stop();
    this.socket = null;
    clearTimeout(this.countsTimer);
    this.countsTimer = 0;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  onFrame(msg) {
    switch (msg.type) {
      case 'ready': // every (re)connect: events may have been missed meanwhile
      case 'resync':
        this.emit('resync');
        this.refreshCounts();
        return;
      case 'message':
        if (msg.message) agents.learnFrom(msg.message);
        this.maybeNotify(msg);
        this.emit('frame', msg);
        this.refreshCounts();
        return;
      case 'conversation':
        this.maybeNotifyInvite(msg.conversation);
        this.emit('frame', msg);
        this.refreshCounts();
        return;
      case 'typing':
      case 'block':
        this.emit('frame', msg);
        return;
      default:
    }
  }

  // Inbox lists tell us visitor names for notifications.
  remember(items) {
    for (const c of items) {
      if (c && c.id != null && c.visitor) this.known.set(c.id, c.visitor);
    }
    if (this.known.size > 5000) this.known.clear();
  }

  setCounts(counts) {
    if (!counts || typeof counts !== 'object') return;
    this.counts = counts;
    this.countsAt = Date.now();
    this.emit('counts', counts);
  }

  // Conversations with unread visitor messages in the tabs that need this
  // agent (mine, unassigned, missed).
  attentionUnread() {
    const c = this.counts || {};
    return ATTENTION_TABS.reduce((n, t) => n + (Number(c[t] && c[t].unread) || 0), 0);
  }

  // Throttled GET /api/inbox for its counts (trailing: a burst of frames
  // ends with one fresh answer).
  refreshCounts(now = false) {
    if (this.countsTimer) return;
    const wait = now ? 0 : Math.max(0, this.countsAt + COUNTS_EVERY_MS - Date.now());
    this.countsTimer = setTimeout(async () => {
      this.countsTimer = 0;
      if (this.listActive && !now) return; // the inbox's own re-fetch brings counts
      if (this.countsBusy) return this.refreshCounts();
      this.countsBusy = true;
      this.countsAt = Date.now();
      try {
        const res = await api.get('/api/inbox?tab=mine&limit=1');
        this.setCounts(res && res.counts);
      } catch {
        /* the next frame tries again */
      } finally {
        this.countsBusy = false;
      }
    }, wait);
  }

  // New chats and visitor messages that are this agent's business: a browser
  // notification while the console is in the background, and the sound
  // whenever the agent is not looking at that very conversation. "Offline"
  // mutes both.
  maybeNotify(msg) {
    const c = msg.conversation;
    const m = msg.message;
    if (!c || !m || !m.author || m.author.kind !== 'visitor') return;
    if (agentStatus() === 'offline') return;
    if (!concernsMe(c, this.agentId)) return;
    const watching = !document.hidden && location.hash === `#/inbox/${c.id}`;
    if (watching) return;
    if (!document.hidden) {
      beep();
      return;
    }
    const visitor = visitorLabel(c, this.known.get(c.id));
    const first = c.first_agent_reply_ms == null && c.last_visitor_seq === m.seq && (c.origin || {}).kind === 'visitor';
    const title = first ? `New chat from ${visitor}` : `New message from ${visitor}`;
    notify(title, messageText(m), {
      tag: `pl-conversation-${c.id}`,
      onClick: () => {
        location.hash = `#/inbox/${c.id}`;
      },
    });
    beep();
  }

  // A colleague invited this agent into a conversation.
  maybeNotifyInvite(c) {
    if (!c || !Array.isArray(c.invited)) return;
    const invited = c.invited.includes(this.agentId);
    if (!invited) {
      this.invitedTo.delete(c.id);
      return;
    }
    if (this.invitedTo.has(c.id) || agentStatus() === 'offline') return;
    this.invitedTo.add(c.id);
    const visitor = visitorLabel(c, this.known.get(c.id));
    if (document.hidden) {
      notify(`You are invited to a chat with ${visitor}`, c.last_message_preview || '', {
        tag: `pl-invite-${c.id}`,
        onClick: () => {
          location.hash = `#/inbox/${c.id}`;
        },
      });
    }
    beep();
  }
}
