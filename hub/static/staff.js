/* Omnikiosk staff hub: the live arrivals feed.
 *
 * Loads /api/arrivals, then listens on the /staff Socket.IO namespace for "arrival" cards.
 * Every piece of customer data goes into the page through textContent, never innerHTML.
 */
(function () {
  "use strict";

  var MAX_CARDS = 100;
  var TIME_REFRESH_MS = 30000;
  var KNOWN_TIERS = ["bronze", "silver", "gold", "platinum"];
  var CHANNELS = { web: "Web", app: "App", marketplace: "Marketplace", store: "In store" };
  var STATUSES = {
    ready_for_pickup: "Ready for pickup", placed: "Placed", shipped: "Shipped", delivered: "Delivered",
    picked_up: "Picked up", cancelled: "Cancelled", returned: "Returned"
  };

  var feed = document.getElementById("feed");
  var emptyEl = document.getElementById("feed-empty");
  var loadingEl = document.getElementById("feed-loading");
  var errorEl = document.getElementById("feed-error");
  var countEl = document.getElementById("feed-count");
  var connEl = document.getElementById("conn");
  var connText = document.getElementById("conn-text");
  if (!feed) return;

  var cards = new Map(); // id -> element
  var order = [];        // ids, newest (highest) first
  var maxId = 0;
  var loaded = false;
  var batching = false;

  // Two columns on wide screens, filled alternately (newest top-left, next top-right, ...), so cards of
  // different heights stack without the holes a row grid leaves. One column on portrait and phones.
  var wide = window.matchMedia("(min-width: 1000px)");
  var columns = [el("div", "feed-col"), el("div", "feed-col")];
  feed.appendChild(columns[0]);
  feed.appendChild(columns[1]);

  function layout() {
    var two = wide.matches;
    feed.classList.toggle("two-col", two);
    order.forEach(function (id, i) {
      columns[two ? i % 2 : 0].appendChild(cards.get(id)); // appendChild moves; open <details> stay open
    });
  }
  if (wide.addEventListener) wide.addEventListener("change", layout);
  else if (wide.addListener) wide.addListener(layout);

  /* ---------------- small helpers ---------------- */

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
    check: [["path", "M5 12.5l4.5 4.5L19 7.5"]]
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

  var moneyFormats = {};
  function money(value, currency, whole) {
    if (value === null || value === undefined || isNaN(Number(value))) return "";
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
    if (s < 86400) { var h = Math.floor(s / 3600); return h + " h ago"; }
    var d = Math.floor(s / 86400);
    if (d === 1) return "yesterday";
    if (d < 14) return d + " days ago";
    if (d < 60) return Math.round(d / 7) + " weeks ago";
    return dateFormat.format(date);
  }

  function shortDate(iso) {
    var d = parseTime(iso);
    return d ? dateFormat.format(d) : "";
  }

  /** A <time> that the 30-second ticker keeps up to date. */
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

  function tierClass(tier) {
    var t = String(tier || "").toLowerCase();
    return "tier-" + (KNOWN_TIERS.indexOf(t) >= 0 ? t : "other");
  }

  function initials(customer) {
    var a = (customer.first_name || "").trim().charAt(0);
    var b = (customer.last_name || "").trim().charAt(0);
    return (a + b).toUpperCase();
  }

  function plural(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }

  function arr(value) { return Array.isArray(value) ? value : []; }

  /* ---------------- card rendering ---------------- */

  function renderCard(card) {
    var consent = card.consent !== false;
    var customer = consent && card.customer ? card.customer : null;
    var named = !!(customer && (customer.first_name || customer.last_name));
    var flags = arr(card.flags);
    var pickups = flags.filter(function (f) { return f && f.kind === "pickup"; });
    var others = flags.filter(function (f) { return f && f.kind !== "pickup" && !(f.kind === "member" && !named); });

    var root = el("article", "card");
    root.dataset.id = String(card.id);
    if (named && customer.tier) root.classList.add(tierClass(customer.tier));
    if (pickups.length) root.classList.add("has-pickup");
    if (card.late) root.classList.add("card-late");
    if (!consent) root.classList.add("card-private");

    if (card.late) {
      var banner = append(el("div", "late-banner"), icon("clock"), el("span", null, "Late — replayed after an outage"));
      var scanned = parseTime(card.at);
      if (scanned) append(banner, el("span", "late-when", "scanned " + clockFormat.format(scanned)));
      root.appendChild(banner);
    }

    /* head: avatar, name, badges, where/when, stats */
    var head = el("div", "card-head");
    var avatar = el("div", "avatar");
    avatar.setAttribute("aria-hidden", "true");
    if (named && initials(customer)) avatar.textContent = initials(customer);
    else avatar.appendChild(icon(consent ? "user" : "lock"));

    var id = el("div", "card-id");
    var nameRow = el("div", "card-name-row");
    var title;
    if (!consent) title = el("h2", "card-name is-anon", "Member checked in");
    else if (named) title = el("h2", "card-name", [customer.first_name, customer.last_name].filter(Boolean).join(" "));
    else title = el("h2", "card-name is-anon", customer && customer.id ? "Member " + customer.id : "Member checked in");
    nameRow.appendChild(title);
    if (customer && customer.tier) nameRow.appendChild(el("span", "tier-badge " + tierClass(customer.tier), customer.tier));

    var meta = el("p", "card-meta");
    append(meta, icon("kiosk"), "at kiosk ", el("span", "kiosk-tag", card.kiosk || "?"), el("span", "sep", "·"), agoNode(card.at));
    append(id, nameRow, meta);
    if (named && customer.member_since) {
      var since = parseTime(customer.member_since);
      if (since) id.appendChild(el("p", "card-since", "Member since " + since.getFullYear()));
    }
    append(head, avatar, id);

    if (customer) {
      var stats = el("div", "card-stats");
      if (customer.points !== null && customer.points !== undefined) {
        append(stats, append(el("div", "stat"), el("span", "stat-value", numberFormat.format(customer.points)),
                             el("span", "stat-label", "Points")));
      }
      if (customer.lifetime_value !== null && customer.lifetime_value !== undefined) {
        append(stats, append(el("div", "stat"), el("span", "stat-value", money(customer.lifetime_value, customer.currency, true)),
                             el("span", "stat-label", "Lifetime")));
      }
      if (stats.childNodes.length) head.appendChild(stats);
    }
    root.appendChild(head);

    if (!consent) return root; // only that a member checked in, where and when

    /* where the profile came from */
    if (card.profile_source === "cache") {
      var age = Number(card.profile_age_s);
      var ageText = isNaN(age) || card.profile_age_s === null ? "" :
        (age < 60 ? ", less than a minute old" : ", " + Math.round(age / 60) + " min old");
      root.appendChild(append(el("p", "card-note"), icon("cache"), "Profile from cache" + ageText));
    } else if (card.profile_source === "unknown") {
      root.appendChild(append(el("p", "card-note note-warn"), icon("alert"), "This member ID isn’t known to the online store"));
    }

    /* flags: pickup first and loud, the rest as chips */
    if (pickups.length || others.length) {
      var flagBox = el("div", "card-flags");
      pickups.forEach(function (flag) {
        var banner = el("div", "pickup-flag");
        banner.setAttribute("role", "note");
        append(banner, append(el("span", "pickup-icon"), icon("bag")),
               append(el("span"), el("span", "pickup-kicker", "Pickup ready here"), el("span", null, pickupText(flag.text))));
        flagBox.appendChild(banner);
      });
      if (others.length) {
        var chips = el("div", "chips");
        others.forEach(function (flag) {
          var kind = String(flag.kind || "");
          var chipIcon = { cart: "cart", wishlist: "heart", unavailable: "alert", member: "user" }[kind] || "check";
          var known = ["cart", "wishlist", "unavailable", "member"].indexOf(kind) >= 0;
          chips.appendChild(append(el("span", "chip" + (known ? " chip-" + kind : "")), icon(chipIcon), el("span", null, flag.text)));
        });
        flagBox.appendChild(chips);
      }
      root.appendChild(flagBox);
    }

    /* collapsible detail sections */
    var sections = el("div", "card-sections");
    var orders = arr(card.orders);
    var wishlist = arr(card.wishlist);
    var cart = card.cart && typeof card.cart === "object" ? card.cart : { items: [] };
    var cartItems = arr(cart.items);
    var viewed = arr(card.recently_viewed);

    if (orders.length) {
      var readyHere = orders.filter(function (o) { return o && o.ready_here; }).length;
      var open = orders.filter(function (o) { return o && ["placed", "shipped", "ready_for_pickup"].indexOf(o.status) >= 0; }).length;
      var hint = readyHere ? plural(readyHere, "ready here") : (open ? plural(open, "open order") : "");
      var body = el("div", "section-body");
      orders.forEach(function (order) { if (order) body.appendChild(renderOrder(order)); });
      sections.appendChild(section("box", "Orders", orders.length, hint, body, readyHere > 0));
    }
    if (cartItems.length) {
      var cartList = el("ul", "rows");
      var cartTotal = 0, cartCurrency = null;
      cartItems.forEach(function (item) {
        var qty = Number(item.quantity) || 1;
        if (item.price !== null && item.price !== undefined) cartTotal += Number(item.price) * qty;
        cartList.appendChild(itemRow(item.name, qty > 1 ? "× " + qty : null, money(item.price, item.currency || cartCurrency), null));
      });
      var cartHint = cart.updated_at ? "updated " + timeAgo(parseTime(cart.updated_at)) : "";
      var cartBody = append(el("div", "section-body"), cartList);
      sections.appendChild(section("cart", "Cart", cartItems.length, cartHint, cartBody, false));
    }
    if (wishlist.length) {
      var wishList = el("ul", "rows");
      wishlist.forEach(function (item) {
        wishList.appendChild(itemRow(item.name, null, money(item.price, item.currency),
                                     item.added_at ? "added " + timeAgo(parseTime(item.added_at)) : null));
      });
      sections.appendChild(section("heart", "Wishlist", wishlist.length, "", append(el("div", "section-body"), wishList), false));
    }
    if (viewed.length) {
      var viewList = el("ul", "rows");
      viewed.forEach(function (item) {
        var sub = [CHANNELS[item.channel] || item.channel, item.viewed_at ? timeAgo(parseTime(item.viewed_at)) : null]
          .filter(Boolean).join(" · ");
        viewList.appendChild(itemRow(item.name, null, null, sub || null));
      });
      sections.appendChild(section("eye", "Recently viewed", viewed.length, "", append(el("div", "section-body"), viewList), false));
    }
    if (sections.childNodes.length) root.appendChild(sections);
    else if (named && card.profile_source !== "unavailable" && card.profile_source !== "unknown") {
      root.appendChild(el("p", "card-foot-empty", "No online orders or activity yet."));
    }
    return root;
  }

  /** "Pickup ready: order #1043, 2 items, shelf B" → "Order #1043, 2 items, shelf B" (the kicker says the rest). */
  function pickupText(text) {
    var t = String(text || "").replace(/^\s*pickup ready\s*[:\-–—]\s*/i, "");
    return t ? t.charAt(0).toUpperCase() + t.slice(1) : String(text || "");
  }

  function section(iconName, label, count, hint, body, open) {
    var details = el("details", "section");
    if (open) details.open = true;
    var summary = el("summary");
    append(summary, icon(iconName), el("span", null, label), el("span", "section-count", count));
    summary.appendChild(el("span", "section-hint", hint || ""));
    append(details, summary, body);
    return details;
  }

  function itemRow(name, qty, side, sub) {
    var li = el("li", "row");
    var main = el("span", "row-main");
    append(main, el("span", null, name || "Unnamed item"));
    if (qty) append(main, " ", el("span", "qty", qty));
    if (sub) main.appendChild(el("span", "row-sub", sub));
    li.appendChild(main);
    if (side) li.appendChild(el("span", "row-side", side));
    return li;
  }

  function renderOrder(order) {
    var box = el("div", "order" + (order.ready_here ? " ready-here" : ""));
    var top = el("div", "order-top");
    append(top, el("span", "order-number", order.number || (order.id ? "#" + order.id : "Order")));
    if (order.channel) top.appendChild(el("span", "channel", CHANNELS[order.channel] || order.channel));
    if (order.status) {
      var status = String(order.status);
      top.appendChild(el("span", "pill pill-" + status.replace(/[^a-z_]/g, ""), STATUSES[status] || status.replace(/_/g, " ")));
    }
    if (order.ready_here && order.pickup && order.pickup.shelf) {
      top.appendChild(el("span", "shelf-tag", "Shelf " + order.pickup.shelf));
    }
    if (order.total !== null && order.total !== undefined) top.appendChild(el("span", "order-total", money(order.total, order.currency)));
    box.appendChild(top);

    var items = arr(order.items);
    var metaBits = [];
    if (order.placed_at) metaBits.push("placed " + shortDate(order.placed_at));
    if (items.length) {
      var units = items.reduce(function (n, i) { return n + (Number(i.quantity) || 1); }, 0);
      metaBits.push(plural(units, "item"));
    }
    if (order.pickup && order.pickup.store && !order.ready_here && order.status === "ready_for_pickup") {
      metaBits.push("pickup at " + order.pickup.store);
    }
    if (metaBits.length) box.appendChild(el("div", "order-meta", metaBits.join(" · ")));

    if (items.length) {
      var list = el("ul", "order-items");
      items.forEach(function (item) {
        var qty = Number(item.quantity) || 1;
        var li = el("li", null, item.name || item.gtin || "Item");
        if (qty > 1) append(li, " ", el("span", "qty", "× " + qty));
        list.appendChild(li);
      });
      box.appendChild(list);
    }
    return box;
  }

  /* ---------------- feed management ---------------- */

  function updateChrome() {
    if (loadingEl) loadingEl.classList.add("hidden");
    var n = cards.size;
    emptyEl.classList.toggle("hidden", n > 0 || !loaded);
    countEl.textContent = n ? plural(n, "check-in") + " · newest first" : "";
  }

  function insertCard(card, highlight) {
    if (!card || card.id === undefined || card.id === null) return;
    var id = Number(card.id);
    if (!isFinite(id) || cards.has(id)) return; // dedupe by id
    var node;
    try {
      node = renderCard(card);
    } catch (err) {
      if (window.console) console.error("could not render arrival", id, err);
      return;
    }
    // Newest (highest id) first; a late arrival still gets its own place by id.
    var at = 0;
    while (at < order.length && order[at] > id) at++;
    order.splice(at, 0, id);
    cards.set(id, node);
    if (id > maxId) maxId = id;
    while (order.length > MAX_CARDS) {
      var oldest = order.pop();
      var gone = cards.get(oldest);
      if (gone && gone.parentNode) gone.parentNode.removeChild(gone);
      cards.delete(oldest);
    }
    if (cards.has(id) && highlight && !card.late) {
      node.classList.add("is-new");
      node.addEventListener("animationend", function () { node.classList.remove("is-new"); }, { once: true });
    }
    if (!batching) layout();
    updateChrome();
  }

  function showError(text) {
    if (!errorEl) return;
    errorEl.textContent = text || "";
    errorEl.classList.toggle("hidden", !text);
  }

  function signedOut() {
    setConn("signedout");
    window.location.assign("/login?next=%2F");
  }

  function fetchArrivals(after) {
    var url = "/api/arrivals" + (after ? "?after=" + encodeURIComponent(String(after)) : "");
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (res) {
        if (res.status === 401) { signedOut(); throw new Error("signed out"); }
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.json();
      })
      .then(function (body) { return arr(body && body.items); });
  }

  function loadInitial() {
    fetchArrivals(0).then(function (items) {
      loaded = true;
      showError("");
      // API order is newest first; insert oldest first so ordering stays stable.
      batching = true;
      items.slice().reverse().forEach(function (card) { insertCard(card, false); });
      batching = false;
      layout();
      updateChrome();
    }).catch(function (err) {
      if (String(err && err.message) === "signed out") return;
      loaded = true;
      updateChrome();
      showError("Couldn’t load recent check-ins. Retrying…");
      setTimeout(loadInitial, 5000);
    });
  }

  /** After a reconnect: pick up whatever arrived while we were away. */
  function catchUp() {
    fetchArrivals(maxId).then(function (items) {
      showError("");
      items.slice().reverse().forEach(function (card) { insertCard(card, true); });
    }).catch(function () { /* the next reconnect tries again */ });
  }

  /* ---------------- live connection ---------------- */

  function setConn(state) {
    if (!connEl) return;
    connEl.dataset.state = state;
    connText.textContent = { live: "Live", reconnecting: "Reconnecting…", connecting: "Connecting…",
                             signedout: "Signed out" }[state] || state;
  }

  function connect() {
    if (typeof window.io !== "function") { setConn("reconnecting"); return; }
    var everConnected = false;
    var socket = window.io("/staff", { transports: ["websocket", "polling"] });

    socket.on("connect", function () {
      setConn("live");
      if (everConnected) catchUp();
      everConnected = true;
    });
    socket.on("disconnect", function (reason) {
      setConn("reconnecting");
      // The server hung up on us (e.g. session ended): the client won't retry by itself.
      if (reason === "io server disconnect") setTimeout(function () { socket.connect(); }, 3000);
    });
    socket.on("connect_error", function () {
      setConn("reconnecting");
      if (socket.active) return; // transport trouble: socket.io retries with backoff
      // Refused by the server: most likely the session expired. Check, then retry.
      fetchArrivals(maxId).then(function (items) {
        items.slice().reverse().forEach(function (card) { insertCard(card, true); });
        setTimeout(function () { socket.connect(); }, 5000);
      }).catch(function () { setTimeout(function () { socket.connect(); }, 5000); });
    });
    socket.on("arrival", function (card) { insertCard(card, true); });
  }

  setConn("connecting");
  loadInitial();
  connect();
  setInterval(refreshTimes, TIME_REFRESH_MS);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refreshTimes(); });
})();
