"""MQTT topics of protocol v1: the one place that spells them."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "omnikiosk"

# Device-side leaves under {prefix}/{store}/devices/{device}/…, with who publishes them.
DEVICE_LEAVES = {
    "events": "device → hub, QoS 1: one event envelope",
    "status": "device → all, QoS 1 retained, also the LWT: presence",
    "telemetry": "device → hub, QoS 0: health figures",
    "requests": "device → hub, QoS 1: request with MQTT 5 response topic",
    "responses": "hub → device, QoS 1: replies to requests",
    "commands": "hub → device, QoS 1: commands; answered by a command.result event",
    "receipts": "hub → device, QoS 1: seq ranges the hub has committed; only then may the outbox forget them",
}

# What each device may do under its own devices/{device}/ (the broker ACL is built from this).
DEVICE_WRITES = ("events", "status", "telemetry", "requests")
DEVICE_READS = ("responses", "commands", "receipts")


@dataclass(frozen=True)
class Topics:
    """Builds and parses the topics of one store."""

    store: str
    prefix: str = DEFAULT_PREFIX

    @property
    def store_root(self) -> str:
        return f"{self.prefix}/{self.store}"

    def device(self, device: str, leaf: str) -> str:
        if leaf not in DEVICE_LEAVES:
            raise ValueError(f"unknown device topic leaf {leaf!r}; known: {', '.join(DEVICE_LEAVES)}")
        return f"{self.store_root}/devices/{device}/{leaf}"

    def events(self, device: str) -> str:
        return self.device(device, "events")

    def status(self, device: str) -> str:
        return self.device(device, "status")

    def all_devices(self, leaf: str) -> str:
        """Subscription filter for one leaf of every device of the store."""
        if leaf not in DEVICE_LEAVES:
            raise ValueError(f"unknown device topic leaf {leaf!r}")
        return f"{self.store_root}/devices/+/{leaf}"

    @property
    def hub_status(self) -> str:
        return f"{self.store_root}/hub/status"

    @property
    def catalog_version(self) -> str:
        return f"{self.store_root}/catalog/version"

    def parse_device_topic(self, topic: str) -> tuple[str, str] | None:
        """Return (device, leaf) for a device topic of this store, or None."""
        parts = topic.split("/")
        root = self.store_root.split("/")
        if len(parts) != len(root) + 3 or parts[: len(root)] != root or parts[len(root)] != "devices":
            return None
        device, leaf = parts[-2], parts[-1]
        if not device or leaf not in DEVICE_LEAVES:
            return None
        return device, leaf


def all_topic_patterns(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Every topic of protocol v1 as a pattern, for documentation checks."""
    base = f"{prefix}/{{store}}"
    return [f"{base}/devices/{{device}}/{leaf}" for leaf in DEVICE_LEAVES] + [
        f"{base}/hub/status",
        f"{base}/catalog/version",
    ]
