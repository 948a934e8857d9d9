// Console entry point: shows the login or the console depending on
// GET /api/me, and falls back to the login whenever any API answers 401.
//
// Routes (location.hash): #/visitors (the default), #/visitors/<site>/<visitor
// id> (opens that live visitor's card), #/inbox, #/inbox/<conversation id>,
// #/leads, #/triggers (see pl-triggers.js for its sub-routes), #/settings (saved
// replies; the widget's settings for owners and admins). The views are created once per
// sign-in and swapped in and out of <main>; the inbox feed (InboxService:
// unread counts, notifications) runs on every route.

import { api, UNAUTHORIZED } from './api.js';
import { STATUSES, agentStatus, sendAgentStatus, setAgentStatus } from './agent-status.js';
import { agents } from './agents.js';
import { h } from './dom.js';
import { InboxService } from './inbox-service.js';
import './pl-login.js';
import './pl-live-panel.js';
import './pl-inbox.js';
import './pl-leads.js';
import './pl-triggers.js';
import './pl-widget-settings.js';
import './pl-saved-replies.js';

const main = document.getElementById('app');
const header = document.getElementById('app-header');
const agentName = document.getElementById('agent-name');
const logoutBtn = document.getElementById('logout');
const navVisitors = document.getElementById('nav-visitors');
const navInbox = document.getElementById('nav-inbox');
const navInboxCount = navInbox.querySelector('.count');
const navLeads = document.getElementById('nav-leads');
const navTriggers = document.getElementById('nav-triggers');
const navSettings = document.getElementById('nav-settings');
const NAV = { visitors: navVisitors, inbox: navInbox, leads: navLeads, triggers: navTriggers, settings: navSettings };
const TITLES = { visitors: 'Visitors', inbox: 'Inbox', leads: 'Leads', triggers: 'Triggers', settings: 'Settings' };
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
  const leads = document.createElement('pl-leads');
  const triggers = document.createElement('pl-triggers');
  const isAdmin = agent.role === 'owner' || agent.role === 'admin';
  // Settings: saved replies for every agent, the widget's settings for owners and admins.
  const widgetSettings = isAdmin ? document.createElement('pl-widget-settings') : null;
  const replies = document.createElement('pl-saved-replies');
  const settings = h('div', { id: 'settings-page', class: 'settings-page' }, replies, widgetSettings);
  session = { me, panel, inbox, leads, triggers, settings, service, route: null };
  navSettings.hidden = false;
  leads.setup(me);
  triggers.setup(me);
  replies.setup(me);
  if (widgetSettings) widgetSettings.setup(me);
  // The status the server keeps (it survives reconnects and restarts) is the truth.
  const status = STATUSES.some(([k]) => k === (me && me.status)) ? me.status : 'online';
  statusSelect.value = status;
  statusSelect.dataset.status = status;
  acceptedStatus = status;
  setAgentStatus(status);
  // setSites before the panel is connected: it connects when inserted.
  panel.setSites(me && me.sites);
  inbox.setup(service, me);
  service.addEventListener('counts', () => renderUnread());
  service.start();
  route();
}

// Parses location.hash into {name, id}.
function parseRoute() {
  const v = /^#\/visitors\/([^/]+)\/([^/]+)$/.exec(location.hash);
  if (v) {
    try {
      return { name: 'visitors', id: null, site: decodeURIComponent(v[1]), visitor: decodeURIComponent(v[2]) };
    } catch {
      return { name: 'visitors', id: null };
    }
  }
  const t = /^#\/triggers(?:\/([^/]+)(?:\/(new|\d+)(?:\/(stats))?)?)?\/?$/.exec(location.hash);
  if (t) {
    let site = null;
    try {
      site = t[1] ? decodeURIComponent(t[1]) : null;
    } catch {
      /* a malformed key: the saved site's list */
    }
    const id = t[2] && t[2] !== 'new' ? Number(t[2]) : null;
    const view = !t[2] || (t[3] && id == null) ? 'list' : t[3] ? 'stats' : 'edit';
    return { name: 'triggers', id: null, trigger: { view, site, id } };
  }
  const m = /^#\/(visitors|inbox|leads|settings)(?:\/(\d+))?\/?$/.exec(location.hash);
  if (!m) return { name: 'visitors', id: null };
  return { name: m[1], id: m[2] ? Number(m[2]) : null };
}

function route() {
  if (!session || view !== 'console') return;
  const r = parseRoute();
  const target = { inbox: session.inbox, leads: session.leads, triggers: session.triggers, settings: session.settings }[r.name] || session.panel;
  if (main.firstElementChild !== target || main.childElementCount !== 1) main.replaceChildren(target);
  else if (r.name === 'leads') session.leads.load();
  if (r.name === 'inbox') session.inbox.show(r.id);
  if (r.name === 'triggers') session.triggers.show(r.trigger);
  if (r.visitor) session.panel.focusVisitor(r.site, r.visitor);
  session.route = r.name;
  for (const [name, link] of Object.entries(NAV)) {
    link.classList.toggle('active', r.name === name);
    if (r.name === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
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
  const name = TITLES[session.route] || 'Visitors';
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

// Agent status: the server's (GET /api/me) at sign-in, PUT /api/me/status on
// every change. A refusal puts the select back to what the server last
// accepted.
let acceptedStatus = null;
async function pushStatus() {
  const status = statusSelect.value;
  statusSelect.title = '';
  try {
    await sendAgentStatus(status);
    acceptedStatus = status;
  } catch (err) {
    if (err.status === 401 || statusSelect.value !== status) return;
    statusSelect.title = `Your status could not be saved: ${err.message}`;
    if (err.status && acceptedStatus && acceptedStatus !== status) {
      statusSelect.value = acceptedStatus;
      statusSelect.dataset.status = acceptedStatus;
      setAgentStatus(acceptedStatus);
    }
  }
}
statusSelect.value = agentStatus();
statusSelect.dataset.status = statusSelect.value;
statusSelect.addEventListener('change', () => {
  setAgentStatus(statusSelect.value);
  statusSelect.dataset.status = statusSelect.value;
  if (session) pushStatus();
});

window.addEventListener(UNAUTHORIZED, showLogin);
window.addEventListener('hashchange', route);
main.addEventListener('pl-login', () => {
  view = null;
  boot();
});
logoutBtn.addEventListener('click', logout);
boot();
