"""Requests from this device to the hub over MQTT 5 request/response, waited for with a deadline.

`ask` publishes on the device's `requests` topic with a ResponseTopic, fresh CorrelationData and
a MessageExpiryInterval (so a broker never hands the hub a question nobody waits for any
more), then waits for the answer that `deliver` hands over from the `responses` topic. A
timeout is an answer (`timeout`), and so is a missing connection (`not_connected`, at once):
the shopper is standing there. Many requests may wait at the same time.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import Counter
from typing import Any, Callable

from protocol import requests as wire

log = logging.getLogger("edge_agent.relay")

# publish(payload, correlation_data, expiry_s) → True when handed to the client
Publish = Callable[[bytes, bytes, int], bool]


class _Waiting:
    __slots__ = ("done", "answer")

    def __init__(self):
        self.done = threading.Event()
        self.answer: dict[str, Any] | None = None


class RequestRelay:
    def __init__(self, publish: Publish):
        self._publish = publish
        self._waiting: dict[bytes, _Waiting] = {}
        self._lock = threading.Lock()
        self.counters: Counter = Counter()

    def ask(self, method: str, params: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """The hub's answer ({"ok": …}) or an error answer; never raises, never waits past timeout_s."""
        checked = wire.check_request(method, params)
        if not checked:
            self.counters["bad_request"] += 1
            return checked.as_response()
        correlation = os.urandom(16)
        waiting = _Waiting()
        with self._lock:
            self._waiting[correlation] = waiting
        try:
            payload = wire.encode({"method": checked.method, "params": checked.params})
            if not self._publish(payload, correlation, max(1, math.ceil(timeout_s))):
                self.counters["not_connected"] += 1
                return wire.error("not_connected", "the hub cannot be reached right now")
            if not waiting.done.wait(timeout_s):
                self.counters["timeout"] += 1
                log.info("request timed out", extra={"method": method, "timeout_s": timeout_s})
                return wire.error("timeout", f"no answer from the hub within {timeout_s:g} s")
        finally:
            with self._lock:
                self._waiting.pop(correlation, None)
        answer = waiting.answer or wire.error("internal", "empty answer")
        self.counters["ok" if answer.get("ok") else answer["error"]["code"]] += 1
        return answer

    def deliver(self, correlation: bytes | None, payload: bytes) -> bool:
        """An answer from `responses` (paho's thread). False when nobody waits for it (late or unknown)."""
        with self._lock:
            waiting = self._waiting.get(correlation or b"")
        if waiting is None:
            self.counters["late_answers"] += 1
            return False
        answer = wire.parse_response(payload)
        waiting.answer = answer if isinstance(answer, dict) else answer.as_response()
        waiting.done.set()
        return True

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._waiting)
