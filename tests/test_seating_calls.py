"""Guests booking real tables by voice, on every engine: the restaurant has two two-tops that push together, a
four-top and a counter (`SEATING`). The code picks the table; the model only passes on where the guest would
like to sit. Each test reads like the call, then looks at the tables the store gave the booking."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from components.restaurant.config import RestaurantConfig, load_config
from components.restaurant.fields import Reservation
from components.settings import ENGINES
from components.store.reservations import ReservationStore
from tests.call_driver import CallDriver
from tests.domain_fixtures import bookable_day, seating_config
from tests.engine_calls import Exchange, fake_model, run_call

pytestmark = [pytest.mark.timeout(150), pytest.mark.parametrize("engine", ENGINES)]
GREETING = "Hello, this is AI-SHIFT. How can I help?"


@pytest.fixture
def config(tmp_path: Path) -> RestaurantConfig:
    return load_config(seating_config(tmp_path))


@pytest.fixture
def store(tmp_path: Path) -> ReservationStore:
    return ReservationStore(tmp_path / "reservations.db")


def booking_call(engine, config, store, monkeypatch, said: str, details: dict) -> dict:
    """The caller asks for a table, hears it read back, agrees; the card's booking, as the store keeps it."""
    model = fake_model(
        engine,
        GREETING,
        [
            Exchange(said, "Shall I book it?", [("update_reservation", details)]),
            Exchange("Yes please.", lambda out: f"Booked, number {out['booking_id']}.", [("confirm_reservation", {})]),
        ],
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.turn(said)
        answer = await call.turn("Yes please.")
        assert call.card["status"] == "confirmed" and call.card["booking_id"] in answer

    with model as server:
        call = run_call(engine, server, config, store, conversation, env=monkeypatch)
    return store.get(call.card["booking_id"])


def test_a_guest_who_asks_for_the_counter_is_seated_there(engine, config, store, monkeypatch) -> None:
    day = bookable_day(config)
    details = {"guest_name": "Mori", "date": day, "time": "19:00", "party_size": 2, "seating": "counter"}
    row = booking_call(engine, config, store, monkeypatch, "Two at seven at the counter, name Mori.", details)
    assert (row["tables"], row["seating"]) == ("C1", "counter")


def test_a_party_of_two_gets_a_two_top_not_the_four_top(engine, config, store, monkeypatch) -> None:
    day = bookable_day(config)
    details = {"guest_name": "Sato", "date": day, "time": "19:00", "party_size": 2}
    row = booking_call(engine, config, store, monkeypatch, "A table for two at seven, name Sato.", details)
    assert (row["tables"], row["seating"]) == ("T1", None)


def test_four_guests_sit_at_two_two_tops_pushed_together_when_the_four_top_is_taken(
    engine, config, store, monkeypatch
) -> None:
    day = bookable_day(config)
    earlier = Reservation("Early", dt.date.fromisoformat(day), dt.time(19), 4)
    assert store.get(store.book(earlier, config, dt.datetime.now(dt.UTC)))["tables"] == "T3"
    details = {"guest_name": "Ito", "date": day, "time": "19:00", "party_size": 4}
    row = booking_call(engine, config, store, monkeypatch, "Four of us at seven, name Ito.", details)
    assert row["tables"] == "T1+T2"
