"""A guest's own booking through the tools: looking it up, changing it, cancelling it, the restaurant's facts,
callback requests and phone numbers. Each test is a short exchange of tool calls against a real SQLite store."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re

import pytest

from components.restaurant.config import DEFAULT_CONFIG_PATH, load_config
from components.restaurant.lookup import Caller
from components.restaurant.session import ReservationSession
from components.restaurant.tools import run_tool
from components.settings import Caps
from components.store.reservations import ReservationStore
from tests.domain_fixtures import count, jst, write_config

CONFIG = load_config(DEFAULT_CONFIG_PATH)
NOW = jst(2026, 4, 20, 9, 0)
DAY = "2026-04-21"
GUESTS = itertools.count(1)  # each `book` is another guest, from an address of their own


@pytest.fixture
def store(tmp_path) -> ReservationStore:
    return ReservationStore(tmp_path / "reservations.db")


def new_call(store: ReservationStore, language: str = "en", now=NOW, **options) -> ReservationSession:
    return ReservationSession(CONFIG, store, language, clock=lambda: now, **options)


def call(session: ReservationSession, name: str, arguments: dict | None = None) -> dict:
    result = run_tool(session, name, json.dumps(arguments or {}))
    json.dumps(result)  # every result is JSON-able
    return result


def codes(result: dict) -> list[str]:
    return [problem["code"] for problem in result["problems"]]


def book(
    store: ReservationStore, name: str = "山田 太郎", hour: int = 19, phone: str | None = None, day=DAY, now=NOW
) -> str:
    session = new_call(store, now=now, caller=Caller(visitor=f"ip:198.51.100.{next(GUESTS)}"))
    fields = {"guest_name": name, "date": day, "time": f"{hour}:00", "party_size": 2}
    call(session, "update_reservation", {**fields, **({"phone": phone} if phone else {})})
    return call(session, "confirm_reservation")["booking_id"]


def test_a_wrong_name_is_not_found_and_shows_nothing_then_the_right_one_is(store) -> None:
    booking_id = book(store)
    session = new_call(store)

    miss = call(session, "find_reservation", {"booking_id": booking_id, "guest_name": "Suzuki"})

    assert codes(miss) == ["not_found"]
    assert miss["problems"][0]["message"] == "No booking was found for that number and name."
    assert "山田" not in json.dumps(miss, ensure_ascii=False) and DAY not in json.dumps(miss)
    assert (miss["mode"], miss["changing"]) == ("new", None)

    spoken = booking_id.lower().replace("-", " ")  # "as 7k3q", as a recogniser writes it down
    found = call(session, "find_reservation", {"booking_id": spoken, "guest_name": "山田太郎 様"})

    assert codes(found) == []
    assert (found["mode"], found["changing"], found["booking_id"]) == ("change", booking_id, None)
    assert found["reservation"] == {
        "guest_name": "山田 太郎",
        "date": DAY,
        "time": "19:00",
        "party_size": 2,
        "requests": None,
        "phone": None,
        "seating": None,
    }
    assert found["status"] == "ready"


@pytest.mark.parametrize(
    ("booked_as", "spelling"),
    [("Yamada", "yamada-san"), ("Yamada", "Mr. Yamada"), ("Yamada", "ＹＡＭＡＤＡ"), ("ヤマダ", "やまだ さん")],
)
def test_names_are_compared_as_a_person_would(store, booked_as, spelling) -> None:
    booking_id = book(store, name=booked_as)
    found = call(new_call(store), "find_reservation", {"booking_id": booking_id, "guest_name": spelling})
    assert found["changing"] == booking_id


def test_three_misses_lock_lookups_on_this_call_even_a_correct_one(store) -> None:
    booking_id = book(store)
    session = new_call(store)
    for guess in ("AS-2222", "AS-3333", "AS-4444"):
        assert codes(call(session, "find_reservation", {"booking_id": guess, "guest_name": "山田 太郎"})) == [
            "not_found"
        ]

    locked = call(session, "find_reservation", {"booking_id": booking_id, "guest_name": "山田 太郎"})

    assert codes(locked) == ["lookup_locked"]
    assert locked["changing"] is None
    assert codes(call(new_call(store), "find_reservation", {"booking_id": booking_id, "guest_name": "山田 太郎"})) == []


def test_calling_again_does_not_buy_fresh_guesses(store) -> None:
    """A guesser who hangs up after three misses and calls back from the same address is locked out for the day,
    even with the right pair; another caller is not."""
    booking_id = book(store)
    guesser = Caller(visitor="ip:203.0.113.9")
    answers = []
    for _ in range(4):  # four calls of three guesses: the tenth miss is the last the day allows
        session = new_call(store, caller=guesser)
        for n in range(3):
            answers.append(
                codes(call(session, "find_reservation", {"booking_id": f"AS-{n}X{n}-Y{n}Z", "guest_name": "x"}))
            )
    assert answers.count(["not_found"]) == 10 and answers[10:] == [["lookup_locked"]] * 2
    right = {"booking_id": booking_id, "guest_name": "山田 太郎"}
    assert codes(call(new_call(store, caller=guesser), "find_reservation", right)) == ["lookup_locked"]
    assert call(new_call(store, caller=Caller(visitor="ip:198.51.100.77")), "find_reservation", right)["changing"]
    next_day = new_call(store, caller=guesser, now=NOW + dt.timedelta(days=1, minutes=1))
    assert call(next_day, "find_reservation", right)["changing"] == booking_id


def test_booking_numbers_are_six_characters_read_in_two_threes(store) -> None:
    booking_id = book(store)
    assert re.fullmatch(r"AS-[2-9A-HJKMNP-Z]{3}-[2-9A-HJKMNP-Z]{3}", booking_id)
    spoken = booking_id.replace("-", " ").lower()  # "as 7k3 qm2", as a guest reads it out
    found = call(new_call(store), "find_reservation", {"booking_id": spoken[3:], "guest_name": "山田 太郎"})
    assert found["changing"] == booking_id


def test_one_caller_may_book_three_tables_a_day_and_no_more(store) -> None:
    guest = Caller(visitor="ip:203.0.113.9")
    ids = []
    for hour in (12, 13, 14, 19):
        session = new_call(store, caller=guest)
        call(session, "update_reservation", {"guest_name": "Fake", "date": DAY, "time": f"{hour}:00", "party_size": 2})
        ids.append(call(session, "confirm_reservation"))
    assert [result["booking_id"] is not None for result in ids] == [True, True, True, False]
    assert (
        codes(ids[-1]) == ["too_many_bookings"] and "at most 3 new bookings a day" in ids[-1]["problems"][0]["message"]
    )
    assert count(store) == 3
    tomorrow = new_call(store, caller=guest, now=NOW + dt.timedelta(days=1))  # the day has passed
    call(tomorrow, "update_reservation", {"guest_name": "Fake", "date": DAY, "time": "19:00", "party_size": 2})
    assert call(tomorrow, "confirm_reservation")["booking_id"]
    capped = new_call(store, caller=Caller(visitor="ip:203.0.113.10"), caps=Caps(bookings_per_caller_per_day=0))
    call(capped, "update_reservation", {"guest_name": "Owner set 0", "date": DAY, "time": "20:00", "party_size": 2})
    assert codes(call(capped, "confirm_reservation")) == ["too_many_bookings"]


def test_callback_requests_are_capped_per_call_and_per_caller(store) -> None:
    guest = Caller(visitor="ip:203.0.113.9")
    ask = {"phone": "090-1234-5678", "request": "Call me back"}
    session = new_call(store, caller=guest)
    results = [call(session, "request_callback", ask) for _ in range(3)]
    assert [codes(result) for result in results] == [[], [], ["too_many_callbacks"]]
    again = new_call(store, caller=guest)  # a new call: one more, then the day's three are used
    assert [codes(call(again, "request_callback", ask)) for _ in range(2)] == [[], ["too_many_callbacks"]]
    assert len(store.callbacks.listed()) == 3
    assert codes(call(new_call(store, caller=Caller(visitor="ip:198.51.100.1")), "request_callback", ask)) == []


def test_a_change_to_a_closed_day_is_refused_then_a_valid_change_is_stored_under_the_same_id(store) -> None:
    december = jst(2026, 12, 20, 9, 0)
    booking_id = book(store, day="2026-12-29", now=december)
    for guest in range(CONFIG.tables - 1):  # every other table at 19:00 is taken too
        book(store, name=f"Guest {guest}", day="2026-12-29", now=december)
    session = new_call(store, now=december)
    call(session, "find_reservation", {"booking_id": booking_id, "guest_name": "山田 太郎"})

    closed = call(session, "update_reservation", {"date": "2026-12-31"})
    assert codes(closed) == ["closed_day"]
    assert closed["reservation"]["date"] == "2026-12-29"  # refused: the draft keeps the booked date
    assert closed["alternatives"]

    moved = call(session, "update_reservation", {"date": "2026-12-29", "time": "19:30", "party_size": 3})
    assert codes(moved) == [] and moved["status"] == "ready"  # its own table does not count against it
    done = call(session, "confirm_reservation")

    assert (done["status"], done["booking_id"]) == ("confirmed", booking_id)
    row = store.get(booking_id)
    assert (row["date"], row["time"], row["party_size"], row["status"]) == ("2026-12-29", "19:30", 3, "confirmed")
    assert count(store) == CONFIG.tables
    assert session.touched == {booking_id}


def test_a_change_then_a_cancel_in_one_call_needs_one_lookup(store) -> None:
    booking_id = book(store)
    session = new_call(store)
    call(session, "find_reservation", {"booking_id": booking_id, "guest_name": "山田 太郎"})
    call(session, "update_reservation", {"party_size": 3})
    assert call(session, "confirm_reservation")["booking_id"] == booking_id
    cancelled = call(session, "cancel_reservation")  # "on second thought, cancel it": no second lookup

    assert codes(cancelled) == [] and cancelled["status"] == "cancelled" and cancelled["booking_id"] == booking_id
    assert store.get(booking_id)["status"] == "cancelled"
    assert codes(call(session, "update_reservation", {"party_size": 2})) == ["already_cancelled"]
    assert codes(call(session, "cancel_reservation")) == ["already_cancelled"]


def test_a_booking_made_on_this_call_can_be_cancelled_on_it(store) -> None:
    session = new_call(store)
    call(session, "update_reservation", {"guest_name": "Smith", "date": DAY, "time": "18:00", "party_size": 2})
    booking_id = call(session, "confirm_reservation")["booking_id"]
    assert call(session, "cancel_reservation")["status"] == "cancelled"
    assert store.get(booking_id)["status"] == "cancelled" and session.touched == {booking_id}
    another = new_call(store)  # another call has proved nothing: it cannot cancel without a lookup
    assert codes(call(another, "cancel_reservation")) == ["no_booking_found"]


def test_a_cancellation_frees_the_last_table_for_another_caller(store) -> None:
    ids = [book(store, name=f"Guest {n}") for n in range(CONFIG.tables)]
    other = new_call(store)
    full = call(other, "update_reservation", {"guest_name": "Latecomer", "date": DAY, "time": "19:00", "party_size": 2})
    assert codes(full) == ["fully_booked"]

    session = new_call(store)
    assert codes(call(session, "cancel_reservation")) == ["no_booking_found"]  # nothing looked up yet
    call(session, "find_reservation", {"booking_id": ids[3], "guest_name": "guest 3"})
    cancelled = call(session, "cancel_reservation")

    assert (cancelled["status"], cancelled["booking_id"]) == ("cancelled", ids[3])
    assert store.get(ids[3])["status"] == "cancelled"
    assert codes(call(session, "cancel_reservation")) == ["already_cancelled"]
    assert codes(call(other, "update_reservation", {"time": "19:00"})) == []  # the table is free again at once
    assert call(other, "confirm_reservation")["status"] == "confirmed"
    again = call(new_call(store), "find_reservation", {"booking_id": ids[3], "guest_name": "Guest 3"})
    assert codes(again) == ["already_cancelled"] and again["changing"] is None


def test_a_question_answered_from_the_facts_and_one_they_do_not_cover_ending_in_a_callback(store) -> None:
    session = new_call(store)

    menu = call(session, "get_restaurant_info", {"topic": "menu"})
    assert codes(menu) == [] and menu["answer"] == CONFIG.facts["menu"].en

    parking = call(session, "get_restaurant_info", {"topic": "parking"})  # left empty by the owner
    assert codes(parking) == ["not_in_facts"] and parking["answer"] is None
    assert codes(call(session, "get_restaurant_info", {"topic": "wifi"})) == ["not_in_facts"]

    missing = call(session, "request_callback", {"request": "Is there parking nearby?"})
    assert codes(missing) == ["missing_field"] and missing["problems"][0]["field"] == "phone"
    result = call(
        session, "request_callback", {"guest_name": "Smith", "phone": "090-1234-5678", "request": "Is there parking?"}
    )

    assert codes(result) == [] and result["callback_requested"] is True
    (request,) = store.callbacks.listed()
    assert (request["guest_name"], request["phone"], request["request"]) == (
        "Smith",
        "09012345678",
        "Is there parking?",
    )
    assert (request["status"], request["source"], request["language"]) == ("open", "web", "en")


def test_a_party_of_six_is_refused_and_ends_in_a_callback_request(store) -> None:
    session = new_call(store, language="ja")
    refused = call(session, "update_reservation", {"guest_name": "佐藤", "date": DAY, "time": "19:00", "party_size": 6})
    assert codes(refused) == ["party_too_large"]

    result = call(session, "request_callback", {"phone": "03-1234-5678", "request": "6名で4月21日19時の予約希望"})

    assert result["callback_requested"] is True
    (request,) = store.callbacks.listed()
    assert (request["guest_name"], request["phone"], request["language"]) == ("佐藤", "0312345678", "ja")
    assert count(store) == 0


def test_a_party_of_eight_becomes_a_request_for_the_owner_where_the_restaurant_takes_large_parties(
    store, tmp_path
) -> None:
    config = load_config(write_config(tmp_path, {"# large_party_max = 10": "large_party_max = 10"}))
    session = ReservationSession(config, store, "en", clock=lambda: NOW, caller=Caller(visitor="ip:198.51.100.8"))
    asked = call(session, "update_reservation", {"guest_name": "Sato", "date": DAY, "time": "19:00", "party_size": 8})
    assert codes(asked) == ["large_party"] and asked["reservation"]["party_size"] == 8  # kept, not refused
    assert "arranged by the owner" in asked["problems"][0]["message"]
    no_number = call(session, "confirm_reservation")
    assert codes(no_number) == ["missing_field", "not_ready", "large_party"] and not store.callbacks.listed()

    call(session, "update_reservation", {"phone": "090-1111-2222", "requests": "a birthday"})
    sent = call(session, "confirm_reservation")

    assert sent["status"] == "requested" and sent["owner_request"] and sent["booking_id"] is None
    (request,) = store.callbacks.listed()
    assert (request["guest_name"], request["phone"]) == ("Sato", "09011112222")
    assert request["request"] == "8名 / party of 8: 2026-04-21 19:00 — a birthday"
    assert count(store) == 0  # no table is held: the owner decides
    too_many = call(session, "update_reservation", {"party_size": 12})
    assert codes(too_many)[0] == "party_too_large" and "at most 10 guests" in too_many["problems"][0]["message"]
    assert too_many["reservation"]["party_size"] == 8  # the refused twelve is not merged


def test_a_full_evening_offers_the_waitlist_and_a_cancellation_tells_the_first_guest_who_fits(store) -> None:
    ids = [book(store, name=f"Guest {n}") for n in range(CONFIG.tables)]  # 19:00 is full
    hoping = new_call(store, caller=Caller(visitor="ip:198.51.100.50"))
    full = call(hoping, "update_reservation", {"guest_name": "Ito", "date": DAY, "time": "19:00", "party_size": 2})
    assert codes(full) == ["fully_booked"] and full["alternatives"]
    no_number = call(hoping, "join_waitlist")  # a number to reach them is needed
    assert codes(no_number)[0] == "missing_field" and no_number["problems"][0]["field"] == "phone"
    call(hoping, "update_reservation", {"phone": "090-3333-4444"})
    joined = call(hoping, "join_waitlist")
    assert joined["waitlisted"] == "2026-04-21 19:00" and count(store) == CONFIG.tables  # not a booking
    later = new_call(store, caller=Caller(visitor="ip:198.51.100.51"))
    call(later, "update_reservation", {"guest_name": "Abe", "date": DAY, "time": "19:00", "party_size": 2})
    call(later, "update_reservation", {"phone": "090-5555-6666"})
    call(later, "join_waitlist")
    (first, second) = store.waitlist.listed(jst(2026, 4, 21, 0, 0).date())
    assert (first["guest_name"], first["status"], second["status"]) == ("Ito", "waiting", "waiting")

    leaving = new_call(store)  # a booked guest calls to cancel
    call(leaving, "find_reservation", {"booking_id": ids[0], "guest_name": "Guest 0"})
    assert call(leaving, "cancel_reservation")["status"] == "cancelled"

    (first, second) = store.waitlist.listed(jst(2026, 4, 21, 0, 0).date())
    assert (first["status"], first["freed_by"], second["status"]) == ("notified", ids[0], "waiting")
    assert any(entry["action"] == "waitlist_notified" for entry in store.audit.entries())


def test_the_waitlist_is_for_full_slots_only(store) -> None:
    session = new_call(store)
    call(session, "update_reservation", {"guest_name": "Ito", "date": DAY, "time": "19:00", "party_size": 2})
    call(session, "update_reservation", {"phone": "090-3333-4444"})
    assert codes(call(session, "join_waitlist")) == ["not_full"] and not store.waitlist.listed(NOW.date())


def test_a_large_party_limit_below_the_online_limit_stops_the_app(tmp_path) -> None:
    with pytest.raises(ValueError, match="large_party_max must not be below"):
        load_config(write_config(tmp_path, {"# large_party_max = 10": "large_party_max = 3"}))


def test_a_phone_call_books_with_the_callers_number_shown_masked(store) -> None:
    session = new_call(store, source="phone", caller=Caller("+819012345678", verified=True))
    result = call(
        session, "update_reservation", {"guest_name": "Tanaka", "date": DAY, "time": "18:00", "party_size": 2}
    )
    assert result["reservation"]["phone"] == "••••••••5678"
    booking_id = call(session, "confirm_reservation")["booking_id"]

    row = store.get(booking_id)
    assert (row["phone"], row["source"]) == ("+819012345678", "phone")
    assert call(session, "request_callback", {"request": "allergy question"})["callback_requested"]
    assert store.callbacks.listed()[0]["phone"] == "+819012345678"


def test_on_a_verified_phone_line_the_callers_number_stands_in_for_the_name(store) -> None:
    booking_id = book(store, name="Tanaka", phone="090-1234-5678")
    caller = Caller("+819012345678", verified=True)

    found = call(new_call(store, source="phone", caller=caller), "find_reservation", {"booking_id": booking_id})
    assert found["changing"] == booking_id

    unverified = new_call(store, source="phone", caller=Caller("+819012345678", verified=False))
    assert codes(call(unverified, "find_reservation", {"booking_id": booking_id})) == ["not_found"]
    stranger = new_call(store, source="phone", caller=Caller("+819099999999", verified=True))
    assert codes(call(stranger, "find_reservation", {"booking_id": booking_id})) == ["not_found"]


def test_a_guest_may_give_a_phone_number_or_decline_it(store) -> None:
    session = new_call(store)
    assert codes(call(session, "update_reservation", {"phone": "call me maybe"})) == ["invalid_phone"]
    given = call(session, "update_reservation", {"phone": "+81 3-1234-5678"})
    assert given["reservation"]["phone"] == "•••••••5678"
    declined = call(session, "update_reservation", {"phone": ""})
    assert declined["reservation"]["phone"] is None and codes(declined) == []


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("find_reservation", "{"),
        ("find_reservation", {"guest_name": "x"}),
        ("find_reservation", {"booking_id": 42}),
        ("request_callback", {"request": "x" * 400, "phone": "0312345678"}),
        ("request_callback", {"phone": "0312345678", "request": "x", "when": "now"}),
        ("get_restaurant_info", []),
    ],
)
def test_malformed_arguments_to_the_new_tools_become_problems(store, name, arguments) -> None:
    result = run_tool(new_call(store), name, arguments if isinstance(arguments, str) else json.dumps(arguments))
    assert result["problems"], result
    assert set(result) >= {"status", "mode", "reservation", "missing", "problems", "booking_id", "alternatives"}
    assert store.callbacks.listed() == []


def test_a_booking_made_earlier_on_this_call_can_be_looked_up_and_changed(store) -> None:
    session = new_call(store)
    call(session, "update_reservation", {"guest_name": "Kato", "date": DAY, "time": "12:00", "party_size": 2})
    booking_id = call(session, "confirm_reservation")["booking_id"]
    call(session, "find_reservation", {"booking_id": booking_id, "guest_name": "kato"})
    call(session, "update_reservation", {"time": "12:30"})
    assert call(session, "confirm_reservation")["booking_id"] == booking_id
    assert store.get(booking_id)["time"] == "12:30" and count(store) == 1


def test_an_old_booking_cannot_be_cancelled_after_it_started(store) -> None:
    booking_id = book(store)
    later = ReservationSession(CONFIG, store, "en", clock=lambda: jst(2026, 4, 21, 19, 30))
    call(later, "find_reservation", {"booking_id": booking_id, "guest_name": "山田 太郎"})
    assert codes(call(later, "cancel_reservation"))[0] == "in_past"
    assert store.get(booking_id)["status"] == "confirmed"
