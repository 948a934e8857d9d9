// <pl-login>: email + password form. On success dispatches a bubbling
// "pl-login" event with the server's {agent} body; the app takes over.

import { api } from './api.js';
import { h } from './dom.js';

class PlLogin extends HTMLElement {
  connectedCallback() {
    if (this.form) return;
    this.email = h('input', { id: 'login-email', name: 'email', type: 'email', autocomplete: 'username', required: true });
    this.password = h('input', {
      id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true,
    });
    this.error = h('p', { id: 'login-error', class: 'form-error', role: 'alert', hidden: true });
    this.submitBtn = h('button', { id: 'login-submit', class: 'btn btn-primary', type: 'submit', text: 'Sign in' });
    this.form = h(
      'form',
      { id: 'login-form', class: 'login-card', onsubmit: (e) => this.submit(e) },
      h('div', { class: 'login-brand' }, h('span', { class: 'brand-dot', 'aria-hidden': 'true' }), 'Porchlight'),
      h('h1', { text: 'Sign in' }),
      h('label', { for: 'login-email', text: 'Email' }),
      this.email,
      h('label', { for: 'login-password', text: 'Password' }),
      this.password,
      this.error,
      this.submitBtn,
    );
    this.append(this.form);
    requestAnimationFrame(() => this.email.focus());
  }

  showError(message) {
    this.error.textContent = message;
    this.error.hidden = false;
  }

  async submit(e) {
    e.preventDefault();
    if (this.busy) return;
    this.busy = true;
    this.submitBtn.disabled = true;
    this.error.hidden = true;
    try {
      // auth:false — a 401 here is a wrong password, not an expired session.
      const body = await api.post(
        '/api/login',
        { email: this.email.value.trim(), password: this.password.value },
        { auth: false },
      );
      this.dispatchEvent(new CustomEvent('pl-login', { bubbles: true, detail: body }));
    } catch (err) {
      if (err.status === 401) {
        this.showError(err.body && typeof err.body.error === 'string' ? err.body.error : 'invalid email or password');
        this.password.value = '';
        this.password.focus();
      } else if (err.status) {
        this.showError(`Could not sign in: ${err.message}`);
      } else {
        this.showError(err.message || 'Could not sign in');
      }
    } finally {
      this.busy = false;
      this.submitBtn.disabled = false;
    }
  }
}

if (!customElements.get('pl-login')) customElements.define('pl-login', PlLogin);
