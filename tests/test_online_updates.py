"""The queue of updates for the online store: cart lines survive an outage and arrive exactly once."""

from __future__ import annotations

import logging
import random
import threading
import uuid
from datetime import datetime, timedelta

import pytest
from conftest import wait_for
from werkzeug.serving import make_server

from demo import seed
from demo.broker import free_port
from demo.online_store import create_app as create_online_store
from hub.online import CustomerNotFound, OnlineStoreRefused, OnlineStoreUnauthorized, RestOnlineStore
from hub.online_updates import BACKOFF_MAX_S, KIND_CART_ADD, CartPusher, OnlineUpdates, backoff_s, insert_update
from hub.store import migrate, open_hub_db
from protocol.envelope import parse_ts

KEY = "online-store-key-" + "k" * 16
DATA = seed.build()
NOW = seed.REFERENCE_NOW
MEMBER = "M0001"
# In the catalog, not in M0001's cart: a line for it appears only through the queue.
BOMBER = "04280753005576"
assert BOMBER not in {line["gtin"] for line in DATA.customers[0]["cart"]["items"]}


class FakeClock:
    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class OnlineStoreServer:
    """The demo online store on a real socket; counts the cart POSTs that reach it."""

    def __init__(self, port: int = 0):
        app = create_online_store(DATA, KEY, clock=lambda: NOW)
        self.posts: list[dict] = []
        inner = app.wsgi_app

        def counting(environ, start_response):
            if environ["REQUEST_METHOD"] == "POST":
                self.posts.append({"path": environ["PATH_INFO"]})
            return inner(environ, start_response)

        app.wsgi_app = counting
        self.http = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def db_path(tmp_path):
    """A hub database file with every migration applied, as the running hub has it."""
    path = tmp_path / "hub.db"
    assert "003_online_updates" in migrate(open_hub_db(path))
    return path


@pytest.fixture
def updates(db_path):
    return OnlineUpdates(open_hub_db(db_path))


@pytest.fixture
def online():
    server = OnlineStoreServer()
    yield server
    server.close()


def connector(url: str, key: str = KEY) -> RestOnlineStore:
    return RestOnlineStore(url, key, timeout_s=0.5)


def cart_lines(url: str, gtin: str = BOMBER, member: str = MEMBER) -> list[dict]:
    return [line for line in connector(url).customer(member)["cart"]["items"] if line["gtin"] == gtin]


def queue_line(updates: OnlineUpdates, gtin: str = BOMBER, member: str = MEMBER, quantity: int = 1,
               key: str | None = None) -> str:
    key = key or str(uuid.uuid4())
    assert updates.enqueue(key, KIND_CART_ADD, member, {"gtin": gtin, "quantity": quantity}, now=NOW)
    return key


# --- the queue -------------------------------------------------------------------------------

def test_the_same_key_enqueued_twice_is_one_update(updates):
    key = queue_line(updates)
    assert updates.enqueue(key, KIND_CART_ADD, MEMBER, {"gtin": BOMBER, "quantity": 5}, now=NOW) is False
    assert updates.get(key)["payload"] == {"gtin": BOMBER, "quantity": 1}
    assert updates.counts() == {"pending": 1, "done": 0, "failing": 0}


def test_a_queued_update_survives_closing_and_reopening_the_database(updates, db_path):
    key = queue_line(updates)
    updates.db.conn.close()
    reopened = OnlineUpdates(open_hub_db(db_path))
    assert [row["key"] for row in reopened.due(NOW, 10)] == [key]


def test_due_leaves_out_updates_waiting_for_their_retry_and_finished_ones(updates):
    waiting, finished, ready = queue_line(updates), queue_line(updates), queue_line(updates)
    updates.mark_failed(waiting, "unavailable", NOW, retry_in_s=60)
    updates.mark_done(finished, NOW)
    assert [row["key"] for row in updates.due(NOW, 10)] == [ready]
    assert {row["key"] for row in updates.due(NOW + timedelta(seconds=61), 10)} == {waiting, ready}
    assert updates.counts() == {"pending": 1, "done": 1, "failing": 1}
    assert updates.forget_done(NOW + timedelta(seconds=1)) == 1 and updates.get(finished) is None


def test_a_line_queued_inside_the_ingest_transaction_commits_or_rolls_back_with_it(updates, db_path):
    writer = open_hub_db(db_path)  # the ingest writer's own connection
    line = {"gtin": BOMBER, "quantity": 1}
    writer.conn.execute("BEGIN IMMEDIATE")
    assert insert_update(writer, "rolled-back", KIND_CART_ADD, MEMBER, line, NOW)
    writer.conn.execute("ROLLBACK")
    writer.conn.execute("BEGIN IMMEDIATE")
    assert insert_update(writer, "committed", KIND_CART_ADD, MEMBER, line, NOW)
    writer.conn.execute("COMMIT")
    assert updates.get("rolled-back") is None and updates.get("committed")["payload"] == line


# --- delivery --------------------------------------------------------------------------------

def test_a_line_queued_while_the_online_store_is_down_arrives_exactly_once_when_it_is_up(updates):
    port, clock = free_port(), FakeClock()
    pusher = CartPusher(updates, connector(f"http://127.0.0.1:{port}"), clock=clock, attempt_budget_s=0.2)
    key = queue_line(updates)
    assert pusher.run_once() == 1
    row = updates.get(key)
    assert row["done_at"] is None and row["attempts"] == 1 and row["last_error"] == "unavailable"

    server = OnlineStoreServer(port)
    try:
        clock.advance(BACKOFF_MAX_S)
        assert pusher.run_once() == 1
        assert updates.get(key)["done_at"] is not None
        # The same tap arrives again through event ingest: nothing new is queued or sent.
        assert updates.enqueue(key, KIND_CART_ADD, MEMBER, {"gtin": BOMBER, "quantity": 1}, now=clock()) is False
        clock.advance(BACKOFF_MAX_S)
        assert pusher.run_once() == 0
        assert pusher.push_now(key) == "added"
        assert len(server.posts) == 1
        assert [line["quantity"] for line in cart_lines(server.url)] == [1]
    finally:
        server.close()
    assert pusher.counters == {"added": 1, "refused": 0, "failed": 1}


def test_push_now_says_queued_when_the_store_is_down_and_added_when_it_is_up(updates):
    port = free_port()
    pusher = CartPusher(updates, connector(f"http://127.0.0.1:{port}"))
    key = queue_line(updates)
    assert pusher.push_now(key, budget_s=0.2) == "queued"
    assert updates.counts() == {"pending": 0, "done": 0, "failing": 1}
    server = OnlineStoreServer(port)
    try:
        assert pusher.push_now(key, budget_s=0.5) == "added"
        assert updates.counts() == {"pending": 0, "done": 1, "failing": 0}
        assert len(cart_lines(server.url)) == 1
    finally:
        server.close()


def test_a_retry_after_a_lost_answer_adds_no_second_line(updates, online):
    """The online store added the line but its answer never arrived: the retry carries the same
    idempotency key, so the cart still holds one line of one."""
    pusher = CartPusher(updates, connector(online.url), clock=FakeClock())
    key = queue_line(updates)
    connector(online.url).add_to_cart(MEMBER, BOMBER, 1, key)  # the attempt whose answer was lost
    assert pusher.push_now(key) == "added"
    assert [line["quantity"] for line in cart_lines(online.url)] == [1]
    assert len(online.posts) == 2


def test_two_taps_are_two_keys_and_raise_the_quantity(updates, online):
    pusher = CartPusher(updates, connector(online.url), clock=FakeClock())
    queue_line(updates), queue_line(updates)
    assert pusher.run_once() == 2
    assert [line["quantity"] for line in cart_lines(online.url)] == [2]


@pytest.mark.parametrize("member, gtin", [(MEMBER, "04000000000001"), ("M9999", BOMBER)],
                         ids=["unknown-product", "unknown-customer"])
def test_a_line_the_online_store_can_never_accept_is_refused_not_retried_forever(updates, online, member, gtin,
                                                                                 caplog):
    clock = FakeClock()
    pusher = CartPusher(updates, connector(online.url), clock=clock)
    key = queue_line(updates, gtin=gtin, member=member)
    with caplog.at_level(logging.WARNING, logger="hub.online_updates"):
        assert pusher.run_once() == 1
    row = updates.get(key)
    assert row["done_at"] is not None and row["last_error"] == "not_found"
    assert pusher.counters["refused"] == 1
    assert any(getattr(r, "reason", None) == "not_found" for r in caplog.records)
    clock.advance(86400)
    assert pusher.run_once() == 0 and len(online.posts) == 1
    assert pusher.push_now(key) == "refused"


def test_a_malformed_queued_line_is_refused_without_asking_the_online_store(updates, online):
    pusher = CartPusher(updates, connector(online.url), clock=FakeClock())
    updates.enqueue("bad", KIND_CART_ADD, MEMBER, {"gtin": "not-a-gtin"}, now=NOW)
    assert pusher.push_now("bad") == "refused"
    assert updates.get("bad")["last_error"] == "malformed" and online.posts == []


def test_a_wrong_api_key_keeps_the_line_queued_and_never_logs_the_key(updates, online, caplog):
    wrong_key = "wrong-key-" + "x" * 20
    pusher = CartPusher(updates, connector(online.url, key=wrong_key), clock=FakeClock())
    key = queue_line(updates)
    with caplog.at_level(logging.DEBUG):
        assert pusher.push_now(key) == "queued"
    row = updates.get(key)
    assert row["done_at"] is None and row["last_error"] == "unauthorized"
    assert all(wrong_key not in str(vars(record)) for record in caplog.records)
    assert wrong_key not in repr(connector(online.url, key=wrong_key))


# --- backoff ---------------------------------------------------------------------------------

def test_backoff_doubles_from_one_second_to_fifteen_minutes_with_jitter():
    rng = random.Random(7)
    for attempts in range(1, 16):
        ceiling = min(BACKOFF_MAX_S, 2.0 ** (attempts - 1))
        draws = [backoff_s(attempts, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in draws), attempts
        assert len(set(draws)) > 40  # jittered, not one fixed value


def test_the_thread_backs_off_longer_after_each_failure(updates):
    clock, waits, enough = FakeClock(), [], threading.Event()

    def sleep(seconds: float) -> None:  # the thread idles on the fake clock
        waits.append(seconds)
        clock.advance(seconds)
        if len(waits) >= 13:
            enough.set()
            threading.Event().wait(0.01)

    pusher = CartPusher(updates, connector(f"http://127.0.0.1:{free_port()}"), clock=clock, sleep=sleep,
                        rng=random.Random(3), attempt_budget_s=0.05, idle_max_s=86400)
    key = queue_line(updates)
    pusher.start()
    try:
        assert enough.wait(30)
    finally:
        pusher.stop()
    gaps = waits[:12]
    # The ceiling doubles up to the 11th failure (1 s … 512 s, then 15 min); from there it stays.
    assert gaps[:11] == sorted(gaps[:11]) and gaps[0] <= 1.0
    assert all(BACKOFF_MAX_S / 2 <= gap <= BACKOFF_MAX_S for gap in gaps[10:])
    assert any(gap != 2 ** i for i, gap in enumerate(gaps))
    row = updates.get(key)
    assert row["done_at"] is None and row["attempts"] >= 12
    assert parse_ts(row["next_attempt_at"]) > clock() - timedelta(seconds=BACKOFF_MAX_S)


def test_the_thread_delivers_once_the_online_store_comes_back(updates):
    port = free_port()
    pusher = CartPusher(updates, connector(f"http://127.0.0.1:{port}"), attempt_budget_s=0.2).start()
    server = None
    try:
        key = queue_line(updates)
        pusher.wake()
        wait_for(lambda: updates.get(key)["attempts"] >= 1, timeout=5, what="a first failed attempt")
        server = OnlineStoreServer(port)
        wait_for(lambda: updates.get(key)["done_at"], timeout=10, what="the line to be delivered")
        assert len(cart_lines(server.url)) == 1
    finally:
        pusher.stop()
        if server:
            server.close()


def test_wake_makes_an_idle_thread_push_a_new_line_at_once(updates, online):
    pusher = CartPusher(updates, connector(online.url), idle_max_s=60).start()
    try:
        wait_for(lambda: pusher._thread and pusher._thread.is_alive(), what="the pusher thread")
        threading.Event().wait(0.2)  # let it go idle for up to a minute
        key = queue_line(updates, key=str(uuid.uuid4()))
        pusher.wake()
        wait_for(lambda: updates.get(key)["done_at"], timeout=5, what="the woken thread to push")
    finally:
        pusher.stop()


# --- the connector ---------------------------------------------------------------------------

def test_connector_add_to_cart_returns_the_cart_and_names_its_refusals(online):
    store = connector(online.url)
    cart = store.add_to_cart(MEMBER, BOMBER, 2, "k-1")
    assert {"gtin": BOMBER, "name": "Recycled Nylon Bomber, Sand", "quantity": 2, "price": 45.95} in cart["items"]
    with pytest.raises(CustomerNotFound):
        store.add_to_cart("M9999", BOMBER, 1, "k-2")
    with pytest.raises(OnlineStoreRefused) as refused:
        store.add_to_cart(MEMBER, BOMBER, 3, "k-1")  # the key of another line
    assert refused.value.code == "refused"
    with pytest.raises(OnlineStoreUnauthorized):
        connector(online.url, key="nope").add_to_cart(MEMBER, BOMBER, 1, "k-3")


def test_connector_retries_a_cart_post_after_5xx_and_429_without_adding_twice():
    """The first POST is added but its answer is lost behind a 503; then a 429 with Retry-After;
    the third try gets the cart. The shared idempotency key keeps it at one line of one."""
    server = OnlineStoreServer()
    inner = server.http.app.wsgi_app
    script, tries = ["lost", "busy"], []

    def flaky(environ, start_response):
        tries.append(environ["REQUEST_METHOD"])
        step = script.pop(0) if environ["REQUEST_METHOD"] == "POST" and script else None
        if step == "lost":
            b"".join(inner(environ, lambda *args, **kwargs: None))  # the store does the work…
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"error": {"code": "x", "message": "x"}}']  # …but the answer never arrives
        if step == "busy":
            start_response("429 Too Many Requests", [("Retry-After", "0.1"), ("Content-Type", "application/json")])
            return [b'{"error": {"code": "x", "message": "x"}}']
        return inner(environ, start_response)

    server.http.app.wsgi_app = flaky
    slept: list[float] = []
    try:
        store = RestOnlineStore(server.url, KEY, timeout_s=3.0, sleep=slept.append)
        cart = store.add_to_cart(MEMBER, BOMBER, 1, "tap-1")
        assert [line["quantity"] for line in cart["items"] if line["gtin"] == BOMBER] == [1]
        assert tries == ["POST"] * 3 and len(server.posts) == 2 and slept[1] == 0.1
        assert [line["quantity"] for line in cart_lines(server.url)] == [1]
    finally:
        server.close()
