/* Omnikiosk shopper screen: shows what the kiosk's own server says ("screen", "notice" and "banner"
 * events; "reload" loads the page again) and sends "done", "assist" and "send_to_cart", and "alive"
 * every few seconds (its heartbeat).
 * Every text from data goes in through textContent; images only as data: URIs or same-origin paths.
 * No inline script or style: brand colours come from data-* and are set on element.style.
 * Any field may be missing or null (older servers): the screen then leaves that part out.
 */
(function () {
  "use strict";

  var body = document.body;
  var app = document.getElementById("app");
  var offlineEl = document.getElementById("offline");
  var REJECTED_MS = 6000;
  var NOTICE_MS = 5000;
  var PENDING_MS = 10000; // a tapped button comes back if no answer arrives in this time
  var HEARTBEAT_MS = 5000; // well inside kiosk/browser.py's STALE_AFTER_S
  var idleTimeoutS = parseInt(body.dataset.idleTimeout, 10);
  if (!(idleTimeoutS > 0)) idleTimeoutS = 30;
  var locale = document.documentElement.lang || undefined;

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
      root.setProperty("--accent-rgb", accent.join(", "));
      root.setProperty("--accent-ink", luminance(accent) > 0.45 ? "#1f1500" : "#ffffff");
    }
  }

  /* ---------------- small helpers ---------------- */

  var numberFormat = new Intl.NumberFormat(locale);

  function str(value) {
    return typeof value === "string" ? value.trim() : (typeof value === "number" ? String(value) : "");
  }

  function num(value) {
    if (value === null || value === undefined || value === "" || typeof value === "boolean") return null;
    var n = Number(value);
    return isFinite(n) ? n : null;
  }

  function obj(value) { return value && typeof value === "object" && !Array.isArray(value) ? value : null; }
  function list(value) { return Array.isArray(value) ? value : []; }

  function money(value, currency) {
    var n = num(value);
    if (n === null) return "";
    var code = /^[A-Za-z]{3}$/.test(String(currency || "")) ? String(currency).toUpperCase() : "EUR";
    try {
      return new Intl.NumberFormat(locale, { style: "currency", currency: code }).format(n);
    } catch (e) {
      return code + " " + n.toFixed(2);
    }
  }

  function shortDate(value) {
    var m = /^(\d{4})-(\d{2})-(\d{2})/.exec(str(value));
    if (!m) return "";
    var d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3]));
    if (isNaN(d.getTime())) return "";
    try {
      return new Intl.DateTimeFormat(locale, { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" }).format(d);
    } catch (e) {
      return m[0];
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
    else return d || str(gtin);
    var out = [], at = 0;
    groups.forEach(function (n) { out.push(d.slice(at, at + n)); at += n; });
    return out.join(" ");
  }

  function byId(id) { return document.getElementById(id); }

  function text(id, value) {
    var node = byId(id);
    if (node) node.textContent = value === null || value === undefined ? "" : String(value);
    return node;
  }

  function toggle(id, show) {
    var node = typeof id === "string" ? byId(id) : id;
    if (node) node.classList.toggle("hidden", !show);
    return node;
  }

  function el(tag, className, content) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined && content !== null && content !== "") node.textContent = String(content);
    return node;
  }

  function clear(id) {
    var node = byId(id);
    if (node) while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  /** Keep a dash with the word before it, so a line never starts with "— please ask staff". */
  function tidy(value) {
    return String(value || "").replace(/ ([\u2013\u2014]) /g, "\u00a0$1 ");
  }

  /** Only pictures the page's CSP allows and that cannot leave the store LAN: data: images or our own paths. */
  function safeImage(value) {
    var s = str(value);
    if (/^data:image\/(png|jpeg|gif|webp|svg\+xml)[;,]/i.test(s)) return s;
    if (/^\/(?!\/)[^\s\\]*$/.test(s)) return s;
    return "";
  }

  function setImage(img, src, alt) {
    if (src) {
      img.src = src;
      img.alt = alt || "";
      img.classList.remove("hidden");
    } else {
      img.removeAttribute("src");
      img.alt = "";
      img.classList.add("hidden");
    }
    return !!src;
  }

  /** Stars as one masked bar: the width of the gold part is the rating. */
  function setStars(node, rating) {
    var r = Math.max(0, Math.min(5, rating));
    node.style.setProperty("--pct", (r / 5 * 100).toFixed(1) + "%");
    node.setAttribute("aria-label", "Rated " + r.toFixed(1) + " out of 5");
  }

  function stars(rating, className) {
    var node = el("span", "stars " + (className || ""));
    node.setAttribute("role", "img");
    setStars(node, rating);
    return node;
  }

  var announcer = byId("announcer");
  function announce(message) {
    // Cleared first, so the same words twice in a row are read again.
    announcer.textContent = "";
    setTimeout(function () { announcer.textContent = message; }, 60);
  }

  /* ---------------- views ---------------- */

  var timer = null;
  var current = "idle";
  var socket = null;
  var shown = { gtin: null };

  function clearTimer() { if (timer) { clearTimeout(timer); timer = null; } }

  function setView(view) {
    current = view;
    app.dataset.view = view;
    resetButtons();
  }

  function personal(view) { return view === "member" || view === "product" || view === "unknown" || view === "message"; }

  /** Member, product and message screens clear themselves: nothing personal lingers.
   *  The kiosk server ends an idle session itself (and says {"view": "idle"}); this is the fallback
   *  for when it can't, e.g. the page lost its connection. It runs a little later than the server's
   *  timer and does not emit "done": that would record the session as ended by the shopper. */
  var IDLE_GRACE_S = 5;
  function armIdleTimer() {
    clearTimer();
    timer = setTimeout(function () {
      timer = null;
      if (personal(current)) showIdle();
    }, (idleTimeoutS + IDLE_GRACE_S) * 1000);
  }

  function setMemberChip(member) {
    var m = obj(member);
    var first = m ? str(m.first_name) : "";
    var tier = m ? str(m.tier) : "";
    text("member-chip-initial", first ? first.charAt(0).toUpperCase() : "");
    text("member-chip-name", first || (m ? "Member" : ""));
    text("member-chip-tier", tier);
    toggle("member-chip-tier", !!tier);
    toggle("member-chip", !!m);
  }

  /** Drop whatever the last shopper saw, so it can't be read back from the page. */
  function forget() {
    ["member-title", "member-points-value", "member-tier", "member-offers-note-text", "product-name",
     "product-brand", "product-description", "product-category", "product-price", "product-was-value",
     "product-promo-label", "product-promo-text", "stock-here-text", "stock-here-location-text", "stock-nearby-text",
     "stock-online-text", "product-offers-note-text", "product-offer-title", "product-offer-code-value",
     "product-rating-value", "product-rating-count", "product-reviews-more", "unknown-code", "rejected-text", "message-text"
    ].forEach(function (id) { text(id, ""); });
    ["member-offers", "member-wishlist", "product-reviews"].forEach(clear);
    ["product-img", "product-qr", "product-offer-qr"].forEach(function (id) { setImage(byId(id), ""); });
    setMemberChip(null);
    shown.gtin = null;
  }

  function showIdle() {
    clearTimer();
    forget();
    setView("idle");
    announce("Ready. Scan a product or your member QR.");
  }

  /* ---- member ---- */

  function coupon(offer) {
    var o = obj(offer) || {};
    var item = el("li", "coupon");
    var code = str(o.code);
    var qr = safeImage(o.code_qr);
    if (qr) {
      var img = el("img", "coupon-qr");
      setImage(img, qr, code ? "Scannable code " + code : "Scannable offer code");
      item.appendChild(img);
    } else {
      item.classList.add("no-qr");
    }
    var bodyEl = el("div", "coupon-body");
    bodyEl.appendChild(el("p", "coupon-title", str(o.title) || "Your offer"));
    if (str(o.text)) bodyEl.appendChild(el("p", "coupon-text", str(o.text)));
    if (code) {
      var codeEl = el("p", "coupon-code");
      codeEl.appendChild(el("span", "coupon-code-label", "Code"));
      codeEl.appendChild(document.createTextNode(" "));
      codeEl.appendChild(el("span", "coupon-code-value", code));
      bodyEl.appendChild(codeEl);
    }
    item.appendChild(bodyEl);
    return item;
  }

  function showMember(p) {
    forget();
    var first = str(p.first_name);
    text("member-title", first ? "Welcome back, " + first : "Welcome back!");
    var tier = str(p.tier);
    var tierEl = text("member-tier", tier);
    tierEl.className = "tier-badge" + (tier ? " tier-" + tier.toLowerCase().replace(/[^a-z]/g, "") : " hidden");
    var points = num(p.points);
    text("member-points-value", points !== null ? numberFormat.format(points) : "");
    toggle("member-points", points !== null);

    var offers = list(p.offers).filter(function (o) { return obj(o) && (str(o.title) || str(o.code)); });
    var offersEl = byId("member-offers");
    offers.forEach(function (o) { offersEl.appendChild(coupon(o)); });
    offersEl.dataset.count = String(Math.min(offers.length, 3));
    var note = str(p.offers_note);
    var hasNote = !!note && !offers.length;
    text("member-offers-note-text", hasNote ? note : "");
    toggle("member-offers-note", hasNote);
    toggle("member-offers-hint", offers.length > 0);
    toggle("member-offers", offers.length > 0);
    toggle("member-offers-panel", offers.length > 0 || hasNote);
    byId("member-offers-panel").classList.toggle("is-note", hasNote);

    var wishlist = list(p.wishlist_here).filter(function (w) { return obj(w) && str(w.name); }).slice(0, 4);
    var wishEl = byId("member-wishlist");
    wishlist.forEach(function (w) {
      var li = el("li", "wish");
      li.appendChild(el("span", "wish-heart"));
      var what = el("span", "wish-what");
      what.appendChild(el("span", "wish-name", str(w.name)));
      if (str(w.location)) {
        var where = el("span", "wish-where");
        where.appendChild(el("span", "pin"));
        where.appendChild(el("span", "", str(w.location)));
        what.appendChild(where);
      }
      li.appendChild(what);
      wishEl.appendChild(li);
    });
    wishEl.dataset.count = String(wishlist.length);
    toggle("member-wishlist-panel", wishlist.length > 0);

    var hasBody = offers.length > 0 || hasNote || wishlist.length > 0;
    byId("member-body").classList.toggle("hidden", !hasBody);
    byId("member-body").classList.toggle("two-up", (offers.length > 0 || hasNote) && wishlist.length > 0);
    toggle("member-sub", !hasBody);
    // offers or wishlist items: header line, panels and action bar; else a centred welcome
    app.classList.toggle("member-rich", offers.length > 0 || wishlist.length > 0);

    setView("member");
    armIdleTimer();
    requestAnimationFrame(function () {
      // more offers than fit: the list scrolls, and fades at the edge to say so
      offersEl.classList.toggle("is-overflowing", offersEl.scrollHeight > offersEl.clientHeight + 1);
    });
    var words = [first ? "Welcome back, " + first + "." : "Welcome back."];
    if (tier) words.push(tier + " member.");
    if (points !== null) words.push(numberFormat.format(points) + " points.");
    if (offers.length) words.push(offers.length === 1 ? "One personal offer." : offers.length + " personal offers.");
    else if (hasNote) words.push(note + ".");
    if (wishlist.length) words.push(wishlist.length + " items from your wishlist are in stock here.");
    announce(words.join(" "));
  }

  /* ---- product ---- */

  var CATEGORIES = {
    shoes: "shoes", shoe: "shoes", footwear: "shoes", boots: "shoes", sneakers: "shoes",
    jackets: "jackets", jacket: "jackets", coats: "jackets", outerwear: "jackets",
    knitwear: "knitwear", knit: "knitwear", sweaters: "knitwear", jumpers: "knitwear",
    jeans: "jeans", denim: "jeans", trousers: "jeans", pants: "jeans",
    tshirts: "tshirts", tshirt: "tshirts", tees: "tshirts", tops: "tshirts",
    bags: "bags", bag: "bags",
    accessories: "accessories", accessory: "accessories",
    sportswear: "sportswear", sport: "sportswear", sports: "sportswear", activewear: "sportswear",
    dresses: "dresses", dress: "dresses", skirts: "dresses",
    shirts: "shirts", shirt: "shirts", blouses: "shirts",
    outdoor: "outdoor"
  };

  function categoryLabel(value) {
    var s = str(value).replace(/[-_]+/g, " ");
    if (/^t shirts?$/i.test(s)) return "T-shirts";
    return s ? s.charAt(0).toUpperCase() + s.slice(1) : "";
  }

  function showVisual(p) {
    var img = byId("product-img");
    var key = CATEGORIES[str(p.category).toLowerCase().replace(/[^a-z]/g, "")] || "tag";
    byId("product-picto-use").setAttribute("href", "#pic-" + key);
    byId("product-visual").dataset.category = key;
    text("product-category", categoryLabel(p.category));
    var src = safeImage(p.image_url);
    byId("product-visual").classList.toggle("has-photo", !!src);
    setImage(img, src, "");
  }

  function stockLines(p) {
    var stock = obj(p.stock);
    if (!stock) { toggle("product-stock", false); return ""; }
    var spoken = [];
    var here = obj(stock.here);
    var hereRow = byId("stock-here");
    if (here) {
      var qty = num(here.quantity);
      var location = str(here.location);
      var state = qty === null ? "unknown" : qty > 0 ? (qty <= 2 ? "low" : "ok") : "out";
      hereRow.dataset.state = state;
      var words = state === "unknown" ? "Ask us about stock here"
        : state === "out" ? "Sold out in this store"
        : state === "low" ? "Only " + numberFormat.format(qty) + " left here"
        : numberFormat.format(qty) + " in stock here";
      text("stock-here-text", words);
      text("stock-here-location-text", qty > 0 ? location : "");
      toggle("stock-here-location", qty > 0 && !!location);
      spoken.push(words + (qty > 0 && location ? ", " + location : ""));
    }
    toggle(hereRow, !!here);

    var nearbyRow = byId("stock-nearby");
    var nearby = list(stock.nearby).filter(function (s) { return obj(s) && (num(s.quantity) || 0) > 0; });
    if (Array.isArray(stock.nearby)) {
      var names = nearby.slice(0, 2).map(function (s) {
        return numberFormat.format(num(s.quantity)) + " at " + (str(s.name) || str(s.store) || "another store");
      });
      var nearbyWords = names.length ? "Nearby: " + names.join(", ") + (nearby.length > 2 ? " and more" : "")
        : "Not in stock in nearby stores";
      nearbyRow.dataset.state = names.length ? "ok" : "out";
      text("stock-nearby-text", nearbyWords);
      // the shorter form for a narrow screen: the best-stocked store only
      nearbyRow.dataset.short = names.length > 1 ? "Nearby: " + names[0] + " +" + (nearby.length - 1) + " more" : "";
      spoken.push(nearbyWords);
    }
    toggle(nearbyRow, Array.isArray(stock.nearby));

    var online = obj(stock.online);
    var onlineRow = byId("stock-online");
    if (online && typeof online.available === "boolean") {
      onlineRow.dataset.state = online.available ? "ok" : "out";
      text("stock-online-text", online.available ? "Available online" : "Sold out online");
      spoken.push(online.available ? "Available online" : "Sold out online");
    }
    toggle(onlineRow, !!(online && typeof online.available === "boolean"));
    toggle("product-stock", spoken.length > 0);
    return spoken.join(". ");
  }

  function reviewItem(r) {
    var li = el("li", "review");
    var head = el("p", "review-head");
    var rating = num(r.rating);
    if (rating !== null) head.appendChild(stars(rating, "stars-small"));
    if (str(r.title)) head.appendChild(el("span", "review-title", str(r.title)));
    if (head.firstChild) li.appendChild(head);
    if (str(r.text)) li.appendChild(el("p", "review-text", str(r.text)));
    var by = [str(r.author), shortDate(r.date)].filter(Boolean).join(" · ");
    if (by) li.appendChild(el("p", "review-by", by));
    return li;
  }

  /** Reviews that would be cut off are left out rather than scrolled: the screen never scrolls.
   *  When not even one fits with a couple of lines, the card keeps the rating and points to the phone. */
  /** Nearby stores on one line; on two when there is room; else only the best-stocked one. */
  function fitProduct() {
    var row = byId("stock-nearby");
    var nearbyText = byId("stock-nearby-text");
    var main = document.querySelector(".product-main");
    row.classList.remove("is-wrapped");
    if (nearbyText.scrollWidth > nearbyText.clientWidth + 1) {
      row.classList.add("is-wrapped");
      if (main.scrollHeight > main.clientHeight + 1 || nearbyText.scrollHeight > nearbyText.clientHeight + 1) {
        row.classList.remove("is-wrapped");
        if (row.dataset.short) nearbyText.textContent = row.dataset.short;
      }
    }
    fitReviews();
  }

  function fitReviews() {
    var listEl = byId("product-reviews");
    var items = Array.prototype.slice.call(listEl.children);
    if (current !== "product") return;
    if (!items.length) { sideLayout(); return; }
    var card = byId("product-reviews-card");
    card.classList.remove("hidden");
    items.forEach(function (li) { li.classList.remove("hidden", "is-tight", "is-tiny"); });
    var more = byId("product-reviews-more");
    var count = num(card.dataset.count) || items.length;
    // measured with the "more" line in place, so nothing is cut when it shows
    more.textContent = "More reviews on your phone";
    toggle(more, !!byId("product-qr").getAttribute("src"));
    var bottom = listEl.getBoundingClientRect().bottom + 1;
    var kept = 0, full = true;
    // Each review whole; one that doesn't fit gets fewer lines, then only its headline; then the rest go.
    items.forEach(function (li) {
      if (!full) { li.classList.add("hidden"); return; }
      var fits = ["", "is-tight", "is-tiny"].some(function (cls) {
        li.classList.remove("is-tight", "is-tiny");
        if (cls) li.classList.add(cls);
        return li.getBoundingClientRect().bottom <= bottom;
      });
      if (fits) kept += 1;
      else { li.classList.add("hidden"); full = false; }
    });
    toggle(card, kept > 0);
    if (!(kept && count > kept)) { more.textContent = ""; toggle(more, false); }
    sideLayout();
  }

  /** The QR code alone in its column gets the room: bigger, and easier to scan from a phone. */
  function sideLayout() {
    var side = document.querySelector(".product-side");
    var alone = ["product-offer", "product-offers-note", "product-reviews-card"].every(function (id) {
      return byId(id).classList.contains("hidden");
    });
    side.classList.toggle("qr-hero", alone);
  }

  function showUnknown(p) {
    forget();
    shown.gtin = /^\d{14}$/.test(str(p.gtin)) ? str(p.gtin) : null;
    var code = formatGtin(p.gtin);
    text("unknown-code", code);
    toggle("unknown-code", !!code);
    setMemberChip(p.member);
    setView("unknown");
    armIdleTimer();
    announce("We can’t find this product. A colleague can tell you more about it." + (code ? " Code " + code + "." : ""));
  }

  function showProduct(p) {
    var name = str(p.name);
    // Older servers send no "known"; a product without a name is one the catalog did not know.
    if (p.known === false || (p.known === undefined && !name)) { showUnknown(p); return; }
    forget();
    shown.gtin = /^\d{14}$/.test(str(p.gtin)) ? str(p.gtin) : null;

    var nameEl = text("product-name", name || "Product " + formatGtin(p.gtin));
    nameEl.classList.toggle("is-long", (name || "").length > 34);
    nameEl.classList.toggle("is-very-long", (name || "").length > 52);
    text("product-brand", str(p.brand));
    toggle("product-brand", !!str(p.brand));
    text("product-description", str(p.description));
    showVisual(p);

    // price, compare-at price and promotion: the same as online
    var price = money(p.price, p.currency);
    var was = num(p.compare_at_price);
    var showWas = price && was !== null && was > (num(p.price) || 0);
    text("product-price", price || "Ask a colleague for the price");
    byId("product-price").classList.toggle("is-missing", !price);
    byId("product-price").classList.toggle("is-sale", !!showWas);
    text("product-was-value", showWas ? money(was, p.currency) : "");
    toggle("product-was", !!showWas);
    var promo = obj(p.promotion);
    var promoLabel = promo ? str(promo.label) : "";
    var promoText = promo ? str(promo.text) : "";
    text("product-promo-label", promoLabel);
    text("product-promo-text", promoText);
    toggle("product-promo-label", !!promoLabel);
    toggle("product-promo-text", !!promoText);
    toggle("product-promo", !!(promoLabel || promoText));

    var stockWords = stockLines(p);

    // this member's offer on this product, or where to find it when the hub can't answer
    var member = obj(p.member);
    setMemberChip(member);
    var offer = obj(p.member_offer);
    var offerTitle = offer ? str(offer.title) || str(offer.text) : "";
    var offerCode = offer ? str(offer.code) : "";
    var first = member ? str(member.first_name) : "";
    text("product-offer-kicker", first ? "For you, " + first : "Your member offer");
    text("product-offer-title", offerTitle || (offerCode ? "Member offer" : ""));
    text("product-offer-code-value", offerCode);
    toggle("product-offer-code", !!offerCode);
    var offerQr = offer ? safeImage(offer.code_qr) : "";
    setImage(byId("product-offer-qr"), offerQr, offerCode ? "Scannable code " + offerCode : "Scannable offer code");
    byId("product-offer").classList.toggle("no-qr", !offerQr);
    toggle("product-offer", !!(offerTitle || offerCode));
    var note = str(p.offers_note);
    text("product-offers-note-text", note);
    toggle("product-offers-note", !!note && !(offerTitle || offerCode));

    // rating and top reviews
    var rating = obj(p.rating);
    var average = rating ? num(rating.average) : null;
    var count = rating ? num(rating.count) : null;
    var reviews = list(p.reviews).filter(obj).slice(0, 3);
    var hasRating = average !== null && (count === null || count > 0);
    text("product-rating-value", hasRating ? average.toFixed(1) : "");
    toggle("product-rating-value", hasRating);
    toggle("product-rating-stars", hasRating);
    if (hasRating) setStars(byId("product-rating-stars"), average);
    text("product-rating-count", count ? (count === 1 ? "1 review" : numberFormat.format(count) + " reviews")
      : hasRating ? "" : "No reviews yet");
    byId("product-rating").classList.toggle("is-none", !hasRating);
    toggle("product-rating", hasRating || "rating" in p);  // an older server says nothing about reviews
    var reviewsEl = byId("product-reviews");
    reviews.forEach(function (r) { reviewsEl.appendChild(reviewItem(r)); });
    toggle("product-reviews-card", reviews.length > 0);
    byId("product-reviews-card").dataset.count = String(count || reviews.length);

    // continue on the phone: the product's online page
    var qr = safeImage(p.online_qr);
    setImage(byId("product-qr"), qr, "QR code: this product in the online shop");
    toggle("product-qr-card", !!qr);

    var cart = byId("product-cart");
    toggle(cart, p.can_send_to_cart === true && !!shown.gtin);

    setView("product");
    armIdleTimer();
    requestAnimationFrame(fitProduct);

    var words = [name || "Product " + formatGtin(p.gtin)];
    if (str(p.brand)) words[0] += " by " + str(p.brand);
    if (price) words.push((showWas ? "Now " : "") + price + (promoLabel ? ", " + promoLabel : ""));
    if (offerTitle) words.push("Your offer: " + offerTitle);
    if (stockWords) words.push(stockWords);
    if (hasRating) words.push("Rated " + average.toFixed(1) + " out of 5" + (count ? " from " + count + " reviews" : ""));
    announce(words.join(". ") + ".");
  }

  function showRejected(p) {
    clearTimer();
    forget();
    var message = tidy(str(p.message)) || "That code isn’t one we know. Try a product barcode or your member QR.";
    text("rejected-text", message);
    setView("rejected");
    // restart the little countdown bar
    var bar = byId("rejected-bar");
    bar.classList.remove("run");
    void bar.offsetWidth;
    bar.style.setProperty("--countdown", REJECTED_MS + "ms");
    bar.classList.add("run");
    timer = setTimeout(function () { timer = null; if (current === "rejected") showIdle(); }, REJECTED_MS);
    announce("Let’s try that again. " + message);
  }

  function showUnavailable(p) {
    clearTimer();
    forget();
    var message = tidy(str(p.message)) || "Scanner unavailable — please ask staff";
    text("unavailable-text", message);
    setView("unavailable"); // stays until the server says otherwise
    announce("Sorry about this. " + message);
  }

  function showMessage(p) {
    forget();
    var message = tidy(str(p.text) || str(p.message));
    text("message-text", message);
    setView("message");
    armIdleTimer();
    announce(message);
  }

  function onScreen(payload) {
    var p = obj(payload) || {};
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

  /* ---------------- notices ("A colleague is on the way") ---------------- */

  var toastEl = byId("toast");
  var toastTimer = null;

  function showNotice(payload) {
    var p = obj(payload) || {};
    var kind = ["assist", "cart", "error"].indexOf(p.kind) >= 0 ? p.kind : "info";
    var message = tidy(str(p.text));
    if (!message) return;
    if (toastTimer) clearTimeout(toastTimer);
    toastEl.dataset.kind = kind;
    text("toast-text", message);
    toastEl.classList.add("is-shown");
    toastTimer = setTimeout(function () {
      toastTimer = null;
      toastEl.classList.remove("is-shown");
    }, NOTICE_MS);
    // The button that asked gets its answer.
    if (kind === "assist") settle("assist", "Help is on the way", true);
    else if (kind === "cart") settle("cart", "In your online cart", true);
    else if (kind === "error") { settle("assist", null, false); settle("cart", null, false); }
    if (personal(current)) armIdleTimer();
  }

  /* ---------------- IT's banner ("Store closes in 10 minutes") ---------------- */

  var bannerEl = byId("banner");
  var bannerTimer = null;
  var LONG_BANNER = 90; // characters: a longer message gets a smaller type so it stays within three lines

  function hideBanner() {
    if (bannerTimer) { clearTimeout(bannerTimer); bannerTimer = null; }
    bannerEl.classList.remove("is-shown", "is-long");
    text("banner-text", "");
    app.classList.remove("has-banner");
    if (current === "product") requestAnimationFrame(fitReviews);
  }

  /** {"text", "until_ms"}: shown over whatever view is on, until until_ms by this page's clock
   *  (the server sends it again after a reload; a time already past shows nothing). */
  function showBanner(payload) {
    var p = obj(payload) || {};
    var message = tidy(str(p.text));
    var until = num(p.until_ms);
    var left = until === null ? 0 : until - Date.now();
    if (!message || left <= 0) { hideBanner(); return; }
    if (bannerTimer) clearTimeout(bannerTimer);
    bannerEl.classList.toggle("is-long", message.length > LONG_BANNER);
    text("banner-text", message);
    bannerEl.classList.add("is-shown");
    app.classList.add("has-banner");
    bannerTimer = setTimeout(hideBanner, Math.min(left, 0x7fffffff));
    // less room for the view: the product screen fits its reviews again
    if (current === "product") requestAnimationFrame(fitReviews);
  }

  /* ---------------- buttons ---------------- */

  var pending = {};

  function buttons(action) {
    return Array.prototype.slice.call(document.querySelectorAll("[data-action='" + action + "']"));
  }

  function labelOf(button) { return button.querySelector(".btn-label") || button; }

  /** A tapped button stays disabled until its notice arrives; then it says what happened. */
  function markPending(action) {
    buttons(action).forEach(function (b) {
      if (!b.dataset.label) b.dataset.label = labelOf(b).textContent;
      b.disabled = true;
      b.setAttribute("aria-busy", "true");
      b.classList.add("is-pending");
    });
    if (pending[action]) clearTimeout(pending[action]);
    pending[action] = setTimeout(function () { settle(action, null, false); }, PENDING_MS);
  }

  function settle(action, doneLabel, done) {
    if (pending[action]) { clearTimeout(pending[action]); pending[action] = null; }
    buttons(action).forEach(function (b) {
      if (!b.classList.contains("is-pending") && !done) return;
      b.removeAttribute("aria-busy");
      b.classList.remove("is-pending");
      if (done && doneLabel) {
        if (!b.dataset.label) b.dataset.label = labelOf(b).textContent;
        labelOf(b).textContent = doneLabel;
        b.classList.add("is-done");
        b.disabled = true;
      } else if (!b.classList.contains("is-done")) {
        b.disabled = false;
      }
    });
  }

  /** A new screen: every button is fresh again. */
  function resetButtons() {
    Object.keys(pending).forEach(function (k) { if (pending[k]) clearTimeout(pending[k]); pending[k] = null; });
    Array.prototype.slice.call(document.querySelectorAll("button[data-action]")).forEach(function (b) {
      if (b.dataset.label) labelOf(b).textContent = b.dataset.label;
      b.disabled = false;
      b.removeAttribute("aria-busy");
      b.classList.remove("is-pending", "is-done");
    });
  }

  function emit(name, data) {
    if (!socket) return false;
    if (data === undefined) socket.emit(name); else socket.emit(name, data);
    return true;
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("button[data-action]") : null;
    if (!target || target.disabled) return;
    event.preventDefault();
    var action = target.dataset.action;
    if (action === "done") {
      if (socket && socket.connected) socket.emit("done");
      showIdle();
    } else if (action === "assist") {
      if (emit("assist", { gtin: current === "product" || current === "unknown" ? shown.gtin : null })) markPending("assist");
    } else if (action === "cart") {
      if (shown.gtin && emit("send_to_cart", { gtin: shown.gtin })) markPending("cart");
    }
  });
  // Any touch counts as activity: keep the current screen a little longer.
  document.addEventListener("pointerdown", function () {
    if (personal(current)) armIdleTimer();
  }, { passive: true });
  document.addEventListener("contextmenu", function (event) { event.preventDefault(); });
  window.addEventListener("resize", function () { if (current === "product") fitReviews(); });
  // A product photo that fails to load falls back to the category pictogram.
  byId("product-img").addEventListener("error", function () {
    setImage(byId("product-img"), "");
    byId("product-visual").classList.remove("has-photo");
  });

  /* ---------------- connection ---------------- */

  function setOnline(online) {
    offlineEl.classList.toggle("hidden", online);
    body.classList.toggle("is-offline", !online);
    body.dataset.socket = online ? "connected" : "disconnected";
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
    socket.on("notice", showNotice);
    socket.on("banner", showBanner);
    // New brand settings: load the page again; on connecting the server sends the view and banner back.
    socket.on("reload", function () { location.reload(); });
    // The heartbeat: the kiosk tells the browser's watchdog (kiosk/browser.py) when this page was last
    // heard from, and a page whose script stopped, or that cannot reach the kiosk any more, is restarted.
    setInterval(function () { if (socket.connected) socket.emit("alive"); }, HEARTBEAT_MS);
  }

  applyBrand();
  clearTimer();
  forget();
  setView("idle");
  connect();
})();
