"""How every Omnikiosk process builds its MQTT 5 client: one place for session, will and TLS choices.

Building a client opens nothing; the caller connects it.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import _ConnectionState
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol.backoff import Backoff

log = logging.getLogger("mqtt")


@dataclass(frozen=True)
class BrokerLogin:
    host: str
    port: int
    username: str
    password: str
    keepalive: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    def __repr__(self) -> str:  # never print the password
        return f"BrokerLogin({self.username}@{self.host}:{self.port}, tls={'on' if self.tls_ca else 'off'})"


class JitteredClient(mqtt.Client):
    """paho's client with our reconnect schedule (protocol.backoff) instead of its fixed doubling,
    which has no jitter and resets the moment a connection is accepted. The owner calls
    `backoff.connected()` / `backoff.disconnected()` from its on_connect / on_disconnect."""

    def __init__(self, *args, backoff: Backoff, **kwargs):
        super().__init__(*args, **kwargs)
        self.backoff = backoff

    def _reconnect_wait(self) -> None:  # paho 2.x calls this between attempts in its network thread
        delay = self.backoff.next_delay()
        log.info("reconnecting to the broker", extra={"in_s": round(delay, 2), "attempt": self.backoff.attempt})
        deadline = time.monotonic() + delay
        while not self._thread_terminate and self._state not in (_ConnectionState.MQTT_CS_DISCONNECTING,
                                                             _ConnectionState.MQTT_CS_DISCONNECTED):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(remaining, 0.25))


def build_client(client_id: str, login: BrokerLogin, *, will_topic: str, will_payload: bytes,
                 manual_ack: bool = False, backoff: Backoff | None = None) -> JitteredClient:
    """A paho 2.x MQTT 5 client whose broker session survives disconnects (clean_start=False
    at connect, see `connect_properties`), with a retained last will and jittered reconnects."""
    client = JitteredClient(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                            manual_ack=manual_ack, backoff=backoff or Backoff())
    client.username_pw_set(login.username, login.password)
    client.will_set(will_topic, will_payload, qos=1, retain=True)
    if login.tls_ca:
        client.tls_set(ca_certs=login.tls_ca, certfile=login.tls_cert or None, keyfile=login.tls_key or None,
                       tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return client


def connect_properties(login: BrokerLogin) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = login.session_expiry_s
    return props


def connect(client: mqtt.Client, login: BrokerLogin) -> None:
    """Start connecting in the background; paho's loop reconnects by itself after any drop."""
    client.connect_async(login.host, login.port, keepalive=login.keepalive, clean_start=False,
                         properties=connect_properties(login))
