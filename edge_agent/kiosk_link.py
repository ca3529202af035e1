"""The agent's calls to the kiosk process on the same device: its health (for telemetry) and
its control API (for IT's commands). Standard library HTTP: the agent stays lean."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class KioskUnreachable(Exception):
    """The kiosk process did not answer (stopped, restarting, or hung)."""


class KioskLink:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 3.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def health(self) -> dict[str, Any] | None:
        """The kiosk's /healthz, or None when it does not answer."""
        try:
            with urllib.request.urlopen(self.base_url + "/healthz", timeout=min(self.timeout_s, 1.0)) as response:
                body = json.loads(response.read())
        except (OSError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the control API; the kiosk's {"ok": …} answer (also for 4xx). KioskUnreachable otherwise."""
        request = urllib.request.Request(
            self.base_url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
        except OSError as exc:
            raise KioskUnreachable(f"the kiosk at {self.base_url} did not answer ({type(exc).__name__})") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise KioskUnreachable(f"the kiosk at {self.base_url} answered something that is not JSON") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
            raise KioskUnreachable(f"the kiosk at {self.base_url} answered without 'ok'")
        return answer
