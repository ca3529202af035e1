"""Staff accounts: roles, password hashing and policy, and the login throttle. Pure apart from the store."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from werkzeug.security import check_password_hash, generate_password_hash

ROLES = ("associate", "manager", "it")
MIN_PASSWORD_CHARS = 10
DEMO_LOGIN = ("demo", "demo")


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def password_matches(stored_hash: str, password: str) -> bool:
    return check_password_hash(stored_hash, password)


def password_problem(username: str, password: str, *, demo: bool) -> str | None:
    """Why a password is not acceptable, or None. The demo login is allowed only in demo mode."""
    if (username, password) == DEMO_LOGIN:
        return None if demo else "the demo login demo/demo is allowed only in demo mode"
    if len(password) < MIN_PASSWORD_CHARS:
        return f"use at least {MIN_PASSWORD_CHARS} characters"
    if password.lower() == username.lower():
        return "the password must differ from the username"
    return None


PIN_DIGITS = (4, 8)


def pin_problem(pin: str) -> str | None:
    """Why a PIN is not acceptable, or None. A PIN works only on a registered tablet, and is throttled there."""
    if not (isinstance(pin, str) and pin.isascii() and pin.isdigit() and PIN_DIGITS[0] <= len(pin) <= PIN_DIGITS[1]):
        return f"use {PIN_DIGITS[0]} to {PIN_DIGITS[1]} digits"
    if len(set(pin)) == 1 or pin in "0123456789012345" or pin in "9876543210987654":
        return "avoid repeated or consecutive digits"
    return None


def hash_pin(pin: str) -> str:
    return generate_password_hash(pin, method="scrypt")


def verify_pin(staff: dict | None, pin: str) -> bool:
    if staff is None or staff.get("disabled") or not staff.get("pin_hash"):
        password_matches(_UNKNOWN_USER_HASH, pin)
        return False
    return password_matches(staff["pin_hash"], pin)


# A hash to check against when the user does not exist, so timing does not reveal valid usernames.
_UNKNOWN_USER_HASH = hash_password("omnikiosk-no-such-user")


def verify_login(staff: dict | None, password: str) -> bool:
    if staff is None or staff.get("disabled"):
        password_matches(_UNKNOWN_USER_HASH, password)
        return False
    return password_matches(staff["password_hash"], password)


@dataclass
class LoginThrottle:
    """Locks a key (a username, or a client address) out after repeated failures within a window."""

    max_failures: int = 5
    window_s: float = 300.0
    lockout_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)

    def locked(self, key: str) -> float:
        """Seconds left on the key's lock-out (0 when free)."""
        return max(0.0, self._locked_until.get(key, 0) - self.clock())

    def failed(self, key: str) -> None:
        now = self.clock()
        recent = [t for t in self._failures.get(key, []) if now - t < self.window_s] + [now]
        self._failures[key] = recent
        if len(recent) >= self.max_failures:
            self._locked_until[key] = now + self.lockout_s
            self._failures[key] = []

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
