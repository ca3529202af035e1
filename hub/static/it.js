/* Omnikiosk staff app: the fleet view for IT — every store device's health, alerts, and commands.
 *
 * Health comes from /api/devices and live from the IT room ("devices" every few seconds from the hub's
 * housekeeping, "command_result" when a device answers). Refreshing by itself never counts as someone
 * using the page, so an unattended laptop still signs out.
 */
(function () {
  "use strict";

  var O = window.Omni;
  var el = O.el, append = O.append, icon = O.icon, arr = O.arr, obj = O.obj;

  var fleet = document.getElementById("fleet");
  var alertsEl = document.getElementById("fleet-alerts");
  var summaryEl = document.getElementById("fleet-summary");
  var loadingEl = document.getElementById("fleet-loading");
  var errorEl = document.getElementById("fleet-error");
  if (!fleet) return;

  var REFRESH_MS = 30000;
  var COMMANDS = [
    ["screen.message", "Show a message on the screen"],
    ["catalog.resync", "Resync the catalog"],
    ["restart", "Restart"],
    ["config.update", "Change a setting"]
  ];
  var STATES = { online: "Online", offline: "Offline", stopped: "Stopped", never_seen: "Never seen", unknown: "Unknown" };

  var cards = new Map();     // device id -> {node, status, result}
  var pending = new Map();   // command id -> device id

  /* ---------------- one device ---------------- */

  function figure(label, value, warn) {
    return append(el("div", "figure" + (warn ? " figure-warn" : "")), el("span", "figure-value", value === "" ? "—" : value),
                  el("span", "figure-label", label));
  }

  function renderStatus(card, device) {
    var box = O.clear(card.status);
    var t = obj(device.telemetry);
    var scan = obj(t.scan);
    var outbox = obj(t.outbox);
    var state = STATES[device.state] ? device.state : "unknown";
    card.node.dataset.state = state;
    card.node.classList.toggle("has-alerts", arr(device.alerts).length > 0);

    var head = el("div", "device-head");
    append(head, append(el("span", "device-icon"), icon("device")),
           append(el("div", "device-id"), el("h2", "device-name", device.id),
                  append(el("p", "card-meta"), device.location ? el("span", "device-location", device.location) : null,
                         device.location ? el("span", "sep", "·") : null,
                         el("span", null, "v" + (device.version || "?")), el("span", "sep", "·"),
                         el("span", null, "last seen "), device.last_seen ? O.agoNode(device.last_seen) : el("span", null, "never"))),
           el("span", "state-pill state-" + state, STATES[state]));
    box.appendChild(head);

    var alerts = arr(device.alerts);
    if (alerts.length) {
      var list = el("div", "chips device-alerts");
      alerts.forEach(function (a) {
        list.appendChild(append(el("span", "chip chip-unavailable"), icon("alert"), el("span", null, a.text || a.kind)));
      });
      box.appendChild(list);
    }

    var figures = el("div", "figures");
    var temp = t.cpu_temp_c;
    append(figures,
           figure("Scan fps", scan.fps === undefined || scan.fps === null ? "" : Number(scan.fps).toFixed(1)),
           figure("Camera", scan.camera || (device.telemetry && !t.scan ? "no answer" : ""), scan.camera && scan.camera !== "ok"),
           figure("Outbox", outbox.depth === undefined ? "" : O.numberFormat.format(outbox.depth), Number(outbox.depth) > 0),
           figure("Oldest waiting", outbox.oldest_age_s ? O.seconds(outbox.oldest_age_s) : (outbox.depth === 0 ? "none" : ""),
                  Number(outbox.oldest_age_s) > 300),
           figure("Disk free", t.disk_free_mb === undefined || t.disk_free_mb === null ? "" : diskText(t.disk_free_mb),
                  Number(t.disk_free_mb) < 500),
           figure("Temperature", temp === undefined || temp === null ? "" : Number(temp).toFixed(0) + " °C", Number(temp) >= 80));
    box.appendChild(figures);
    if (!device.telemetry) box.appendChild(el("p", "panel-empty", "No health report from this device yet."));
  }

  function diskText(mb) {
    mb = Number(mb);
    return mb >= 10240 ? (mb / 1024).toFixed(0) + " GB" : mb >= 1024 ? (mb / 1024).toFixed(1) + " GB" : mb + " MB";
  }

  function renderCommandForm(card, deviceId) {
    var form = el("form", "command-form");
    var pick = el("select", "input");
    pick.name = "command";
    pick.setAttribute("aria-label", "Command for " + deviceId);
    COMMANDS.forEach(function (c) { var option = el("option", null, c[1]); option.value = c[0]; pick.appendChild(option); });

    function field(label, input, kinds) {
      var node = append(el("label", "field"), el("span", "field-label", label), input);
      node.dataset.for = kinds;
      return node;
    }
    function input(type, name, placeholder) {
      var node = el("input", "input");
      node.type = type; node.name = name;
      if (placeholder) node.placeholder = placeholder;
      return node;
    }
    function choice(name, values) {
      var node = el("select", "input");
      node.name = name;
      values.forEach(function (v) { var option = el("option", null, v); option.value = v; node.appendChild(option); });
      return node;
    }
    var text = input("text", "text", "e.g. Back in 5 minutes — please ask staff");
    text.maxLength = 200;
    var seconds = input("number", "seconds");
    seconds.value = "30"; seconds.min = "1"; seconds.max = "3600";
    var target = choice("target", ["agent", "kiosk"]);
    var key = input("text", "key", "e.g. scan.fps");
    var value = input("text", "value", "e.g. 8");
    var fields = el("div", "command-fields");
    append(fields, field("Message", text, "screen.message"), field("Seconds", seconds, "screen.message"),
           field("Which process", target, "restart config.update"), field("Setting", key, "config.update"),
           field("Value", value, "config.update"));
    var send = el("button", "btn btn-primary", "Send");
    send.type = "submit";
    append(form, append(el("div", "command-row"), append(el("label", "field grow"), el("span", "field-label", "Command"), pick), send), fields);

    function showFields() {
      Array.prototype.forEach.call(fields.children, function (node) {
        node.classList.toggle("hidden", node.dataset.for.split(" ").indexOf(pick.value) < 0);
      });
    }
    pick.addEventListener("change", showFields);
    showFields();

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var args = {};
      if (pick.value === "screen.message") { args.text = text.value; args.seconds = parseInt(seconds.value, 10) || 30; }
      if (pick.value === "restart") args.target = target.value;
      if (pick.value === "config.update") {
        args.target = target.value === "agent" ? "agent" : "kiosk";
        args.settings = {};
        args.settings[key.value.trim()] = settingValue(value.value);
      }
      send.disabled = true;
      showResult(card, "pending", "Sending…");
      O.api("POST", "/api/devices/" + encodeURIComponent(deviceId) + "/commands", { command: pick.value, args: args })
        .then(function (answer) {
          pending.set(answer.command_id, deviceId);
          card.commandId = answer.command_id;
          showResult(card, "pending", "Sent — waiting for " + deviceId + " to answer…");
          poll(answer.command_id, Date.now());
        })
        .catch(function (error) { showResult(card, "error", error.message); })
        .then(function () { send.disabled = false; });
    });
    return form;
  }

  /** Like the CLI's --arg: a value that reads as JSON (8, true, "x") is that, anything else is text. */
  function settingValue(raw) {
    try { return JSON.parse(raw); } catch (e) { return raw; }
  }

  function showResult(card, kind, text) {
    card.result.className = "command-result result-" + kind;
    card.result.textContent = text;
    card.result.classList.remove("hidden");
  }

  function describe(result) {
    var answer = obj(result.result);
    if (answer.ok === false) return ["error", "Failed: " + (obj(answer.error).message || obj(answer.error).code || "no reason given")];
    var detail = answer.result && typeof answer.result === "object" && Object.keys(answer.result).length ?
      " — " + JSON.stringify(answer.result).slice(0, 160) : "";
    return ["ok", "Done: " + (answer.command || result.command || "command") + detail];
  }

  function onResult(result) {
    result = obj(result);
    var deviceId = pending.get(result.command_id) || result.device;
    var card = cards.get(deviceId);
    if (!card || card.commandId !== result.command_id || !result.result) return;
    pending.delete(result.command_id);
    var said = describe(result);
    showResult(card, said[0], said[1]);
  }

  /** Should a result event be missed (reconnecting), ask for it; a device away for long gets a minute. */
  function poll(commandId, since) {
    if (!pending.has(commandId)) return;
    if (Date.now() - since > 60000) {
      var card = cards.get(pending.get(commandId));
      if (card && card.commandId === commandId) showResult(card, "pending", "No answer yet: the device gets it when it is back online.");
      return;
    }
    setTimeout(function () {
      if (!pending.has(commandId)) return;
      O.api("GET", "/api/commands/" + encodeURIComponent(commandId)).then(function (result) {
        if (result.result) onResult(result); else poll(commandId, since);
      }).catch(function () { poll(commandId, since); });
    }, 2000);
  }

  /* ---------------- the whole fleet ---------------- */

  function cardFor(device) {
    var card = cards.get(device.id);
    if (card) return card;
    card = { node: el("article", "card device") };
    card.node.dataset.device = device.id;
    card.status = el("div", "device-status");
    card.result = el("p", "command-result hidden");
    card.result.setAttribute("role", "status");
    var commands = el("details", "section device-commands");
    append(commands, append(el("summary"), icon("send"), el("span", null, "Send a command")),
           append(el("div", "section-body"), renderCommandForm(card, device.id), card.result));
    append(card.node, card.status, commands);
    cards.set(device.id, card);
    fleet.appendChild(card.node);
    return card;
  }

  function show(devices) {
    devices = arr(devices).slice().sort(function (a, b) { return String(a.id).localeCompare(String(b.id)); });
    loadingEl.classList.add("hidden");
    devices.forEach(function (device) { renderStatus(cardFor(device), device); });
    var online = devices.filter(function (d) { return d.state === "online"; }).length;
    summaryEl.textContent = devices.length ? O.plural(devices.length, "device") + " · " + online + " online" :
      "No device has reported to this hub yet.";
    // One line per device that needs a look, its alerts side by side.
    var troubled = devices.filter(function (d) { return arr(d.alerts).length; });
    O.clear(alertsEl);
    troubled.forEach(function (d) {
      var list = el("span", "alert-list");
      arr(d.alerts).forEach(function (a) { list.appendChild(el("span", "alert-" + (a.kind || "other"), a.text || a.kind)); });
      alertsEl.appendChild(append(el("div", "alert alert-error"), el("span", "alert-icon", "!"), el("strong", null, d.id), list));
    });
    alertsEl.classList.toggle("hidden", !troubled.length);
  }

  function load() {
    return O.api("GET", "/api/devices").then(function (answer) {
      errorEl.classList.add("hidden");
      show(answer.items);
    }).catch(function (error) {
      if (error.status === 401) return;
      errorEl.textContent = "Couldn’t load the devices: " + error.message;
      errorEl.classList.remove("hidden");
    });
  }

  load().then(function () {
    O.live({
      onConnect: function (first) { if (!first) load(); },
      events: {
        devices: function (payload) { show(obj(payload).devices); },
        device: function (device) { if (device && device.id) renderStatus(cardFor(device), device); },
        command_result: onResult
      }
    });
  });
  setInterval(load, REFRESH_MS);
})();
