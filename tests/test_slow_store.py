"""A slow database never stalls a call's audio: the store works on threads of its own, off the event loop.

Each test holds SQLite's write lock from another connection (as a busy replica or a long owner export would)
while the agent books, so the booking waits seconds for the database. Meanwhile the call must go on as if
nothing happened: the caller's audio keeps reaching the model, and the agent's voice keeps playing. Then the
lock goes and the booking lands.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.restaurant.config import RestaurantConfig, load_config
from components.store.reservations import ReservationStore
from tests.call_driver import CallDriver
from tests.domain_fixtures import bookable_day
from tests.engine_calls import Exchange, fake_model, outputs, run_call

pytestmark = pytest.mark.timeout(120)
LOCKED_S = 2.0


@pytest.fixture
def config() -> RestaurantConfig:
    return load_config()


@contextlib.contextmanager
def locked_for(database: Path, seconds: float) -> Iterator[dict[str, float]]:
    """Hold the database's write lock from another connection for `seconds`, from now (in a thread)."""
    times: dict[str, float] = {}
    taken = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(database, timeout=5)
        connection.execute("BEGIN EXCLUSIVE")
        times["from"] = time.monotonic()
        taken.set()
        time.sleep(seconds)
        connection.rollback()
        times["until"] = time.monotonic()
        connection.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    taken.wait(5)
    try:
        yield times
    finally:
        thread.join(seconds + 5)


def booking_script(config: RestaurantConfig, engine: str):  # noqa: ANN201 (the engine's fake)
    day = bookable_day(config)
    details = {"guest_name": "Yamada", "date": day, "time": "19:00", "party_size": 2}
    return fake_model(
        engine,
        "Hello, this is AI-SHIFT.",
        [
            Exchange("Yamada, two, at seven.", "Shall I book it?", [("update_reservation", details)]),
            Exchange("Yes, please.", lambda out: f"Booked, number {out['booking_id']}.", [("confirm_reservation", {})]),
        ],
    )


def test_the_callers_audio_keeps_reaching_the_model_while_a_booking_waits_for_the_database(
    config: RestaurantConfig, tmp_path: Path, monkeypatch
) -> None:
    database = tmp_path / "reservations.db"
    store = ReservationStore(database)
    moments: dict[str, float] = {}

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.turn("Yamada, two, at seven.")
        with locked_for(database, LOCKED_S) as lock:
            answer = await call.turn("Yes, please.")
        moments.update(lock)
        assert call.card["status"] == "confirmed", call.card
        assert call.card["booking_id"] in answer

    with booking_script(config, "realtime") as server:
        run_call("realtime", server, config, store, conversation, env=monkeypatch)
        appends = [event["_t"] for event in server.client_events("input_audio_buffer.append")]
        answers = server.client_events("conversation.item.create")
        confirmed = [e["_t"] for e in answers if e["item"]["type"] == "function_call_output"][-1]

    assert [name for name, _ in outputs(server)] == ["update_reservation", "confirm_reservation"]
    assert confirmed > moments["until"] - 0.05  # the booking really waited for the lock
    during = [t for t in appends if moments["from"] <= t <= moments["until"]]
    gaps = [b - a for a, b in zip(during, during[1:], strict=False)]
    assert len(during) > LOCKED_S * 40  # 50 frames a second, give or take the loop
    assert max(gaps) < 0.25, f"the caller's audio stalled for {max(gaps):.2f} s"
