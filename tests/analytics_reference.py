"""Store analytics by brute force over the raw rows, written apart from hub/analytics.py on purpose.

No SQL and no derived tables: it walks the events as the kiosks sent them, the online store's
sessions and orders as its feeds gave them, and the till's sales, with plain Python and
datetime/zoneinfo arithmetic. The analytics tests and bench/analytics.py compare every figure of
the hub's answer with this one.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from protocol.envelope import parse_ts

CHANNELS = ("store", "kiosk", "web", "app", "social", "email", "search", "marketplace")
ONLINE = CHANNELS[2:]
QUALIFYING = ("scan.product", "assist.requested", "cart.sent")
ACTIVITY = ("session.started", "scan.member", "offer.shown") + QUALIFYING
NOT_COUNTED = ("cancelled", "refunded", "returned")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class Facts:
    """What happened, rebuilt from raw rows: sessions, visits, activity, touches, sales."""

    def __init__(self, *, events, online_sessions, orders, pos_sales, products, no_consent, gap_s=1800.0):
        gap = timedelta(seconds=gap_s)
        self.sessions: dict[str, dict[str, Any]] = {}
        self.visits: dict[str, dict[str, Any]] = {}
        self.activity: list[dict[str, Any]] = []
        self.touches: list[tuple[str, datetime, str, str, str | None]] = []  # customer, ts, ref, channel, gtin
        visits_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in events:
            ts = parse_ts(e.ts)
            sid = e.data.get("session")
            member = e.data.get("member")
            if member in no_consent:
                member = None
            if e.type == "session.started":
                self.sessions.setdefault(sid, {"device": e.device, "started": ts, "member": None, "visit": None,
                                               "qualified": False})
            elif e.type == "scan.member" and member:
                # A check-in joins the member's visit whose span, widened by the gap, holds it (the one
                # seen last if several); otherwise it starts a visit.
                holding = [v for v in visits_of[member] if v["started"] - gap <= ts <= v["last_seen"] + gap]
                visit = max(holding, key=lambda v: v["last_seen"]) if holding else None
                if visit is None:
                    visit = {"id": e.id, "member": member, "started": ts, "last_seen": ts, "sessions": set()}
                    self.visits[e.id] = visit
                    visits_of[member].append(visit)
                else:
                    visit["last_seen"] = max(visit["last_seen"], ts)
                    visit["started"] = min(visit["started"], ts)
                visit["sessions"].add(sid)
                session = self.sessions.setdefault(sid, {"device": e.device, "started": ts, "member": None,
                                                         "visit": None, "qualified": False})
                session["member"], session["visit"] = member, visit["id"]
            elif e.type == "session.ended":
                visit = self.visits.get((self.sessions.get(sid) or {}).get("visit"))
                if visit:
                    visit["last_seen"] = max(visit["last_seen"], ts)
            if e.type not in ACTIVITY:
                continue
            who = member if (member or e.type == "scan.member") else (self.sessions.get(sid) or {}).get("member")
            gtin = e.data.get("gtin")
            self.activity.append({"ts": ts, "device": e.device, "session": sid, "type": e.type, "gtin": gtin,
                                  "out_of_stock": e.type == "scan.product" and products[gtin]["quantity"] <= 0})
            if e.type in QUALIFYING and who:
                self.touches.append((who, ts, e.id, "kiosk", gtin))
        for visit in self.visits.values():
            self.touches.append((visit["member"], visit["started"], "visit:" + visit["id"], "store", None))
        # Qualified is whatever the session did, whenever it reached us: mark sessions by any qualifying event.
        for a in self.activity:
            if a["type"] in QUALIFYING and a["session"] in self.sessions:
                self.sessions[a["session"]]["qualified"] = True
        for visit in self.visits.values():
            visit["qualified"] = any(self.sessions.get(s, {}).get("qualified") for s in visit["sessions"])
        self.online = [{**s, "ts": parse_ts(s["started_at"]), "customer": s["customer_id"]} for s in online_sessions]
        for s in self.online:
            if s["customer"]:
                self.touches.append((s["customer"], s["ts"], "online:" + s["id"], s["channel"], None))
        self.sales = []
        for o in orders:
            if o["channel"] != "store":
                self.sales.append({"id": "online:" + o["id"], "customer": o["customer_id"], "channel": o["channel"],
                                   "ts": parse_ts(o["placed_at"]), "total": o["total"], "status": o["status"],
                                   "lines": o["lines"]})
        for s in pos_sales:
            total = sum(line["amount"] for line in s["lines"])
            self.sales.append({"id": "pos:" + s["id"], "customer": s.get("member_id"), "channel": "store",
                               "ts": parse_ts(s["ts"]), "total": total, "lines": s["lines"],
                               "status": "refunded" if total < 0 else "completed"})  # the till's refund
        self.by_customer = defaultdict(list)
        for touch in self.touches:
            self.by_customer[touch[0]].append(touch)


def bounds(start: date, end: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    return (datetime.combine(start, time(0), tz).astimezone(timezone.utc),
            datetime.combine(end + timedelta(days=1), time(0), tz).astimezone(timezone.utc))


def answer(facts: Facts, *, start: date, end: date, tz: ZoneInfo, channel: str | None = None,
           window_days: int = 30) -> dict[str, list[dict[str, Any]]]:
    lo, hi = bounds(start, end, tz)
    inside = lambda ts: lo <= ts < hi  # noqa: E731
    wanted = (channel,) if channel else CHANNELS
    window = timedelta(days=window_days)
    sales = [s for s in facts.sales if inside(s["ts"]) and s["status"] not in NOT_COUNTED]
    out: dict[str, list[dict[str, Any]]] = {}

    rows = {c: {"channel": c, "sessions": 0, "contacts": set(), "qualified": 0, "sales": 0, "revenue": 0.0}
            for c in CHANNELS}
    for s in facts.online:
        if inside(s["ts"]):
            row = rows[s["channel"]]
            row["sessions"] += 1
            row["qualified"] += bool(s["added_to_cart"] or s["asked_for_help"])
            if s["customer"]:
                row["contacts"].add(s["customer"])
    for s in facts.sessions.values():
        if inside(s["started"]):
            rows["kiosk"]["sessions"] += 1
            rows["kiosk"]["qualified"] += s["qualified"]
            if s["member"]:
                rows["kiosk"]["contacts"].add(s["member"])
    for v in facts.visits.values():
        if inside(v["started"]):
            rows["store"]["sessions"] += 1
            rows["store"]["qualified"] += v["qualified"]
            rows["store"]["contacts"].add(v["member"])
    for s in sales:
        rows[s["channel"]]["sales"] += 1
        rows[s["channel"]]["revenue"] += s["total"]
    for row in rows.values():
        row["contacts"] = len(row["contacts"])
        row["qualified_rate"] = row["qualified"] / row["sessions"] if row["sessions"] else 0.0
    out["channels"] = [rows[c] for c in wanted]
    people = {s["customer"] for s in facts.online if inside(s["ts"]) and s["channel"] in wanted and s["customer"]}
    if "kiosk" in wanted:
        people |= {s["member"] for s in facts.sessions.values() if inside(s["started"]) and s["member"]}
    if "store" in wanted:
        people |= {v["member"] for v in facts.visits.values() if inside(v["started"])}
    counted = [r for r in out["channels"] if channel or r["channel"] != "store"]  # a visit is kiosk sessions
    out["summary"] = [{"sessions": sum(r["sessions"] for r in counted), "contacts": len(people),
                       "qualified": sum(r["qualified"] for r in counted),
                       "sales": sum(r["sales"] for r in out["channels"]),
                       "revenue": sum(r["revenue"] for r in out["channels"])}]

    by_source = defaultdict(lambda: [0, set(), 0])
    for s in facts.online:
        if inside(s["ts"]) and s["channel"] in wanted:
            row = by_source[(s["channel"], s["source"] or "")]
            row[0] += 1
            row[2] += bool(s["added_to_cart"] or s["asked_for_help"])
            if s["customer"]:
                row[1].add(s["customer"])
    out["sources"] = [{"channel": c, "source": src, "sessions": n, "contacts": len(people), "qualified": q}
                      for (c, src), (n, people, q) in sorted(by_source.items(), key=lambda kv: (-kv[1][0], kv[0]))]

    attr = {c: {"channel": c, "first_sales": 0, "first_revenue": 0.0, "last_sales": 0, "last_revenue": 0.0}
            for c in CHANNELS + ("none",)}
    assisted = defaultdict(lambda: {"assisted_sales": 0, "assisted_revenue": 0.0, "all_sales": 0})
    for s in sales:
        touches = sorted((t for t in facts.by_customer.get(s["customer"], []) if s["ts"] - window <= t[1] <= s["ts"]),
                         key=lambda t: (t[1], t[2]))
        first = touches[0][3] if touches else "none"
        last = touches[-1][3] if touches else "none"
        attr[first]["first_sales"] += 1
        attr[first]["first_revenue"] += s["total"]
        attr[last]["last_sales"] += 1
        attr[last]["last_revenue"] += s["total"]
        scanned = {t[4] for t in touches if t[3] == "kiosk" and t[4]}
        a = assisted[s["channel"]]
        a["all_sales"] += 1
        if any(line["quantity"] > 0 and line["gtin"] in scanned for line in s["lines"]):
            a["assisted_sales"] += 1
            a["assisted_revenue"] += s["total"]
    out["attribution"] = [attr[c] for c in ((channel,) if channel else CHANNELS + ("none",))]
    out["assisted"] = [{"channel": c, **assisted[c], "share": assisted[c]["assisted_sales"] / assisted[c]["all_sales"]}
                       for c in wanted if c in assisted]

    lost = defaultdict(lambda: [0, set()])
    for a in facts.activity:
        if a["type"] == "scan.product" and a["out_of_stock"] and inside(a["ts"]):
            lost[a["gtin"]][0] += 1
            lost[a["gtin"]][1].add(a["session"])
    out["lost_demand"] = [{"gtin": g, "scans": n, "sessions": len(s)}
                          for g, (n, s) in sorted(lost.items(), key=lambda kv: (-kv[1][0], kv[0]))]

    starts = [s["ts"] for s in facts.online if s["channel"] in wanted]
    starts += [s["started"] for s in facts.sessions.values()] if "kiosk" in wanted else []
    starts += [v["started"] for v in facts.visits.values()] if channel == "store" else []
    starts = [ts for ts in starts if inside(ts)]
    grid = [[0] * 24 for _ in WEEKDAYS]
    per_day = defaultdict(int)
    for ts in starts:
        local = ts.astimezone(tz)
        grid[local.weekday()][local.hour] += 1
        per_day[local.date()] += 1
    out["peak_hours"] = [{"weekday": d, **{f"{h:02d}": grid[i][h] for h in range(24)}} for i, d in enumerate(WEEKDAYS)]

    visits = defaultdict(int)
    for v in facts.visits.values():
        if inside(v["started"]):
            visits[v["member"]] += 1
    buying = [s for s in sales if (not channel or s["channel"] == channel)]
    buyers = {s["customer"] for s in buying if s["customer"]}
    purchases = sum(1 for s in buying if s["customer"])
    out["repeat"] = [{"visitors": len(visits), "repeat_visitors": sum(n >= 2 for n in visits.values()),
                      "repeat_visit_rate": sum(n >= 2 for n in visits.values()) / len(visits) if visits else 0.0,
                      "visits": sum(visits.values()), "buyers": len(buyers), "purchases": purchases,
                      "purchase_frequency": round(purchases / len(buyers), 3) if buyers else 0.0}]

    kiosks = defaultdict(lambda: dict.fromkeys(("sessions", "check_ins", "scans", "out_of_stock_scans", "assists",
                                                "carts_sent", "offers_shown"), 0))
    names = {"session.started": "sessions", "scan.member": "check_ins", "scan.product": "scans",
             "assist.requested": "assists", "cart.sent": "carts_sent", "offer.shown": "offers_shown"}
    for a in facts.activity:
        if inside(a["ts"]):
            kiosks[a["device"]][names[a["type"]]] += 1
            kiosks[a["device"]]["out_of_stock_scans"] += a["out_of_stock"]
    out["kiosks"] = [{"device": d, **kiosks[d]} for d in sorted(kiosks)]

    days = {}
    for i in range((end - start).days + 1):
        day = start + timedelta(days=i)
        days[day] = {"day": day.isoformat(), "sessions": per_day.get(day, 0), "sales": 0, "revenue": 0.0}
    for s in buying:
        row = days[s["ts"].astimezone(tz).date()]
        row["sales"] += 1
        row["revenue"] += s["total"]
    out["daily"] = list(days.values())
    return out
