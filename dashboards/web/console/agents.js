// Agent names for ids. Owners and admins can list every agent
// (GET /api/agents); anyone else learns names from what they see (message
// authors, join/assign events) and falls back to "Agent #id".

import { api } from './api.js';

class AgentDirectory {
  constructor() {
    this.names = new Map();
    this.list = null; // [{id, name, email, role, sites}] when the server lets us list them
    this.me = null;
    this.loading = null;
  }

  setMe(agent) {
    this.me = agent && typeof agent.id === 'number' ? agent : null;
    if (this.me) this.learn(this.me.id, this.me.name || this.me.email);
  }

  // Loads the list once (owners and admins only: others would get a 403 and
  // keep the "Agent #id" fallback).
  load() {
    if (!this.me || (this.me.role !== 'owner' && this.me.role !== 'admin')) return Promise.resolve(null);
    if (!this.loading) {
      this.loading = api
        .get('/api/agents')
        .then((res) => {
          const list = Array.isArray(res && res.agents) ? res.agents.filter((a) => a && typeof a.id === 'number') : [];
          this.list = list;
          for (const a of list) this.learn(a.id, a.name || a.email);
          return list;
        })
        .catch(() => {
          this.list = null;
          return null;
        });
    }
    return this.loading;
  }

  reset() {
    this.names.clear();
    this.list = null;
    this.loading = null;
  }

  learn(id, name) {
    if (typeof id === 'number' && typeof name === 'string' && name) this.names.set(id, name);
  }

  // Names from a message's author or event.
  learnFrom(message) {
    const a = message && message.author;
    if (a && a.kind === 'agent') this.learn(a.id, a.name);
    const ev = message && message.body && message.body.type === 'event' ? message.body.event : null;
    if (ev && typeof ev.agent_id === 'number') this.learn(ev.agent_id, ev.name);
  }

  name(id) {
    if (id == null) return '';
    if (this.me && id === this.me.id) return 'you';
    return this.names.get(id) || `Agent #${id}`;
  }

  // Like name() but never "you" (for lists and selects).
  fullName(id) {
    return this.names.get(id) || `Agent #${id}`;
  }
}

export const agents = new AgentDirectory();
