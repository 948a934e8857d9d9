/* Porchlight widget. Classic script, loaded async by the embed snippet.
 * Sections: util, Store (ids), Net (beacons), Tracker, Chat (socket, state,
 * UI in a shadow root), commands. Plain ES5, no dependencies, ASCII only. */
(function (w, d) {
  'use strict';
  var stub = w.porchlight;
  if (stub && stub.loaded) return; // snippet pasted twice: keep the first instance

  // --- util: nothing may ever throw into the host page --------------------
  var debug = function (e) { try { console.debug('porchlight:', e); } catch (_) {} };
  var safe = function (fn) {
    return function () { try { return fn.apply(this, arguments); } catch (e) { debug(e); } };
  };
  // The server rejects a whole beacon over any limit, and limits are UTF-8
  // bytes: cut to n bytes, never splitting a surrogate pair (lone surrogates
  // are invalid JSON for the server).
  var enc = w.TextEncoder ? new TextEncoder() : null;
  var cut = function (s, n) {
    var b;
    s = String(s);
    if (s.toWellFormed) s = s.toWellFormed();
    if (!enc) s = s.slice(0, n / 3); // ancient browser: 3 bytes per unit at most
    while (enc && (b = enc.encode(s).length) > n) s = s.slice(0, s.length - Math.ceil((b - n) / 3));
    return s.replace(/[\ud800-\udbff]$/, '');
  };
  var str = function (v, n) {
    return typeof v === 'string' || (typeof v === 'number' && isFinite(v)) ? cut(v, n) : undefined;
  };
  // Custom properties: at most 50, flat string/number/bool values only.
  var props = function (o, skip) {
    var r = {}, n = 0;
    if (!o || typeof o !== 'object') return r;
    Object.keys(o).forEach(function (k) {
      var v = o[k], t = typeof v;
      if (!k || (skip && skip.indexOf(k) >= 0) || n >= 50) return;
      if (t === 'string') v = cut(v, 512);
      else if (t !== 'boolean' && !(t === 'number' && isFinite(v))) return;
      r[cut(k, 64)] = v; n++;
    });
    return r;
  };

  // Where beacons go: the origin widget.js was loaded from (must be read now:
  // document.currentScript is only set while this script first runs).
  var me = d.currentScript || [].filter.call(d.scripts, function (s) {
    return /\/widget\.js([?#]|$)/.test(s.src);
  })[0];
  var HOST = '';
  try { HOST = new URL(me.src).origin; } catch (_) { HOST = location.origin; }

  // --- Store: first-party cookie + localStorage; either restores the other.
  // An in-memory copy keeps ids stable for this page when both are blocked.
  var YEAR = 31536000, VISIT_S = 1800, ID = /^[\w-]{22}$/, mem = {};
  // (Both throw in sandboxed frames and opaque origins, hence the try blocks.)
  var Store = {
    get: function (k) {
      var v = null, m;
      try { v = localStorage.getItem(k); } catch (_) {}
      try { if (v == null && (m = d.cookie.match(new RegExp('(?:^|; )' + k + '=([^;]*)')))) v = m[1]; } catch (_) {}
      return v == null ? mem[k] : v;
    },
    set: function (k, v, maxAge) {
      mem[k] = v;
      try { localStorage.setItem(k, v); } catch (_) {}
      try {
        d.cookie = k + '=' + v + '; max-age=' + maxAge + '; path=/; SameSite=Lax' +
          (location.protocol === 'https:' ? '; Secure' : '');
      } catch (_) {}
    },
    // 16 random bytes -> 22 chars of base64url.
    rid: function () {
      var b = new Uint8Array(16), s = '';
      crypto.getRandomValues(b);
      for (var i = 0; i < 16; i++) s += String.fromCharCode(b[i]);
      return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    },
    vid: function () {
      var v = Store.get('pl_vid');
      if (!ID.test(v)) v = Store.rid();
      Store.set('pl_vid', v, YEAR); // also renews the cookie's year
      return v;
    },
    // The visit id; a new one after 30 min without activity. touch=false
    // peeks without renewing (used by "leave").
    visit: function (touch) {
      var now = Date.now(), sid = Store.get('pl_sid'), fresh = false;
      if (!ID.test(sid) || !(now - Store.get('pl_last') < VISIT_S * 1000)) { sid = Store.rid(); fresh = true; }
      if (touch) { Store.set('pl_sid', sid, VISIT_S); Store.set('pl_last', String(now), VISIT_S); }
      return { sid: sid, fresh: fresh };
    }
  };

  // --- Net ---------------------------------------------------------------
  var S = { site: '', host: '', vid: '', hb: 15000, last: 0, url: '', auto: 0, timer: 0, ref: false };
  var Net = {
    send: function (body, leave) {
      var url = S.host + '/v1/beacon', data = JSON.stringify(body), nav = navigator;
      // On pagehide only sendBeacon reliably survives the unload.
      if (leave && nav.sendBeacon && nav.sendBeacon(url, new Blob([data], { type: 'text/plain' }))) return;
      if (!w.fetch) return;
      // text/plain keeps this a CORS "simple request": no preflight. A 204 answer means
      // the server has nothing to say (we already beat at its interval).
      return fetch(url, {
        method: 'POST', body: data, headers: { 'Content-Type': 'text/plain' },
        keepalive: true, credentials: 'omit', mode: 'cors'
      }).then(function (r) { return r.status === 204 ? null : r.json(); }).then(safe(function (j) {
        var n = j && j.heartbeat_ms;
        if (typeof n === 'number' && n >= 500 && n <= 36e5 && n !== S.hb) { S.hb = n; Tracker.arm(); }
        if (j && j.settings) Chat.conf(j.settings);
        if (j && j.chat === true) Chat.wake(); // an agent is waiting: connect now
      }))['catch'](debug);
    }
  };

  // --- Tracker -----------------------------------------------------------
  var Tracker = {
    base: function (type, sid) {
      return {
        site: S.site, vid: S.vid, sid: sid, type: type,
        url: cut(location.href, 2000), title: cut(d.title, 500),
        lang: navigator.language, screen: [screen.width, screen.height], ts: Date.now(), hb: S.hb
      };
    },
    beat: function (type, extra) {
      var v = Store.visit(true), b, k;
      if (v.fresh) S.ref = true;
      // A new visit always opens with a page view.
      if (v.fresh && type === 'heartbeat') type = 'pageview';
      else if (v.fresh && type !== 'pageview') Tracker.beat('pageview');
      b = Tracker.base(type, v.sid);
      if (type === 'pageview') {
        S.url = location.href;
        if (S.ref && d.referrer) b.referrer = cut(d.referrer, 2000);
        S.ref = false;
      }
      for (k in extra) b[k] = extra[k];
      var sent = Net.send(b);
      S.last = Date.now();
      Tracker.arm();
      if (type === 'pageview' && C.el) Chat.render(); // page rules follow SPA navigation
      return sent; // the beacon's promise (the chat waits on it after a visitor id change)
    },
    // Heartbeat only while visible; setTimeout (not setInterval) so a new
    // heartbeat_ms applies at once and any beacon postpones the next beat.
    arm: function () {
      clearTimeout(S.timer);
      if (S.site && d.visibilityState === 'visible') {
        S.timer = setTimeout(safe(function () { Tracker.beat('heartbeat'); }),
          Math.max(0, S.last + S.hb - Date.now()));
      }
    },
    leave: function () {
      var v = Store.visit(false);
      clearTimeout(S.timer);
      if (!v.fresh) Net.send(Tracker.base('leave', v.sid), true); // expired: nothing to close
    },
    hooks: function (spa) {
      var on = function (t, e, f) { t.addEventListener(e, safe(f)); };
      on(d, 'visibilitychange', Tracker.arm);
      on(w, 'pagehide', Tracker.leave);
      // Back/forward cache restore: "leave" was sent, so count the page again.
      on(w, 'pageshow', function (e) { if (e.persisted) { S.url = ''; Tracker.beat('pageview'); } });
      if (!spa) return;
      // Deferred so the SPA has set document.title; deduped on the URL, which
      // also makes a replaceState that keeps the URL count for nothing.
      var nav = safe(function () {
        setTimeout(safe(function () {
          if (location.href !== S.url) { S.auto = Date.now(); Tracker.beat('pageview'); }
        }), 0);
      });
      ['pushState', 'replaceState'].forEach(function (m) {
        var orig = history[m];
        if (typeof orig !== 'function') return;
        // The host's own errors from the original must still reach the host.
        history[m] = function () { var r = orig.apply(this, arguments); nav(); return r; };
      });
      on(w, 'popstate', nav);
      on(w, 'hashchange', nav);
    }
  };

  // --- Chat ------------------------------------------------------------------
  // The visitor's side of conversations. One WebSocket per tab, opened at init
  // (after the first page view) and again whenever the launcher is opened or a
  // beacon answer says {chat: true} while it is closed. State
  // lives in localStorage pl_chat for the current visitor id: the last 200
  // messages, per conversation the newest seq the server delivered (the
  // hello's "after"; kept when old messages are trimmed), read marks, and the
  // outbox of messages not yet acknowledged, which are re-sent with the same
  // client_id after every reconnect and page load. All text from the network
  // or the visitor reaches the DOM through textContent only.
  var MAX_MSGS = 200, MAX_FILE = 2 * 1024 * 1024, MAX_TEXT = 5000;
  var own = function (o, k) { return o && Object.prototype.hasOwnProperty.call(o, k) ? o[k] : undefined; };
  var idOk = function (c) {
    return (typeof c === 'number' && c >= 0 && c % 1 === 0) ||
      (typeof c === 'string' && /^[\w-]{1,64}$/.test(c) && c !== '__proto__');
  };
  var num = function (k) { return /^\d{1,15}$/.test(k) ? Number(k) : k; }; // object key -> wire id
  var cmpId = function (a, b) {
    a = String(a); b = String(b);
    if (/^\d+$/.test(a) && /^\d+$/.test(b)) return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
    return a < b ? -1 : a > b ? 1 : 0;
  };
  var cmpMsg = function (a, b) { return cmpId(a.conversation_id, b.conversation_id) || a.seq - b.seq; };
  var txt = function (v, n) { return typeof v === 'string' ? v.slice(0, n) : ''; };
  var content = function (m) { return m.body.type === 'text' || m.body.type === 'attachment'; };
  var fromAgent = function (m) { return (m.author.kind === 'agent' || m.author.kind === 'bot') && content(m); };
  var T = { // UI strings (\u2026 is an ellipsis: the file stays ASCII)
    sending: 'Sending\u2026', sent: 'Sent', failed: 'Not sent', retry: 'Retry', uploading: 'Uploading\u2026',
    waiting: 'Waiting for an agent\u2026', connecting: 'Connecting\u2026', placeholder: 'Write a message\u2026',
    rate: 'How was this conversation?', thanks: 'Thank you for your feedback!', tooBig: 'Files can be at most 2 MB.',
    attachFirst: 'Send a message first, then you can attach files.', empty: 'That file is empty.',
    unavailable: 'Chat is not available right now. Retrying\u2026',
    blocked: 'You cannot chat with this site.',
    offline: 'We are away right now. Leave us a message and we will get back to you by email.',
    leadThanks: 'Thank you! We received your message and will get back to you soon.'
  };

  // localStorage with an in-memory copy (storage may be blocked or full).
  // Never cookies: the credential must not travel to the site's own server.
  var LS = {
    get: function (k) {
      if (Object.prototype.hasOwnProperty.call(mem, 'ls:' + k)) return mem['ls:' + k];
      try { return localStorage.getItem(k); } catch (_) { return null; }
    },
    set: function (k, v) { mem['ls:' + k] = v; try { localStorage.setItem(k, v); } catch (_) {} },
    del: function (k) { mem['ls:' + k] = null; try { localStorage.removeItem(k); } catch (_) {} },
    json: function (k) { try { return JSON.parse(LS.get(k)); } catch (_) { return null; } }
  };

  var C = {
    ok: false, st: null, idx: {}, el: null, nodes: {}, isOpen: false, want: false,
    ws: null, ready: false, busy: false, tries: 0, retry: 0, credP: null, reauth: false,
    ups: [], fail: [], typing: [], err: null, q: [], readSent: {}, readAt: 0, readT: 0,
    typedAt: 0, typingOn: null, idle: 0, score: 0, thanks: {}, blobs: {}, audio: null,
    dismissed: null, ding: false, scroll: false, emoji: false,
    pop: false, confAt: 0, confBusy: false, lead: false, leadBusy: false, popOpen: false
  };
  var CONF_MS = 300000; // widget settings are fetched again every 5 minutes while the tab is visible

  var NS = 'http://www.w3.org/2000/svg';
  var ICONS = {
    chat: 'M20 2H4a2 2 0 0 0-2 2v18l4-4h14a2 2 0 0 0 2-2V4a2 2 0 0 0-2-2z',
    close: 'M19 6.41 17.59 5 12 10.59 6.41 5 5 6.41 10.59 12 5 17.59 6.41 19 12 13.41 17.59 19 19 17.59 13.41 12z',
    send: 'M2.01 21 23 12 2.01 3 2 10l15 2-15 2z',
    attach: 'M16.5 6v11.5a4 4 0 0 1-8 0V5a2.5 2.5 0 0 1 5 0v10.5a1 1 0 0 1-2 0V6H10v9.5a2.5 2.5 0 0 0 5 0V5a4 4 0 0 0-8 0v12.5a5.5 5.5 0 0 0 11 0V6h-1.5z',
    smile: 'M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm0 18a8 8 0 1 1 0-16 8 8 0 0 1 0 16zm3.5-9a1.5 1.5 0 1 0 0-3 1.5 1.5 0 0 0 0 3zm-7 0a1.5 1.5 0 1 0 0-3 1.5 1.5 0 0 0 0 3zm3.5 6.5c2.33 0 4.31-1.46 5.11-3.5H6.89c.8 2.04 2.78 3.5 5.11 3.5z',
    sound: 'M3 9v6h4l5 5V4L7 9H3zm13.5 3A4.5 4.5 0 0 0 14 7.97v8.05A4.5 4.5 0 0 0 16.5 12zM14 3.23v2.06a7 7 0 0 1 0 13.42v2.06A9 9 0 0 0 14 3.23z',
    mute: 'M16.5 12A4.5 4.5 0 0 0 14 7.97v2.21l2.45 2.45c.03-.2.05-.41.05-.63zm2.5 0c0 .94-.2 1.82-.54 2.64l1.51 1.51A8.8 8.8 0 0 0 21 12a9 9 0 0 0-7-8.77v2.06A7 7 0 0 1 19 12zM4.27 3 3 4.27 7.73 9H3v6h4l5 5v-6.73l4.25 4.25A7 7 0 0 1 14 18.7v2.06a9 9 0 0 0 3.69-1.81L19.73 21 21 19.73l-9-9L4.27 3zM12 4 9.91 6.09 12 8.18V4z'
  };
  // ~40 common emoji as code points (keeps the file ASCII).
  var EMOJI = [0x1F600, 0x1F603, 0x1F604, 0x1F601, 0x1F606, 0x1F605, 0x1F602, 0x1F642, 0x1F609, 0x1F60A,
    0x1F607, 0x1F60D, 0x1F618, 0x1F60B, 0x1F61C, 0x1F914, 0x1F610, 0x1F60F, 0x1F60C, 0x1F614,
    0x1F622, 0x1F62D, 0x1F621, 0x1F631, 0x1F634, 0x1F917, 0x1F644, 0x1F62C, 0x1F973, 0x1F60E,
    0x1F44D, 0x1F44E, 0x1F44C, 0x1F44F, 0x1F64F, 0x1F4AA, 0x1F44B, 0x2764, 0x1F389, 0x1F525,
    0x2705, 0x274C, 0x2B50, 0x1F440];

  var CSS = [
    ':host{all:initial!important;display:block!important;position:static!important}',
    '[hidden]{display:none!important}',
    '.pl-root{--pl-accent:#2563eb;--pl-offset:25px;font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#111827;text-align:left;-webkit-font-smoothing:antialiased}',
    '.pl-root *,.pl-root *::before,.pl-root *::after{box-sizing:border-box}',
    'button,input,textarea{font:inherit;color:inherit;margin:0;letter-spacing:normal;text-transform:none}',
    'button{cursor:pointer;border:0;background:none;padding:0}',
    'button:focus-visible,input:focus-visible,textarea:focus-visible,a:focus-visible{outline:2px solid var(--pl-accent);outline-offset:2px}',
    'svg{width:20px;height:20px;fill:currentColor;display:block;flex:none}',
    '#pl-launcher{position:fixed;z-index:2147483000;bottom:var(--pl-offset);right:20px;width:56px;height:56px;border-radius:50%;background:var(--pl-accent);color:#fff;box-shadow:0 4px 16px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center;transition:transform .15s}',
    '#pl-launcher:hover{transform:scale(1.06)}#pl-launcher svg{width:28px;height:28px}',
    '.pl-left #pl-launcher{right:auto;left:20px}',
    '#pl-badge{position:absolute;top:-3px;right:-3px;min-width:20px;height:20px;padding:0 6px;border-radius:10px;background:#dc2626;color:#fff;font-size:12px;font-weight:700;line-height:20px;text-align:center;box-shadow:0 0 0 2px #fff}',
    '#pl-preview{position:fixed;z-index:2147483000;bottom:calc(var(--pl-offset) + 68px);right:20px;width:300px;max-width:calc(100vw - 40px);background:#fff;border-radius:12px;box-shadow:0 6px 24px rgba(0,0,0,.2);padding:10px 30px 10px 14px;cursor:pointer}',
    '.pl-left #pl-preview{right:auto;left:20px}',
    '#pl-preview[data-origin=trigger]{border-left:4px solid var(--pl-accent)}',
    '#pl-preview[data-origin=trigger] .pl-pv-text{max-height:8.8em}',
    '.pl-pv-name{font-weight:600;font-size:13px}',
    '.pl-pv-text{font-size:13px;color:#374151;white-space:pre-wrap;overflow-wrap:anywhere;max-height:4.4em;overflow:hidden}',
    '.pl-pv-x{position:absolute;top:6px;right:6px;width:22px;height:22px;border-radius:50%;color:#6b7280;display:flex;align-items:center;justify-content:center}.pl-pv-x svg{width:14px;height:14px}',
    '#pl-panel{position:fixed;z-index:2147483001;bottom:calc(var(--pl-offset) + 68px);right:20px;width:370px;height:600px;max-height:calc(100vh - var(--pl-offset) - 88px);display:flex;flex-direction:column;background:#fff;border-radius:16px;box-shadow:0 12px 48px rgba(0,0,0,.28);overflow:hidden}',
    '.pl-left #pl-panel{right:auto;left:20px}',
    '.pl-head{display:flex;align-items:flex-start;gap:4px;padding:14px 8px 14px 16px;background:var(--pl-accent);color:#fff;flex:none}',
    '.pl-head-text{flex:1;min-width:0}',
    '#pl-title{font-weight:700;font-size:16px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}',
    '#pl-welcome{font-size:13px;opacity:.92;margin-top:2px;white-space:pre-wrap;overflow-wrap:anywhere;max-height:4.4em;overflow:auto}',
    '.pl-hbtn{width:32px;height:32px;border-radius:8px;display:flex;align-items:center;justify-content:center;flex:none;color:#fff}',
    '.pl-hbtn:hover{background:rgba(255,255,255,.18)}.pl-hbtn:focus-visible{outline-color:#fff}',
    '#pl-messages{flex:1;min-height:0;overflow-y:auto;padding:10px 12px;display:flex;flex-direction:column;background:#f7f8fa;overscroll-behavior:contain}',
    '.pl-msg{display:flex;flex-direction:column;align-items:flex-start;max-width:82%;align-self:flex-start;margin-top:8px}',
    '.pl-msg.pl-cont{margin-top:3px}',
    '.pl-msg[data-author=visitor]{align-self:flex-end;align-items:flex-end}',
    '.pl-msg[data-author=system]{align-self:center;max-width:92%;margin:10px 0 2px;font-size:12px;color:#6b7280;text-align:center}',
    '.pl-name{font-size:12px;color:#6b7280;margin:0 0 2px 4px}.pl-cont .pl-name{display:none}',
    '.pl-bubble{padding:8px 12px;border-radius:16px;background:#fff;border:1px solid #e5e7eb;white-space:pre-wrap;overflow-wrap:anywhere;max-width:100%}',
    '.pl-msg[data-author=visitor] .pl-bubble{background:var(--pl-accent);border-color:transparent;color:#fff}',
    '.pl-msg[data-status=failed] .pl-bubble{opacity:.6}',
    '.pl-status{font-size:11px;color:#9ca3af;margin:2px 4px 0}.pl-msg[data-status=failed] .pl-status{color:#dc2626}',
    '.pl-retry{text-decoration:underline;font-size:11px;color:#dc2626;margin-left:6px}',
    '.pl-att{display:block;margin:2px 0;color:inherit}',
    '.pl-att img{display:block;max-width:220px;max-height:220px;min-width:48px;min-height:32px;border-radius:10px;background:rgba(0,0,0,.08)}',
    'a.pl-file{text-decoration:underline;overflow-wrap:anywhere}',
    '.pl-notes{flex:none;background:#f7f8fa;padding:0 12px}',
    '.pl-note{font-size:12px;color:#6b7280;padding:3px 0 5px}',
    '#pl-error{font-size:13px;color:#991b1b;background:#fee2e2;border-radius:8px;padding:6px 10px;margin:4px 0 8px;cursor:pointer;overflow-wrap:anywhere}',
    '#pl-rating{flex:none;border-top:1px solid #e5e7eb;padding:10px 14px;text-align:center}',
    '.pl-stars{display:flex;justify-content:center;gap:2px;margin:4px 0 6px}',
    '.pl-stars button{font-size:26px;line-height:1;color:#d1d5db;width:38px;height:38px;border-radius:8px}',
    '.pl-stars button.pl-on{color:#f59e0b}',
    '.pl-field{display:block;width:100%;border:1px solid #d1d5db;border-radius:8px;padding:7px 10px;background:#fff;resize:none}',
    '.pl-primary{background:var(--pl-accent);color:#fff;border-radius:8px;padding:8px 16px;font-weight:600;margin-top:8px}',
    '.pl-primary:disabled{opacity:.5;cursor:default}',
    '#pl-prechat,#pl-offline{flex:none;padding:12px 14px;border-top:1px solid #e5e7eb;display:flex;flex-direction:column;gap:8px;overflow:auto;max-height:75%}',
    '#pl-prechat .pl-primary,#pl-offline .pl-primary{align-self:flex-end;margin:0}',
    '#pl-offline-text{white-space:pre-wrap;overflow-wrap:anywhere}',
    '#pl-offline-thanks{flex:none;padding:16px 14px;border-top:1px solid #e5e7eb;text-align:center}',
    '.pl-intro{font-size:13px;color:#374151}',
    '#pl-emoji{flex:none;display:grid;grid-template-columns:repeat(8,1fr);gap:2px;padding:8px;border-top:1px solid #e5e7eb;max-height:160px;overflow:auto;background:#fff}',
    '#pl-emoji button{font-size:20px;height:34px;border-radius:6px}#pl-emoji button:hover{background:#f3f4f6}',
    '#pl-composer{flex:none;display:flex;align-items:flex-end;gap:2px;padding:6px 8px;border-top:1px solid #e5e7eb;background:#fff}',
    '.pl-cbtn{width:36px;height:36px;border-radius:8px;display:flex;align-items:center;justify-content:center;color:#6b7280;flex:none}',
    '.pl-cbtn:hover{background:#f3f4f6}#pl-send{color:var(--pl-accent)}',
    '#pl-input{flex:1;min-width:0;border:0;outline:0;resize:none;padding:8px 6px;height:36px;max-height:120px;background:transparent;line-height:20px}',
    '@media (max-width:480px){.pl-root #pl-panel{top:0;left:0;right:0;bottom:0;width:auto;height:auto;max-height:none;border-radius:0}',
    '.pl-open #pl-launcher,.pl-open #pl-preview{display:none}#pl-input,.pl-field{font-size:16px}}'
  ].join('\n');

  // DOM helpers: attributes and text only, never markup.
  var h = function (tag, a, kids) {
    var e = d.createElement(tag), k;
    for (k in a) {
      if (!Object.prototype.hasOwnProperty.call(a, k) || a[k] == null) continue;
      if (k === 'text') e.textContent = a[k];
      else if (k === 'cls') e.className = a[k];
      else e.setAttribute(k, a[k]);
    }
    (kids || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  };
  var icon = function (name, cls) {
    var s = d.createElementNS(NS, 'svg'), p = d.createElementNS(NS, 'path');
    s.setAttribute('viewBox', '0 0 24 24'); s.setAttribute('aria-hidden', 'true');
    if (cls) s.setAttribute('class', cls);
    p.setAttribute('d', ICONS[name]); s.appendChild(p);
    return s;
  };
  var clear = function (e) { while (e.firstChild) e.removeChild(e.firstChild); };
  var on = function (t, ev, f) { t.addEventListener(ev, safe(f)); };
  var size = function (n) {
    return n < 1024 ? n + ' B' : n < 1048576 ? Math.round(n / 1024) + ' KB' : (n / 1048576).toFixed(1) + ' MB';
  };

  var Chat = {
    // first: the promise of the first page view; the server issues a
    // credential only to a visitor it has seen.
    init: function (first) {
      if (C.ok || !w.WebSocket || !w.JSON || !d.documentElement.attachShadow) return;
      C.ok = true;
      C.first = Promise.resolve(first)['catch'](debug);
      Chat.load();
      on(d, 'visibilitychange', Chat.render); // marks messages seen when the tab comes back
      // Widget settings and availability: now, then every 5 minutes while visible.
      on(d, 'visibilitychange', Chat.fetchConf);
      setInterval(safe(Chat.fetchConf), 30000);
      Chat.fetchConf();
      on(w, 'pagehide', function () {
        Chat.stopTyping();
        var ws = C.ws;
        C.ws = null; C.ready = false;
        if (ws) try { ws.close(1000); } catch (_) {}
      });
      on(w, 'pageshow', function (e) { if (e.persisted && C.want) { C.tries = 0; Chat.connect(); } });
      on(w, 'online', function () { if (C.want && !C.ws) { C.tries = 0; Chat.connect(); } });
      // Every tab keeps its channel open (after the first page view has made the visitor
      // live), so a message an agent starts a conversation with arrives at once.
      Chat.connect();
      Chat.mount();
    },

    // --- state -----------------------------------------------------------------
    fresh: function (keep) {
      return { site: S.site, vid: S.vid, last: {}, floor: {}, seen: {}, msgs: [], convs: {}, out: [], rated: {},
        muted: !!(keep && keep.muted), settings: keep ? keep.settings : null };
    },
    load: function () {
      var st = LS.json('pl_chat');
      if (!st || typeof st !== 'object' || st.site !== S.site || st.vid !== S.vid ||
          !Array.isArray(st.msgs) || !Array.isArray(st.out)) {
        st = Chat.fresh(st && typeof st === 'object' && st.site === S.site ? st : null);
      }
      ['last', 'floor', 'seen', 'convs', 'rated'].forEach(function (k) {
        if (!st[k] || typeof st[k] !== 'object' || Array.isArray(st[k])) st[k] = {};
      });
      C.st = st;
      Chat.conf(st.settings || {}, true);
      st.msgs = st.msgs.filter(function (m) { return m && m.author && m.body && idOk(m.conversation_id); });
      st.out = st.out.filter(function (e) { return e && typeof e.client_id === 'string'; });
      Chat.index();
    },
    save: function () {
      var st = C.st, s;
      st.msgs.sort(cmpMsg);
      if (st.msgs.length > MAX_MSGS) Chat.trim(st.msgs.length - MAX_MSGS);
      // At most ~300 KB: never crowd out the site's own storage.
      while ((s = JSON.stringify(st)).length > 300000 && st.msgs.length) Chat.trim(Math.min(20, st.msgs.length));
      Chat.index();
      LS.set('pl_chat', s);
    },
    trim: function (k) {
      C.st.msgs.splice(0, k).forEach(function (m) {
        var c = m.conversation_id, f = C.st.floor;
        if (!m.local) f[c] = Math.max(own(f, c) || 0, m.seq);
      });
    },
    index: function () {
      C.idx = {};
      C.st.msgs.forEach(function (m) { C.idx[m.conversation_id + ':' + m.seq] = m; });
    },
    // A new visitor id, exactly like a first visit (new pl_vid, new visit, a
    // page view), for a browser that lost its credential (409).
    renew: function () {
      Store.set('pl_vid', Store.rid(), YEAR);
      Store.set('pl_last', '0', VISIT_S); // the next beacon starts a new visit
      S.vid = Store.vid();
      var out = C.st.out;
      C.st = Chat.fresh(C.st);
      C.st.out = out; // what the visitor typed still goes out, under the new id
      C.idx = {}; C.readSent = {}; C.thanks = {};
      Chat.save();
      return (C.first = Promise.resolve(Tracker.beat('pageview'))['catch'](debug));
    },
    // GET /v1/widget/settings (public): settings plus the site's availability.
    fetchConf: function () {
      if (!C.st || C.confBusy || !w.fetch || d.visibilityState === 'hidden' || (C.confAt && Date.now() - C.confAt < CONF_MS)) return;
      C.confBusy = true; C.confAt = Date.now();
      fetch(S.host + '/v1/widget/settings?site=' + encodeURIComponent(S.site), { credentials: 'omit', mode: 'cors' })
        .then(function (r) { if (!r.ok) throw new Error('settings: ' + r.status); return r.json(); })
        .then(safe(function (j) {
          C.confBusy = false;
          if (j && j.settings && typeof j.settings === 'object') Chat.conf(Chat.withAvail(j.settings, j.availability));
        }))['catch'](function (e) { C.confBusy = false; debug(e); });
    },
    withAvail: function (s, a) {
      var r = {}, k;
      if (!a || typeof a !== 'object') return s;
      for (k in s) if (Object.prototype.hasOwnProperty.call(s, k)) r[k] = s[k];
      r.availability = a;
      return r;
    },
    // Launcher rules: visibility mode, page whitelist / blacklist, hidden after hours.
    // Messages still arrive when they hide it (see Chat.add / Chat.shown).
    pageOk: function (pg) {
      var path = location.pathname || '/', hit;
      if (!pg || pg.mode === 'all') return true;
      hit = pg.patterns.some(function (p) { return Chat.match(p, path); });
      return pg.mode === 'whitelist' ? hit : !hit;
    },
    match: function (p, path) {
      var t = function (x) { return x.length > 1 ? x.replace(/\/+$/, '') : x; };
      p = p.replace(/^\s+|\s+$/g, '');
      if (!p) return false;
      if (/^https?:\/\//i.test(p)) p = p.replace(/^https?:\/\/[^/]*/i, '') || '/';
      if (p.indexOf('*') < 0) return t(p) === t(path);
      return new RegExp('^' + p.split('*').map(function (x) {
        return x.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
      }).join('.*') + '$').test(path);
    },
    suppressed: function () {
      var set = Chat.set(), st = C.st, a = set.availability;
      if (set.visibility === 'hidden') return true;
      if (set.visibility === 'conversation' && Chat.cur() == null && !st.msgs.length && !st.out.length) return true;
      if (!Chat.pageOk(set.pages)) return true;
      return a.mode === 'after_hours' && a.hide;
    },
    // An agent's message makes a hidden launcher show for as long as that conversation is open.
    shown: function () {
      var f = C.st.forced, v = f == null ? null : own(C.st.convs, f);
      return C.isOpen || !Chat.suppressed() || !!(v && v.state === 'open');
    },
    conf: function (s, quiet) {
      if (!s || typeof s !== 'object' || !C.st) return;
      var l = s.launcher && typeof s.launcher === 'object' ? s.launcher : {}, o = l.offset,
        prev = C.st.settings || {}, pg = s.pages, a = s.availability,
        full = 'offline_message' in s || 'pages' in s || 'availability' in s; // older answers lack these: keep ours
      C.st.settings = {
        name: txt(s.name, 200), welcome: txt(s.welcome, 2000), prechat: s.prechat === true,
        launcher: { align: l.align === 'left' ? 'left' : 'right',
          offset: typeof o === 'number' && isFinite(o) ? Math.max(0, Math.min(1000, Math.round(o))) : 25 },
        visibility: /^(visible|conversation|hidden)$/.test(s.visibility) ? s.visibility : 'visible',
        color: typeof s.color === 'string' && /^#[0-9a-f]{3,8}$/i.test(s.color) ? s.color : '',
        pages: !full ? prev.pages || { mode: 'all', patterns: [] } : {
          mode: pg && /^(all|whitelist|blacklist)$/.test(pg.mode) ? pg.mode : 'all',
          patterns: (pg && Array.isArray(pg.patterns) ? pg.patterns : []).filter(function (x) { return typeof x === 'string'; })
            .slice(0, 500).map(function (x) { return x.slice(0, 1000); })
        },
        offline: !full ? prev.offline || '' : txt(s.offline_message, 2000),
        afterHours: !full ? prev.afterHours || '' : txt(s.after_hours_message, 2000),
        availability: a && typeof a === 'object'
          ? { mode: /^(online|offline|after_hours)$/.test(a.mode) ? a.mode : 'online', hide: a.hide === true }
          : prev.availability || { mode: 'online', hide: false }
      };
      if (C.el && !quiet) { Chat.save(); Chat.render(); }
    },
    set: function () { return C.st.settings; },

    // The conversation new messages go to: the newest open one, else the
    // newest (writing into a resolved conversation reopens it), else none.
    cur: function () {
      var best = null, open = null;
      Object.keys(C.st.convs).forEach(function (k) {
        if (best === null || cmpId(k, best) > 0) best = k;
        if (C.st.convs[k].state === 'open' && (open === null || cmpId(k, open) > 0)) open = k;
      });
      best = open !== null ? open : best;
      return best === null ? null : num(best);
    },
    proactive: function (c) { var v = own(C.st.convs, c); return !!(v && v.trigger); },
    stub: function (c) {
      if (!own(C.st.convs, c)) C.st.convs[c] = { id: c, state: 'open', agents: [], rating: null };
    },

    // --- credential ----------------------------------------------------------
    // The widget generates its own secret (32 random bytes, base64url) and keeps it in
    // pl_cred, marked pending, BEFORE asking the server to register it. A page left while
    // that request is in flight loses only the answer: the next page sends the same secret
    // again, and the server answers 200 (it has exactly this one) or 201 (it never got it).
    // Only 409 (the server holds a different secret: this browser lost its own) starts over
    // under a new visitor id; 403 (a blocked visitor) ends the attempt and keeps the id.
    stored: function () {
      var c = LS.json('pl_cred');
      return c && c.vid === S.vid && typeof c.credential === 'string' && c.credential
        ? { credential: c.credential, pending: c.pending === true } : null;
    },
    keep: function (vid, cred, pending) {
      var c = { vid: vid, credential: cred };
      if (pending) c.pending = true;
      LS.set('pl_cred', JSON.stringify(c));
    },
    // 32 random bytes -> 43 chars of unpadded base64url (what the server requires).
    secret: function () {
      var b = new Uint8Array(32), s = '';
      crypto.getRandomValues(b);
      for (var i = 0; i < 32; i++) s += String.fromCharCode(b[i]);
      return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    },
    cred: function () {
      var have = Chat.stored();
      if (have && !have.pending) return Promise.resolve(have.credential);
      if (!C.credP) {
        C.credP = Chat.ask(true);
        C.credP.then(function () { C.credP = null; }, function () { C.credP = null; });
      }
      return C.credP;
    },
    ask: function (again) {
      var vid, cred;
      return C.first.then(function () {
        var have;
        vid = S.vid;
        have = Chat.stored();
        cred = have ? have.credential : Chat.secret(); // a pending secret is sent again, never replaced
        Chat.keep(vid, cred, true);
        return fetch(S.host + '/v1/chat/credential', {
          method: 'POST', headers: { 'Content-Type': 'text/plain' }, credentials: 'omit', mode: 'cors',
          body: JSON.stringify({ site: S.site, vid: vid, credential: cred })
        });
      }).then(function (r) {
        // 201: registered now; 200: the server already had exactly this secret.
        if (r.status === 201 || r.status === 200) {
          if (S.vid === vid) Chat.keep(vid, cred, false);
          return cred;
        }
        // 409: this visitor id has a different credential, one this browser lost.
        if (r.status === 409 && again) return Chat.renew().then(function () { return Chat.ask(false); });
        // 404: the server no longer holds this visitor as live (a tab idle past
        // the retention): a page view makes it live again.
        if (r.status === 404 && again) {
          C.first = Promise.resolve(Tracker.beat('pageview'))['catch'](debug);
          return Chat.ask(false);
        }
        // 400: the server refuses the secret's form (storage tampered with): forget it, the
        // retry generates a new one.
        if (r.status === 400 && S.vid === vid) LS.del('pl_cred');
        return r.json()['catch'](function () { return {}; }).then(function (j) {
          var e = new Error('credential: ' + r.status + ' ' + (j && j.error));
          // 403: this visitor is blocked. Same as a socket closed with 4403: no new
          // visitor id, no retrying until the launcher is opened again.
          e.blocked = r.status === 403;
          throw e;
        });
      });
    },
    heads: function (cred, extra) {
      var o = { 'X-Porchlight-Site': S.site, 'X-Porchlight-Visitor': S.vid, 'X-Porchlight-Credential': cred }, k;
      for (k in extra) o[k] = extra[k];
      return o;
    },

    // --- socket ----------------------------------------------------------------
    wake: function () { if (C.ok) Chat.connect(); },
    connect: function () {
      C.want = true;
      if (!C.ok || C.ws || C.busy || !w.fetch) return;
      clearTimeout(C.retry);
      C.busy = true;
      Chat.cred().then(safe(function (cred) {
        C.busy = false;
        if (C.err === T.unavailable) C.err = null;
        Chat.socket(cred);
      }), safe(function (e) {
        C.busy = false; debug(e);
        if (e && e.blocked) {
          C.want = false; C.tries = 0;
          C.err = T.blocked; Chat.render();
          return;
        }
        if (C.isOpen) { C.err = T.unavailable; Chat.render(); }
        Chat.again();
      }));
    },
    again: function () {
      clearTimeout(C.retry);
      var s = Math.min(15, Math.pow(2, C.tries++)); // 1, 2, 4, 8, 15, 15 ... s
      C.retry = setTimeout(safe(Chat.connect), s * (900 + Math.random() * 200));
    },
    socket: function (cred) {
      var ws;
      try { ws = new WebSocket(S.host.replace(/^http/i, 'ws') + '/v1/chat/socket?site=' + encodeURIComponent(S.site)); } catch (e) { debug(e); return Chat.again(); }
      C.ws = ws;
      ws.onopen = safe(function () {
        if (C.ws !== ws) return;
        var after = {}, last = C.st.last;
        Object.keys(last).forEach(function (k) { if (last[k] > 0) after[k] = last[k]; });
        ws.send(JSON.stringify({ type: 'hello', site: S.site, vid: S.vid, credential: cred, after: after }));
      });
      ws.onmessage = safe(function (e) { if (C.ws === ws) Chat.frame(e.data); });
      ws.onerror = function () {}; // onclose follows
      ws.onclose = safe(function (e) {
        if (C.ws !== ws) return;
        C.ws = null; C.ready = false; C.typing.forEach(function (t) { clearTimeout(t.timer); }); C.typing = [];
        // 4401: the server does not know this credential: register it again (once per
        // page). The same secret is sent: 201 if the server never had it, 409 (a new
        // visitor id) if it holds another.
        if (e.code === 4401 && !C.reauth) {
          C.reauth = true;
          var had = Chat.stored();
          if (had) Chat.keep(S.vid, had.credential, true); else LS.del('pl_cred');
        }
        // 4403: refused for good (blocked): no reconnecting until the launcher is opened again.
        if (e.code === 4403) C.want = false;
        Chat.render();
        if (C.want) Chat.again();
      });
    },
    tx: function (f) {
      var ws = C.ws;
      if (!ws || !C.ready || ws.readyState !== 1) return false;
      ws.send(JSON.stringify(f));
      return true;
    },
    frame: function (data) {
      var f = JSON.parse(data), st = C.st;
      if (!f || typeof f !== 'object') return;
      if (f.type === 'ready') {
        C.ready = true; C.tries = 0;
        if (f.settings && typeof f.settings === 'object') Chat.conf(Chat.withAvail(f.settings, f.availability), true);
        (Array.isArray(f.conversations) ? f.conversations : []).forEach(Chat.conv);
        (Array.isArray(f.messages) ? f.messages : []).forEach(Chat.add);
        // Whatever is still unacknowledged goes again, with the same client_id.
        st.out.forEach(Chat.push);
        C.q.splice(0).forEach(Chat.tx);
        C.readSent = {};
      } else if (f.type === 'settings') {
        // Pushed when the site's availability or settings change (agents come and go, hours).
        if (f.settings && typeof f.settings === 'object') Chat.conf(f.settings, true);
      } else if (f.type === 'message') Chat.add(f.message);
      else if (f.type === 'conversation') Chat.conv(f.conversation);
      else if (f.type === 'ack') Chat.ack(f);
      else if (f.type === 'typing') Chat.typed(f);
      else if (f.type === 'error') {
        C.err = txt(f.message, 500) || 'Something went wrong.';
        Chat.settle(f.client_id, true);
      }
      if (f.type !== 'typing') Chat.save();
      if (C.ding) { C.ding = false; Chat.beep(); }
      if (C.popOpen) {
        // A trigger's message that asks to open the widget (without taking the page's focus).
        C.popOpen = false;
        if (!C.isOpen && C.el) { C.pop = false; return Chat.show(true, true); }
      }
      if (C.pop !== false) {
        // A hidden launcher (visibility, page rules, after hours): the agent's message opens the widget.
        var pc = C.pop, was = Chat.shown();
        C.pop = false;
        if (st.forced !== pc) { st.forced = pc; Chat.save(); }
        if (!was && C.el) return Chat.show(true, true);
      }
      Chat.render();
    },
    // A message from the server: validated, copied field by field, deduped
    // by (conversation_id, seq).
    add: function (m) {
      if (!m || typeof m !== 'object' || !idOk(m.conversation_id) || typeof m.seq !== 'number' || !(m.seq > 0)) return;
      var c = m.conversation_id, st = C.st, a = m.author || {}, b = m.body || {}, k = c + ':' + m.seq, old = own(C.idx, k), body, ev, at;
      if (!/^(visitor|agent|bot|system)$/.test(a.kind)) return;
      if (b.type === 'text' && typeof b.text === 'string') body = { type: 'text', text: b.text.slice(0, 20000) };
      else if (b.type === 'attachment' && b.attachment && typeof b.attachment === 'object' && idOk(b.attachment.id)) {
        at = b.attachment;
        body = { type: 'attachment', text: typeof b.text === 'string' && b.text ? b.text.slice(0, 20000) : null,
          attachment: { id: at.id, name: txt(at.name, 300) || 'file', mime: txt(at.mime, 200),
            size: typeof at.size === 'number' ? at.size : 0, image: at.image === true } };
      } else if (b.type === 'event' && b.event && typeof b.event === 'object') {
        ev = b.event;
        body = { type: 'event', event: { kind: txt(ev.kind, 40), name: txt(ev.name, 200) } };
      } else return; // notes never reach the visitor; unknown kinds are skipped
      st.last[c] = Math.max(own(st.last, c) || 0, m.seq);
      if (typeof m.client_id === 'string' && m.client_id) Chat.settle(m.client_id);
      if ((old && !old.local) || (!old && m.seq <= (own(st.floor, c) || 0))) return; // a duplicate
      Chat.stub(c);
      m = { conversation_id: c, seq: m.seq, created_ms: typeof m.created_ms === 'number' ? m.created_ms : Date.now(),
        client_id: typeof m.client_id === 'string' ? m.client_id.slice(0, 100) : null,
        author: { kind: a.kind, name: txt(a.name, 200) }, body: body };
      if (old) st.msgs.splice(st.msgs.indexOf(old), 1, m); // the server's copy replaces ours (masked text)
      else st.msgs.push(m);
      C.idx[k] = m;
      if (a.kind === 'agent') Chat.typed({ name: m.author.name, typing: false });
      if (!old && fromAgent(m) && (!C.isOpen || d.visibilityState === 'hidden')) C.ding = true;
      if (!old && fromAgent(m) && m.seq > (own(st.seen, c) || 0)) {
        C.pop = c;
        if (Chat.proactive(c) && st.convs[c].openWidget) C.popOpen = true;
      }
      if (body.type === 'event' && body.event.kind === 'resolved') Chat.typed(null);
    },
    conv: function (v) {
      if (!v || typeof v !== 'object' || !idOk(v.id)) return;
      var st = C.st, old = own(st.convs, v.id), r = v.rating, o = v.origin;
      st.convs[v.id] = {
        id: v.id, state: v.state === 'resolved' ? 'resolved' : 'open',
        agents: (Array.isArray(v.agents) ? v.agents : []).slice(0, 20).map(function (g) {
          return { id: g && g.id, name: txt(g && g.name, 200) };
        }),
        rating: r && typeof r === 'object' ? { score: r.score } : null,
        // A trigger wrote first: its message is a proactive bubble (and may open the widget).
        // A record without an origin (an older server) keeps what we knew.
        trigger: o && typeof o === 'object' ? o.kind === 'trigger' : !!(old && old.trigger),
        openWidget: o && typeof o === 'object' ? o.kind === 'trigger' && o.open_widget === true : !!(old && old.openWidget)
      };
      if (old && old.state === 'resolved' && st.convs[v.id].state === 'open') {
        delete st.rated[v.id]; delete C.thanks[v.id]; // reopened: may be rated again once resolved
      }
    },
    ack: function (f) {
      var e = Chat.settle(f.client_id), c = f.conversation_id, k;
      if (!e || !idOk(c) || typeof f.seq !== 'number') return;
      k = c + ':' + f.seq;
      Chat.stub(c);
      if (own(C.idx, k)) return;
      // Shown as sent at once; replaced by the server's copy when it arrives.
      C.idx[k] = { conversation_id: c, seq: f.seq, created_ms: e.created_ms, client_id: e.client_id, local: true,
        author: { kind: 'visitor', name: '' },
        body: e.attachment ? { type: 'attachment', attachment: e.attachment, text: e.text } : { type: 'text', text: e.text } };
      C.st.msgs.push(C.idx[k]);
    },
    // Takes a message off the outbox (acknowledged, or refused: failed).
    settle: function (id, failed) {
      var st = C.st, e = null;
      if (typeof id !== 'string' || !id) return null;
      [st.out, C.fail, C.ups].forEach(function (list) {
        for (var i = list.length - 1; i >= 0; i--) if (list[i].client_id === id) e = list.splice(i, 1)[0];
      });
      if (e && failed) { e.failed = true; C.fail.push(e); }
      if (e && !failed && C.err && C.err !== T.unavailable) C.err = null;
      return e;
    },
    push: function (e) {
      var f = { type: 'send', client_id: e.client_id, conversation_id: e.conversation_id, text: e.text == null ? null : e.text };
      if (e.attachment_id) f.attachment_id = e.attachment_id;
      if (e.prechat) f.prechat = e.prechat;
      Chat.tx(f);
    },
    send: function (text, prechat) {
      text = String(text || '').replace(/^\s+|\s+$/g, '').slice(0, MAX_TEXT);
      if (!text) return false;
      var e = { client_id: Store.rid(), conversation_id: Chat.cur(), text: text, created_ms: Date.now() };
      if (prechat) e.prechat = prechat;
      Chat.stopTyping();
      C.st.out.push(e); C.scroll = true;
      if (C.err && C.err !== T.unavailable) C.err = null;
      Chat.save();
      if (C.ready) Chat.push(e); else Chat.connect();
      Chat.render();
      return true;
    },
    retry: function (e) {
      var i = C.fail.indexOf(e);
      if (i < 0) return;
      C.fail.splice(i, 1); e.failed = false; C.err = null;
      C.st.out.push(e); Chat.save();
      if (C.ready) Chat.push(e); else Chat.connect();
      Chat.render();
    },

    // --- typing, read marks --------------------------------------------------------
    typed: function (f) { // the agent's typing indicator; null clears all
      var name = f && (txt(f.name, 200) || 'Agent');
      C.typing = C.typing.filter(function (t) {
        if (f && t.name !== name) return true;
        clearTimeout(t.timer); return false;
      });
      if (f && f.typing === true) {
        var t = { name: name };
        t.timer = setTimeout(safe(function () { Chat.typed({ name: t.name, typing: false }); Chat.render(); }), 6000);
        C.typing.push(t);
      }
    },
    typing: function () { // the visitor types: true at most every 2 s, false after 3 s idle
      var c = Chat.cur(), now = Date.now();
      if (c == null) return;
      if (now - C.typedAt >= 2000 && Chat.tx({ type: 'typing', conversation_id: c, typing: true })) {
        C.typedAt = now; C.typingOn = c;
      }
      clearTimeout(C.idle);
      C.idle = setTimeout(safe(Chat.stopTyping), 3000);
    },
    stopTyping: function () {
      clearTimeout(C.idle);
      if (C.typingOn != null) Chat.tx({ type: 'typing', conversation_id: C.typingOn, typing: false });
      C.typingOn = null; C.typedAt = 0;
    },
    // A trigger's message shown whole in the bubble beside the closed launcher is seen: the
    // read mark goes to the server (the trigger's "seen"), while the launcher's badge stays
    // until the visitor opens the chat.
    bubbleSeen: function (m) {
      var k = String(m.conversation_id);
      if (d.visibilityState === 'hidden' || m.seq <= (own(C.readSent, k) || 0)) return;
      if (Chat.tx({ type: 'read', conversation_id: m.conversation_id, seq: m.seq })) C.readSent[k] = m.seq;
    },
    seeAll: function () { // the panel is open and visible: everything shown is seen
      var st = C.st, changed = false;
      st.msgs.forEach(function (m) {
        var c = m.conversation_id;
        if (m.seq > (own(st.seen, c) || 0)) { st.seen[c] = m.seq; changed = true; }
      });
      if (changed) Chat.save();
      if (!C.readT) {
        C.readT = setTimeout(safe(function () {
          C.readT = 0; C.readAt = Date.now();
          Object.keys(st.seen).forEach(function (k) {
            var s = st.seen[k];
            if (s > (own(C.readSent, k) || 0) && Chat.tx({ type: 'read', conversation_id: num(k), seq: s })) C.readSent[k] = s;
          });
        }), Math.max(0, C.readAt + 1000 - Date.now()));
      }
    },
    unread: function () {
      var st = C.st, n = 0, lastMsg = null;
      st.msgs.forEach(function (m) {
        if (fromAgent(m) && m.seq > (own(st.seen, m.conversation_id) || 0)) { n++; lastMsg = m; }
      });
      return { n: n, last: lastMsg };
    },
    waiting: function (c) {
      // The visitor wrote in the current conversation and no agent has joined or answered yet.
      var st = C.st, v = c == null ? null : own(st.convs, c), wrote = false, agent = false;
      if (v && (v.state === 'resolved' || v.agents.length)) return false;
      st.msgs.forEach(function (m) {
        if (String(m.conversation_id) !== String(c)) return;
        if (m.author.kind === 'visitor') wrote = true;
        if ((m.author.kind === 'agent' && content(m)) || (m.body.type === 'event' && m.body.event.kind === 'agent_joined')) agent = true;
      });
      st.out.concat(C.ups).forEach(function (e) {
        if (e.conversation_id == null || String(e.conversation_id) === String(c)) wrote = true;
      });
      return wrote && !agent;
    },

    // --- attachments ------------------------------------------------------------
    upload: function (file) {
      var c = Chat.cur(), e;
      if (!file) return;
      if (c == null) { C.err = T.attachFirst; return Chat.render(); }
      if (file.size > MAX_FILE) { C.err = T.tooBig; return Chat.render(); }
      if (!file.size) { C.err = T.empty; return Chat.render(); }
      e = { client_id: Store.rid(), conversation_id: c, text: null, created_ms: Date.now(), up: true,
        name: txt(file.name, 300) || 'file', size: file.size };
      C.ups.push(e); C.scroll = true; C.err = null;
      Chat.render();
      Chat.cred().then(function (cred) {
        return fetch(S.host + '/v1/chat/attachments?conversation_id=' + encodeURIComponent(c), {
          method: 'POST', credentials: 'omit', mode: 'cors', body: file,
          headers: Chat.heads(cred, { 'X-Filename': encodeURIComponent(file.name || 'file'),
            'Content-Type': file.type || 'application/octet-stream' })
        });
      }).then(function (r) {
        return r.json()['catch'](function () { return {}; }).then(function (j) {
          if ((r.status !== 201 && r.status !== 200) || !j || !j.attachment || !idOk(j.attachment.id)) {
            throw new Error(txt(j && j.error, 300) || 'The upload failed.');
          }
          return j.attachment;
        });
      }).then(safe(function (a) {
        if (C.ups.indexOf(e) < 0) return;
        C.ups.splice(C.ups.indexOf(e), 1);
        e.up = false; e.attachment_id = a.id;
        e.attachment = { id: a.id, name: txt(a.name, 300) || e.name, mime: txt(a.mime, 200),
          size: typeof a.size === 'number' ? a.size : e.size, image: a.image === true };
        C.st.out.push(e); Chat.save();
        if (C.ready) Chat.push(e); else Chat.connect();
        Chat.render();
      }))['catch'](safe(function (err) {
        debug(err);
        var i = C.ups.indexOf(e);
        if (i >= 0) { C.ups.splice(i, 1); e.up = false; e.failed = true; e.noretry = true; C.fail.push(e); }
        C.err = err && err.message && !/^(Failed to fetch|NetworkError|Load failed)/.test(err.message) ? txt(err.message, 300) : 'The upload failed.';
        Chat.render();
      }));
    },
    // The file's bytes as an object URL. The blob's type is forced to a safe
    // one: an uploaded HTML page must never open as a page of the site.
    blob: function (c, a) {
      var k = c + '/' + a.id;
      if (!own(C.blobs, k)) {
        C.blobs[k] = Chat.cred().then(function (cred) {
          return fetch(S.host + '/v1/chat/attachments/' + encodeURIComponent(c) + '/' + encodeURIComponent(a.id), {
            credentials: 'omit', mode: 'cors', headers: Chat.heads(cred, {})
          });
        }).then(function (r) {
          if (!r.ok) throw new Error('attachment: ' + r.status);
          return r.blob();
        }).then(function (b) {
          var type = a.image && /^image\/(png|jpeg|gif|webp)$/.test(a.mime) ? a.mime : 'application/octet-stream';
          return URL.createObjectURL(new Blob([b], { type: type }));
        });
        C.blobs[k]['catch'](function () { delete C.blobs[k]; });
      }
      return C.blobs[k];
    },
    att: function (c, a) {
      var link = h('a', { cls: 'pl-att' + (a.image ? '' : ' pl-file'), href: '#', title: a.name }), img;
      if (a.image) {
        img = h('img', { alt: a.name });
        link.appendChild(img);
        Chat.blob(c, a).then(safe(function (u) {
          img.src = u; link.href = u; link.target = '_blank'; link.rel = 'noopener';
          on(img, 'load', function () { var b = C.el.msgs; if (b.scrollHeight - b.scrollTop - b.clientHeight < 260) b.scrollTop = b.scrollHeight; });
        }))['catch'](debug);
        on(link, 'click', function (ev) { if (!img.src) ev.preventDefault(); });
      } else {
        link.textContent = a.name + ' (' + size(a.size) + ')';
        on(link, 'click', function (ev) {
          if (link.getAttribute('download') != null) return;
          ev.preventDefault();
          Chat.blob(c, a).then(safe(function (u) { link.href = u; link.setAttribute('download', a.name); link.click(); }))
            ['catch'](safe(function () { C.err = 'The file could not be downloaded.'; Chat.render(); }));
        });
      }
      return link;
    },

    // --- sound -------------------------------------------------------------------
    beep: function () {
      var A = w.AudioContext || w.webkitAudioContext, ctx, t, o, g, ua = navigator.userActivation;
      if (C.st.muted || !A || (ua && !ua.hasBeenActive)) return; // browsers refuse sound before any user gesture
      ctx = C.audio || (C.audio = new A());
      if (ctx.state === 'suspended' && ctx.resume) { t = ctx.resume(); if (t && t['catch']) t['catch'](debug); }
      t = ctx.currentTime; o = ctx.createOscillator(); g = ctx.createGain();
      o.type = 'sine';
      o.frequency.setValueAtTime(880, t); o.frequency.setValueAtTime(660, t + 0.09);
      g.gain.setValueAtTime(0.0001, t);
      g.gain.exponentialRampToValueAtTime(0.12, t + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, t + 0.25);
      o.connect(g); g.connect(ctx.destination);
      o.start(t); o.stop(t + 0.27);
    },

    // --- UI ----------------------------------------------------------------------
    mount: function () {
      if (C.el || !C.ok) return;
      if (!d.body) { if (!C.waitBody) { C.waitBody = true; on(d, 'DOMContentLoaded', Chat.mount); } return; }
      var host = h('div', { id: 'porchlight-widget' }), root = host.attachShadow({ mode: 'open' }), E = { host: host }, sheet;
      root.appendChild(h('style', { text: CSS }));
      try { // a host page whose CSP blocks <style> still gets the constructed sheet
        if (w.CSSStyleSheet && 'adoptedStyleSheets' in root) { sheet = new CSSStyleSheet(); sheet.replaceSync(CSS); root.adoptedStyleSheets = [sheet]; }
      } catch (_) {}
      E.badge = h('span', { id: 'pl-badge', hidden: '', 'aria-live': 'polite' });
      E.icOpen = icon('chat'); E.icClose = icon('close');
      E.launcher = h('button', { id: 'pl-launcher', type: 'button', 'aria-label': 'Open chat', 'aria-expanded': 'false' },
        [E.icOpen, E.icClose, E.badge]);
      E.pvName = h('div', { cls: 'pl-pv-name' }); E.pvText = h('div', { cls: 'pl-pv-text' });
      E.pvX = h('button', { cls: 'pl-pv-x', type: 'button', 'aria-label': 'Dismiss' }, [icon('close')]);
      E.preview = h('div', { id: 'pl-preview', hidden: '', role: 'button', tabindex: '0' }, [E.pvName, E.pvText, E.pvX]);
      E.title = h('div', { id: 'pl-title' }); E.welcome = h('div', { id: 'pl-welcome' });
      E.icSound = icon('sound'); E.icMute = icon('mute');
      E.mute = h('button', { id: 'pl-mute', cls: 'pl-hbtn', type: 'button' }, [E.icSound, E.icMute]);
      E.close = h('button', { id: 'pl-close', cls: 'pl-hbtn', type: 'button', 'aria-label': 'Close chat', title: 'Close' }, [icon('close')]);
      E.msgs = h('div', { id: 'pl-messages', role: 'log', 'aria-live': 'polite' });
      E.conn = h('div', { id: 'pl-conn', cls: 'pl-note', hidden: '', text: T.connecting });
      E.waiting = h('div', { id: 'pl-waiting', cls: 'pl-note', hidden: '', text: T.waiting });
      E.typing = h('div', { id: 'pl-typing', cls: 'pl-note', hidden: '' });
      E.error = h('div', { id: 'pl-error', hidden: '', role: 'alert', title: 'Dismiss' });
      E.stars = [1, 2, 3, 4, 5].map(function (n) {
        return h('button', { type: 'button', 'data-score': n, 'aria-label': n + ' of 5', 'aria-pressed': 'false', text: '\u2605' });
      });
      E.comment = h('textarea', { id: 'pl-rating-comment', cls: 'pl-field', rows: '2', maxlength: '1000', placeholder: 'Add a comment (optional)' });
      E.rateGo = h('button', { id: 'pl-rating-submit', cls: 'pl-primary', type: 'button', disabled: '', text: 'Send rating' });
      E.rateForm = h('div', {}, [h('div', { cls: 'pl-intro', text: T.rate }), h('div', { cls: 'pl-stars' }, E.stars), E.comment, E.rateGo]);
      E.thanks = h('div', { cls: 'pl-thanks pl-intro', hidden: '', text: T.thanks });
      E.rating = h('div', { id: 'pl-rating', hidden: '' }, [E.rateForm, E.thanks]);
      E.pc = {
        name: h('input', { id: 'pl-prechat-name', cls: 'pl-field', type: 'text', maxlength: '100', placeholder: 'Name', autocomplete: 'name' }),
        email: h('input', { id: 'pl-prechat-email', cls: 'pl-field', type: 'email', maxlength: '254', placeholder: 'Email', autocomplete: 'email' }),
        subject: h('input', { id: 'pl-prechat-subject', cls: 'pl-field', type: 'text', maxlength: '200', placeholder: 'Subject' }),
        message: h('textarea', { id: 'pl-prechat-message', cls: 'pl-field', rows: '3', maxlength: String(MAX_TEXT), placeholder: 'How can we help?' })
      };
      E.prechat = h('form', { id: 'pl-prechat', hidden: '', novalidate: '' }, [
        h('div', { cls: 'pl-intro', text: 'Tell us a little about yourself and we will be right with you.' }),
        E.pc.name, E.pc.email, E.pc.subject, E.pc.message,
        h('button', { id: 'pl-prechat-submit', cls: 'pl-primary', type: 'submit', text: 'Start chat' })]);
      E.off = {
        name: h('input', { id: 'pl-offline-name', cls: 'pl-field', type: 'text', maxlength: '100', placeholder: 'Name', autocomplete: 'name' }),
        email: h('input', { id: 'pl-offline-email', cls: 'pl-field', type: 'email', maxlength: '254', placeholder: 'Email', autocomplete: 'email', required: '' }),
        phone: h('input', { id: 'pl-offline-phone', cls: 'pl-field', type: 'tel', maxlength: '50', placeholder: 'Phone (optional)', autocomplete: 'tel' }),
        message: h('textarea', { id: 'pl-offline-message', cls: 'pl-field', rows: '3', maxlength: String(MAX_TEXT), placeholder: 'Your message', required: '' }),
        submit: h('button', { id: 'pl-offline-submit', cls: 'pl-primary', type: 'submit', text: 'Send message' })
      };
      E.offText = h('div', { id: 'pl-offline-text', cls: 'pl-intro' });
      E.offline = h('form', { id: 'pl-offline', hidden: '', novalidate: '' }, [
        E.offText, E.off.name, E.off.email, E.off.phone, E.off.message, E.off.submit]);
      E.offThanks = h('div', { id: 'pl-offline-thanks', cls: 'pl-intro', hidden: '', role: 'status', text: T.leadThanks });
      E.emoji = h('div', { id: 'pl-emoji', hidden: '', role: 'listbox', 'aria-label': 'Emoji' }, EMOJI.map(function (cp) {
        return h('button', { type: 'button', cls: 'pl-emoji-btn', text: String.fromCodePoint(cp) + (cp < 0x10000 ? '\ufe0f' : '') });
      }));
      E.emojiBtn = h('button', { id: 'pl-emoji-toggle', cls: 'pl-cbtn', type: 'button', 'aria-label': 'Emoji', title: 'Emoji', 'aria-expanded': 'false' }, [icon('smile')]);
      E.file = h('input', { id: 'pl-file', type: 'file', hidden: '', tabindex: '-1' });
      E.attach = h('button', { id: 'pl-attach', cls: 'pl-cbtn', type: 'button', 'aria-label': 'Attach a file', title: 'Attach a file (up to 2 MB)' }, [icon('attach')]);
      E.input = h('textarea', { id: 'pl-input', rows: '1', maxlength: String(MAX_TEXT), placeholder: T.placeholder, 'aria-label': 'Message' });
      E.send = h('button', { id: 'pl-send', cls: 'pl-cbtn', type: 'button', 'aria-label': 'Send', title: 'Send' }, [icon('send')]);
      E.composer = h('div', { id: 'pl-composer' }, [E.emojiBtn, E.attach, E.file, E.input, E.send]);
      E.panel = h('section', { id: 'pl-panel', hidden: '', role: 'dialog', 'aria-label': 'Chat' }, [
        h('header', { cls: 'pl-head' }, [h('div', { cls: 'pl-head-text' }, [E.title, E.welcome]), E.mute, E.close]),
        E.msgs, h('div', { cls: 'pl-notes' }, [E.conn, E.waiting, E.typing, E.error]),
        E.rating, E.prechat, E.offline, E.offThanks, E.emoji, E.composer]);
      E.root = h('div', { cls: 'pl-root' }, [E.preview, E.panel, E.launcher]);
      root.appendChild(E.root);
      C.el = E;

      // Keys typed in the widget stay in the widget: the site's shortcuts see
      // the host element as the target and would fire while the visitor types.
      ['keydown', 'keyup', 'keypress'].forEach(function (t) { root.addEventListener(t, function (e) { e.stopPropagation(); }); });
      on(E.launcher, 'click', function () { Chat.show(!C.isOpen); });
      on(E.close, 'click', function () { Chat.show(false); E.launcher.focus(); });
      on(E.panel, 'keydown', function (e) { if (e.key === 'Escape') { Chat.show(false); E.launcher.focus(); } });
      on(E.preview, 'click', function (e) {
        if (E.pvX.contains(e.target)) { C.dismissed = Chat.unread().last; Chat.render(); return; }
        Chat.show(true);
      });
      on(E.preview, 'keydown', function (e) { if (e.key === 'Enter' && e.target === E.preview) Chat.show(true); });
      on(E.mute, 'click', function () { C.st.muted = !C.st.muted; Chat.save(); Chat.render(); });
      on(E.error, 'click', function () { C.err = null; Chat.render(); });
      on(E.input, 'keydown', function (e) {
        if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) { e.preventDefault(); Chat.submit(); }
      });
      on(E.input, 'input', function () { Chat.grow(); if (E.input.value) Chat.typing(); });
      on(E.send, 'click', Chat.submit);
      on(E.emojiBtn, 'click', function () { C.emoji = !C.emoji; Chat.render(); });
      on(E.emoji, 'click', function (e) {
        var b = e.target, t = E.input, s, x;
        if (!b || b.tagName !== 'BUTTON') return;
        s = t.selectionStart == null ? t.value.length : t.selectionStart;
        x = t.selectionEnd == null ? s : t.selectionEnd;
        t.value = t.value.slice(0, s) + b.textContent + t.value.slice(x);
        t.selectionStart = t.selectionEnd = s + b.textContent.length;
        C.emoji = false; Chat.render(); Chat.grow(); t.focus(); Chat.typing();
      });
      on(E.attach, 'click', function () {
        if (Chat.cur() == null) { C.err = T.attachFirst; return Chat.render(); }
        E.file.click();
      });
      on(E.file, 'change', function () { var f = E.file.files && E.file.files[0]; E.file.value = ''; Chat.upload(f); });
      E.stars.forEach(function (b, i) { on(b, 'click', function () { C.score = i + 1; Chat.render(); }); });
      on(E.rateGo, 'click', Chat.rate);
      on(E.prechat, 'submit', function (e) { e.preventDefault(); Chat.prechat(); });
      on(E.offline, 'submit', function (e) { e.preventDefault(); Chat.lead(); });

      d.body.appendChild(host);
      Chat.render();
    },
    show: function (open, quiet) { // quiet: opened by an incoming message, keep the page's focus
      if (!C.ok) return;
      C.isOpen = !!open;
      if (C.isOpen) { Chat.connect(); C.scroll = true; }
      else { C.emoji = false; Chat.stopTyping(); }
      Chat.mount();
      if (!C.el) return; // mounts with the body, already in this state
      if (!C.el.host.isConnected && d.body) d.body.appendChild(C.el.host); // the site replaced the body
      Chat.render();
      if (C.isOpen && !quiet && w.matchMedia && w.matchMedia('(pointer: fine)').matches) {
        (!C.el.offline.hidden ? C.el.off.name : C.el.prechat.hidden ? C.el.input : C.el.pc.name).focus();
      }
    },
    grow: function () {
      var t = C.el.input;
      t.style.height = '36px';
      t.style.height = Math.min(120, Math.max(36, t.scrollHeight)) + 'px';
    },
    submit: function () {
      var t = C.el.input;
      if (Chat.send(t.value)) { t.value = ''; Chat.grow(); t.focus(); }
    },
    prechat: function () {
      var p = C.el.pc, v = function (f) { return f.value.replace(/^\s+|\s+$/g, ''); }, email = v(p.email);
      if (!v(p.message)) { C.err = 'Please write your message.'; p.message.focus(); return Chat.render(); }
      if (email && !/^[^\s@]+@[^\s@]+$/.test(email)) { C.err = 'Please check your email address.'; p.email.focus(); return Chat.render(); }
      Chat.send(p.message.value, { name: v(p.name) || null, email: email || null, subject: v(p.subject) || null });
      p.message.value = '';
      if (C.isOpen) C.el.input.focus();
    },
    // The offline form: POST /v1/chat/leads (text/plain keeps it a simple CORS request).
    lead: function () {
      var p = C.el.off, v = function (f) { return f.value.replace(/^\s+|\s+$/g, ''); }, email = v(p.email), body;
      if (C.leadBusy) return;
      if (!email || !/^[^\s@]+@[^\s@]+$/.test(email)) { C.err = 'Please enter your email address.'; p.email.focus(); return Chat.render(); }
      if (!v(p.message)) { C.err = 'Please write your message.'; p.message.focus(); return Chat.render(); }
      body = { site: S.site, vid: S.vid, name: v(p.name), email: email, message: v(p.message).slice(0, MAX_TEXT) };
      if (v(p.phone)) body.phone = v(p.phone);
      C.leadBusy = true; C.err = null;
      Chat.render();
      fetch(S.host + '/v1/chat/leads', {
        method: 'POST', headers: { 'Content-Type': 'text/plain' }, credentials: 'omit', mode: 'cors', body: JSON.stringify(body)
      }).then(function (r) {
        return r.json()['catch'](function () { return {}; }).then(function (j) {
          if (r.status !== 201 && r.status !== 200) throw new Error(txt(j && j.error, 300) || 'Your message could not be sent. Please try again.');
        });
      }).then(safe(function () {
        C.leadBusy = false; C.lead = true; C.err = null;
        p.message.value = '';
        Chat.render();
      }))['catch'](safe(function (e) {
        C.leadBusy = false;
        C.err = e && e.message && !/^(Failed to fetch|NetworkError|Load failed)/.test(e.message) ? txt(e.message, 300)
          : 'Your message could not be sent. Please try again.';
        Chat.render();
      }));
    },
    rate: function () {
      var c = Chat.cur(), f;
      if (c == null || !C.score) return;
      f = { type: 'rate', conversation_id: c, score: C.score, comment: C.el.comment.value.replace(/^\s+|\s+$/g, '').slice(0, 1000) || null };
      if (!Chat.tx(f)) { C.q.push(f); Chat.connect(); }
      C.st.rated[c] = true; C.thanks[c] = true; C.score = 0; C.el.comment.value = '';
      Chat.save(); Chat.render();
    },
    render: function () {
      var E = C.el;
      if (!E) return;
      var st = C.st, set = Chat.set(), c = Chat.cur(), v = c == null ? null : own(st.convs, c), un, pre, off, rate, names;
      if (C.isOpen && d.visibilityState !== 'hidden') Chat.seeAll();
      E.root.className = 'pl-root' + (set.launcher.align === 'left' ? ' pl-left' : '') + (C.isOpen ? ' pl-open' : '');
      E.root.style.setProperty('--pl-offset', set.launcher.offset + 'px');
      if (set.color) E.root.style.setProperty('--pl-accent', set.color); else E.root.style.removeProperty('--pl-accent');
      E.launcher.hidden = !Chat.shown();
      E.launcher.setAttribute('aria-expanded', String(C.isOpen));
      E.launcher.setAttribute('aria-label', C.isOpen ? 'Close chat' : 'Open chat');
      E.icOpen.style.display = C.isOpen ? 'none' : '';
      E.icClose.style.display = C.isOpen ? '' : 'none';
      E.panel.hidden = !C.isOpen;
      E.title.textContent = set.name || 'Chat';
      E.welcome.textContent = set.welcome;
      E.welcome.hidden = !set.welcome;
      E.mute.setAttribute('aria-pressed', String(!!st.muted));
      E.mute.setAttribute('aria-label', st.muted ? 'Turn sound on' : 'Mute sound');
      E.mute.title = st.muted ? 'Sound off' : 'Sound on';
      E.icSound.style.display = st.muted ? 'none' : '';
      E.icMute.style.display = st.muted ? '' : 'none';

      un = Chat.unread();
      E.badge.textContent = un.n > 99 ? '99+' : String(un.n);
      E.badge.hidden = !un.n;
      E.preview.hidden = C.isOpen || !un.last || un.last === C.dismissed || E.launcher.hidden;
      if (!E.preview.hidden) {
        E.pvName.textContent = un.last.author.name || set.name || 'New message';
        E.pvText.textContent = (un.last.body.text || (un.last.body.attachment && un.last.body.attachment.name) || '').slice(0, 600);
        if (Chat.proactive(un.last.conversation_id)) {
          E.preview.setAttribute('data-origin', 'trigger');
          Chat.bubbleSeen(un.last);
        } else E.preview.removeAttribute('data-origin');
      } else E.preview.removeAttribute('data-origin');

      Chat.list();
      E.conn.hidden = !(C.isOpen && C.want && !C.ready && !(C.err === T.unavailable));
      E.waiting.hidden = !Chat.waiting(c);
      names = C.typing.map(function (t) { return t.name; });
      E.typing.hidden = !names.length;
      E.typing.textContent = !names.length ? '' : names.length === 1 ? names[0] + ' is typing\u2026'
        : names.slice(0, -1).join(', ') + ' and ' + names[names.length - 1] + ' are typing\u2026';
      E.error.hidden = !C.err;
      E.error.textContent = C.err || '';

      rate = v && v.state === 'resolved' && ((!v.rating && !own(st.rated, c)) || own(C.thanks, c));
      E.rating.hidden = !rate;
      E.rateForm.hidden = !!own(C.thanks, c);
      E.thanks.hidden = !own(C.thanks, c);
      E.stars.forEach(function (b, i) {
        b.className = i < C.score ? 'pl-on' : '';
        b.setAttribute('aria-pressed', String(i + 1 === C.score));
      });
      E.rateGo.disabled = !C.score;

      // No agent online, or after hours (message mode): the offline form replaces the
      // chat input, unless a conversation is still open (its messages show either way).
      off = (set.availability.mode === 'offline' || set.availability.mode === 'after_hours') &&
        !(v && v.state === 'open') && !st.out.length && !C.ups.length;
      E.offline.hidden = !off || C.lead;
      E.offThanks.hidden = !off || !C.lead;
      E.offText.textContent = (set.availability.mode === 'after_hours' ? set.afterHours : '') || set.offline || T.offline;
      E.off.submit.disabled = C.leadBusy;
      pre = !off && set.prechat && c == null && !st.msgs.length && !st.out.length && !C.ups.length && !C.fail.length;
      E.prechat.hidden = !pre;
      E.composer.hidden = pre || off;
      E.emoji.hidden = pre || off || !C.emoji;
      E.emojiBtn.setAttribute('aria-expanded', String(C.emoji));
    },
    // Messages in order (conversation, seq), then what is on its way; one
    // element per message, kept across renders (an acknowledged message keeps
    // the element it had while sending).
    list: function () {
      var E = C.el, box = E.msgs, st = C.st, items = [], keep = {}, prev = null, added = false,
        near = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
      st.msgs.forEach(function (m) {
        if (m.body.type === 'event' && !Chat.eventText(m.body.event)) return;
        items.push({ k: 'm' + m.conversation_id + ':' + m.seq, m: m, s: m.author.kind === 'visitor' ? 'sent' : null, o: m.client_id });
      });
      st.out.concat(C.ups, C.fail).sort(function (a, b) { return a.created_ms - b.created_ms; }).forEach(function (e) {
        items.push({ k: 'o' + e.client_id, e: e, s: e.up ? 'uploading' : e.failed ? 'failed' : 'sending',
          m: { conversation_id: e.conversation_id, seq: null, created_ms: e.created_ms, author: { kind: 'visitor', name: '' },
            body: e.attachment ? { type: 'attachment', attachment: e.attachment, text: e.text }
              : e.up || e.noretry ? { type: 'upload', name: e.name, size: e.size } : { type: 'text', text: e.text } } });
      });
      items.forEach(function (it, i) {
        var node = own(C.nodes, it.k), sig, same;
        if (!node && it.o && own(C.nodes, 'o' + it.o)) { node = C.nodes['o' + it.o]; delete C.nodes['o' + it.o]; }
        if (!node) { node = d.createElement('div'); added = true; }
        C.nodes[it.k] = node; keep[it.k] = true;
        sig = JSON.stringify([it.m.author, it.m.body, it.m.seq, it.s]);
        if (node.plSig !== sig) { node.plSig = sig; Chat.fill(node, it.m, it.s, it.e); }
        same = prev && prev.author.kind === it.m.author.kind && prev.author.name === it.m.author.name &&
          it.m.body.type !== 'event' && prev.body.type !== 'event';
        node.classList.toggle('pl-cont', !!same);
        if (box.childNodes[i] !== node) box.insertBefore(node, box.childNodes[i] || null);
        prev = it.m;
      });
      Object.keys(C.nodes).forEach(function (k) {
        if (keep[k]) return;
        var n = C.nodes[k];
        if (n.parentNode) n.parentNode.removeChild(n);
        delete C.nodes[k];
      });
      if (C.isOpen && ((added && near) || C.scroll)) { box.scrollTop = box.scrollHeight; C.scroll = false; }
    },
    fill: function (el, m, status, e) {
      var kind = m.author.kind, b = m.body, bub, st;
      clear(el);
      el.className = 'pl-msg';
      el.setAttribute('data-author', kind);
      if (m.seq != null) el.setAttribute('data-seq', m.seq); else el.removeAttribute('data-seq');
      if (m.conversation_id != null) el.setAttribute('data-conversation', m.conversation_id); else el.removeAttribute('data-conversation');
      if (status) el.setAttribute('data-status', status); else el.removeAttribute('data-status');
      try { el.title = new Date(m.created_ms).toLocaleString(); } catch (_) {}
      if (b.type === 'event') { el.appendChild(h('span', { cls: 'pl-text', text: Chat.eventText(b.event) })); return; }
      if (kind !== 'visitor') {
        el.appendChild(h('div', { cls: 'pl-name', text: m.author.name || (kind === 'bot' ? Chat.set().name || 'Bot' : 'Agent') }));
      }
      bub = h('div', { cls: 'pl-bubble' });
      if (b.type === 'attachment') bub.appendChild(Chat.att(m.conversation_id, b.attachment));
      if (b.type === 'upload') bub.appendChild(h('span', { cls: 'pl-att', text: b.name + ' (' + size(b.size) + ')' }));
      if (typeof b.text === 'string' && b.text) bub.appendChild(h('div', { cls: 'pl-text', text: b.text }));
      el.appendChild(bub);
      if (kind === 'visitor' && status) {
        st = h('div', { cls: 'pl-status', text: T[status] || '' });
        if (status === 'failed' && e && !e.noretry) {
          var r = h('button', { cls: 'pl-retry', type: 'button', text: T.retry });
          on(r, 'click', function () { Chat.retry(e); });
          st.appendChild(r);
        }
        el.appendChild(st);
      }
    },
    eventText: function (ev) {
      var n = (ev && ev.name) || 'An agent';
      switch (ev && ev.kind) {
        case 'agent_joined': return n + ' joined';
        case 'agent_left': return n + ' left';
        case 'resolved': return 'The conversation was resolved';
        case 'reopened': return 'The conversation was reopened';
      }
      return '';
    }
  };

  // --- commands: porchlight(name, ...args) ---------------------------------
  var pending = [];
  var cmds = {
    init: function (o) {
      if (S.site || !o || typeof o.site !== 'string' || !o.site) return;
      S.site = o.site;
      S.host = typeof o.host === 'string' && /^https?:\/\/[^/]/i.test(o.host) ? o.host.replace(/\/+$/, '') : HOST;
      S.vid = Store.vid();
      Tracker.hooks(o.spa !== false);
      Chat.init(Tracker.beat('pageview'));
      pending.splice(0).forEach(call);
    },
    open: function () { Chat.show(true); },
    close: function () { Chat.show(false); },
    identify: function (o) {
      if (!o || typeof o !== 'object') return;
      var email = str(o.email, 256);
      Tracker.beat('identify', { identity: {
        name: str(o.name, 256), phone: str(o.phone, 256),
        // The server refuses the whole identify for an email without "@".
        email: email && email.indexOf('@') > 0 ? email : undefined,
        props: props(o, ['name', 'email', 'phone'])
      } });
    },
    track: function (name, p) {
      name = str(name, 64);
      if (name && name.trim()) Tracker.beat('event', { event: { name: name, props: props(p) } });
    },
    // Manual page view: always counts, unless the history hook has just
    // counted this very URL (SPA routers that also call page()). Deferred
    // like the hook, so it runs after it and sees the new document.title.
    page: function () {
      setTimeout(safe(function () {
        if (location.href === S.url && Date.now() - S.auto < 1000) return;
        Tracker.beat('pageview');
      }), 0);
    }
  };

  function call(args) {
    var name = args[0];
    if (!Object.prototype.hasOwnProperty.call(cmds, name)) return;
    if (!S.site && name !== 'init') { if (pending.length < 100) pending.push(args); return; }
    cmds[name].apply(null, [].slice.call(args, 1));
  }

  var api = function () { try { call(arguments); } catch (e) { debug(e); } };
  api.loaded = true;
  var q = (stub && stub.q) || [];
  for (var i = 0; i < q.length; i++) api.apply(null, q[i]);
  w.porchlight = api;
})(window, document);
