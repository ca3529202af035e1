/* Omnikiosk staff tablet: one member's view — this visit (live), notes, offers and why they apply, online
 * orders, wishlist with stock here, cart, recently viewed, sizes, loyalty. Claim, mark served, add a note,
 * send a product to their online cart or wishlist, answer their help request.
 *
 * Opening it is a profile view: the hub writes it to the audit log (who, whom, when, which device).
 * Without clienteling consent the hub sends nothing but that a member checked in, and so does this page.
 */
(function () {
  "use strict";

  var O = window.Omni;
  var el = O.el, append = O.append, icon = O.icon, arr = O.arr, obj = O.obj;

  var root = document.getElementById("customer");
  var loadingEl = document.getElementById("customer-loading");
  var errorEl = document.getElementById("customer-error");
  if (!root) return;
  var customerId = root.dataset.customerId;
  var base = "/api/customers/" + encodeURIComponent(customerId);

  var CHANNELS = { web: "Web", app: "App", marketplace: "Marketplace", store: "In store" };
  var STATUSES = {
    ready_for_pickup: "Ready for pickup", placed: "Placed", shipped: "Shipped", delivered: "Delivered",
    picked_up: "Picked up", cancelled: "Cancelled", returned: "Returned"
  };
  var ACTIVITY = {
    "scan.product": ["scan", "Scanned"], "offer.shown": ["tag", "Saw the offer"],
    "assist.requested": ["hand", "Asked for help"]
  };

  var view = null;           // the hub's answer, kept up to date by the feed
  var applied = new Set();   // feed ids applied
  var lastId = 0;
  var parts = {};            // live parts of the page: header actions, visit, notes

  /* ---------------- building blocks ---------------- */

  function panel(iconName, title, count, className) {
    var box = el("section", "panel" + (className ? " " + className : ""));
    var head = el("h2", "panel-title");
    append(head, icon(iconName), el("span", null, title));
    if (count !== undefined && count !== null) head.appendChild(el("span", "section-count", count));
    box.appendChild(head);
    return box;
  }

  function emptyLine(text) { return el("p", "panel-empty", text); }

  function sendButtons(product, where) {
    var box = el("span", "send");
    (where || ["cart", "wishlist"]).forEach(function (target) {
      box.appendChild(O.button("btn-ghost btn-sm btn-send", target === "cart" ? "To cart" : "To wishlist", function (event) {
        send(product, target, event.currentTarget);
      }));
    });
    return box;
  }

  function productRow(name, sub, side, extra) {
    var li = el("li", "row row-product");
    var main = el("span", "row-main");
    main.appendChild(el("span", "row-name", name || "Unnamed item"));
    if (sub) main.appendChild(sub instanceof Node ? sub : el("span", "row-sub", sub));
    li.appendChild(main);
    if (side) li.appendChild(el("span", "row-side", side));
    if (extra) li.appendChild(extra);
    return li;
  }

  /* ---------------- the page ---------------- */

  function render() {
    O.clear(root);
    if (!view.consent || !view.customer) {
      root.appendChild(renderPrivate());
      return;
    }
    var c = view.customer;
    document.title = O.fullName(c) + " · Omnikiosk";
    root.appendChild(renderHeader(c));
    var grid = el("div", "profile-grid");
    var main = el("div", "profile-col");
    var side = el("div", "profile-col");
    append(main, renderVisit(), renderOffers(), renderOrders());
    append(side, renderNotes(), renderWishlist(), renderCart(), renderViewed(), renderPreferences(), renderLoyalty());
    append(grid, main, side);
    root.appendChild(grid);
  }

  function renderPrivate() {
    var box = el("section", "panel panel-private");
    var head = el("div", "card-head");
    var avatar = append(el("div", "avatar"), icon("lock"));
    avatar.setAttribute("aria-hidden", "true");
    append(head, avatar, append(el("div", "card-id"), el("h1", "card-name is-anon", "Member checked in"),
                                el("p", "card-meta", "This member has not agreed to personal service in store, " +
                                                     "so nothing else about them is shown.")));
    box.appendChild(head);
    return box;
  }

  function renderHeader(c) {
    var box = el("section", "panel profile-head " + O.tierClass(c.tier));
    var head = el("div", "card-head");
    var avatar = el("div", "avatar avatar-lg", O.initials(c) || "");
    avatar.setAttribute("aria-hidden", "true");
    var id = el("div", "card-id");
    var nameRow = append(el("div", "card-name-row"), el("h1", "card-name card-name-lg", O.fullName(c) || "Member " + c.id));
    if (c.tier) nameRow.appendChild(el("span", "tier-badge " + O.tierClass(c.tier), c.tier));
    var meta = el("p", "card-meta");
    append(meta, el("span", null, "Member " + (c.id || "")));
    var since = O.parseTime(c.member_since);
    if (since) append(meta, el("span", "sep", "·"), el("span", null, "since " + since.getFullYear()));
    append(id, nameRow, meta);
    var source = profileSource();
    if (source) id.appendChild(source);
    var stats = el("div", "card-stats");
    if (c.points !== null && c.points !== undefined) {
      append(stats, append(el("div", "stat"), el("span", "stat-value", O.numberFormat.format(c.points)), el("span", "stat-label", "Points")));
    }
    if (c.lifetime_value !== null && c.lifetime_value !== undefined) {
      append(stats, append(el("div", "stat"), el("span", "stat-value", O.money(c.lifetime_value, c.currency, true)),
                           el("span", "stat-label", "Lifetime")));
    }
    append(head, avatar, id, stats);
    box.appendChild(head);
    var pickups = readyHere();
    if (pickups.length) {
      var flags = el("div", "card-flags");
      pickups.forEach(function (order) {
        var units = arr(order.items).reduce(function (n, i) { return n + (Number(i.quantity) || 1); }, 0);
        var text = "Order " + (order.number || "") + ", " + O.plural(units, "item") +
                   (obj(order.pickup).shelf ? ", shelf " + order.pickup.shelf : "");
        flags.appendChild(append(el("div", "pickup-flag"), append(el("span", "pickup-icon"), icon("bag")),
                                 append(el("span"), el("span", "pickup-kicker", "Pickup ready here"), el("span", null, text))));
      });
      box.appendChild(flags);
    }
    parts.actions = el("div", "card-actions profile-actions");
    box.appendChild(parts.actions);
    renderActions();
    return box;
  }

  function profileSource() {
    if (view.profile_source === "cache") {
      var age = Number(view.profile_age_s);
      return append(el("p", "card-note"), icon("cache"),
                    "Profile from cache" + (isFinite(age) && view.profile_age_s !== null ? ", " + O.seconds(age) + " old" : ""));
    }
    if (view.profile_source === "unavailable") {
      return append(el("p", "card-note note-warn"), icon("alert"), "Online store unreachable: showing what the hub has");
    }
    return null;
  }

  /** Orders waiting on a shelf of this store (the page knows its store from the hub). */
  function readyHere() {
    var store = document.body.dataset.store;
    return arr(view.orders).filter(function (order) {
      return order && (order.ready_here || (order.status === "ready_for_pickup" && obj(order.pickup).store === store));
    });
  }

  /* claim and serve the current visit */
  function renderActions() {
    var box = O.clear(parts.actions);
    var visit = view.visit;
    var first = obj(view.customer).first_name || "";
    if (!visit || !visit.arrival_id) {
      box.appendChild(el("span", "state-badge", "Not checked in at a kiosk right now"));
      return;
    }
    if (visit.served_by) {
      box.appendChild(append(el("span", "state-badge state-served"), icon("check"),
                             el("span", null, "Served by " + (visit.served_by === O.me ? "you" : visit.served_by))));
    } else if (visit.claimed_by === O.me) {
      append(box, append(el("span", "state-badge state-mine"), icon("hand"), el("span", null, "You’re helping " + first)),
             O.button("btn-primary", "Mark served", function () { act("served"); }));
    } else if (visit.claimed_by) {
      box.appendChild(append(el("span", "state-badge state-other"), icon("hand"), el("span", null, visit.claimed_by + " is helping")));
    } else {
      box.appendChild(O.button("btn-primary btn-claim", "I’m helping " + first, function () { act("claim"); }));
    }
  }

  function act(what) {
    var visit = view.visit;
    O.api("POST", "/api/arrivals/" + visit.arrival_id + "/" + what).then(function () {
      if (what === "claim") visit.claimed_by = O.me; else visit.served_by = O.me;
      renderActions();
    }).catch(function (error) { O.toast(error.message, "error"); });
  }

  /* this visit, live */
  function renderVisit() {
    var box = panel("kiosk", "This visit", null, "panel-visit");
    parts.visit = el("div", "visit-body");
    box.appendChild(parts.visit);
    fillVisit();
    return box;
  }

  function fillVisit() {
    var body = O.clear(parts.visit);
    var visit = view.visit;
    if (!visit) {
      body.appendChild(emptyLine("Not in the store right now (no check-in at a kiosk in this visit)."));
      return;
    }
    var meta = el("p", "visit-meta");
    append(meta, "Checked in ", O.agoNode(visit.started_at));
    var kiosks = arr(visit.kiosks);
    if (kiosks.length) append(meta, " at ", el("span", "kiosk-tag", kiosks.join(", ")));
    body.appendChild(meta);
    var helps = arr(visit.assists || view.assists).filter(function (a) { return !a.answered_by; });
    helps.forEach(function (a) {
      var row = append(el("div", "help-open"), icon("hand"),
                       el("span", "help-text", "Needs help at kiosk " + (a.kiosk || "?") +
                          (a.product && a.product.name ? " with " + a.product.name : "")));
      row.appendChild(O.button("btn-primary btn-sm btn-answer", "I’m on it", function (event) {
        event.currentTarget.disabled = true;
        O.api("POST", "/api/assists/" + a.assist_id + "/answer").then(function () {
          a.answered_by = O.me;
          fillVisit();
        }).catch(function (error) { O.toast(error.message, "error"); fillVisit(); });
      }));
      body.appendChild(row);
    });
    var activity = arr(visit.activity);
    if (!activity.length) {
      body.appendChild(emptyLine("Nothing scanned yet this visit."));
      return;
    }
    var list = el("ul", "rows activity");
    activity.slice().sort(function (a, b) { return String(b.at || "").localeCompare(String(a.at || "")); })
      .forEach(function (a) { list.appendChild(activityRow(a)); });
    body.appendChild(list);
  }

  function activityRow(a) {
    var kind = ACTIVITY[a.type] || ["check", a.type || "Activity"];
    var product = a.product ? obj(a.product) : null;
    var li = el("li", "row row-activity row-product");
    var main = el("span", "row-main");
    var what = el("span", "row-name");
    append(what, icon(kind[0]), el("span", null, kind[1] + (a.type === "offer.shown" && a.offer ? " " + a.offer :
                                                            (product && product.name ? (a.type === "assist.requested" ? " with " : " ") + product.name : ""))));
    main.appendChild(what);
    if (a.at) main.appendChild(O.agoNode(a.at, "row-sub"));
    li.appendChild(main);
    if (product && product.gtin && a.type === "scan.product") li.appendChild(sendButtons(product));
    return li;
  }

  /* notes by staff */
  function renderNotes() {
    var notes = arr(view.notes);
    var box = panel("note", "Notes", null, "panel-notes");
    var form = el("form", "note-form");
    var label = el("label", "field");
    var input = el("textarea", "input note-input");
    input.name = "text";
    input.maxLength = 1000;
    input.rows = 2;
    input.required = true;
    input.placeholder = "What helps the next person serve " + (obj(view.customer).first_name || "them") + "?";
    append(label, el("span", "field-label sr-only", "New note"), input);
    var submit = el("button", "btn btn-primary btn-sm", "Add note");
    submit.type = "submit";
    append(form, label, submit);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text) return;
      submit.disabled = true;
      O.api("POST", base + "/notes", { text: text }).then(function (answer) {
        input.value = "";
        var note = answer && answer.note ? answer.note : answer;
        if (note && note.id !== undefined) addNote(note);
      }).catch(function (error) { O.toast(error.message, "error"); })
        .then(function () { submit.disabled = false; });
    });
    box.appendChild(form);
    parts.notes = el("ul", "notes");
    box.appendChild(parts.notes);
    notes.forEach(function (n) { parts.notes.appendChild(noteRow(n)); });
    return box;
  }

  function noteRow(note) {
    var li = el("li", "note");
    li.dataset.noteId = String(note.id);
    li.appendChild(el("p", "note-text", note.text));
    append(li, append(el("p", "note-meta"), el("span", null, note.by === O.me ? "you" : note.by || "staff"), " · ",
                      O.agoNode(note.at)));
    return li;
  }

  function addNote(note) {
    if (parts.notes.querySelector('[data-note-id="' + String(Number(note.id)) + '"]')) return;
    view.notes = [note].concat(arr(view.notes));
    parts.notes.insertBefore(noteRow(note), parts.notes.firstChild);
  }

  /* offers and why they apply */
  function renderOffers() {
    var offers = arr(view.offers);
    var box = panel("tag", "Offers for them today", offers.length, "panel-offers");
    if (!offers.length) { box.appendChild(emptyLine("No personal offers today.")); return box; }
    var list = el("ul", "offers");
    offers.forEach(function (offer) {
      var li = el("li", "offer");
      var top = el("div", "offer-top");
      if (offer.percent) top.appendChild(el("span", "offer-percent", "−" + offer.percent + "%"));
      top.appendChild(el("span", "offer-title", offer.title));
      li.appendChild(top);
      if (offer.text) li.appendChild(el("p", "offer-text", offer.text));
      if (offer.reason) li.appendChild(append(el("p", "offer-reason"), el("span", "offer-why", "Why: "), el("span", null, offer.reason)));
      var bits = [];
      if (offer.code) bits.push("Code " + offer.code);
      var until = O.parseTime(offer.valid_until);
      if (until) bits.push("valid until " + O.dateFormat.format(until));
      if (bits.length) li.appendChild(el("p", "offer-meta", bits.join(" · ")));
      list.appendChild(li);
    });
    box.appendChild(list);
    return box;
  }

  /* online orders */
  function renderOrders() {
    var orders = arr(view.orders);
    var box = panel("box", "Orders", orders.length, "panel-orders");
    if (!orders.length) { box.appendChild(emptyLine("No orders yet.")); return box; }
    var ready = readyHere();
    orders.forEach(function (order) {
      var here = ready.indexOf(order) >= 0;
      var item = el("div", "order" + (here ? " ready-here" : ""));
      var top = el("div", "order-top");
      append(top, el("span", "order-number", order.number || "Order"));
      if (order.channel) top.appendChild(el("span", "channel", CHANNELS[order.channel] || order.channel));
      if (order.status) {
        var status = String(order.status);
        top.appendChild(el("span", "pill pill-" + status.replace(/[^a-z_]/g, ""), STATUSES[status] || status.replace(/_/g, " ")));
      }
      var pickup = obj(order.pickup);
      if (here && pickup.shelf) top.appendChild(el("span", "shelf-tag", "Shelf " + pickup.shelf));
      if (order.total !== null && order.total !== undefined) top.appendChild(el("span", "order-total", O.money(order.total, order.currency)));
      item.appendChild(top);
      var placed = O.parseTime(order.placed_at);
      if (placed) item.appendChild(el("div", "order-meta", "placed " + O.dateFormat.format(placed)));
      var list = el("ul", "order-items");
      arr(order.items).forEach(function (line) {
        var qty = Number(line.quantity) || 1;
        var li = el("li", null, line.name || line.gtin || "Item");
        if (qty > 1) append(li, " ", el("span", "qty", "× " + qty));
        list.appendChild(li);
      });
      if (list.childNodes.length) item.appendChild(list);
      box.appendChild(item);
    });
    return box;
  }

  /* wishlist with stock here */
  function renderWishlist() {
    var wishlist = arr(view.wishlist);
    var box = panel("heart", "Wishlist", wishlist.length, "panel-wishlist");
    if (!wishlist.length) { box.appendChild(emptyLine("Nothing on the wishlist.")); return box; }
    var list = el("ul", "rows");
    wishlist.forEach(function (item) {
      var here = item.here ? obj(item.here) : null;
      var sub = here && Number(here.quantity) > 0 ?
        append(el("span", "row-sub stock-here"), icon("check"),
               el("span", null, "In stock here: " + here.quantity + (here.location ? " · " + here.location : ""))) :
        el("span", "row-sub", "Not in stock here");
      list.appendChild(productRow(item.name, sub, O.money(item.price, item.currency), sendButtons(item, ["cart"])));
    });
    box.appendChild(list);
    return box;
  }

  /* the open online cart */
  function renderCart() {
    var cart = obj(view.cart);
    var items = arr(cart.items);
    var box = panel("cart", "Online cart", items.length, "panel-cart");
    if (!items.length) { box.appendChild(emptyLine("The online cart is empty.")); return box; }
    var updated = O.parseTime(cart.updated_at);
    if (updated) box.appendChild(el("p", "panel-sub", "Left " + O.timeAgo(updated)));
    var list = el("ul", "rows");
    items.forEach(function (item) {
      var qty = Number(item.quantity) || 1;
      list.appendChild(productRow(item.name + (qty > 1 ? " × " + qty : ""), null, O.money(item.price, item.currency)));
    });
    box.appendChild(list);
    return box;
  }

  /* browsed online */
  function renderViewed() {
    var viewed = arr(view.recently_viewed);
    var box = panel("eye", "Recently viewed online", viewed.length, "panel-viewed");
    if (!viewed.length) { box.appendChild(emptyLine("Nothing viewed recently.")); return box; }
    var list = el("ul", "rows");
    viewed.forEach(function (item) {
      var sub = [CHANNELS[item.channel] || item.channel, item.viewed_at ? O.timeAgo(O.parseTime(item.viewed_at)) : null]
        .filter(Boolean).join(" · ");
      list.appendChild(productRow(item.name, sub || null, null, item.gtin ? sendButtons(item) : null));
    });
    box.appendChild(list);
    return box;
  }

  /* sizes and preferences */
  function renderPreferences() {
    var prefs = obj(view.preferences);
    var sizes = obj(prefs.sizes);
    var box = panel("ruler", "Sizes and preferences", null, "panel-sizes");
    var keys = Object.keys(sizes);
    var favourites = arr(prefs.favourite_categories);
    if (!keys.length && !favourites.length) { box.appendChild(emptyLine("No sizes or preferences saved.")); return box; }
    if (keys.length) {
      var grid = el("dl", "sizes");
      keys.forEach(function (k) {
        append(grid, append(el("div", "size"), el("dt", null, k), el("dd", null, sizes[k])));
      });
      box.appendChild(grid);
    }
    if (favourites.length) {
      var chips = el("div", "chips");
      favourites.forEach(function (f) { chips.appendChild(append(el("span", "chip"), el("span", null, f))); });
      append(box, el("p", "panel-sub", "Favourite categories"), chips);
    }
    return box;
  }

  /* loyalty */
  function renderLoyalty() {
    var loyalty = obj(view.loyalty);
    var history = arr(loyalty.history);
    var box = panel("star", "Loyalty", null, "panel-loyalty");
    var summary = [loyalty.tier, loyalty.points !== undefined && loyalty.points !== null ?
                   O.numberFormat.format(loyalty.points) + " points" : null].filter(Boolean).join(" · ");
    if (summary) box.appendChild(el("p", "panel-sub", summary));
    if (!history.length) { box.appendChild(emptyLine("No point movements yet.")); return box; }
    var list = el("ul", "rows");
    history.slice(0, 12).forEach(function (entry) {
      var points = Number(entry.points) || 0;
      var when = O.parseTime(entry.ts);
      list.appendChild(productRow(entry.reason || "Points", when ? O.dateFormat.format(when) : null,
                                  (points > 0 ? "+" : points < 0 ? "−" : "") + O.numberFormat.format(Math.abs(points))));
    });
    box.appendChild(list);
    return box;
  }

  /* ---------------- actions ---------------- */

  function send(product, where, btn) {
    var first = obj(view.customer).first_name || "their";
    btn.disabled = true;
    O.api("POST", base + "/send", { gtin: product.gtin, where: where }).then(function (answer) {
      var target = where === "cart" ? "online cart" : "wishlist";
      O.toast(answer.status === "queued" ? "Queued for " + first + "’s " + target + ": it goes through when the online store answers." :
              "Added to " + first + "’s " + target + ".", "ok");
      btn.textContent = "Sent";
    }).catch(function (error) {
      O.toast(error.message, "error");
      btn.disabled = false;
    });
  }

  /* ---------------- live: this member's part of the floor ---------------- */

  function mine(item) {
    var data = obj(item.data);
    var visit = view.visit;
    var arrivalId = item.arrival_id || data.arrival_id;
    return item.customer_id === customerId || data.customer_id === customerId ||
      (visit && arrivalId && arrivalId === visit.arrival_id);
  }

  var handlers = {
    arrival: function (item) {
      var visit = view.visit;
      var kiosk = obj(item.data).kiosk;
      if (!visit || visit.arrival_id !== item.arrival_id) {
        view.visit = visit = { arrival_id: item.arrival_id, started_at: visit ? visit.started_at : item.at,
                               kiosks: visit ? arr(visit.kiosks) : [], claimed_by: null, activity: visit ? arr(visit.activity) : [] };
      }
      if (kiosk && visit.kiosks.indexOf(kiosk) < 0) visit.kiosks.push(kiosk);
      fillVisit();
      renderActions();
    },
    claim: function (item) { view.visit.claimed_by = obj(item.data).by; renderActions(); },
    served: function (item) { view.visit.served_by = obj(item.data).by; renderActions(); },
    activity: function (item) {
      var data = obj(item.data);
      view.visit.activity = arr(view.visit.activity).concat([{ type: data.type, product: data.product, offer: data.offer, at: item.at }]);
      fillVisit();
    },
    assist: function (item) {
      var data = obj(item.data);
      view.assists = arr(view.assists).concat([data]);
      fillVisit();
    },
    assist_answered: function (item) {
      var data = obj(item.data);
      arr(view.assists).forEach(function (a) { if (a.assist_id === data.assist_id) a.answered_by = data.by; });
      fillVisit();
    },
    note: function (item) { addNote(obj(obj(item.data).note)); }
  };

  function applyItems(items) {
    if (!view || !view.consent) return;
    items.slice().sort(function (a, b) { return a.id - b.id; }).forEach(function (item) {
      if (!item || typeof item.id !== "number" || applied.has(item.id)) return;
      applied.add(item.id);
      if (item.id > lastId) lastId = item.id;
      if (!handlers[item.kind] || !mine(item)) return;
      if (item.kind !== "arrival" && item.kind !== "note" && !view.visit) return;
      handlers[item.kind](item);
    });
  }

  function showError(text) {
    errorEl.textContent = text || "";
    errorEl.classList.toggle("hidden", !text);
  }

  O.api("GET", base).then(function (answer) {
    view = answer;
    lastId = Number(answer.feed_after) || 0;
    // What the hub already counted into this visit must not come twice when the feed replays it.
    arr(obj(view.visit).activity).forEach(function (a) { if (typeof a.id === "number") applied.add(a.id); });
    loadingEl.classList.add("hidden");
    render();
    O.live({ after: function () { return lastId; }, onItems: applyItems });
  }).catch(function (error) {
    loadingEl.classList.add("hidden");
    if (error.status === 401) return;
    showError(error.status === 404 ? "No member with that id." : error.message);
  });
})();
