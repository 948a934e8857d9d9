/* Porchlight widget. Classic script, loaded async by the embed snippet.
 * Sections: util, Store (ids), Net (beacons), Tracker, commands. A chat UI
 * will later mount in a shadow root and register more commands. */
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
      // text/plain keeps this a CORS "simple request": no preflight.
      fetch(url, {
        method: 'POST', body: data, headers: { 'Content-Type': 'text/plain' },
        keepalive: true, credentials: 'omit', mode: 'cors'
      }).then(function (r) { return r.json(); }).then(safe(function (j) {
        var n = j && j.heartbeat_ms;
        if (typeof n === 'number' && n >= 500 && n <= 36e5 && n !== S.hb) { S.hb = n; Tracker.arm(); }
      }))['catch'](debug);
    }
  };

  // --- Tracker -----------------------------------------------------------
  var Tracker = {
    base: function (type, sid) {
      return {
        site: S.site, vid: S.vid, sid: sid, type: type,
        url: cut(location.href, 2000), title: cut(d.title, 500),
        lang: navigator.language, screen: [screen.width, screen.height], ts: Date.now()
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
      Net.send(b);
      S.last = Date.now();
      Tracker.arm();
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

  // --- commands: porchlight(name, ...args) ---------------------------------
  var pending = [];
  var cmds = {
    init: function (o) {
      if (S.site || !o || typeof o.site !== 'string' || !o.site) return;
      S.site = o.site;
      S.host = typeof o.host === 'string' && /^https?:\/\/[^/]/i.test(o.host) ? o.host.replace(/\/+$/, '') : HOST;
      S.vid = Store.vid();
      Tracker.hooks(o.spa !== false);
      Tracker.beat('pageview');
      pending.splice(0).forEach(call);
    },
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
