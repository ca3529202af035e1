"""SQLite as every Omnikiosk process uses it: one way to open a file, one way to write a transaction.

A thin runtime helper (it opens files), like `protocol/mqtt.py`; no pure module imports it.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

import sqlite_utils


def open_db(path: str | Path, *, foreign_keys: bool = False) -> sqlite_utils.Database:
    """WAL (readers never wait for the writer), synchronous FULL (a commit survives a power cut:
    what is acknowledged or shown must), a busy wait for the other process, autocommit mode so
    transactions are explicit (`immediate`)."""
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    if foreign_keys:
        conn.execute("PRAGMA foreign_keys=ON")
    return sqlite_utils.Database(conn)


@contextmanager
def immediate(conn: sqlite3.Connection, lock: threading.Lock | threading.RLock | None = None, *,
              durable: bool = True) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT under `lock`, rolled back on any error, so a reader sees all of a write
    or none of it. `durable=False` commits this one transaction without waiting for the disk
    (synchronous=NORMAL): only for writes a power cut may undo at no cost."""
    with lock if lock is not None else nullcontext():
        if not durable:
            conn.execute("PRAGMA synchronous=NORMAL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            if not durable:
                conn.execute("PRAGMA synchronous=FULL")
