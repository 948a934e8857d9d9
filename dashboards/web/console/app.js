// Console entry point: shows the login or the live panel depending on
// GET /api/me, and falls back to the login whenever any API answers 401.

import { api, UNAUTHORIZED } from './api.js';
import { h } from './dom.js';
import './pl-login.js';
import './pl-live-panel.js';

const main = document.getElementById('app');
const header = document.getElementById('app-header');
const agentName = document.getElementById('agent-name');
const logoutBtn = document.getElementById('logout');

let view = null; // 'login' | 'live' | 'error'

function showLogin() {
  if (view === 'login') return;
  view = 'login';
  header.hidden = true;
  agentName.textContent = '';
  document.title = 'Sign in — Porchlight';
  main.replaceChildren(document.createElement('pl-login'));
}

function showLive(me) {
  const agent = (me && me.agent) || {};
  view = 'live';
  header.hidden = false;
  agentName.textContent = agent.name || agent.email || '';
  agentName.title = agent.email || '';
  document.title = 'Visitors — Porchlight';
  const panel = document.createElement('pl-live-panel');
  main.replaceChildren(panel);
  panel.setSites(me && me.sites);
}

function showError(err) {
  view = 'error';
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
    showLive(await api.get('/api/me', { auth: false }));
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

window.addEventListener(UNAUTHORIZED, showLogin);
main.addEventListener('pl-login', () => {
  view = null;
  boot();
});
logoutBtn.addEventListener('click', logout);
boot();
