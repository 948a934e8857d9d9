// Console entry point: shows the login or the console depending on
// GET /api/me, and falls back to the login whenever any API answers 401.
//
// Routes (location.hash): #/visitors (the default), #/inbox,
// #/inbox/<conversation id>. The live panel and the inbox are created once
// per sign-in and swapped in and out of <main>; the inbox feed
// (InboxService: unread counts, notifications) runs on every route.

import { api, UNAUTHORIZED } from './api.js';
import { agentStatus, setAgentStatus } from './agent-status.js';
import { agents } from './agents.js';
import { h } from './dom.js';
import { InboxService } from './inbox-service.js';
import './pl-login.js';
import './pl-live-panel.js';
import './pl-inbox.js';

const main = document.getElementById('app');
const header = document.getElementById('app-header');
const agentName = document.getElementById('agent-name');
const logoutBtn = document.getElementById('logout');
const navVisitors = document.getElementById('nav-visitors');
const navInbox = document.getElementById('nav-inbox');
const navInboxCount = navInbox.querySelector('.count');
const statusSelect = document.getElementById('agent-status');

let view = null; // 'login' | 'console' | 'error'
let session = null; // {me, panel, inbox, service} while signed in
let unread = 0;

function endSession() {
  if (!session) return;
  session.service.stop();
  session = null;
  agents.reset();
  unread = 0;
}

function showLogin() {
  if (view === 'login') return;
  view = 'login';
  endSession();
  header.hidden = true;
  agentName.textContent = '';
  document.title = 'Sign in — Porchlight';
  main.replaceChildren(document.createElement('pl-login'));
}

function startSession(me) {
  endSession();
  const agent = (me && me.agent) || {};
  view = 'console';
  header.hidden = false;
  agentName.textContent = agent.name || agent.email || '';
  agentName.title = agent.email || '';
  agents.setMe(agent);

  const service = new InboxService(me);
  const panel = document.createElement('pl-live-panel');
  const inbox = document.createElement('pl-inbox');
  session = { me, panel, inbox, service, route: null };
  // setSites before the panel is connected: it connects when inserted.
  panel.setSites(me && me.sites);
  inbox.setup(service, me);
  service.addEventListener('counts', () => renderUnread());
  service.start();
  route();
}

// Parses location.hash into {name, id}.
function parseRoute() {
  const m = /^#\/(visitors|inbox)(?:\/(\d+))?\/?$/.exec(location.hash);
  if (!m) return { name: 'visitors', id: null };
  return { name: m[1], id: m[2] ? Number(m[2]) : null };
}

function route() {
  if (!session || view !== 'console') return;
  const r = parseRoute();
  const target = r.name === 'inbox' ? session.inbox : session.panel;
  if (main.firstElementChild !== target || main.childElementCount !== 1) main.replaceChildren(target);
  if (r.name === 'inbox') session.inbox.show(r.id);
  session.route = r.name;
  navVisitors.classList.toggle('active', r.name === 'visitors');
  navInbox.classList.toggle('active', r.name === 'inbox');
  if (r.name === 'visitors') navVisitors.setAttribute('aria-current', 'page');
  else navVisitors.removeAttribute('aria-current');
  if (r.name === 'inbox') navInbox.setAttribute('aria-current', 'page');
  else navInbox.removeAttribute('aria-current');
  renderTitle();
}

function renderUnread() {
  if (!session) return;
  unread = session.service.attentionUnread();
  navInboxCount.textContent = unread ? String(unread) : '';
  navInboxCount.hidden = !unread;
  navInbox.title = unread ? `${unread} conversation${unread === 1 ? '' : 's'} with unread messages` : '';
  renderTitle();
}

function renderTitle() {
  if (view !== 'console' || !session) return;
  const name = session.route === 'inbox' ? 'Inbox' : 'Visitors';
  document.title = `${unread ? `(${unread}) ` : ''}${name} — Porchlight`;
}

function showError(err) {
  view = 'error';
  endSession();
  header.hidden = true;
  main.replaceChildren(
    h(
      'div',
      { class: 'boot-error', id: 'boot-error', role: 'alert' },
      h('p', { text: `Could not reach Porchlight (${err.message}).` }),
      h('button', { id: 'retry', class: 'btn btn-primary', type: 'button', text: 'Retry', onclick: boot }),
    ),
  );
}

async function boot() {
  try {
    startSession(await api.get('/api/me', { auth: false }));
  } catch (err) {
    if (err.status === 401) showLogin();
    else showError(err);
  }
}

async function logout() {
  logoutBtn.disabled = true;
  try {
    await api.post('/api/logout', undefined, { auth: false });
  } catch {
    /* the session is gone either way from our point of view */
  } finally {
    logoutBtn.disabled = false;
  }
  showLogin();
}

// Agent status: kept in this browser only for now (see agent-status.js).
statusSelect.value = agentStatus();
statusSelect.dataset.status = statusSelect.value;
statusSelect.addEventListener('change', () => {
  setAgentStatus(statusSelect.value);
  statusSelect.dataset.status = statusSelect.value;
});

window.addEventListener(UNAUTHORIZED, showLogin);
window.addEventListener('hashchange', route);
main.addEventListener('pl-login', () => {
  view = null;
  boot();
});
logoutBtn.addEventListener('click', logout);
boot();
