// <pl-chat-view id="chat-view">: one conversation — header with actions
// (join, leave, invite, resolve, reopen, block), tags, the messages, the
// typing indicator, the composer (text, internal note, attachment) and the
// visitor beside it (<pl-visitor-card> while live, else what the
// conversation knows, and the visitor's past conversations).
//
// The inbox calls setup(service, agentId), open(id, hint), close(). Live
// frames come from the InboxService: messages append without re-fetching
// (deduplicated by seq; a gap fetches `messages?after=`).

import { ApiError, UNAUTHORIZED, api, request } from './api.js';
import { agents } from './agents.js';
import {
  agentRead,
  attachmentUrl,
  clientId,
  eventText,
  fileSize,
  isParticipant,
  parseTags,
  sameList,
  shortTime,
  visitorLabel,
} from './conversations.js';
import { blockDialog, unblock } from './dialogs.js';
import { h } from './dom.js';
import * as f from './format.js';
import './pl-visitor-card.js';
import './pl-contact.js';
import { CHANGED as REPLIES_CHANGED, matching, savedReplies } from './saved-replies.js';
import { variantLabel } from './trigger-model.js';
import { statsLink, triggerName } from './triggers-api.js';

const PAGE = 500; // messages per request
const MAX_ATTACHMENT = 2 * 1024 * 1024;
const TYPING_EVERY_MS = 2000; // send "typing" at most this often
const TYPING_IDLE_MS = 3000; // then "not typing" after this much quiet
const TYPING_SHOWN_MS = 6000; // a typing indicator nobody refreshes fades
const CARD_REFRESH_MS = 10000;

class PlChatView extends HTMLElement {
  constructor() {
    super();
    this.service = null;
    this.agentId = null;
    this.conv = null;
    this.visitor = null; // summary {id, number, name, email, online, ...}
    this.gen = 0;
    this.lastSeq = 0; // every message up to this seq is shown
    this.fetching = false;
    this.refetch = false;
    this.pending = new Map(); // client_id -> pending element
    this.typers = new Map(); // 'visitor' | 'agent:<id>' -> {text, timer}
    this.typingSentAt = 0;
    this.typingOn = null;
    this.typingIdle = 0;
    this.readBusy = false;
    this.blocked = false;
    this.noteMode = false;
    this.onFrame = (e) => this.frame(e.detail);
    this.onResync = () => this.resync();
    this.onVisible = () => this.markRead();
    this.replies = []; // the site's saved replies, for "/shortcut" in the composer
    this.suggested = []; // the replies the open suggestion list shows
    this.suggestIndex = 0;
    this.onReplies = (e) => {
      if (this.conv && e.detail && e.detail.site === this.conv.site) this.loadReplies();
    };
  }

  setup(service, agentId) {
    this.service = service;
    this.agentId = agentId;
  }

  connectedCallback() {
    if (!this.scroller) this.build();
    document.addEventListener('visibilitychange', this.onVisible);
    window.addEventListener('focus', this.onVisible);
    window.addEventListener(REPLIES_CHANGED, this.onReplies);
    if (this.service) {
      this.service.addEventListener('frame', this.onFrame);
      this.service.addEventListener('resync', this.onResync);
    }
    clearInterval(this.ticker);
    this.ticker = setInterval(() => this.tick(), 1000);
    // Frames went elsewhere while we were out of the page: catch up.
    if (this.conv) this.resync();
  }

  disconnectedCallback() {
    document.removeEventListener('visibilitychange', this.onVisible);
    window.removeEventListener('focus', this.onVisible);
    window.removeEventListener(REPLIES_CHANGED, this.onReplies);
    if (this.service) {
      this.service.removeEventListener('frame', this.onFrame);
      this.service.removeEventListener('resync', this.onResync);
    }
    clearInterval(this.ticker);
    this.stopTyping();
  }

  build() {
    this.id = 'chat-view';
    this.setAttribute('role', 'region');
    this.setAttribute('aria-label', 'Conversation');

    const btn = (id, text, onclick, cls = 'btn btn-sm') => h('button', { id, class: cls, type: 'button', text, onclick, hidden: true });
    this.backBtn = h('a', { id: 'chat-back', class: 'btn btn-sm chat-back', href: '#/inbox', 'aria-label': 'Back to the inbox', text: '‹ Inbox' });
    this.titleEl = h('h2', { id: 'chat-title', class: 'chat-title' });
    this.stateEl = h('span', { id: 'chat-state', class: 'badge' });
    this.assigneeEl = h('span', { id: 'chat-assignee', class: 'chat-assignee' });
    this.joinBtn = btn('chat-join', 'Join', () => this.act('join'));
    this.leaveBtn = btn('chat-leave', 'Leave', () => this.act('leave'));
    this.inviteSel = h('select', { id: 'chat-invite', class: 'select-sm', 'aria-label': 'Invite a colleague', hidden: true, onchange: () => this.invite() });
    this.resolveBtn = btn('chat-resolve', 'Resolve', () => this.act('resolve'), 'btn btn-sm btn-ok');
    this.reopenBtn = btn('chat-reopen', 'Reopen', () => this.act('reopen'));
    this.blockBtn = btn('chat-block', 'Block', () => this.toggleBlock(), 'btn btn-sm btn-danger-ghost');
    this.tagsInput = h('input', {
      id: 'chat-tags', class: 'chat-tags-input', type: 'text', autocomplete: 'off', spellcheck: 'false',
      placeholder: 'Add tags, comma-separated', 'aria-label': 'Tags (comma-separated)',
      onblur: () => this.saveTags(),
      onkeydown: (e) => {
        if (e.key === 'Enter') {
          e.preventDefault();
          this.saveTags();
        } else if (e.key === 'Escape') {
          this.tagsInput.value = this.tagsText();
          this.tagsInput.blur();
        }
      },
    });
    this.errorEl = h('p', { id: 'chat-error', class: 'chat-error', role: 'alert', hidden: true });
    this.messagesEl = h('div', { id: 'chat-messages', class: 'chat-messages', role: 'log', 'aria-live': 'polite' });
    this.pendingEl = h('div', { id: 'chat-pending', class: 'chat-messages chat-pending' });
    this.loadingEl = h('p', { class: 'chat-loading muted', text: 'Loading conversation…', hidden: true });
    this.scroller = h('div', { id: 'chat-scroll', class: 'chat-scroll' }, this.loadingEl, this.messagesEl, this.pendingEl);
    this.typingEl = h('div', { id: 'chat-typing', class: 'chat-typing', role: 'status', 'aria-live': 'polite' });

    this.input = h('textarea', {
      id: 'chat-input', class: 'chat-input', rows: '2', placeholder: 'Write a reply… (Enter to send, Shift+Enter for a new line)',
      'aria-label': 'Message', maxlength: '8000',
      oninput: () => {
        this.typed();
        this.suggest();
      },
      onblur: () => setTimeout(() => this.closeSuggestions(), 150),
      onkeydown: (e) => {
        if (this.suggestionKey(e)) return;
        if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
          e.preventDefault();
          this.send();
        }
      },
      onpaste: (e) => {
        const files = e.clipboardData && e.clipboardData.files;
        if (files && files.length && !this.noteMode) {
          e.preventDefault();
          this.upload(files[0]);
        }
      },
    });
    this.noteBtn = h('button', {
      id: 'chat-note-toggle', class: 'btn btn-sm note-toggle', type: 'button', 'aria-pressed': 'false', text: 'Internal note',
      title: 'Write an internal note: only your team sees it', onclick: () => this.setNoteMode(!this.noteMode),
    });
    this.fileInput = h('input', { id: 'chat-file', type: 'file', hidden: true, onchange: () => this.pickedFile() });
    this.attachBtn = h('button', {
      id: 'chat-attach', class: 'btn btn-sm', type: 'button', text: '📎 Attach', title: 'Attach a file (up to 2 MB)',
      onclick: () => this.fileInput.click(),
    });
    this.sendBtn = h('button', { id: 'chat-send', class: 'btn btn-primary btn-sm', type: 'submit', text: 'Send' });
    this.composer = h(
      'form',
      {
        id: 'chat-composer', class: 'chat-composer',
        onsubmit: (e) => {
          e.preventDefault();
          this.send();
        },
      },
      h('div', { id: 'chat-note-banner', class: 'note-banner', text: 'Internal note — the visitor will not see this', hidden: true }),
      this.suggestEl = h('ul', { id: 'chat-replies', class: 'reply-suggestions', role: 'listbox', 'aria-label': 'Saved replies', hidden: true }),
      this.input,
      h('div', { class: 'composer-bar' }, this.noteBtn, this.attachBtn, this.fileInput, h('span', { class: 'grow' }), this.sendBtn),
    );

    this.infoEl = h('section', { id: 'chat-visitor-info', class: 'chat-info' });
    // The contact behind the visitor, editable, live or not (the live card's own copy is
    // hidden in the chat).
    this.contact = document.createElement('pl-contact');
    this.contact.id = 'chat-contact';
    this.contact.addEventListener('pl-contact-changed', (e) => {
      const identity = (e.detail && e.detail.identity) || {};
      if (!this.conv) return;
      this.visitor = { ...this.visitor, name: identity.name || null, email: identity.email || null };
      this.renderHead();
    });
    this.card = document.createElement('pl-visitor-card');
    this.card.dataset.context = 'chat';
    this.card.hidden = true;
    this.side = h('aside', { id: 'chat-side', class: 'chat-side', 'aria-label': 'Visitor' }, this.contact, this.card, this.infoEl);
    // The card reports its state in data-state: show it only while the
    // visitor is live, and take their name from it.
    new MutationObserver(() => this.cardChanged()).observe(this.card, { attributes: true, attributeFilter: ['data-state'] });
    this.card.addEventListener('pl-card-close', (e) => {
      e.stopPropagation();
      this.card.hidden = true;
      this.side.classList.remove('has-card');
    });

    this.main = h(
      'div',
      { class: 'chat-main' },
      h(
        'header',
        { class: 'chat-head' },
        this.backBtn,
        h('div', { class: 'chat-heading' }, this.titleEl, h('div', { class: 'chat-sub' }, this.stateEl, this.assigneeEl)),
        h('div', { class: 'chat-actions' }, this.joinBtn, this.leaveBtn, this.inviteSel, this.resolveBtn, this.reopenBtn, this.blockBtn),
      ),
      h('div', { class: 'chat-tags-row' }, h('label', { for: 'chat-tags', class: 'chat-tags-label', text: 'Tags' }), this.tagsInput),
      this.errorEl,
      this.scroller,
      this.typingEl,
      this.composer,
    );
    this.append(this.main, this.side);
    this.hidden = true;
  }

  // ---- opening and loading -------------------------------------------------

  // hint: the inbox list item ({...conversation, visitor}) when there is one.
  async open(id, hint) {
    if (!this.scroller) this.build();
    id = Number(id);
    if (this.conv && this.conv.id === id && this.dataset.state !== 'error') {
      if (hint && hint.visitor) this.visitor = { ...this.visitor, ...hint.visitor };
      this.renderHead();
      this.markRead();
      return;
    }
    const gen = ++this.gen;
    this.stopTyping();
    this.reset();
    this.hidden = false;
    this.dataset.conversationId = String(id);
    this.dataset.state = 'loading';
    this.loadingEl.hidden = false;
    if (hint && hint.id === id) {
      this.conv = hint;
      this.visitor = hint.visitor || null;
      this.renderHead();
    }
    try {
      let { conversation } = await api.get(`/api/conversations/${id}`);
      if (gen !== this.gen) return;
      if (conversation.state === 'open' && conversation.assigned_agent == null) {
        // Opening an unassigned conversation takes it.
        try {
          const res = await api.post(`/api/conversations/${id}/open`);
          if (res && res.conversation) conversation = res.conversation;
        } catch (e) {
          if (gen === this.gen && e.status !== 401) this.showError(`Could not take the conversation: ${e.message}`);
        }
        if (gen !== this.gen) return;
      }
      this.conv = conversation;
      this.renderHead();
      await this.fetchMessages(gen);
      if (gen !== this.gen) return;
      this.loadingEl.hidden = true;
      this.dataset.state = 'ready';
      this.scrollToBottom();
      this.markRead();
      this.loadSide(gen);
    } catch (e) {
      if (gen !== this.gen) return;
      this.loadingEl.hidden = true;
      this.dataset.state = 'error';
      if (e.status === 401) return;
      this.showError(
        e.status === 404 ? 'This conversation does not exist.' : e.status === 403 ? 'You do not have access to this conversation.' : `Could not load the conversation: ${e.message}`,
        true,
      );
    }
  }

  close() {
    this.gen++;
    this.stopTyping();
    this.reset();
    this.hidden = true;
    delete this.dataset.conversationId;
    delete this.dataset.state;
  }

  reset() {
    this.conv = null;
    this.visitor = null;
    this.lastSeq = 0;
    this.fetching = this.refetch = false;
    this.pending.clear();
    for (const t of this.typers.values()) clearTimeout(t.timer);
    this.typers.clear();
    this.blocked = false;
    this.messagesEl.replaceChildren();
    this.pendingEl.replaceChildren();
    this.typingEl.textContent = '';
    this.infoEl.replaceChildren();
    this.errorEl.hidden = true;
    this.input.value = '';
    this.setNoteMode(false);
    this.tagsInput.value = '';
    this.card.hidden = true;
    this.card.close();
    this.card.hidden = true;
    this.side.classList.remove('has-card');
    this.contact.close();
    this.replies = [];
    this.closeSuggestions();
    this.lastCardRefresh = 0;
  }

  // Messages after lastSeq until the server has no more (also fills gaps).
  async fetchMessages(gen = this.gen) {
    if (this.fetching) {
      this.refetch = true;
      return;
    }
    this.fetching = true;
    try {
      do {
        this.refetch = false;
        const id = this.conv.id;
        for (;;) {
          const res = await api.get(`/api/conversations/${id}/messages?after=${this.lastSeq}&limit=${PAGE}`);
          if (gen !== this.gen) return;
          const list = Array.isArray(res && res.messages) ? res.messages : [];
          const stick = this.nearBottom();
          for (const m of list) this.add(m, { noFetch: true });
          if (stick) this.scrollToBottom();
          if (list.length < PAGE) break;
        }
      } while (this.refetch && gen === this.gen);
    } finally {
      if (gen === this.gen) this.fetching = false;
    }
    if (gen === this.gen) this.markRead();
  }

  async loadSide(gen) {
    const c = this.conv;
    const site = encodeURIComponent(c.site);
    const vid = encodeURIComponent(c.visitor_id);
    // The live card: while the visitor is on the site (unknown: try).
    if (!this.visitor || this.visitor.online !== false) {
      this.card.open(c.site, c.visitor_id, null);
    }
    this.contact.open(c.site, c.visitor_id, { conversationId: c.id });
    this.loadReplies();
    this.renderInfo();
    const [past, blocks] = await Promise.all([
      api.get(`/api/sites/${site}/visitors/${vid}/conversations`).catch(() => null),
      api.get(`/api/sites/${site}/blocks`).catch(() => null),
    ]);
    if (gen !== this.gen) return;
    this.past = Array.isArray(past && past.conversations) ? past.conversations : [];
    const list = Array.isArray(blocks && blocks.blocks) ? blocks.blocks : [];
    this.blocked = list.some((b) => b && b.visitor_id === c.visitor_id);
    this.renderHead();
    this.renderInfo();
  }

  cardChanged() {
    const state = this.card.dataset.state;
    if (!this.conv) return;
    if (state === 'gone' || state === 'error') {
      this.card.hidden = true;
      this.side.classList.remove('has-card');
    } else if (state === 'ready' || state === 'left') {
      this.side.classList.add('has-card');
      const d = this.card.data;
      if (d && d.id === this.conv.visitor_id) {
        this.visitor = {
          ...this.visitor, id: d.id, number: d.number, name: d.name || (this.visitor && this.visitor.name),
          email: d.email || (this.visitor && this.visitor.email), online: !d.left,
        };
        this.blocked = f.segmentsOf(d).includes('blocked') || this.blocked;
        this.renderHead();
      }
    }
  }

  // ---- live frames -----------------------------------------------------------

  frame(msg) {
    const c = this.conv;
    if (!c || this.hidden) return;
    if (msg.type === 'message' && msg.conversation && msg.conversation.id === c.id) {
      this.setConv(msg.conversation);
      const m = msg.message;
      if (m && m.author && m.author.kind === 'visitor') this.setTyping('visitor', null);
      if (m && m.author && m.author.kind === 'agent') this.setTyping(`agent:${m.author.id}`, null);
      const stick = this.nearBottom();
      this.add(m);
      if (stick) this.scrollToBottom();
      this.markRead();
    } else if (msg.type === 'conversation' && msg.conversation && msg.conversation.id === c.id) {
      this.setConv(msg.conversation);
      // A conversation frame may tell of messages we missed.
      if ((msg.conversation.last_seq || 0) > this.lastSeq && this.dataset.state === 'ready') this.fetchMessages();
    } else if (msg.type === 'typing' && msg.conversation_id === c.id) {
      const w = msg.who || {};
      if (w.kind === 'visitor') this.setTyping('visitor', msg.typing ? 'Visitor is typing…' : null);
      else if (w.kind === 'agent' && w.id !== this.agentId) {
        this.setTyping(`agent:${w.id}`, msg.typing ? `${w.name || agents.fullName(w.id)} is typing…` : null);
      }
    } else if (msg.type === 'block' && msg.site === c.site && msg.visitor_id === c.visitor_id) {
      this.blocked = !!msg.blocked;
      this.renderHead();
      if (!this.card.hidden) this.card.refresh();
    }
  }

  async resync() {
    const c = this.conv;
    if (!c || this.dataset.state !== 'ready') return;
    const gen = this.gen;
    try {
      const res = await api.get(`/api/conversations/${c.id}`);
      if (gen !== this.gen) return;
      this.setConv(res.conversation);
      await this.fetchMessages(gen);
      this.markRead();
    } catch {
      /* the next resync or frame tries again */
    }
  }

  setConv(conv) {
    if (!conv || !this.conv || conv.id !== this.conv.id) return;
    // Frames can arrive out of order with REST answers: keep the newer.
    if ((conv.updated_ms || 0) < (this.conv.updated_ms || 0)) return;
    this.conv = { ...conv, visitor: this.conv.visitor };
    this.renderHead();
  }

  // ---- messages --------------------------------------------------------------

  add(m, { noFetch = false } = {}) {
    if (!m || typeof m.seq !== 'number' || !this.conv || m.conversation_id !== this.conv.id) return;
    agents.learnFrom(m);
    if (m.client_id && this.pending.has(m.client_id)) {
      this.pending.get(m.client_id).remove();
      this.pending.delete(m.client_id);
    }
    if (m.seq <= this.lastSeq) return; // already shown
    if (m.seq > this.lastSeq + 1) {
      // A gap: fetch what is missing (which brings this one too).
      if (!noFetch) this.fetchMessages();
      return;
    }
    this.messagesEl.append(this.renderMessage(m));
    this.lastSeq = m.seq;
  }

  authorLabel(a) {
    switch (a && a.kind) {
      case 'visitor':
        return visitorLabel(this.conv, this.visitor);
      case 'agent':
        return a.id === this.agentId ? `${a.name || 'You'} (you)` : a.name || agents.fullName(a.id);
      case 'bot':
        return `${a.name || 'Bot'} · automatic`;
      default:
        return '';
    }
  }

  renderMessage(m) {
    const a = m.author || {};
    const b = m.body || {};
    const type = ['text', 'note', 'attachment', 'event'].includes(b.type) ? b.type : 'text';
    const el = h('div', {
      class: `chat-msg msg-${type} from-${a.kind || 'system'}`,
      dataset: { seq: String(m.seq), author: a.kind || 'system', type },
    });
    if (a.kind === 'agent' && a.id === this.agentId) el.classList.add('from-me');
    const time = h('time', { class: 'chat-time', title: f.dateTime(m.created_ms), text: msgTime(m.created_ms) });
    if (type === 'event') {
      const ev = b.event || {};
      el.dataset.event = String(ev.kind || '');
      el.append(h('span', { class: 'chat-text', text: eventText(ev, (id) => agents.name(id)) }), ' · ', time);
      return el;
    }
    const meta = h('div', { class: 'chat-meta' }, h('span', { class: 'chat-author', text: this.authorLabel(a) }), time);
    const bubble = h('div', { class: 'chat-bubble' });
    if (type === 'note') bubble.append(h('div', { class: 'chat-note-label', text: 'Internal note' }));
    if (type === 'attachment') {
      const att = b.attachment || {};
      const url = attachmentUrl(this.conv.id, att.id);
      if (att.image) {
        const img = h('img', { class: 'chat-image', src: url, alt: att.name || 'image', loading: 'lazy' });
        img.addEventListener('load', () => {
          if (this.nearBottom(img.height + 80)) this.scrollToBottom();
        });
        bubble.append(h('a', { class: 'chat-image-link', href: url, target: '_blank', rel: 'noopener', title: att.name || '' }, img));
      }
      bubble.append(
        h(
          'a',
          { class: 'chat-file', href: url, download: att.name || 'attachment', rel: 'noopener' },
          h('span', { class: 'chat-file-name', text: `📎 ${att.name || 'attachment'}` }),
          h('span', { class: 'chat-file-size', text: fileSize(att.size) }),
        ),
      );
      if (b.text) bubble.append(h('div', { class: 'chat-text', text: b.text }));
    } else {
      bubble.append(h('div', { class: 'chat-text', text: b.text == null ? '' : String(b.text) }));
    }
    el.append(meta, bubble);
    return el;
  }

  // ---- header, side ----------------------------------------------------------

  tagsText() {
    return (this.conv && Array.isArray(this.conv.tags) ? this.conv.tags : []).join(', ');
  }

  renderHead() {
    const c = this.conv;
    if (!c) return;
    const v = this.visitor || {};
    const label = visitorLabel(c, v);
    this.titleEl.replaceChildren(
      v.country_code && f.flag(v.country_code) ? h('span', { class: 'card-flag', text: f.flag(v.country_code) }) : '',
      label,
      v.online ? h('span', { class: 'online-dot', title: 'On the site now', 'aria-label': 'online' }) : '',
    );
    const open = c.state === 'open';
    this.dataset.convState = c.state;
    this.stateEl.textContent = open ? (c.missed ? 'missed' : 'open') : 'resolved';
    this.stateEl.className = `badge badge-state-${open ? (c.missed ? 'missed' : 'open') : 'resolved'}`;
    const parts = [];
    parts.push(c.assigned_agent != null ? `Assigned to ${agents.name(c.assigned_agent)}` : 'Unassigned');
    const others = (c.participants || []).filter((id) => id !== c.assigned_agent);
    if (others.length) parts.push(`with ${others.map((id) => agents.name(id)).join(', ')}`);
    if ((c.invited || []).length) parts.push(`invited: ${c.invited.map((id) => agents.name(id)).join(', ')}`);
    if (c.rating) parts.push(`rated ${c.rating.score}/5`);
    this.assigneeEl.textContent = parts.join(' · ');

    const mine = isParticipant(c, this.agentId);
    this.joinBtn.hidden = !open || mine;
    this.leaveBtn.hidden = !mine || !open;
    this.resolveBtn.hidden = !open;
    this.reopenBtn.hidden = open;
    this.blockBtn.hidden = false;
    this.blockBtn.textContent = this.blocked ? 'Unblock' : 'Block';
    this.blockBtn.dataset.blocked = String(this.blocked);
    this.renderInvite();
    if (document.activeElement !== this.tagsInput) this.tagsInput.value = this.tagsText();
    this.input.disabled = false;
    this.composer.classList.toggle('is-blocked', this.blocked);
    this.input.placeholder = this.noteMode
      ? 'Internal note for your team…'
      : this.blocked
        ? 'The visitor is blocked: only internal notes reach anyone'
        : 'Write a reply… (Enter to send, Shift+Enter for a new line)';
  }

  renderInvite() {
    const c = this.conv;
    const list = agents.list;
    const candidates = c && c.state === 'open' && Array.isArray(list)
      ? list.filter((a) => a.id !== this.agentId && !(c.participants || []).includes(a.id) && !(c.invited || []).includes(a.id)
        && (a.role !== 'agent' || (a.sites || []).includes(c.site)))
      : [];
    this.inviteSel.hidden = !candidates.length;
    this.inviteSel.replaceChildren(
      h('option', { value: '', text: 'Invite…' }),
      ...candidates.map((a) => h('option', { value: String(a.id), text: a.name || a.email })),
    );
    this.inviteSel.value = '';
  }

  renderInfo() {
    const c = this.conv;
    if (!c) return;
    const v = this.visitor || {};
    const pre = c.prechat || {};
    const row = (label, key, value) => [h('dt', { text: label }), h('dd', { 'data-field': key, class: value == null || value === '' ? 'empty' : null }, value == null || value === '' ? f.EMPTY : value)];
    const page = typeof c.page_url === 'string' && c.page_url ? h('a', { href: c.page_url, target: '_blank', rel: 'noopener noreferrer nofollow', text: f.pathOf(c.page_url) || c.page_url, title: c.page_url }) : null;
    const rating = c.rating ? `${c.rating.score}/5${c.rating.comment ? ` — ${c.rating.comment}` : ''}` : null;
    this.infoEl.replaceChildren(
      h(
        'div',
        { class: 'card-section' },
        h('h3', { text: 'Conversation' }),
        h(
          'dl',
          { class: 'fields', id: 'chat-fields' },
          pre.name ? row('Pre-chat name', 'name', pre.name) : null,
          pre.email ? row('Pre-chat email', 'email', pre.email) : null,
          v.number != null ? row('Visitor', 'number', `#${v.number}`) : null,
          c.subject ? row('Subject', 'subject', c.subject) : null,
          row('Started on', 'page_url', page),
          c.origin && c.origin.kind === 'trigger' ? row('Trigger', 'trigger', triggerOrigin(c)) : null,
          row('IP', 'visitor_ip', c.visitor_ip),
          row('Started', 'created', f.dateTime(c.created_ms)),
          c.resolved_ms != null && c.state === 'resolved' ? row('Resolved', 'resolved', f.dateTime(c.resolved_ms)) : null,
          rating ? row('Rating', 'rating', rating) : null,
        ),
      ),
    );
  }

  // ---- actions ---------------------------------------------------------------

  showError(msg, sticky = false) {
    clearTimeout(this.errorTimer);
    this.errorEl.textContent = msg;
    this.errorEl.hidden = !msg;
    if (msg && !sticky) this.errorTimer = setTimeout(() => (this.errorEl.hidden = true), 8000);
  }

  async act(action) {
    const c = this.conv;
    if (!c) return;
    const btn = { join: this.joinBtn, leave: this.leaveBtn, resolve: this.resolveBtn, reopen: this.reopenBtn }[action];
    if (btn) btn.disabled = true;
    try {
      const res = await api.post(`/api/conversations/${c.id}/${action}`);
      if (res && res.conversation) this.setConv(res.conversation);
    } catch (e) {
      if (e.status !== 401 && this.conv === c) this.showError(`Could not ${action}: ${e.message}`);
    } finally {
      if (btn) btn.disabled = false;
    }
  }

  async invite() {
    const c = this.conv;
    const id = Number(this.inviteSel.value);
    if (!c || !id) return;
    this.inviteSel.disabled = true;
    try {
      const res = await api.post(`/api/conversations/${c.id}/invite`, { agent_id: id });
      if (res && res.conversation) this.setConv(res.conversation);
    } catch (e) {
      if (e.status !== 401) this.showError(`Could not invite: ${e.message}`);
    } finally {
      this.inviteSel.disabled = false;
      this.renderInvite();
    }
  }

  async saveTags() {
    const c = this.conv;
    if (!c) return;
    const tags = parseTags(this.tagsInput.value);
    if (sameList(tags, c.tags || [])) {
      this.tagsInput.value = this.tagsText();
      return;
    }
    this.tagsInput.classList.add('saving');
    try {
      const res = await request('PUT', `/api/conversations/${c.id}/tags`, { tags });
      if (res && res.conversation) this.setConv(res.conversation);
      if (this.conv === c || (this.conv && this.conv.id === c.id)) {
        if (document.activeElement !== this.tagsInput) this.tagsInput.value = this.tagsText();
        this.tagsInput.classList.add('saved');
        setTimeout(() => this.tagsInput.classList.remove('saved'), 1200);
      }
    } catch (e) {
      if (e.status !== 401) this.showError(`Could not save tags: ${e.message}`);
    } finally {
      this.tagsInput.classList.remove('saving');
    }
  }

  async toggleBlock() {
    const c = this.conv;
    if (!c) return;
    const label = visitorLabel(c, this.visitor);
    if (this.blocked) {
      this.blockBtn.disabled = true;
      try {
        await unblock(c.site, c.visitor_id);
        if (this.conv === c) this.blocked = false;
      } catch (e) {
        if (e.status !== 401) this.showError(`Could not unblock: ${e.message}`);
      } finally {
        this.blockBtn.disabled = false;
      }
    } else {
      const block = await blockDialog(c.site, c.visitor_id, label);
      if (block && this.conv === c) this.blocked = true;
    }
    this.renderHead();
  }

  // ---- composer --------------------------------------------------------------

  async loadReplies() {
    const c = this.conv;
    if (!c) return;
    const replies = await savedReplies(c.site);
    if (this.conv && this.conv.site === c.site) this.replies = replies;
  }

  // "/shortcut" just before the caret (at the start or after a space) opens the list of
  // matching saved replies.
  slashToken() {
    const el = this.input;
    const before = el.value.slice(0, el.selectionStart);
    const m = /(^|\s)\/([^\s/]*)$/.exec(before);
    return m ? { start: before.length - m[2].length - 1, end: el.selectionStart, prefix: m[2] } : null;
  }

  suggest() {
    const token = this.slashToken();
    this.suggested = token ? matching(this.replies, token.prefix).slice(0, 8) : [];
    this.suggestIndex = 0;
    this.renderSuggestions();
  }

  renderSuggestions() {
    const list = this.suggested;
    this.suggestEl.hidden = !list.length;
    this.suggestEl.replaceChildren(
      ...list.map((r, i) =>
        h(
          'li',
          {
            class: `reply-suggestion${i === this.suggestIndex ? ' selected' : ''}`, role: 'option',
            'aria-selected': String(i === this.suggestIndex), dataset: { shortcut: r.shortcut },
            onmousedown: (e) => {
              e.preventDefault(); // keep the focus in the composer
              this.insertReply(r);
            },
          },
          h('code', { text: `/${r.shortcut}` }),
          h('span', { class: 'reply-text', text: r.text }),
        ),
      ),
    );
  }

  closeSuggestions() {
    this.suggested = [];
    if (this.suggestEl) this.suggestEl.hidden = true;
  }

  // Arrow keys move through the list; Enter or Tab inserts; Escape closes. Returns whether
  // the key was the list's.
  suggestionKey(e) {
    if (!this.suggested.length || e.isComposing) return false;
    const n = this.suggested.length;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      this.suggestIndex = (this.suggestIndex + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
      this.renderSuggestions();
    } else if ((e.key === 'Enter' && !e.shiftKey) || e.key === 'Tab') {
      this.insertReply(this.suggested[this.suggestIndex]);
    } else if (e.key === 'Escape') {
      this.closeSuggestions();
    } else {
      return false;
    }
    e.preventDefault();
    return true;
  }

  // Replaces "/shortcut" with the reply's text; the agent can still edit before sending.
  insertReply(reply) {
    const token = this.slashToken();
    if (!reply || !token) return this.closeSuggestions();
    const el = this.input;
    el.value = el.value.slice(0, token.start) + reply.text + el.value.slice(token.end);
    const caret = token.start + reply.text.length;
    el.setSelectionRange(caret, caret);
    el.focus();
    this.closeSuggestions();
    this.typed();
  }

  setNoteMode(on) {
    this.noteMode = !!on;
    this.noteBtn.setAttribute('aria-pressed', String(this.noteMode));
    this.noteBtn.classList.toggle('active', this.noteMode);
    this.composer.classList.toggle('note-mode', this.noteMode);
    this.composer.querySelector('#chat-note-banner').hidden = !this.noteMode;
    this.attachBtn.disabled = this.noteMode; // notes cannot carry attachments
    this.sendBtn.textContent = this.noteMode ? 'Add note' : 'Send';
    if (this.noteMode) this.stopTyping();
    this.renderHead();
  }

  async send() {
    const c = this.conv;
    const text = this.input.value.trim();
    if (!c || !text) return;
    const note = this.noteMode;
    this.input.value = '';
    this.stopTyping();
    const cid = clientId();
    const body = note ? { text, note: true, client_id: cid } : { text, client_id: cid };
    this.post(c, body, note ? 'note' : 'text', text);
    this.input.focus();
  }

  // Shows a pending bubble until the server answers (or the frame arrives);
  // a failure offers a retry with the same client_id (never sent twice).
  async post(c, body, type, label) {
    const cid = body.client_id;
    let el = this.pending.get(cid);
    if (!el) {
      el = h(
        'div',
        { class: `chat-msg msg-${type} from-agent from-me pending`, dataset: { pending: cid, type } },
        h('div', { class: 'chat-meta' }, h('span', { class: 'chat-author', text: 'Sending…' })),
        h('div', { class: 'chat-bubble' }, type === 'note' ? h('div', { class: 'chat-note-label', text: 'Internal note' }) : null, h('div', { class: 'chat-text', text: label })),
      );
      this.pending.set(cid, el);
      this.pendingEl.append(el);
    } else {
      el.classList.remove('failed');
      el.querySelector('.chat-author').textContent = 'Sending…';
      el.querySelector('.chat-retry')?.remove();
    }
    this.scrollToBottom();
    try {
      const res = await api.post(`/api/conversations/${c.id}/messages`, body);
      if (this.conv && this.conv.id === c.id) {
        if (res && res.conversation) this.setConv(res.conversation);
        if (res && res.message) {
          this.add(res.message);
          this.scrollToBottom();
        }
      }
    } catch (e) {
      if (!this.pending.has(cid)) return;
      el.classList.add('failed');
      el.querySelector('.chat-author').textContent = e.status === 401 ? 'Not sent (signed out)' : `Not sent: ${e.message}`;
      el.querySelector('.chat-meta').append(
        h('button', {
          class: 'btn btn-xs chat-retry', type: 'button', text: 'Retry',
          onclick: () => this.conv && this.conv.id === c.id && this.post(c, body, type, label),
        }),
      );
    }
  }

  pickedFile() {
    const file = this.fileInput.files && this.fileInput.files[0];
    this.fileInput.value = '';
    if (file) this.upload(file);
  }

  async upload(file) {
    const c = this.conv;
    if (!c || this.noteMode) return;
    if (file.size > MAX_ATTACHMENT) {
      this.showError(`${file.name} is larger than 2 MB.`);
      return;
    }
    if (!file.size) {
      this.showError(`${file.name} is empty.`);
      return;
    }
    const cid = clientId();
    const el = h(
      'div',
      { class: 'chat-msg msg-attachment from-agent from-me pending', dataset: { pending: cid, type: 'attachment' } },
      h('div', { class: 'chat-meta' }, h('span', { class: 'chat-author', text: `Uploading ${file.name}…` })),
    );
    this.pending.set(cid, el);
    this.pendingEl.append(el);
    this.scrollToBottom();
    try {
      const res = await fetch(`/api/conversations/${c.id}/attachments`, {
        method: 'POST',
        credentials: 'same-origin',
        headers: {
          Accept: 'application/json',
          'Content-Type': file.type || 'application/octet-stream',
          'X-Filename': encodeURIComponent(file.name || 'file'),
        },
        body: file,
      });
      let data = null;
      try {
        data = await res.json();
      } catch {
        /* not JSON */
      }
      if (res.status === 401) window.dispatchEvent(new CustomEvent(UNAUTHORIZED));
      if (!res.ok) throw new ApiError(res.status, (data && data.error) || `HTTP ${res.status}`, data);
      const att = data && data.attachment;
      if (!att || !att.id) throw new Error('bad response');
      el.remove();
      this.pending.delete(cid);
      await this.post(c, { attachment_id: att.id, client_id: cid }, 'attachment', `📎 ${att.name || file.name}`);
    } catch (e) {
      el.remove();
      this.pending.delete(cid);
      if (e.status !== 401) this.showError(`Could not upload ${file.name}: ${e.message || 'network error'}`);
    }
  }

  // Outgoing typing: "true" at most every 2 s while typing, "false" after
  // 3 s without a keystroke (or on send). Never for internal notes.
  typed() {
    const c = this.conv;
    if (!c || this.noteMode || c.state !== 'open') return;
    clearTimeout(this.typingIdle);
    if (!this.input.value.trim()) {
      this.stopTyping();
      return;
    }
    const now = Date.now();
    if (now - this.typingSentAt >= TYPING_EVERY_MS) {
      this.typingSentAt = now;
      this.typingOn = c.id;
      this.sendTyping(c.id, true);
    }
    this.typingIdle = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.typingIdle);
    if (this.typingOn != null) this.sendTyping(this.typingOn, false);
    this.typingOn = null;
    this.typingSentAt = 0;
  }

  sendTyping(id, typing) {
    api.post(`/api/conversations/${id}/typing`, { typing }).catch(() => {});
  }

  // Incoming typing indicators, each fading after a while without news.
  setTyping(key, text) {
    const old = this.typers.get(key);
    if (old) clearTimeout(old.timer);
    if (text) {
      this.typers.set(key, { text, timer: setTimeout(() => this.setTyping(key, null), TYPING_SHOWN_MS) });
    } else {
      this.typers.delete(key);
    }
    const texts = Array.from(this.typers.values(), (t) => t.text);
    this.typingEl.textContent = texts.join(' · ');
    this.typingEl.dataset.typing = texts.length ? 'true' : 'false';
  }

  // ---- read marks, scrolling, clocks -------------------------------------------

  markRead() {
    const c = this.conv;
    if (!c || this.hidden || !this.isConnected || document.hidden || this.dataset.state !== 'ready') return;
    if (this.lastSeq <= agentRead(c, this.agentId) || this.readBusy) return;
    const seq = this.lastSeq;
    this.readBusy = true;
    api
      .post(`/api/conversations/${c.id}/read`, { seq })
      .then((res) => {
        if (res && res.conversation) this.setConv(res.conversation);
      })
      .catch(() => {})
      .finally(() => {
        this.readBusy = false;
        if (this.conv && this.conv.id === c.id && this.lastSeq > seq) this.markRead();
      });
  }

  nearBottom(slack = 80) {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < slack;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  tick() {
    if (this.hidden || !this.conv) return;
    if (!this.card.hidden) {
      this.card.tick();
      const now = Date.now();
      if (now - (this.lastCardRefresh || 0) > CARD_REFRESH_MS && this.card.dataset.state === 'ready') {
        this.lastCardRefresh = now;
        this.card.refresh();
      }
    }
  }
}

function msgTime(ms) {
  if (typeof ms !== 'number') return '';
  const d = new Date(ms);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : `${shortTime(ms)} ${d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`;
}

if (!customElements.get('pl-chat-view')) customElements.define('pl-chat-view', PlChatView);

// "Spring pricing offer · Variant B" for a conversation a trigger started,
// linking to the trigger's stats (the name arrives after the link is shown).
function triggerOrigin(c) {
  const o = c.origin;
  const link = h('a', { class: 'chat-trigger', href: statsLink(c.site, o.trigger_id), text: `Trigger #${o.trigger_id}` });
  triggerName(c.site, o.trigger_id).then((name) => {
    if (name) link.textContent = name;
  });
  return h('span', {}, link, typeof o.variant === 'string' ? ` · ${variantLabel(o.variant)}` : null, o.test ? ' · test-fire' : null);
}
