/* Omnikiosk staff tablet: the live floor — arrivals and help requests, newest first.
 *
 * Loads /api/feed, then follows the /staff Socket.IO namespace ("floor" items). After a reconnect it asks
 * for everything after the last feed id it has, so a tablet that lost Wi-Fi shows what it missed, once.
 * Claims, "served" and "I'm on it" go to the hub; every tablet sees them through the feed.
 */
(function () {
  "use strict";

  var O = window.Omni;
  var el = O.el, append = O.append, icon = O.icon, arr = O.arr, obj = O.obj;

  var MAX_CARDS = 100;
  var CHANNELS = { web: "Web", app: "App", marketplace: "Marketplace", store: "In store" };
  var STATUSES = {
    ready_for_pickup: "Ready for pickup", placed: "Placed", shipped: "Shipped", delivered: "Delivered",
    picked_up: "Picked up", cancelled: "Cancelled", returned: "Returned"
  };
  var CHIP_ICONS = { cart: "cart", wishlist: "heart", wishlist_here: "heart", unavailable: "alert", member: "user",
                     first_visit: "first", help: "hand" };

  var feed = document.getElementById("feed");
  var emptyEl = document.getElementById("feed-empty");
  var loadingEl = document.getElementById("feed-loading");
  var errorEl = document.getElementById("feed-error");
  var countEl = document.getElementById("feed-count");
  if (!feed) return;

  var cards = new Map();     // feed id -> {node, kind, ...}
  var order = [];            // feed ids of cards, newest first
  var arrivals = new Map();  // arrival id -> entry
  var assists = new Map();   // assist id -> entry
  var applied = new Set();   // feed ids already applied (live and resumed items overlap)
  var lastId = 0;
  var loaded = false;
  var batching = false;

  // Two columns on wide screens, filled alternately (newest top-left, next top-right, ...), so cards of
  // different heights stack without the holes a row grid leaves. One column on portrait and phones.
  var wide = window.matchMedia("(min-width: 1000px)");
  var columns = [el("div", "feed-col"), el("div", "feed-col")];
  append(feed, columns[0], columns[1]);

  function layout() {
    var two = wide.matches;
    feed.classList.toggle("two-col", two);
    order.forEach(function (id, i) {
      columns[two ? i % 2 : 0].appendChild(cards.get(id).node); // appendChild moves; open <details> stay open
    });
  }
  if (wide.addEventListener) wide.addEventListener("change", layout);
  else if (wide.addListener) wide.addListener(layout);

  /* ---------------- the arrival card ---------------- */

  function renderArrival(entry) {
    var card = entry.data;
    var consent = card.consent !== false;
    var customer = consent && card.customer ? card.customer : null;
    var named = !!(customer && (customer.first_name || customer.last_name));
    var flags = arr(card.flags);
    var pickups = flags.filter(function (f) { return f && f.kind === "pickup"; });
    var others = flags.filter(function (f) { return f && f.kind !== "pickup" && !(f.kind === "member" && !named); });

    var root = el("article", "card");
    root.dataset.feedId = String(entry.feedId);
    root.dataset.arrivalId = String(entry.arrivalId);
    if (named && customer.tier) root.classList.add(O.tierClass(customer.tier));
    if (pickups.length) root.classList.add("has-pickup");
    if (card.late) root.classList.add("card-late");
    if (!consent) root.classList.add("card-private");

    if (card.late) {
      var banner = append(el("div", "late-banner"), icon("clock"), el("span", null, "Late — replayed after an outage"));
      var scanned = O.parseTime(card.at);
      if (scanned) append(banner, el("span", "late-when", "scanned " + O.clockFormat.format(scanned)));
      root.appendChild(banner);
    }

    root.appendChild(renderHead(card, customer, named, consent));
    if (!consent) {
      // Only that a member checked in, where and when: no name, no history, nothing to open.
      entry.actions = el("div", "card-actions");
      root.appendChild(entry.actions);
      renderActions(entry);
      return root;
    }

    var note = profileNote(card);
    if (note) root.appendChild(note);

    entry.flagBox = el("div", "card-flags");
    pickups.forEach(function (flag) {
      var banner = el("div", "pickup-flag");
      banner.setAttribute("role", "note");
      append(banner, append(el("span", "pickup-icon"), icon("bag")),
             append(el("span"), el("span", "pickup-kicker", "Pickup ready here"), el("span", null, pickupText(flag.text))));
      entry.flagBox.appendChild(banner);
    });
    entry.chips = el("div", "chips");
    others.forEach(function (flag) { entry.chips.appendChild(chip(flag.kind, flag.text)); });
    entry.flagBox.appendChild(entry.chips);
    root.appendChild(entry.flagBox);

    entry.latest = el("p", "card-latest hidden");
    entry.latest.setAttribute("aria-live", "polite");
    root.appendChild(entry.latest);

    var sections = renderSections(card);
    if (sections.childNodes.length) root.appendChild(sections);
    else if (named && card.profile_source !== "unavailable" && card.profile_source !== "unknown") {
      root.appendChild(el("p", "card-foot-empty", "No online orders or activity yet."));
    }
    entry.actions = el("div", "card-actions");
    root.appendChild(entry.actions);
    renderActions(entry);
    updateChips(entry);
    return root;
  }

  function renderHead(card, customer, named, consent) {
    var head = el("div", "card-head");
    var avatar = el("div", "avatar");
    avatar.setAttribute("aria-hidden", "true");
    if (named && O.initials(customer)) avatar.textContent = O.initials(customer);
    else avatar.appendChild(icon(consent ? "user" : "lock"));

    var id = el("div", "card-id");
    var nameRow = el("div", "card-name-row");
    var title;
    if (!consent) title = el("h2", "card-name is-anon", "Member checked in");
    else if (named) title = el("h2", "card-name", O.fullName(customer));
    else title = el("h2", "card-name is-anon", customer && customer.id ? "Member " + customer.id : "Member checked in");
    nameRow.appendChild(title);
    if (customer && customer.tier) nameRow.appendChild(el("span", "tier-badge " + O.tierClass(customer.tier), customer.tier));

    var meta = el("p", "card-meta");
    append(meta, icon("kiosk"), "at kiosk ", el("span", "kiosk-tag", card.kiosk || "?"), el("span", "sep", "·"), O.agoNode(card.at));
    append(id, nameRow, meta);
    if (named && customer.member_since) {
      var since = O.parseTime(customer.member_since);
      if (since) id.appendChild(el("p", "card-since", "Member since " + since.getFullYear()));
    }
    append(head, avatar, id);

    if (customer) {
      var stats = el("div", "card-stats");
      if (customer.points !== null && customer.points !== undefined) {
        append(stats, append(el("div", "stat"), el("span", "stat-value", O.numberFormat.format(customer.points)),
                             el("span", "stat-label", "Points")));
      }
      if (customer.lifetime_value !== null && customer.lifetime_value !== undefined) {
        append(stats, append(el("div", "stat"), el("span", "stat-value", O.money(customer.lifetime_value, customer.currency, true)),
                             el("span", "stat-label", "Lifetime")));
      }
      if (stats.childNodes.length) head.appendChild(stats);
    }
    return head;
  }

  function profileNote(card) {
    if (card.profile_source === "cache") {
      var age = Number(card.profile_age_s);
      var ageText = isNaN(age) || card.profile_age_s === null ? "" :
        (age < 60 ? ", less than a minute old" : ", " + Math.round(age / 60) + " min old");
      return append(el("p", "card-note"), icon("cache"), "Profile from cache" + ageText);
    }
    if (card.profile_source === "unknown") {
      return append(el("p", "card-note note-warn"), icon("alert"), "This member ID isn’t known to the online store");
    }
    return null;
  }

  function chip(kind, text) {
    kind = String(kind || "");
    var known = CHIP_ICONS.hasOwnProperty(kind);
    var node = append(el("span", "chip" + (known ? " chip-" + kind.replace(/_/g, "-") : "")), icon(CHIP_ICONS[kind] || "check"),
                      el("span", null, text));
    node.dataset.kind = kind;
    return node;
  }

  /** "Pickup ready: order #1043, 2 items, shelf B" → "Order #1043, 2 items, shelf B" (the kicker says the rest). */
  function pickupText(text) {
    var t = String(text || "").replace(/^\s*pickup ready\s*[:\-–—]\s*/i, "");
    return t ? t.charAt(0).toUpperCase() + t.slice(1) : String(text || "");
  }

  function renderSections(card) {
    var sections = el("div", "card-sections");
    var orders = arr(card.orders);
    var wishlist = arr(card.wishlist);
    var cart = obj(card.cart);
    var cartItems = arr(cart.items);
    var viewed = arr(card.recently_viewed);

    if (orders.length) {
      var readyHere = orders.filter(function (o) { return o && o.ready_here; }).length;
      var open = orders.filter(function (o) { return o && ["placed", "shipped", "ready_for_pickup"].indexOf(o.status) >= 0; }).length;
      var hint = readyHere ? O.plural(readyHere, "ready here") : (open ? O.plural(open, "open order") : "");
      var body = el("div", "section-body");
      orders.forEach(function (order) { if (order) body.appendChild(renderOrder(order)); });
      sections.appendChild(section("box", "Orders", orders.length, hint, body, false));
    }
    if (cartItems.length) {
      var cartList = el("ul", "rows");
      cartItems.forEach(function (item) {
        var qty = Number(item.quantity) || 1;
        cartList.appendChild(itemRow(item.name, qty > 1 ? "× " + qty : null, O.money(item.price, item.currency), null));
      });
      var cartHint = cart.updated_at ? "updated " + O.timeAgo(O.parseTime(cart.updated_at)) : "";
      sections.appendChild(section("cart", "Cart", cartItems.length, cartHint, append(el("div", "section-body"), cartList), false));
    }
    if (wishlist.length) {
      var wishList = el("ul", "rows");
      wishlist.forEach(function (item) {
        wishList.appendChild(itemRow(item.name, null, O.money(item.price, item.currency),
                                     item.added_at ? "added " + O.timeAgo(O.parseTime(item.added_at)) : null));
      });
      sections.appendChild(section("heart", "Wishlist", wishlist.length, "", append(el("div", "section-body"), wishList), false));
    }
    if (viewed.length) {
      var viewList = el("ul", "rows");
      viewed.forEach(function (item) {
        var sub = [CHANNELS[item.channel] || item.channel, item.viewed_at ? O.timeAgo(O.parseTime(item.viewed_at)) : null]
          .filter(Boolean).join(" · ");
        viewList.appendChild(itemRow(item.name, null, null, sub || null));
      });
      sections.appendChild(section("eye", "Recently viewed", viewed.length, "", append(el("div", "section-body"), viewList), false));
    }
    return sections;
  }

  function section(iconName, label, count, hint, body, open) {
    var details = el("details", "section");
    if (open) details.open = true;
    var summary = el("summary");
    append(summary, icon(iconName), el("span", null, label), el("span", "section-count", count),
           el("span", "section-hint", hint || ""));
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
    if (order.ready_here && order.pickup && order.pickup.shelf) top.appendChild(el("span", "shelf-tag", "Shelf " + order.pickup.shelf));
    if (order.total !== null && order.total !== undefined) top.appendChild(el("span", "order-total", O.money(order.total, order.currency)));
    box.appendChild(top);

    var items = arr(order.items);
    var metaBits = [];
    if (order.placed_at) metaBits.push("placed " + O.dateFormat.format(O.parseTime(order.placed_at) || new Date()));
    if (items.length) {
      metaBits.push(O.plural(items.reduce(function (n, i) { return n + (Number(i.quantity) || 1); }, 0), "item"));
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

  /* ---------------- claims and service: who is looking after whom ---------------- */

  function customerOf(entry) {
    var card = entry.data;
    if (card.consent === false) return null;
    var customer = obj(card.customer);
    var id = entry.customerId || customer.id;
    return id ? { id: id, first: customer.first_name || "" } : null;
  }

  function renderActions(entry) {
    var box = O.clear(entry.actions);
    var state = entry.state;
    var who = customerOf(entry);
    var first = who && who.first ? who.first : "";
    if (state.served_by) {
      box.appendChild(append(el("span", "state-badge state-served"), icon("check"),
                             el("span", null, "Served by " + (state.served_by === O.me ? "you" : state.served_by))));
    } else if (state.claimed_by === O.me) {
      append(box, append(el("span", "state-badge state-mine"), icon("hand"),
                         el("span", null, first ? "You’re helping " + first : "You’re helping")),
             O.button("btn-primary btn-sm", "Mark served", function () { act(entry, "served"); }));
    } else if (state.claimed_by) {
      box.appendChild(append(el("span", "state-badge state-other"), icon("hand"),
                             el("span", null, state.claimed_by + " is helping")));
    } else {
      box.appendChild(O.button("btn-primary btn-sm btn-claim", first ? "I’m helping " + first : "I’m helping",
                               function () { act(entry, "claim"); }));
    }
    if (who) {
      var open = el("a", "btn btn-ghost btn-sm btn-open", "Open profile");
      open.href = "/customers/" + encodeURIComponent(who.id);
      box.appendChild(open);
    }
    entry.node && entry.node.classList.toggle("is-claimed", !!state.claimed_by && !state.served_by);
    entry.node && entry.node.classList.toggle("is-served", !!state.served_by);
  }

  function act(entry, what) {
    var buttons = entry.actions.querySelectorAll("button");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    O.api("POST", "/api/arrivals/" + entry.arrivalId + "/" + what).then(function () {
      // Every tablet, this one too, hears it through the feed; say it here at once all the same.
      if (what === "claim") entry.state.claimed_by = O.me;
      else entry.state.served_by = O.me;
      renderActions(entry);
    }).catch(function (error) {
      O.toast(error.message, "error");
      renderActions(entry);
    });
  }

  /** The help chip on an arrival card stays while a help request of that visit is open. */
  function updateChips(entry) {
    if (!entry.chips) return;
    var open = [];
    assists.forEach(function (a) { if (a.data.arrival_id === entry.arrivalId && !a.data.answered_by) open.push(a); });
    var existing = entry.chips.querySelector('[data-kind="help-live"]');
    if (existing) existing.parentNode.removeChild(existing);
    if (open.length) {
      var node = chip("help", "Needs help at kiosk " + (open[open.length - 1].data.kiosk || "?"));
      node.dataset.kind = "help-live";
      entry.chips.insertBefore(node, entry.chips.firstChild);
    }
  }

  /* ---------------- help requests ---------------- */

  function renderAssist(entry) {
    var data = entry.data;
    var product = data.product ? obj(data.product) : null;
    var root = el("article", "card card-assist");
    root.dataset.feedId = String(entry.feedId);
    root.dataset.assistId = String(data.assist_id);
    var head = el("div", "assist-head");
    var text = el("div", "assist-text");
    append(text, el("h2", "assist-title", "Help needed at kiosk " + (data.kiosk || "?")));
    var sub = el("p", "card-meta");
    if (data.first_name) append(sub, el("span", "assist-who", data.first_name), el("span", "sep", "·"));
    append(sub, O.agoNode(entry.at));
    text.appendChild(sub);
    if (product && product.name) {
      text.appendChild(append(el("p", "assist-product"), icon("tag"), el("span", null, product.name)));
    }
    append(head, append(el("span", "assist-icon"), icon("hand")), text);
    root.appendChild(head);
    entry.actions = el("div", "card-actions");
    root.appendChild(entry.actions);
    renderAssistActions(entry);
    return root;
  }

  function renderAssistActions(entry) {
    var box = O.clear(entry.actions);
    var by = entry.data.answered_by;
    if (entry.node) entry.node.classList.toggle("is-answered", !!by);
    if (by) {
      box.appendChild(append(el("span", "state-badge state-served"), icon("check"),
                             el("span", null, (by === O.me ? "You are" : by + " is") + " on it")));
      return;
    }
    box.appendChild(O.button("btn-primary btn-sm btn-answer", "I’m on it", function (event) {
      event.currentTarget.disabled = true;
      O.api("POST", "/api/assists/" + entry.data.assist_id + "/answer").then(function () {
        entry.data.answered_by = O.me;
        assistChanged(entry);
      }).catch(function (error) { O.toast(error.message, "error"); renderAssistActions(entry); });
    }));
  }

  function assistChanged(entry) {
    renderAssistActions(entry);
    var arrival = arrivals.get(entry.data.arrival_id);
    if (arrival) updateChips(arrival);
  }

  /* ---------------- applying feed items ---------------- */

  function addCard(feedId, entry) {
    var at = 0;
    while (at < order.length && order[at] > feedId) at++;  // newest (highest id) first, late ones by id too
    order.splice(at, 0, feedId);
    cards.set(feedId, entry);
    while (order.length > MAX_CARDS) {
      var oldest = cards.get(order.pop());
      if (oldest.node.parentNode) oldest.node.parentNode.removeChild(oldest.node);
      cards.delete(oldest.feedId);
      if (oldest.kind === "arrival") arrivals.delete(oldest.arrivalId);
      else assists.delete(oldest.data.assist_id);
    }
  }

  function highlight(node) {
    node.classList.add("is-new");
    node.addEventListener("animationend", function () { node.classList.remove("is-new"); }, { once: true });
  }

  var handlers = {
    arrival: function (item, live) {
      var data = obj(item.data);
      var entry = { kind: "arrival", feedId: item.id, arrivalId: item.arrival_id, customerId: item.customer_id,
                    data: data, state: { claimed_by: obj(data.state).claimed_by || null,
                                         served_by: obj(data.state).served_by || null } };
      if (arrivals.has(entry.arrivalId)) return;
      entry.node = renderArrival(entry);
      arrivals.set(entry.arrivalId, entry);
      addCard(item.id, entry);
      if (live && !data.late) { highlight(entry.node); O.ring(); }  // a replayed (late) arrival never rings
    },
    assist: function (item, live) {
      var data = obj(item.data);
      var entry = { kind: "assist", feedId: item.id, at: item.at, data: data };
      entry.node = renderAssist(entry);
      assists.set(data.assist_id, entry);
      addCard(item.id, entry);
      var arrival = arrivals.get(data.arrival_id);
      if (arrival) updateChips(arrival);
      if (live) { highlight(entry.node); O.ring(); }
    },
    claim: function (item) { setState(item, "claimed_by"); },
    served: function (item) { setState(item, "served_by"); },
    assist_answered: function (item) {
      var data = obj(item.data);
      var entry = assists.get(data.assist_id);
      if (!entry) return;
      entry.data.answered_by = data.by;
      assistChanged(entry);
    },
    activity: function (item) {
      var data = obj(item.data);
      var entry = arrivals.get(data.arrival_id);
      if (!entry || !entry.latest) return;
      var text = activityText(data);
      if (!text) return;
      O.clear(entry.latest);
      append(entry.latest, icon(data.type === "offer.shown" ? "tag" : "scan"),
             append(el("span", "latest-text"), el("span", null, text), " ", O.agoNode(item.at, "latest-when")));
      entry.latest.classList.remove("hidden");
    }
  };

  function setState(item, field) {
    var data = obj(item.data);
    var entry = arrivals.get(data.arrival_id || item.arrival_id);
    if (!entry) return;
    entry.state[field] = data.by;
    renderActions(entry);
  }

  function activityText(data) {
    var product = obj(data.product);
    if (data.type === "scan.product") return "Scanned " + (product.name || "a product");
    if (data.type === "offer.shown") return "Saw the offer " + (data.offer || "");
    if (data.type === "assist.requested") return "Asked for help" + (product.name ? " with " + product.name : "");
    return "";
  }

  function applyItems(items, live) {
    items.slice().sort(function (a, b) { return a.id - b.id; }).forEach(function (item) {
      if (!item || typeof item.id !== "number" || applied.has(item.id)) return;
      applied.add(item.id);
      if (item.id > lastId) lastId = item.id;
      var handle = handlers[item.kind];
      if (!handle) return;
      try {
        handle(item, live);
      } catch (err) {
        if (window.console) console.error("could not show feed item", item.id, err);
      }
    });
    if (!batching) layout();
    updateChrome();
  }

  function updateChrome() {
    if (loadingEl) loadingEl.classList.add("hidden");
    var n = arrivals.size;
    emptyEl.classList.toggle("hidden", order.length > 0 || !loaded);
    countEl.textContent = n ? O.plural(n, "check-in") + " · newest first" : "";
    feed.dataset.lastId = String(lastId);
  }

  function showError(text) {
    errorEl.textContent = text || "";
    errorEl.classList.toggle("hidden", !text);
  }

  function loadInitial() {
    O.api("GET", "/api/feed").then(function (answer) {
      loaded = true;
      showError("");
      batching = true;
      applyItems(arr(answer.items), false);
      batching = false;
      layout();
      updateChrome();
      // Connect only now: the first "resume" then starts from what this page already shows.
      O.live({ after: function () { return lastId; }, onItems: applyItems });
    }).catch(function (error) {
      if (error.status === 401) return;
      loaded = true;
      updateChrome();
      showError("Couldn’t load recent check-ins. Retrying…");
      setTimeout(loadInitial, 5000);
    });
  }

  loadInitial();
})();
