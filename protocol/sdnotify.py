"""Tell systemd how a process is doing (sd_notify): READY=1 once started, WATCHDOG=1 while its work loop turns.

A dependency-free client of the protocol in sd_notify(3): one datagram per message to the
AF_UNIX socket named by $NOTIFY_SOCKET ('@' at the start names an abstract socket). Outside
systemd the variable is unset and every call does nothing, so the kiosk, the agent and the
hub run the same code in tests, the demo and a Type=notify unit with WatchdogSec=.

    watchdog = Watchdog()           # one per process
    while running:                  # the loop that does the real work
        step()
        watchdog.tick()             # READY=1 the first time, then WATCHDOG=1 at most every interval/2

Nothing here raises: a process must never die because systemd could not be told something.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable, Mapping

log = logging.getLogger("protocol.sdnotify")

_failed_once = threading.Event()   # a failed send is logged once per process, not once per tick


def notify(state: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1", "WATCHDOG=1", "STATUS=waiting for the camera") to systemd.
    False when not under systemd or when the send failed (logged the first time)."""
    environ = os.environ if environ is None else environ
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]     # Linux abstract namespace
    elif not address.startswith("/"):
        _log_failure(f"NOTIFY_SOCKET={environ['NOTIFY_SOCKET']!r} is neither a path nor an abstract socket (@name)")
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        _log_failure(f"cannot notify systemd at {environ['NOTIFY_SOCKET']}: {exc.strerror or exc}")
        return False
    return True


def _log_failure(message: str) -> None:
    if not _failed_once.is_set():
        _failed_once.set()
        log.warning("%s; systemd's watchdog may restart this process", message)


def watchdog_interval_s(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """WatchdogSec= of this process's unit in seconds, or None when no watchdog watches this process
    (unset, malformed, or meant for another PID, as sd_watchdog_enabled(3) decides)."""
    environ = os.environ if environ is None else environ
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 1_000_000


class Watchdog:
    """READY=1 once and WATCHDOG=1 at most every interval/2, for the loop that proves the process works.

    `ready_on_tick=False` when "started" means more than "the loop turns" (the hub serving its web
    app, the browser showing the kiosk page): call `ready()` then. Safe to call from any thread.
    """

    def __init__(self, *, ready_on_tick: bool = True, environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 send: Callable[..., bool] = notify):
        self.ready_on_tick = ready_on_tick
        self._environ = environ
        self._clock = clock
        self._send = send
        self._lock = threading.Lock()
        self._ready_sent = False
        self._last_ping: float | None = None

    def ready(self) -> None:
        """READY=1, once: systemd considers a Type=notify unit started only now."""
        with self._lock:
            if self._ready_sent:
                return
            self._ready_sent = True
        self._send("READY=1", environ=self._environ)

    def tick(self) -> None:
        """The work loop turned once: say so, but no more often than half the watchdog interval."""
        if self.ready_on_tick:
            self.ready()
        interval = watchdog_interval_s(self._environ)
        if interval is None:
            return
        now = self._clock()
        with self._lock:
            if self._last_ping is not None and now - self._last_ping < interval / 2:
                return
            self._last_ping = now
        self._send("WATCHDOG=1", environ=self._environ)

    def status(self, text: str) -> None:
        """A one-line state for `systemctl status` (STATUS=)."""
        self._send(f"STATUS={text}", environ=self._environ)

    def stopping(self) -> None:
        """STOPPING=1: a clean stop has begun, so a slow shutdown is not mistaken for a hang."""
        self._send("STOPPING=1", environ=self._environ)
