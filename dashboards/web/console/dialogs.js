// Small modal dialogs (<dialog>): "Open conversation" with a live visitor,
// and blocking a visitor. Both talk to the API themselves and resolve with
// the result (null when cancelled).

import { ApiError, request } from './api.js';
import { h } from './dom.js';
import { clientId } from './conversations.js';
import { savedReplies } from './saved-replies.js';

export const OPENING_TEXT = 'Hi! Can I help you with anything?';

function modal(id, title, body, actions, { onCancel } = {}) {
  const errorEl = h('p', { class: 'form-error', role: 'alert', hidden: true, id: `${id}-error` });
  const dialog = h(
    'dialog',
    { id, class: 'dialog', 'aria-labelledby': `${id}-title` },
    h('form', { method: 'dialog', class: 'dialog-form' }, h('h2', { id: `${id}-title`, text: title }), body, errorEl, h('div', { class: 'dialog-actions' }, actions)),
  );
  dialog.addEventListener('cancel', () => onCancel && onCancel());
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return {
    dialog,
    error(msg) {
      errorEl.textContent = msg;
      errorEl.hidden = !msg;
    },
    close() {
      if (dialog.open) dialog.close();
      dialog.remove();
    },
  };
}

function message(err) {
  return err instanceof ApiError || (err && err.message) ? err.message : 'Something went wrong';
}

// Resolves with {conversation, message} once the first message is sent.
export function openConversationDialog(siteKey, visitorId, visitorName) {
  document.getElementById('open-conversation-dialog')?.remove();
  return new Promise((resolve) => {
    const text = h('textarea', { id: 'open-conversation-text', class: 'dialog-text', rows: '4', maxlength: '4000', required: true });
    text.value = OPENING_TEXT;
    const cid = clientId(); // one key for the dialog: a retry never sends twice
    let done = false;
    const finish = (v) => {
      if (done) return;
      done = true;
      m.close();
      resolve(v);
    };
    const send = h('button', { id: 'open-conversation-send', class: 'btn btn-primary', type: 'submit', text: 'Send' });
    const cancel = h('button', { id: 'open-conversation-cancel', class: 'btn', type: 'button', text: 'Cancel', onclick: () => finish(null) });
    // A saved reply as the opening offer: picking one fills the message (still editable);
    // sent unchanged, it goes as saved_reply_id.
    let picked = null;
    const replySel = h('select', {
      id: 'open-conversation-reply', class: 'select-sm', hidden: true, 'aria-label': 'Use a saved reply',
      onchange: () => {
        picked = (replySel.replies || []).find((r) => String(r.id) === replySel.value) || null;
        if (picked) text.value = picked.text;
        text.focus();
      },
    });
    savedReplies(siteKey).then((replies) => {
      replySel.replies = replies;
      replySel.replaceChildren(
        h('option', { value: '', text: 'Saved reply…' }),
        ...replies.map((r) => h('option', { value: String(r.id), text: `/${r.shortcut} — ${r.text.slice(0, 60)}` })),
      );
      replySel.hidden = !replies.length;
    });
    const m = modal(
      'open-conversation-dialog',
      'Open conversation',
      [
        h('p', { class: 'muted dialog-sub', text: `Your message appears in ${visitorName || 'the visitor'}'s chat window at once.` }),
        replySel,
        h('label', { for: 'open-conversation-text', class: 'sr-only', text: 'Message' }),
        text,
      ],
      [cancel, send],
      { onCancel: () => finish(null) },
    );
    m.dialog.querySelector('form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = text.value.trim();
      if (!body) {
        text.focus();
        return;
      }
      send.disabled = true;
      m.error('');
      try {
        const path = `/api/sites/${encodeURIComponent(siteKey)}/visitors/${encodeURIComponent(visitorId)}/conversations`;
        const offer = picked && picked.text === body ? { saved_reply_id: picked.id } : { text: body };
        const res = await request('POST', path, { ...offer, client_id: cid });
        finish(res);
      } catch (err) {
        m.error(message(err));
        send.disabled = false;
      }
    });
    text.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) m.dialog.querySelector('form').requestSubmit();
    });
    text.focus();
    text.select();
  });
}

// Resolves with the block record, or null when cancelled.
export function blockDialog(siteKey, visitorId, visitorName) {
  document.getElementById('block-dialog')?.remove();
  return new Promise((resolve) => {
    const ip = h('input', { id: 'block-ip', type: 'checkbox' });
    const reason = h('input', { id: 'block-reason', class: 'dialog-input', type: 'text', maxlength: '200', placeholder: 'Reason (optional, for your team)' });
    let done = false;
    const finish = (v) => {
      if (done) return;
      done = true;
      m.close();
      resolve(v);
    };
    const confirm = h('button', { id: 'block-confirm', class: 'btn btn-danger', type: 'submit', text: 'Block' });
    const cancel = h('button', { id: 'block-cancel', class: 'btn', type: 'button', text: 'Cancel', onclick: () => finish(null) });
    const m = modal(
      'block-dialog',
      `Block ${visitorName || 'this visitor'}?`,
      [
        h('p', { class: 'muted dialog-sub', text: 'A blocked visitor can no longer start or continue chats.' }),
        h('label', { class: 'check' }, ip, ' Also block their IP address'),
        reason,
      ],
      [cancel, confirm],
      { onCancel: () => finish(null) },
    );
    m.dialog.querySelector('form').addEventListener('submit', async (e) => {
      e.preventDefault();
      confirm.disabled = true;
      m.error('');
      try {
        const body = { ip: ip.checked };
        if (reason.value.trim()) body.reason = reason.value.trim();
        const res = await request('POST', blockPath(siteKey, visitorId), body);
        finish((res && res.block) || {});
      } catch (err) {
        m.error(message(err));
        confirm.disabled = false;
      }
    });
    confirm.focus();
  });
}

export function blockPath(siteKey, visitorId) {
  return `/api/sites/${encodeURIComponent(siteKey)}/visitors/${encodeURIComponent(visitorId)}/block`;
}

export function unblock(siteKey, visitorId) {
  return request('DELETE', blockPath(siteKey, visitorId));
}

// A yes/no question (e.g. "Delete this trigger?"). Resolves true when
// confirmed, false when cancelled; Cancel has the focus, so Enter is safe.
export function confirmDialog({ id = 'confirm-dialog', title, text = '', confirm = 'OK', danger = false }) {
  document.getElementById(id)?.remove();
  return new Promise((resolve) => {
    let done = false;
    const finish = (v) => {
      if (done) return;
      done = true;
      m.close();
      resolve(v);
    };
    const ok = h('button', { id: `${id}-confirm`, class: `btn ${danger ? 'btn-danger' : 'btn-primary'}`, type: 'submit', text: confirm });
    const cancel = h('button', { id: `${id}-cancel`, class: 'btn', type: 'button', text: 'Cancel', onclick: () => finish(false) });
    const m = modal(id, title, text ? h('p', { class: 'muted dialog-sub', text }) : [], [cancel, ok], { onCancel: () => finish(false) });
    m.dialog.querySelector('form').addEventListener('submit', (e) => {
      e.preventDefault();
      finish(true);
    });
    cancel.focus();
  });
}
