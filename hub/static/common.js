/* Omnikiosk staff pages: what every signed-in page shares.
 *
 * Building DOM (customer data always through textContent, never HTML strings — the page's CSP enforces
 * Trusted Types, so an HTML string would be refused anyway), formatting, calls to the hub's JSON API with
 * the CSRF header, the live connection to the /staff Socket.IO namespace with resume-after-reconnect,
 * the throttled "I am here" ping, the idle sign-out, and the arrival chime.
 */
(function () {
  "use strict";

  var Omni = (window.Omni = {});
  var body = document.body;
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var IDLE_S = Number(body.dataset.idleS) || 900;
  Omni.me = body.dataset.user || "";

  /* ---------------- DOM ---------------- */

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function append(parent) {
    for (var i = 1; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      parent.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return parent;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function button(className, text, onClick) {
    var node = el("button", "btn " + className, text);
    node.type = "button";
    if (onClick) node.addEventListener("click", onClick);
    return node;
  }

  var SVG_NS = "http://www.w3.org/2000/svg";
  var ICONS = {
    bag: [["path", "M5.5 8h13l-1 12.5h-11z"], ["path", "M9 8V7a3 3 0 0 1 6 0v1"], ["path", "M9.5 13.5l2 2 3.5-3.5"]],
    cart: [["path", "M2.5 3.5h3l2.4 11.5h10.6l2-8H6.4"], ["circle", 9.5, 19.5, 1.4], ["circle", 17.5, 19.5, 1.4]],
    heart: [["path", "M12 20s-7.5-4.6-7.5-10.2A4.2 4.2 0 0 1 12 7.3a4.2 4.2 0 0 1 7.5 2.5C19.5 15.4 12 20 12 20z"]],
    alert: [["path", "M12 3.5l9.5 16.5h-19z"], ["path", "M12 10v4.5"], ["path", "M12 17.3v.2"]],
    user: [["circle", 12, 8, 4], ["path", "M4 20.5a8 8 0 0 1 16 0"]],
    eye: [["path", "M2 12s3.6-6.5 10-6.5S22 12 22 12s-3.6 6.5-10 6.5S2 12 2 12z"], ["circle", 12, 12, 3]],
    box: [["path", "M3.5 7.5L12 3.5l8.5 4-8.5 4z"], ["path", "M3.5 7.5v9l8.5 4 8.5-4v-9"], ["path", "M12 11.5v9"]],
    clock: [["circle", 12, 12, 9], ["path", "M12 7v5l3.2 2"]],
    kiosk: [["path", "M4.5 4h15v11h-15z"], ["path", "M12 15v5"], ["path", "M8.5 20h7"]],
    cache: [["path", "M4 6c0-1.7 3.6-3 8-3s8 1.3 8 3-3.6 3-8 3-8-1.3-8-3z"],
            ["path", "M4 6v12c0 1.7 3.6 3 8 3s8-1.3 8-3V6"], ["path", "M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3"]],
    lock: [["path", "M6 11h12v9.5H6z"], ["path", "M8.5 11V8a3.5 3.5 0 0 1 7 0v3"]],
    check: [["path", "M5 12.5l4.5 4.5L19 7.5"]],
    hand: [["path", "M8 12V5.5a1.5 1.5 0 0 1 3 0V11"], ["path", "M11 10.5V4a1.5 1.5 0 0 1 3 0v6.5"],
           ["path", "M14 10.5V5.5a1.5 1.5 0 0 1 3 0V14a7 7 0 0 1-7 7h-.5a6 6 0 0 1-5-2.7L2.8 15a1.6 1.6 0 0 1 2.6-1.8L8 16"]],
    star: [["path", "M12 3.5l2.6 5.4 5.9.8-4.3 4.1 1 5.8L12 16.9l-5.2 2.7 1-5.8-4.3-4.1 5.9-.8z"]],
    tag: [["path", "M3.5 12.5V4h8.5l8.5 8.5-8.5 8.5z"], ["circle", 8, 8.5, 1.4]],
    note: [["path", "M5 3.5h10l4 4v13H5z"], ["path", "M8.5 11h7"], ["path", "M8.5 15h7"]],
    scan: [["path", "M4 8V4h4"], ["path", "M16 4h4v4"], ["path", "M20 16v4h-4"], ["path", "M8 20H4v-4"], ["path", "M7 12h10"]],
    send: [["path", "M4 12l16-8-6 16-2.5-6.5z"], ["path", "M11.5 13.5L20 4"]],
    ruler: [["path", "M3 16.5L16.5 3 21 7.5 7.5 21z"], ["path", "M7 12.5l2 2"], ["path", "M10 9.5l2 2"], ["path", "M13 6.5l2 2"]],
    device: [["path", "M6 3h12v18H6z"], ["path", "M10.5 18h3"]],
    refresh: [["path", "M20 11a8 8 0 0 0-14.5-4.5L4 8"], ["path", "M4 3.5V8h4.5"], ["path", "M4 13a8 8 0 0 0 14.5 4.5L20 16"],
              ["path", "M20 20.5V16h-4.5"]],
    first: [["path", "M12 2.5l2.2 6.6h6.8l-5.5 4.1 2.1 6.6L12 15.7l-5.6 4.1 2.1-6.6L3 9.1h6.8z"]]
  };

  function icon(name) {
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("class", "icon");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    (ICONS[name] || []).forEach(function (shape) {
      var node = document.createElementNS(SVG_NS, shape[0]);
      if (shape[0] === "path") node.setAttribute("d", shape[1]);
      else { node.setAttribute("cx", shape[1]); node.setAttribute("cy", shape[2]); node.setAttribute("r", shape[3]); }
      svg.appendChild(node);
    });
    return svg;
  }

  /* ---------------- formatting ---------------- */

  var moneyFormats = {};
  function money(value, currency, whole) {
    if (value === null || value === undefined || value === "" || isNaN(Number(value))) return "";
    var code = (typeof currency === "string" && /^[A-Za-z]{3}$/.test(currency)) ? currency.toUpperCase() : "EUR";
    var key = code + (whole ? ":0" : ":2");
    if (!moneyFormats[key]) {
      try {
        moneyFormats[key] = new Intl.NumberFormat(undefined, {
          style: "currency", currency: code,
          minimumFractionDigits: whole ? 0 : 2, maximumFractionDigits: whole ? 0 : 2
        });
      } catch (e) {
        moneyFormats[key] = { format: function (v) { return code + " " + Number(v).toFixed(whole ? 0 : 2); } };
      }
    }
    return moneyFormats[key].format(Number(value));
  }

  var numberFormat = new Intl.NumberFormat(undefined);
  var dateFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });
  var clockFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  var fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  var stampFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" });

  function parseTime(iso) {
    if (!iso) return null;
    var t = Date.parse(iso);
    return isNaN(t) ? null : new Date(t);
  }

  function timeAgo(date) {
    if (!date) return "";
    var s = (Date.now() - date.getTime()) / 1000;
    if (s < 45) return "just now";
    if (s < 90) return "1 min ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    var d = Math.floor(s / 86400);
    if (d === 1) return "yesterday";
    if (d < 14) return d + " days ago";
    if (d < 60) return Math.round(d / 7) + " weeks ago";
    return dateFormat.format(date);
  }

  function seconds(s) {
    s = Number(s);
    if (!isFinite(s)) return "";
    if (s < 60) return Math.round(s) + " s";
    if (s < 3600) return Math.round(s / 60) + " min";
    if (s < 86400) return (s / 3600).toFixed(s < 36000 ? 1 : 0) + " h";
    return Math.round(s / 86400) + " d";
  }

  /** A <time> that the ticker keeps up to date ("3 min ago"). */
  function agoNode(iso, className) {
    var date = parseTime(iso);
    var node = el("time", (className ? className + " " : "") + "ago");
    if (!date) return node;
    node.setAttribute("datetime", date.toISOString());
    node.title = fullFormat.format(date);
    node.textContent = timeAgo(date);
    return node;
  }

  function refreshTimes() {
    var nodes = document.querySelectorAll("time.ago[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].textContent = timeAgo(new Date(nodes[i].getAttribute("datetime")));
    }
  }

  /** Server-rendered UTC times (audit log, tablets) shown in the tablet's own time zone. */
  function localTimes() {
    var nodes = document.querySelectorAll("time.ago-local[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var date = parseTime(nodes[i].getAttribute("datetime"));
      if (date) { nodes[i].textContent = stampFormat.format(date); nodes[i].title = timeAgo(date); }
    }
  }

  var KNOWN_TIERS = ["bronze", "silver", "gold", "platinum"];
  function tierClass(tier) {
    var t = String(tier || "").toLowerCase();
    return "tier-" + (KNOWN_TIERS.indexOf(t) >= 0 ? t : "other");
  }

  function initials(customer) {
    var a = (customer.first_name || "").trim().charAt(0);
    var b = (customer.last_name || "").trim().charAt(0);
    return (a + b).toUpperCase();
  }

  function fullName(customer) {
    return customer ? [customer.first_name, customer.last_name].filter(Boolean).join(" ") : "";
  }

  function plural(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }
  function arr(value) { return Array.isArray(value) ? value : []; }
  function obj(value) { return value && typeof value === "object" && !Array.isArray(value) ? value : {}; }

  /* ---------------- toasts ---------------- */

  var toastBox = null;
  function toast(text, kind) {
    if (!toastBox) {
      toastBox = el("div", "toasts");
      toastBox.setAttribute("role", "status");
      toastBox.setAttribute("aria-live", "polite");
      body.appendChild(toastBox);
    }
    var node = el("div", "toast" + (kind ? " toast-" + kind : ""), text);
    toastBox.appendChild(node);
    setTimeout(function () { node.classList.add("toast-out"); }, 4200);
    setTimeout(function () { if (node.parentNode) node.parentNode.removeChild(node); }, 4700);
  }

  /* ---------------- the hub's API ---------------- */

  function signedOut(expired) {
    window.location.assign("/login?" + (expired ? "expired=1&" : "") + "next=" +
                           encodeURIComponent(window.location.pathname + window.location.search));
  }

  /** JSON from the hub; rejects with an Error whose .status and .code say what happened. */
  function api(method, url, payload) {
    var headers = { Accept: "application/json" };
    var init = { method: method, credentials: "same-origin", cache: "no-store", headers: headers };
    if (method !== "GET") {
      headers["X-CSRF-Token"] = csrfMeta ? csrfMeta.content : "";
      if (payload !== undefined) {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(payload);
      }
    }
    return fetch(url, init).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (data) {
        if (res.status === 401) { signedOut(true); }
        if (!res.ok) {
          var error = obj(data.error);
          var failure = new Error(error.message || ("The hub answered " + res.status));
          failure.status = res.status;
          failure.code = error.code || "";
          throw failure;
        }
        return data;
      });
    });
  }

  /* ---------------- presence: an attended tablet stays signed in, an unattended one times out ---------------- */

  var PING_EVERY_MS = Math.max(5000, Math.min(60000, IDLE_S * 250));
  var lastActivity = Date.now();  // loading this page was use
  var lastPing = Date.now();

  function onInteraction() {
    var now = Date.now();
    lastActivity = now;
    if (now - lastPing < PING_EVERY_MS) return;
    lastPing = now;
    api("POST", "/api/here").catch(function () { /* the next interaction tries again */ });
  }
  ["pointerdown", "keydown", "touchstart", "wheel", "scroll"].forEach(function (type) {
    window.addEventListener(type, onInteraction, { passive: true, capture: true });
  });

  /** Ask the hub (this does not count as use) whether the session is still alive; sign out when not. */
  function checkSession() {
    return fetch("/api/session", { credentials: "same-origin", cache: "no-store" }).then(function (res) {
      if (res.status === 401) { signedOut(true); return false; }
      return res.ok;
    }).catch(function () { return true; /* offline: the hub decides when we are back */ });
  }

  setInterval(function () {
    if (Date.now() - lastActivity > IDLE_S * 1000) checkSession();
  }, 15000);

  /* ---------------- the chime for a fresh arrival ---------------- */

  var audio = null;
  function unlockAudio() {
    // Browsers start sound only after a person touched the page: prepare it on the first touch.
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!audio && Ctx) { try { audio = new Ctx(); } catch (e) { audio = null; } }
    if (audio && audio.state === "suspended") audio.resume();
  }
  window.addEventListener("pointerdown", unlockAudio, { passive: true, capture: true });
  window.addEventListener("keydown", unlockAudio, { passive: true, capture: true });

  function ring() {
    body.dataset.rings = String((Number(body.dataset.rings) || 0) + 1);
    if (navigator.vibrate) { try { navigator.vibrate([90, 60, 90]); } catch (e) { /* not allowed here */ } }
    if (!audio || audio.state !== "running") return;
    [[880, 0], [1175, 0.16]].forEach(function (tone) {
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      var start = audio.currentTime + tone[1];
      osc.frequency.value = tone[0];
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.18, start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.28);
      osc.connect(gain).connect(audio.destination);
      osc.start(start);
      osc.stop(start + 0.3);
    });
  }

  /* ---------------- the live connection ---------------- */

  var connEl = document.getElementById("conn");
  var connText = document.getElementById("conn-text");
  function setConn(state) {
    if (!connEl) return;
    connEl.dataset.state = state;
    connText.textContent = { live: "Live", reconnecting: "Reconnecting…", connecting: "Connecting…",
                             signedout: "Signed out" }[state] || state;
  }

  /**
   * Connect to /staff. `opts.after()` is the last feed id this page has; on every (re)connect the page
   * asks for what came after it ("resume") and gets it through `opts.onItems(items, false)`; live items
   * come through `opts.onItems([item], true)`. The page drops ids it has (a live item may also come in
   * a resume answer). `opts.events` are further events to listen to; `opts.onConnect(first)` runs on
   * each connect.
   */
  function live(opts) {
    setConn("connecting");
    if (typeof window.io !== "function") { setConn("reconnecting"); return null; }
    var socket = window.io("/staff", { transports: ["websocket", "polling"] });
    var connects = 0;

    function resume() {
      if (!opts.after) return;
      socket.emit("resume", { after: opts.after() }, function (answer) {
        answer = obj(answer);
        if (answer.error) { checkSession(); return; }
        var items = arr(answer.items);
        if (items.length) opts.onItems(items, false);
        if (answer.more) resume();  // a long outage: page through the rest
      });
    }

    socket.on("connect", function () {
      setConn("live");
      connects += 1;
      resume();
      if (opts.onConnect) opts.onConnect(connects === 1);
    });
    socket.on("disconnect", function (reason) {
      setConn("reconnecting");
      // The hub hung up (signed out, idle): find out which; when still signed in, come back.
      if (reason === "io server disconnect") {
        checkSession().then(function (ok) { if (ok) setTimeout(function () { socket.connect(); }, 3000); });
      }
    });
    socket.on("connect_error", function () {
      setConn("reconnecting");
      if (socket.active) return; // transport trouble: socket.io retries with backoff
      // Refused by the hub: most likely the session ended. Check, then retry.
      checkSession().then(function (ok) { if (ok) setTimeout(function () { socket.connect(); }, 5000); });
    });
    socket.on("signed_out", function () { setConn("signedout"); signedOut(true); });
    if (opts.onItems) socket.on("floor", function (item) { if (item) opts.onItems([item], true); });
    Object.keys(opts.events || {}).forEach(function (name) { socket.on(name, opts.events[name]); });
    return socket;
  }

  /* ---------------- exports ---------------- */

  Omni.el = el;
  Omni.append = append;
  Omni.clear = clear;
  Omni.button = button;
  Omni.icon = icon;
  Omni.money = money;
  Omni.numberFormat = numberFormat;
  Omni.dateFormat = dateFormat;
  Omni.clockFormat = clockFormat;
  Omni.parseTime = parseTime;
  Omni.timeAgo = timeAgo;
  Omni.seconds = seconds;
  Omni.agoNode = agoNode;
  Omni.tierClass = tierClass;
  Omni.initials = initials;
  Omni.fullName = fullName;
  Omni.plural = plural;
  Omni.arr = arr;
  Omni.obj = obj;
  Omni.toast = toast;
  Omni.api = api;
  Omni.ring = ring;
  Omni.live = live;
  Omni.setConn = setConn;

  localTimes();
  setInterval(refreshTimes, 30000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refreshTimes(); });
})();
