"""Guests looking up, changing and cancelling their booking by voice, asking about the restaurant and leaving
callback requests: each a call on both engines, against the scripted fakes and a real SQLite store.

Each test reads like the call: the caller speaks (espeak-ng audio), the fake model hears the scripted words,
calls the tools and answers with what they returned. The assertions read the tool outputs, the card, the
transcript and the rows in the store.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest

from components.restaurant.config import RestaurantConfig, load_config
from components.restaurant.fields import Reservation
from components.restaurant.lookup import Caller
from components.restaurant.session import ReservationSession
from components.settings import ENGINES
from components.store.reservations import ReservationStore
from tests import postgres
from tests.call_driver import CallDriver
from tests.domain_fixtures import FIRST_RELEASE_ROWS, bookable_day, count, first_release_database, write_config
from tests.engine_calls import Exchange, codes, fake_model, outputs, run_call

pytestmark = [pytest.mark.timeout(150), pytest.mark.parametrize("engine", ENGINES)]
GREETING = "Hello, this is AI-SHIFT. How can I help?"


@pytest.fixture
def config(tmp_path: Path) -> RestaurantConfig:
    """The shipped restaurant, closed on Tuesdays (so a closed day is always near)."""
    return load_config(write_config(tmp_path, {"closed_weekdays = []": 'closed_weekdays = ["tuesday"]'}))


@pytest.fixture
def store(tmp_path: Path) -> ReservationStore:
    return ReservationStore(tmp_path / "reservations.db")


def booked(store: ReservationStore, config: RestaurantConfig, name: str, day: str, time: str = "19:00") -> str:
    """A booking made before the call (on the web, last week)."""
    reservation = Reservation(name, dt.date.fromisoformat(day), dt.time.fromisoformat(time), 2)
    return store.book(reservation, config, dt.datetime.now(dt.UTC), language="en")


def next_tuesday(after: str) -> str:
    day = dt.date.fromisoformat(after) + dt.timedelta(days=1)
    while day.weekday() != 1:
        day += dt.timedelta(days=1)
    return day.isoformat()


def test_a_wrong_name_then_the_right_one(engine, config, store, monkeypatch) -> None:
    day = bookable_day(config)
    booking_id = booked(store, config, "Yamada", day)
    model = fake_model(
        engine,
        GREETING,
        [
            Exchange(
                "I booked under Suzuki.",
                "I'm sorry, I could not find that booking. Could you check the name?",
                [("find_reservation", {"booking_id": booking_id, "guest_name": "Suzuki"})],
            ),
            Exchange(
                "Sorry, it is Yamada.",
                lambda out: f"Found it: {out['reservation']['date']} at {out['reservation']['time']}.",
                [("find_reservation", {"booking_id": booking_id.lower(), "guest_name": "yamada-san"})],
            ),
        ],
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.turn("I booked under Suzuki.")
        assert call.card["mode"] == "new"
        assert call.card["reservation"]["guest_name"] is None  # nothing of the booking on screen
        answer = await call.turn("Sorry, it is Yamada.")
        assert day in answer
        assert (call.card["mode"], call.card["changing"]) == ("change", booking_id)
        assert call.card["reservation"]["guest_name"] == "Yamada"

    with model as server:
        call = run_call(engine, server, config, store, conversation, env=monkeypatch)
        (miss_name, miss), (hit_name, hit) = outputs(server)

    assert (miss_name, codes(miss)) == ("find_reservation", ["not_found"])
    assert "Yamada" not in json.dumps(miss) and day not in json.dumps(miss)
    assert (hit_name, codes(hit), hit["changing"]) == ("find_reservation", [], booking_id)
    assert [line["text"] for line in call.lines("user")] == ["I booked under Suzuki.", "Sorry, it is Yamada."]
    assert store.get(booking_id)["status"] == "confirmed"  # looking up changes nothing


def test_three_misses_lock_lookups_for_the_rest_of_the_call(engine, config, store, monkeypatch) -> None:
    booking_id = booked(store, config, "Yamada", bookable_day(config))
    guesses = [("find_reservation", {"booking_id": f"AS-{n * 4}{n * 4}", "guest_name": "Yamada"}) for n in (2, 3, 4)]
    model = fake_model(
        engine,
        GREETING,
        [
            Exchange(
                "Please find my booking.",
                lambda out: f"I'm sorry: {out['problems'][0]['message']}",
                [*guesses, ("find_reservation", {"booking_id": booking_id, "guest_name": "Yamada"})],
            )
        ],
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        answer = await call.turn("Please find my booking.")
        assert "no longer be looked up" in answer
        assert call.card["changing"] is None
        assert [problem["code"] for problem in call.card["problems"]] == []

    with model as server:
        run_call(engine, server, config, store, conversation, env=monkeypatch)
        results = outputs(server)

    assert [codes(result) for _, result in results] == [["not_found"]] * 3 + [["lookup_locked"]]
    assert all(result["changing"] is None for _, result in results)


def test_a_change_to_a_closed_day_is_refused_then_stored_under_the_same_number(
    engine, config, store, monkeypatch
) -> None:
    day = bookable_day(config)
    closed, later = next_tuesday(day), bookable_day(config, days_ahead=9)
    booking_id = booked(store, config, "Yamada", day)
    model = fake_model(
        engine,
        GREETING,
        [
            Exchange(
                "Booking number, name Yamada.",
                "Found your booking. What would you like to change?",
                [("find_reservation", {"booking_id": booking_id, "guest_name": "Yamada"})],
            ),
            Exchange(
                "Move it to Tuesday.",
                lambda out: f"Sorry, {out['problems'][0]['message']}",
                [("update_reservation", {"date": closed})],
            ),
            Exchange(
                "Then the other day at eight, three of us.",
                lambda out: (
                    f"That is {out['reservation']['date']} at {out['reservation']['time']} for "
                    f"{out['reservation']['party_size']}. Shall I change it?"
                ),
                [("update_reservation", {"date": later, "time": "20:00", "party_size": 3})],
            ),
            Exchange(
                "Yes please.",
                lambda out: f"Done. Your booking number is still {out['booking_id']}.",
                [("confirm_reservation", {})],
            ),
        ],
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.turn("Booking number, name Yamada.")
        refused = await call.turn("Move it to Tuesday.")
        assert "closed" in refused
        assert call.card["reservation"]["date"] == day
        await call.turn("Then the other day at eight, three of us.")
        assert call.card["status"] == "ready" and call.card["changing"] == booking_id
        answer = await call.turn("Yes please.")
        assert booking_id in answer
        assert (call.card["status"], call.card["booking_id"]) == ("confirmed", booking_id)

    with model as server:
        call = run_call(engine, server, config, store, conversation, env=monkeypatch)
        results = outputs(server)

    assert [(name, codes(result)) for name, result in results] == [
        ("find_reservation", []),
        ("update_reservation", ["closed_day"]),
        ("update_reservation", []),
        ("confirm_reservation", []),
    ]
    row = store.get(booking_id)
    assert (row["date"], row["time"], row["party_size"], row["status"]) == (later, "20:00", 3, "confirmed")
    assert count(store) == 1
    change = store.audit.entries()[0]
    assert (change["action"], change["actor"], change["detail"]["date"]) == ("changed", "agent:web", [day, later])
    kept = store.transcript(booking_id)
    assert [line["text"] for line in kept["transcript"] if line["role"] == "user"][-1] == "Yes please."
    assert call.closed is None  # the call goes on after the change


def test_a_cancellation_frees_the_last_table_for_another_caller(engine, config, store, monkeypatch) -> None:
    day = bookable_day(config)
    ids = [booked(store, config, f"Guest {n}", day) for n in range(config.tables)]
    model = fake_model(
        engine,
        GREETING,
        [
            Exchange(
                "It is under Guest two.",
                lambda out: f"I have {out['reservation']['guest_name']} on {out['reservation']['date']}. Cancel it?",
                [("find_reservation", {"booking_id": ids[2], "guest_name": "guest 2"})],
            ),
            Exchange(
                "Yes, cancel it.",
                lambda out: f"Booking {out['booking_id']} is cancelled.",
                [("cancel_reservation", {})],
            ),
        ],
    )
    latecomer = Reservation("Latecomer", dt.date.fromisoformat(day), dt.time(19, 0), 2)
    evening = store.seated_between(latecomer.date, latecomer.date)
    assert sorted(booking.tables for booking in evening) == [(str(n),) for n in range(1, 7)]  # every table taken

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.turn("It is under Guest two.")
        answer = await call.turn("Yes, cancel it.")
        assert f"{ids[2]} is cancelled" in answer
        assert (call.card["status"], call.card["booking_id"]) == ("cancelled", ids[2])

    with model as server:
        run_call(engine, server, config, store, conversation, env=monkeypatch)
        (_, found), (_, cancelled) = outputs(server)

    assert codes(found) == [] and codes(cancelled) == [] and cancelled["status"] == "cancelled"
    row = store.get(ids[2])
    assert row["status"] == "cancelled" and row["cancelled_at"]
    assert count(store) == config.tables  # kept, not deleted
    assert store.book(latecomer, config, dt.datetime.now(dt.UTC))  # the table is free again


def test_a_question_from_the_facts_and_one_they_do_not_cover_ending_in_a_callback(
    engine, config, store, monkeypatch
) -> None:
    model = fake_model(
        engine,
        GREETING,
        [
            Exchange("What is on the menu?", lambda out: out["answer"], [("get_restaurant_info", {"topic": "menu"})]),
            Exchange(
                "Is there parking?",
                "I'm afraid I don't know. Shall I ask the staff to call you back?",
                [("get_restaurant_info", {"topic": "parking"})],
            ),
            Exchange(
                "Yes, Smith, zero nine zero one two three four five six seven eight.",
                "Thank you, the staff will call you back.",
                [("request_callback", {"guest_name": "Smith", "phone": "090-1234-5678", "request": "Parking?"})],
            ),
        ],
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        menu = await call.turn("What is on the menu?")
        assert menu.startswith("Seasonal set courses")
        assert "don't know" in await call.turn("Is there parking?")
        await call.turn("Yes, Smith, zero nine zero one two three four five six seven eight.")
        assert call.card["callback_requested"] is True

    with model as server:
        run_call(engine, server, config, store, conversation, env=monkeypatch)
        (_, menu), (_, parking), (_, callback) = outputs(server)

    assert menu["answer"] == config.facts["menu"].en and codes(menu) == []
    assert codes(parking) == ["not_in_facts"] and parking["answer"] is None
    assert codes(callback) == [] and callback["callback_requested"] is True
    (request,) = store.callbacks.listed()
    assert (request["guest_name"], request["phone"], request["request"]) == ("Smith", "09012345678", "Parking?")
    assert count(store) == 0


def test_a_party_of_six_ends_in_a_callback_request(engine, config, store, monkeypatch) -> None:
    day = bookable_day(config)
    model = fake_model(
        engine,
        GREETING,
        [
            Exchange(
                "Six people at seven, name Sato.",
                lambda out: f"{out['problems'][0]['message']} Shall I ask the staff to call you back?",
                [("update_reservation", {"guest_name": "Sato", "date": day, "time": "19:00", "party_size": 6})],
            ),
            Exchange(
                "Yes, my number is zero three one two three four five six seven eight.",
                "Noted. The staff will call you back.",
                [("request_callback", {"phone": "03-1234-5678", "request": f"6 people on {day} at 19:00"})],
            ),
        ],
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        refused = await call.turn("Six people at seven, name Sato.")
        assert "at most 4 guests" in refused
        assert [problem["code"] for problem in call.card["problems"]] == ["party_too_large"]
        await call.turn("Yes, my number is zero three one two three four five six seven eight.")
        assert call.card["callback_requested"] is True and call.card["booking_id"] is None

    with model as server:
        run_call(engine, server, config, store, conversation, env=monkeypatch)

    (request,) = store.callbacks.listed()
    assert (request["guest_name"], request["phone"], request["request"]) == (
        "Sato",
        "0312345678",
        f"6 people on {day} at 19:00",
    )
    assert count(store) == 0


def test_a_party_of_eight_goes_to_the_owner_where_the_restaurant_takes_large_parties(
    engine, store, monkeypatch, tmp_path
) -> None:
    config = load_config(write_config(tmp_path, {"# large_party_max = 10": "large_party_max = 10"}))
    day = bookable_day(config)
    model = fake_model(
        engine,
        GREETING,
        [
            Exchange(
                "Eight of us at seven, name Sato.",
                "The owner arranges parties of that size. May I have a number to call you back?",
                [("update_reservation", {"guest_name": "Sato", "date": day, "time": "19:00", "party_size": 8})],
            ),
            Exchange(
                "Zero nine zero, one one one one, two two two two.",
                lambda out: f"Sent to the owner: {out['status']}.",
                [("update_reservation", {"phone": "090-1111-2222"}), ("confirm_reservation", {})],
            ),
        ],
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.turn("Eight of us at seven, name Sato.")
        assert call.card["reservation"]["party_size"] == 8  # kept, not refused
        assert [problem["code"] for problem in call.card["problems"]] == ["large_party"]
        answer = await call.turn("Zero nine zero, one one one one, two two two two.")
        assert answer == "Sent to the owner: requested."
        assert call.card["status"] == "requested" and call.card["owner_request"] and call.card["booking_id"] is None

    with model as server:
        run_call(engine, server, config, store, conversation, env=monkeypatch)

    (request,) = store.callbacks.listed()
    assert (request["guest_name"], request["phone"]) == ("Sato", "09011112222")
    assert request["request"] == f"8名 / party of 8: {day} 19:00"
    assert count(store) == 0


def test_a_full_evening_ends_on_the_waitlist_and_a_cancellation_tells_the_guest(
    engine, config, store, monkeypatch
) -> None:
    day = bookable_day(config)
    ids = [booked(store, config, f"Guest {n}", day) for n in range(config.tables)]
    model = fake_model(
        engine,
        GREETING,
        [
            Exchange(
                "Two at seven, name Ito.",
                lambda out: f"{out['problems'][0]['message']} Would another time suit, or the waitlist?",
                [("update_reservation", {"guest_name": "Ito", "date": day, "time": "19:00", "party_size": 2})],
            ),
            Exchange(
                "The waitlist please, zero nine zero three three three three four four four four.",
                lambda out: f"You are on the waitlist for {out['waitlisted']}.",
                [("update_reservation", {"phone": "090-3333-4444"}), ("join_waitlist", {})],
            ),
        ],
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        full = await call.turn("Two at seven, name Ito.")
        assert "fully booked" in full
        answer = await call.turn("The waitlist please, zero nine zero three three three three four four four four.")
        assert answer == f"You are on the waitlist for {day} 19:00."
        assert call.card["waitlisted"] == f"{day} 19:00" and call.card["booking_id"] is None

    with model as server:
        run_call(engine, server, config, store, conversation, env=monkeypatch)

    (entry,) = store.waitlist.listed(dt.date.fromisoformat(day))
    assert (entry["guest_name"], entry["phone"], entry["status"]) == ("Ito", "09033334444", "waiting")
    assert count(store) == config.tables  # the waitlist holds no table

    leaving = ReservationSession(config, store, "en")  # another guest's call cancels one booking
    leaving.find(ids[0], "Guest 0")
    assert leaving.cancel()["status"] == "cancelled"
    (entry,) = store.waitlist.listed(dt.date.fromisoformat(day))
    assert (entry["status"], entry["freed_by"]) == ("notified", ids[0])


def test_a_change_then_a_cancel_in_one_call_needs_one_lookup(engine, config, store, monkeypatch) -> None:
    day = bookable_day(config)
    booking_id = booked(store, config, "Yamada", day)
    model = fake_model(
        engine,
        GREETING,
        [
            Exchange(
                "Booking number, name Yamada; make it three people.",
                lambda out: f"Done, still {out['booking_id']}, for {out['reservation']['party_size']}.",
                [
                    ("find_reservation", {"booking_id": booking_id, "guest_name": "Yamada"}),
                    ("update_reservation", {"party_size": 3}),
                    ("confirm_reservation", {}),
                ],
            ),
            Exchange(
                "Actually, please cancel it.",
                lambda out: f"Booking {out['booking_id']} is {out['status']}.",
                [("cancel_reservation", {})],
            ),
        ],
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        assert (
            await call.turn("Booking number, name Yamada; make it three people.") == f"Done, still {booking_id}, for 3."
        )
        assert await call.turn("Actually, please cancel it.") == f"Booking {booking_id} is cancelled."
        assert (call.card["status"], call.card["booking_id"]) == ("cancelled", booking_id)

    with model as server:
        run_call(engine, server, config, store, conversation, env=monkeypatch)
        results = outputs(server)

    assert [(name, codes(result)) for name, result in results] == [
        ("find_reservation", []),
        ("update_reservation", []),
        ("confirm_reservation", []),
        ("cancel_reservation", []),
    ]
    row = store.get(booking_id)
    assert (row["party_size"], row["status"]) == (3, "cancelled")


def test_a_booking_from_the_first_release_database_is_found_and_cancelled(
    engine, config, tmp_path, monkeypatch
) -> None:
    day = bookable_day(config)
    old = ("AS-W7HN", "Smith", day, "19:00", 2, None, "en", "2026-04-02T10:30:00+00:00")
    location = str(tmp_path / "first-release.db")
    first_release_database(location, [*FIRST_RELEASE_ROWS, old])
    store = ReservationStore(location)  # migrated on first use
    model = fake_model(
        engine,
        GREETING,
        [
            Exchange(
                "Cancel my booking please, Smith.",
                lambda out: f"Cancelled booking {out['booking_id']}.",
                [("find_reservation", {"booking_id": "as w7hn", "guest_name": "Mr Smith"}), ("cancel_reservation", {})],
            )
        ],
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        assert "AS-W7HN" in await call.turn("Cancel my booking please, Smith.")

    with model as server:
        run_call(engine, server, config, store, conversation, env=monkeypatch)
        (_, found), (_, cancelled) = outputs(server)

    assert (found["changing"], found["reservation"]["date"], found["reservation"]["time"]) == ("AS-W7HN", day, "19:00")
    assert (cancelled["status"], cancelled["booking_id"]) == ("cancelled", "AS-W7HN")
    assert store.get("AS-W7HN")["status"] == "cancelled"
    assert count(store) == len(FIRST_RELEASE_ROWS) + 1 and count(store, "confirmed") == len(FIRST_RELEASE_ROWS)


def test_a_phone_booking_carries_the_callers_number(engine, config, store, monkeypatch) -> None:
    day = bookable_day(config)
    model = fake_model(
        engine,
        GREETING,
        [
            Exchange(
                "Tanaka, two people at six.",
                "Shall I book it?",
                [("update_reservation", {"guest_name": "Tanaka", "date": day, "time": "18:00", "party_size": 2})],
            ),
            Exchange("Yes.", lambda out: f"Booked, number {out['booking_id']}.", [("confirm_reservation", {})]),
        ],
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.turn("Tanaka, two people at six.")
        assert call.card["reservation"]["phone"] == "••••••••5678"
        await call.turn("Yes.")

    with model as server:
        run_call(engine, server, config, store, conversation, env=monkeypatch, caller=Caller("+819012345678", True))
        (_, confirmed) = outputs(server)[-1]

    row = store.get(confirmed["booking_id"])
    assert (row["phone"], row["source"]) == ("+819012345678", "phone")
    assert "5678" in json.dumps(confirmed) and "+8190" not in json.dumps(confirmed)  # the model sees it masked


def test_the_database_going_away_mid_call_is_told_and_the_booking_succeeds_once_it_is_back(
    engine, config, monkeypatch
) -> None:
    database = postgres.server()
    store = ReservationStore(postgres.fresh_database())
    day = bookable_day(config)
    model = fake_model(
        engine,
        GREETING,
        [
            Exchange(
                "Ito, two people at seven.",
                "Shall I book it?",
                [("update_reservation", {"guest_name": "Ito", "date": day, "time": "19:00", "party_size": 2})],
            ),
            Exchange("Yes.", lambda out: out["problems"][0]["message"], [("confirm_reservation", {})]),
            Exchange("Please try again.", lambda out: f"Booked, {out['booking_id']}.", [("confirm_reservation", {})]),
        ],
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.turn("Ito, two people at seven.")
        assert call.card["status"] == "ready"
        await asyncio.to_thread(database.stop)
        try:
            told = await call.turn("Yes.")
            assert "nothing was saved and nothing was booked" in told
            assert call.card["status"] == "collecting" and call.card["reservation"]["guest_name"] == "Ito"
        finally:
            await asyncio.to_thread(database.start)
        assert "Booked" in await call.turn("Please try again.")
        assert call.card["status"] == "confirmed"

    with model as server:
        run_call(engine, server, config, store, conversation, env=monkeypatch)
        results = outputs(server)

    assert [codes(result) for _, result in results] == [[], ["store_unavailable"], []]
    (row,) = store.bookings_from(day, until=day)  # nothing half-written: one booking, the one that succeeded
    assert (row["booking_id"], row["guest_name"]) == (results[-1][1]["booking_id"], "Ito")
