"""The hub's answers to devices' requests: member.welcome, member.offers, product.detail, cart.add,
catalog.changes — on a few workers of their own, each device rate-limited.

A request arrives on `devices/{d}/requests` with an MQTT 5 ResponseTopic and CorrelationData.
The answer goes to that device's own `responses` topic only: a request naming another topic
is refused (the hub may write anywhere in the store; a device must not borrow that to
reach another device's commands). The kiosk waits about 0.3 s, so each answer has a budget
and says `unavailable` rather than arriving late.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub import offers
from hub.catalog import HubCatalog
from hub.online_updates import CartPusher, OnlineUpdates
from hub.profiles import ProfileSource
from protocol import requests as wire
from protocol.envelope import format_ts
from protocol.topics import Topics

log = logging.getLogger("hub.answers")

ANSWER_EXPIRY_S = 10


class AnswerError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class TokenBucket:
    """`rate` requests a second with bursts up to `burst`, per device. Pure (time passed in)."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}  # device → (tokens, at)

    def allow(self, device: str, now: float) -> bool:
        tokens, at = self._buckets.get(device, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= 1
        self._buckets[device] = (tokens - 1 if allowed else tokens, now)
        return allowed


class Answers:
    """What each method answers; pure of MQTT. Raises AnswerError with a protocol error code."""

    def __init__(self, *, store: str, catalog: HubCatalog, profiles: ProfileSource, updates: OnlineUpdates,
                 pusher: CartPusher | None, offers_secret: bytes, engine: offers.OfferEngine | None = None,
                 profile_budget_s: float = 0.2,
                 cart_budget_s: float = 0.2, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.store = store
        self.catalog = catalog
        self.profiles = profiles
        self.updates = updates
        self.pusher = pusher
        self.offers_secret = offers_secret
        self.engine = engine or offers.OfferEngine.from_file(None)
        self.profile_budget_s = profile_budget_s
        self.cart_budget_s = cart_budget_s
        self._clock = clock
        self.methods: dict[str, Callable[[str, dict[str, Any]], Any]] = {
            "member.welcome": self.member_welcome,
            "member.offers": self.member_offers,
            "product.detail": self.product_detail,
            "cart.add": self.cart_add,
            "catalog.changes": self.catalog_changes,
            "clock.now": self.clock_now,
        }
        assert set(self.methods) == set(wire.METHODS), "every protocol method needs an answer"

    def _profile(self, member: str) -> dict[str, Any]:
        profile, source, _ = self.profiles.get(member, self._clock(), budget_s=self.profile_budget_s)
        if profile is None:
            if source == "unknown":
                raise AnswerError("not_found", "no such member")
            raise AnswerError("unavailable", "the member's profile cannot be fetched right now")
        return profile

    def _valued(self, profile: dict[str, Any]) -> tuple[datetime, dict[str, Any], dict[str, Any]]:
        """Now, stock here and the catalog's products (prices and promotions as online) for this member."""
        now = self._clock()
        stock = self.catalog.stock_here(offers.profile_gtins(profile), self.store)
        products = offers.offer_products(self.engine, profile, self.catalog, store=self.store, now=now)
        return now, stock, products

    def member_welcome(self, device: str, params: dict[str, Any]) -> dict[str, Any]:
        profile = self._profile(params["member"])
        now, stock, products = self._valued(profile)
        return self.engine.welcome(profile, stock_here=stock, products=products, now=now, secret=self.offers_secret)

    def member_offers(self, device: str, params: dict[str, Any]) -> dict[str, Any]:
        profile = self._profile(params["member"])
        now, stock, products = self._valued(profile)
        return {"offers": self.engine.offers(profile, stock_here=stock, products=products, now=now,
                                             secret=self.offers_secret, gtin=params.get("gtin")),
                "wishlist_here": offers.wishlist_here(profile, stock)}

    def product_detail(self, device: str, params: dict[str, Any]) -> dict[str, Any]:
        product = self.catalog.product(params["gtin"], self.store)
        if product is None:
            raise AnswerError("not_found", "no such product in the catalog")
        return product

    def cart_add(self, device: str, params: dict[str, Any]) -> dict[str, Any]:
        if self.catalog.product(params["gtin"], self.store) is None:
            raise AnswerError("not_found", "no such product in the catalog")
        # The kiosk's cart.sent event id keys the line, so this request and the event (which the
        # hub ingests later) make one online cart line, never two.
        key = params.get("event_id") or str(uuid.uuid4())
        self.updates.enqueue(key, "cart.add", params["member"],
                             {"gtin": params["gtin"], "quantity": params.get("quantity") or 1, "device": device})
        status = self.pusher.push_now(key, self.cart_budget_s) if self.pusher else "queued"
        if status == "refused":
            raise AnswerError("not_found", "the online store refused this cart line (unknown member or product)")
        return {"status": status}

    def catalog_changes(self, device: str, params: dict[str, Any]) -> dict[str, Any]:
        if self.catalog.version == 0:
            # A hub with no catalog yet must not answer "nothing": a resyncing kiosk would sweep its own.
            raise AnswerError("unavailable", "the hub has no catalog yet")
        try:
            return self.catalog.changes(params["since"], params.get("cursor"), params.get("limit") or 200)
        except ValueError as exc:
            raise AnswerError("bad_request", str(exc)) from None


    def clock_now(self, device: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"now": format_ts(self._clock())}


class RequestDesk:
    """Takes requests off paho's thread, answers each on a worker, acknowledges it to the broker."""

    def __init__(self, *, topics: Topics, answers: Answers, rate_per_s: float = 20.0, burst: float = 40.0,
                 workers: int = 4, monotonic: Callable[[], float] = time.monotonic):
        self.topics = topics
        self.answers = answers
        self.limits = TokenBucket(rate_per_s, burst)
        self.workers = workers
        self._monotonic = monotonic
        self._queue: "queue.Queue[mqtt.MQTTMessage | None]" = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._limits_lock = threading.Lock()
        self.client: mqtt.Client | None = None
        self.counters: Counter = Counter()

    def bind(self, client: mqtt.Client) -> None:
        self.client = client

    def submit(self, message: mqtt.MQTTMessage) -> None:
        """paho's thread: queue only."""
        self._queue.put(message)

    def start(self) -> "RequestDesk":
        for index in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"request-desk-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(5)

    def _run(self) -> None:
        while (message := self._queue.get()) is not None:
            try:
                self.handle(message)
            except Exception:
                log.exception("answering a request failed")
            finally:
                if self.client is not None:
                    self.client.ack(message.mid, message.qos)

    def handle(self, message: mqtt.MQTTMessage) -> dict[str, Any] | None:
        """Answer one request; returns the answer sent (None when it could not be answered at all)."""
        where = self.topics.parse_device_topic(message.topic)
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        if where is None or where[1] != "requests":
            self.counters["bad_topic"] += 1
            return None
        device = where[0]
        if response_topic != self.topics.device(device, "responses"):
            self.counters["bad_response_topic"] += 1
            log.warning("request refused: it names a response topic that is not its device's own",
                        extra={"device": device, "response_topic": str(response_topic)[:120]})
            return None
        if not isinstance(correlation, bytes) or not 0 < len(correlation) <= wire.MAX_CORRELATION_BYTES:
            self.counters["bad_correlation"] += 1
            log.warning("request refused: no usable correlation data", extra={"device": device})
            return None
        started = time.perf_counter()
        with self._limits_lock:
            allowed = self.limits.allow(device, self._monotonic())
        request = wire.parse_request(message.payload)
        if not allowed:
            answer = wire.error("rate_limited", "too many requests from this device; slow down")
        elif not request:
            answer = request.as_response()
        else:
            answer = self._answer(device, request)
        code = "ok" if answer["ok"] else answer["error"]["code"]
        self.counters[code] += 1
        log.info("request answered", extra={"device": device, "method": getattr(request, "method", None),
                                            "outcome": code, "ms": round((time.perf_counter() - started) * 1000, 1)})
        self._publish(response_topic, correlation, answer)
        return answer

    def _answer(self, device: str, request: wire.Request) -> dict[str, Any]:
        try:
            return wire.ok(self.answers.methods[request.method](device, request.params))
        except AnswerError as exc:
            return wire.error(exc.code, exc.message)
        except Exception:
            log.exception("request failed", extra={"device": device, "method": request.method})
            return wire.error("internal", "the hub failed to answer; see its log")

    def _publish(self, topic: str, correlation: bytes, answer: dict[str, Any]) -> None:
        payload = wire.encode(answer)
        if len(payload) > wire.MAX_RESPONSE_BYTES + 4096:
            log.error("answer too large for the broker; sending an error instead", extra={"bytes": len(payload)})
            payload = wire.encode(wire.error("internal", "the answer was too large"))
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = correlation
        props.MessageExpiryInterval = ANSWER_EXPIRY_S
        if self.client is not None:
            self.client.publish(topic, payload, qos=1, properties=props)


def offers_secret(session_key: str) -> bytes:
    """The key behind offer redemption codes, derived from the hub's own secret (never sent anywhere)."""
    return hashlib.sha256(b"omnikiosk-offer-codes\0" + session_key.encode()).digest()
