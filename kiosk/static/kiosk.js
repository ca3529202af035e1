/* Omnikiosk shopper screen: shows what the kiosk's own server says ("screen" events), sends "done".
 * All text goes in through textContent. No inline script or style: brand colours come from data-*.
 */
(function () {
  "use strict";

  var body = document.body;
  var app = document.getElementById("app");
  var offlineEl = document.getElementById("offline");
  var REJECTED_MS = 6000;
  var idleTimeoutS = parseInt(body.dataset.idleTimeout, 10);
  if (!(idleTimeoutS > 0)) idleTimeoutS = 30;

  /* ---------------- brand colours ---------------- */

  function parseHex(value) {
    var m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(String(value || "").trim());
    if (!m) return null;
    var hex = m[1].length === 3 ? m[1].replace(/(.)/g, "$1$1") : m[1];
    return [parseInt(hex.slice(0, 2), 16), parseInt(hex.slice(2, 4), 16), parseInt(hex.slice(4, 6), 16)];
  }

  function luminance(rgb) {
    var c = rgb.map(function (v) { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  }

  function applyBrand() {
    var root = document.documentElement.style;
    var primary = parseHex(body.dataset.primary);
    if (primary) {
      root.setProperty("--primary", body.dataset.primary.trim());
      root.setProperty("--primary-rgb", primary.join(", "));
      var lum = luminance(primary);
      root.setProperty("--primary-ink", lum > 0.45 ? "#0f172a" : "#ffffff");
      // Text in the brand colour only when it reads well on white (contrast >= 4.5).
      root.setProperty("--primary-text", (1.05 / (lum + 0.05)) >= 4.5 ? body.dataset.primary.trim() : "#0f172a");
    }
    var accent = parseHex(body.dataset.accent);
    if (accent) {
      root.setProperty("--accent", body.dataset.accent.trim());
      root.setProperty("--accent-ink", luminance(accent) > 0.45 ? "#1f1500" : "#ffffff");
    }
  }

  /* ---------------- formatting ---------------- */

  var numberFormat = new Intl.NumberFormat(undefined);

  function money(value, currency) {
    if (value === null || value === undefined || value === "" || isNaN(Number(value))) return "";
    var code = /^[A-Za-z]{3}$/.test(String(currency || "")) ? String(currency).toUpperCase() : "EUR";
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: code }).format(Number(value));
    } catch (e) {
      return code + " " + Number(value).toFixed(2);
    }
  }

  /** Digits grouped the way they are printed under the bars. */
  function formatGtin(gtin) {
    var d = String(gtin || "").replace(/\D/g, "");
    var groups;
    if (d.length === 14) groups = [1, 5, 5, 2, 1];        // 0 50123 45678 90 0
    else if (d.length === 13) groups = [1, 6, 6];         // 5 012345 678900
    else if (d.length === 12) groups = [1, 5, 5, 1];      // 0 12345 67890 5
    else if (d.length === 8) groups = [4, 4];             // 1234 5678
    else return d || String(gtin || "");
    var out = [], at = 0;
    groups.forEach(function (n) { out.push(d.slice(at, at + n)); at += n; });
    return out.join(" ");
  }

  function text(id, value) {
    var node = document.getElementById(id);
    if (node) node.textContent = value === null || value === undefined ? "" : String(value);
    return node;
  }

  /** Keep a dash with the word before it, so a line never starts with "— please ask staff". */
  function tidy(value) {
    return String(value || "").replace(/ ([\u2013\u2014]) /g, "\u00a0$1 ");
  }

  function toggle(id, show) {
    var node = document.getElementById(id);
    if (node) node.classList.toggle("hidden", !show);
    return node;
  }

  /* ---------------- views ---------------- */

  var timer = null;
  var current = "idle";
  var socket = null;

  function clearTimer() { if (timer) { clearTimeout(timer); timer = null; } }

  function setView(view) {
    current = view;
    app.dataset.view = view;
  }

  /** Member, product and message screens clear themselves: nothing personal lingers.
   *  The kiosk server ends an idle session itself (and says {"view": "idle"}); this is the fallback
   *  for when it can't, e.g. the page lost its connection. It runs a little later than the server's
   *  timer and does not emit "done": that would record the session as ended by the shopper. */
  var IDLE_GRACE_S = 5;
  function armIdleTimer() {
    clearTimer();
    timer = setTimeout(function () {
      timer = null;
      if (current === "member" || current === "product" || current === "message") showIdle();
    }, (idleTimeoutS + IDLE_GRACE_S) * 1000);
  }

  function showIdle() {
    clearTimer();
    setView("idle");
    // Drop whatever the last shopper saw, so it can't be read back from the page.
    ["member-title", "member-points-value", "member-tier", "product-name", "product-gtin", "product-price",
     "rejected-text", "message-text"].forEach(function (id) { text(id, ""); });
  }

  function showMember(p) {
    var first = typeof p.first_name === "string" ? p.first_name.trim() : "";
    text("member-title", first ? "Welcome back, " + first : "Welcome back!");
    var tier = typeof p.tier === "string" ? p.tier.trim() : "";
    var tierEl = text("member-tier", tier);
    tierEl.className = "tier-badge" + (tier ? " tier-" + tier.toLowerCase().replace(/[^a-z]/g, "") : " hidden");
    var hasPoints = p.points !== null && p.points !== undefined && !isNaN(Number(p.points));
    text("member-points-value", hasPoints ? numberFormat.format(Number(p.points)) : "");
    toggle("member-points", hasPoints);
    setView("member");
    armIdleTimer();
  }

  function showProduct(p) {
    var name = typeof p.name === "string" ? p.name.trim() : "";
    var code = formatGtin(p.gtin);
    var nameEl = text("product-name", name);
    if (!name) {
      // "Product 0 50123 45678 90 0", the digits kept together on one line
      var codeEl = document.createElement("span");
      codeEl.className = "product-code";
      codeEl.textContent = code;
      nameEl.textContent = "Product ";
      nameEl.appendChild(codeEl);
    }
    nameEl.classList.toggle("is-code", !name);
    text("product-kicker", name ? "Product" : "Scanned");
    text("product-gtin", name && code ? code : "");
    toggle("product-gtin", !!(name && code));
    var price = money(p.price, p.currency);
    text("product-price", price);
    toggle("product-price", !!price);
    if (!name) text("product-ask-text", "Ask a colleague for details");
    else if (!price) text("product-ask-text", "Ask a colleague for the price");
    toggle("product-ask", !name || !price);
    setView("product");
    armIdleTimer();
  }

  function showRejected(p) {
    clearTimer();
    text("rejected-text", tidy(p.message) || "That code isn’t one we know. Try a product barcode or your member QR.");
    setView("rejected");
    // restart the little countdown bar
    var bar = document.getElementById("rejected-bar");
    bar.classList.remove("run");
    void bar.offsetWidth;
    bar.style.setProperty("--countdown", REJECTED_MS + "ms");
    bar.classList.add("run");
    timer = setTimeout(function () { timer = null; if (current === "rejected") showIdle(); }, REJECTED_MS);
  }

  function showUnavailable(p) {
    clearTimer();
    text("unavailable-text", tidy(p.message) || "Scanner unavailable — please ask staff");
    setView("unavailable"); // stays until the server says otherwise
  }

  function showMessage(p) {
    text("message-text", tidy(p.text || p.message || ""));
    setView("message");
    armIdleTimer();
  }

  function onScreen(payload) {
    var p = payload && typeof payload === "object" ? payload : {};
    switch (p.view) {
      case "idle": showIdle(); break;
      case "member": showMember(p); break;
      case "product": showProduct(p); break;
      case "rejected": showRejected(p); break;
      case "unavailable": showUnavailable(p); break;
      case "message": showMessage(p); break;
      default: break; // unknown view: keep what is on screen
    }
  }

  /* ---------------- input ---------------- */

  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("[data-action='done']") : null;
    if (!target) return;
    event.preventDefault();
    if (socket && socket.connected) socket.emit("done");
    showIdle();
  });
  // Any touch counts as activity: keep the current screen a little longer.
  document.addEventListener("pointerdown", function () {
    if (current === "member" || current === "product" || current === "message") armIdleTimer();
  }, { passive: true });
  document.addEventListener("contextmenu", function (event) { event.preventDefault(); });

  /* ---------------- connection ---------------- */

  function setOnline(online) {
    offlineEl.classList.toggle("hidden", online);
    body.classList.toggle("is-offline", !online);
  }

  function connect() {
    if (typeof window.io !== "function") { setOnline(false); return; }
    socket = window.io({ transports: ["websocket", "polling"] });
    socket.on("connect", function () { setOnline(true); });
    socket.on("disconnect", function (reason) {
      setOnline(false);
      if (reason === "io server disconnect") setTimeout(function () { socket.connect(); }, 2000);
    });
    socket.on("connect_error", function () {
      setOnline(false);
      if (!socket.active) setTimeout(function () { socket.connect(); }, 3000);
    });
    socket.on("screen", onScreen);
  }

  applyBrand();
  showIdle();
  connect();
})();
