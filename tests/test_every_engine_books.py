"""Every engine takes a booking on the packages installed now: the guard against a dependency that breaks one.

A transitive release once broke the pipeline engine at start-up (`httpx2` refused the `httpx.Timeout` we handed the
SDK), and nothing noticed because the tests ran on packages an older install had left behind. CI now installs the
lock into a fresh virtual environment; this test starts one whole call on each engine `VOICE_ENGINE` accepts (an
engine added later is covered by the same parametrisation) against its fake, with the interpreter and packages of
the test run, so a broken engine fails here by name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from components.restaurant.config import RestaurantConfig, load_config
from components.settings import ENGINES
from components.store.reservations import ReservationStore
from tests.call_driver import CallDriver
from tests.domain_fixtures import bookable_day
from tests.engine_calls import Exchange, fake_model, outputs, run_call

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def config() -> RestaurantConfig:
    return load_config()


@pytest.mark.parametrize("engine", ENGINES)
def test_the_engine_books_a_table(engine: str, config: RestaurantConfig, tmp_path: Path, monkeypatch) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    day = bookable_day(config)
    details = {"guest_name": "Yamada", "date": day, "time": "19:00", "party_size": 2}
    model = fake_model(
        engine,
        "Hello, this is AI-SHIFT. May I have your name and the date?",
        [
            Exchange(
                "Yamada, two people, at seven.",
                "Yamada, two guests at 19:00. Shall I book it?",
                [("update_reservation", details)],
            ),
            Exchange(
                "Yes, please.",
                lambda out: f"Booked. Your number is {out['booking_id']}.",
                [("confirm_reservation", {})],
            ),
        ],
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.turn("Yamada, two people, at seven.")
        answer = await call.turn("Yes, please.")
        assert call.card["status"] == "confirmed", call.card
        assert call.card["booking_id"] in answer

    with model as server:
        call = run_call(engine, server, config, store, conversation, env=monkeypatch)
    assert [name for name, _ in outputs(server)] == ["update_reservation", "confirm_reservation"]
    stored = store.get(call.card["booking_id"])
    assert stored is not None, "the card shows a booking the store does not have"
    assert (stored["guest_name"], stored["date"], stored["time"], stored["party_size"]) == ("Yamada", day, "19:00", 2)
