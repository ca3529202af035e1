"""A TCP proxy between a device and its broker that a test can break: pass, drop, stall or slow.

The chaos scenarios (demo/chaos.py) point an edge agent's `mqtt.port` at it and then cut the
store network under load:

  pass   forward both ways
  drop   close every connection (RST) and refuse new ones: a cable pulled, a switch rebooted
  stall  keep every connection open and accept new ones, but forward nothing either way: a
         half-open connection (a Wi-Fi roam, a NAT entry gone). No FIN, no RST: only MQTT
         keepalive can notice it
  slow   forward, but hold each chunk `delay_s` first: a congested link

Threads and plain sockets, no asyncio, so it runs inside a pytest process next to anything.
What was held during a stall flows when the mode goes back to pass, as TCP retransmission
would deliver it, unless an end closed the connection meanwhile.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time

MODES = ("pass", "drop", "stall", "slow")


class NetProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0):
        self.target = (target_host, target_port)
        self.host = host
        self.port = port
        self.mode = "pass"
        self.delay_s = 0.0
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # --- control
    def start(self) -> NetProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept_forever, name=f"netproxy-{self.port}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._close_all()
        if self._listener is not None:
            self._listener.close()

    def set_mode(self, mode: str, delay_s: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        self.delay_s = delay_s
        self.mode = mode
        if mode == "drop":
            self._close_all()

    def pass_(self) -> None:
        self.set_mode("pass")

    def drop(self) -> None:
        self.set_mode("drop")

    def stall(self) -> None:
        self.set_mode("stall")

    def slow(self, delay_s: float = 0.05) -> None:
        self.set_mode("slow", delay_s)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    # --- the work
    def _accept_forever(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "drop":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2.0)
            except OSError:
                _reset(client)  # the broker is down: the device sees its connection refused
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True).start()

    def _pump(self, pair, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self._stop.is_set() and pair in self._pairs:
                if self.mode == "stall":
                    time.sleep(0.02)  # read nothing: what the sender writes waits in the kernel's buffers
                    continue
                ready, _, _ = select.select([src], [], [], 0.1)
                if not ready:
                    continue
                if self.mode == "stall":
                    continue
                data = src.recv(65536)
                if not data:
                    return
                if self.mode == "slow" and self.delay_s:
                    time.sleep(self.delay_s)
                dst.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            self._close(pair)

    def _close(self, pair) -> None:
        with self._lock:
            if pair not in self._pairs:
                return
            self._pairs.discard(pair)
        for sock in pair:
            _reset(sock)

    def _close_all(self) -> None:
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._close(pair)


def _reset(sock: socket.socket) -> None:
    """Close with RST, not FIN: the abrupt end a pulled cable or a rebooted switch gives."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
