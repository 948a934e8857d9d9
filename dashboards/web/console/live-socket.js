// WebSocket to /api/sites/{key}/live with reconnect backoff 1s, 2s, 4s, ...
// capped at 15s. The server sends a fresh snapshot on every connect, so a
// reconnect needs no resync logic here.

const MAX_DELAY = 15000;

export function liveUrl(siteKey) {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/api/sites/${encodeURIComponent(siteKey)}/live`;
}

export class LiveSocket {
  // onMessage(msg), onState('connecting'|'open'|'reconnecting'),
  // onDrop(gotMessages): lets the owner check whether the session expired
  // (a failed upgrade hides the HTTP status from us).
  constructor(url, { onMessage, onState = () => {}, onDrop = () => {} }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.onDrop = onDrop;
    this.attempt = 0;
    this.stopped = true;
    this.ws = null;
    this.timer = 0;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  open() {
    if (this.stopped) return;
    this.onState(this.attempt ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.retry(false);
      return;
    }
    this.ws = ws;
    let got = false;
    ws.onopen = () => this.onState('open');
    ws.onmessage = (e) => {
      if (typeof e.data !== 'string') return;
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return;
      }
      if (!msg || typeof msg !== 'object') return;
      // Only a connection that delivered data resets the backoff, so a
      // server that accepts and drops at once is not hammered.
      got = true;
      this.attempt = 0;
      this.onMessage(msg);
    };
    ws.onerror = () => {}; // a close event always follows
    ws.onclose = () => {
      if (this.ws === ws) this.retry(got);
    };
  }

  retry(got) {
    this.ws = null;
    if (this.stopped) return;
    const delay = Math.min(MAX_DELAY, 1000 * 2 ** this.attempt);
    this.attempt++;
    this.onState('reconnecting');
    this.onDrop(got);
    this.timer = setTimeout(() => this.open(), delay);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onopen = null;
      try {
        ws.close(1000);
      } catch {
        /* already closed */
      }
    }
  }
}
