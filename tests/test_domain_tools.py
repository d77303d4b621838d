"""The agent's tools through run_tool: schemas, malformed arguments, the booking flow and the session's state."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from components.restaurant.config import DEFAULT_CONFIG_PATH, FACT_TOPICS, load_config
from components.restaurant.fields import FIELDS
from components.restaurant.tools import TOOL_NAMES, chat_tools, realtime_tools, run_tool
from tests.domain_fixtures import ID_PATTERN, booking, count, jst, make_session

NOW = jst(2026, 4, 20, 9, 0)  # Monday
RESULT_KEYS = {"status", "reservation", "missing", "problems", "booking_id", "alternatives"}


@pytest.fixture
def session(tmp_path):
    return make_session(tmp_path, NOW, language="en")


def call(session, name, arguments=None) -> dict:
    result = run_tool(session, name, arguments)
    assert RESULT_KEYS <= result.keys()
    assert set(result["reservation"]) == set(FIELDS)
    json.dumps(result)  # JSON-able, as it goes straight back to the model
    return result


def codes(result) -> list[str]:
    return [problem["code"] for problem in result["problems"]]


def test_schemas_in_both_api_formats():
    assert TOOL_NAMES == (
        "update_reservation",
        "check_availability",
        "confirm_reservation",
        "find_reservation",
        "cancel_reservation",
        "request_callback",
        "join_waitlist",
        "get_restaurant_info",
    )
    realtime, chat = realtime_tools(), chat_tools()
    assert [tool["name"] for tool in realtime] == list(TOOL_NAMES)
    assert [tool["function"]["name"] for tool in chat] == list(TOOL_NAMES)
    for flat, nested in zip(realtime, chat, strict=True):
        assert flat["type"] == nested["type"] == "function"
        assert flat["description"] == nested["function"]["description"]
        assert flat["parameters"] == nested["function"]["parameters"]
        assert flat["parameters"]["type"] == "object" and flat["parameters"]["additionalProperties"] is False
    update, check, confirm, find, cancel, callback, waitlist, info = (tool["parameters"] for tool in realtime)
    assert set(update["properties"]) == set(FIELDS) and "required" not in update
    assert update["properties"]["party_size"]["type"] == "integer"
    assert set(check["properties"]) == {"date", "time", "party_size", "seating"} and check["required"] == ["date"]
    assert confirm["properties"] == {} and cancel["properties"] == {} and waitlist["properties"] == {}
    assert set(find["properties"]) == {"booking_id", "guest_name"} and find["required"] == ["booking_id"]
    assert set(callback["properties"]) == {"guest_name", "phone", "request"} and callback["required"] == ["request"]
    assert info["properties"]["topic"]["enum"] == [*FACT_TOPICS, "other"]


def test_full_flow_books_and_moves_through_the_statuses(session):
    assert session.snapshot()["status"] == "collecting"
    result = call(session, "update_reservation", '{"guest_name": "Hanako Sato", "party_size": 2}')
    assert (result["status"], result["missing"], result["problems"]) == ("collecting", ["date", "time"], [])

    available = call(session, "check_availability", {"date": "2026-04-21", "party_size": 2})
    assert available["date"] == "2026-04-21"
    assert available["hours"] == {"open": "11:00", "last_seating": "21:00", "close": "22:00"}
    assert "19:00" in available["available_times"] and available["problems"] == []
    assert available["reservation"]["date"] is None  # checking does not change the draft

    result = call(session, "update_reservation", {"date": "2026-04-21", "time": "19:00", "requests": "no shellfish"})
    assert result["status"] == "ready" and result["missing"] == [] and result["problems"] == []
    assert session.snapshot() == result

    confirmed = call(session, "confirm_reservation", "{}")
    assert confirmed["status"] == "confirmed" and confirmed["problems"] == []
    assert re.fullmatch(ID_PATTERN, confirmed["booking_id"])
    row = session.store.get(confirmed["booking_id"])
    assert (row["guest_name"], row["date"], row["time"], row["party_size"]) == ("Hanako Sato", "2026-04-21", "19:00", 2)
    assert (row["requests"], row["language"]) == ("no shellfish", "en")
    assert session.snapshot()["booking_id"] == confirmed["booking_id"]


def test_after_confirming_a_change_on_the_same_call_keeps_the_booking_number(session):
    call(
        session, "update_reservation", {"guest_name": "Hanako", "date": "2026-04-21", "time": "19:00", "party_size": 2}
    )
    booking_id = call(session, "confirm_reservation")["booking_id"]
    again = call(session, "confirm_reservation")
    assert codes(again) == ["already_confirmed"] and booking_id in again["problems"][0]["message"]

    later = call(session, "update_reservation", {"time": "20:00"})  # "actually, make it eight"
    assert codes(later) == [] and later["changing"] == booking_id and later["status"] == "ready"
    assert session.store.get(booking_id)["time"] == "19:00"  # nothing is written before the read-back
    saved = call(session, "confirm_reservation")
    assert (saved["booking_id"], saved["status"]) == (booking_id, "confirmed")
    assert session.store.get(booking_id)["time"] == "20:00" and count(session.store) == 1


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("{not json", ["invalid_arguments"]),
        ("[1, 2]", ["invalid_arguments"]),
        ('"guest_name"', ["invalid_arguments"]),
        ("null", ["invalid_arguments"]),
        ("", ["invalid_arguments"]),
        (None, ["invalid_arguments"]),
        ({}, ["invalid_arguments"]),
        ([{"guest_name": "x"}], ["invalid_arguments"]),
        (42, ["invalid_arguments"]),
        ('{"party_size": "two"}', ["invalid_party_size"]),
        ('{"party_size": null}', ["invalid_party_size"]),
        ('{"party_size": 2.5}', ["invalid_party_size"]),
        ('{"party_size": true}', ["invalid_party_size"]),
        ('{"guest_name": ""}', ["invalid_name"]),
        ('{"guest_name": 7}', ["invalid_name"]),
        ('{"date": "2026-02-30"}', ["invalid_date"]),
        ('{"time": "25:00"}', ["invalid_time"]),
        ('{"table": "window"}', ["unknown_field"]),
    ],
)
def test_malformed_update_arguments_become_problems(session, arguments, expected):
    result = call(session, "update_reservation", arguments)
    assert codes(result) == expected
    assert result["reservation"] == dict.fromkeys(FIELDS)
    assert all(problem["message"] for problem in result["problems"])


def test_malformed_check_and_unknown_tool(session):
    assert codes(call(session, "check_availability", "{")) == ["invalid_arguments"]
    assert codes(call(session, "check_availability", {})) == ["missing_field"]
    assert codes(call(session, "check_availability", {"date": "someday"})) == ["invalid_date"]
    assert codes(call(session, "check_availability", {"date": "2026-04-21", "guest_name": "x"})) == ["unknown_field"]
    assert codes(call(session, "delete_all_bookings", {})) == ["unknown_tool"]


def test_a_store_that_cannot_be_read_becomes_a_problem_not_an_exception(session):
    call(session, "update_reservation", {"guest_name": "Hanako", "date": "2026-04-21"})
    session.store.db.path.unlink()
    session.store.db.path.write_bytes(b"not a database" * 512)  # the disk gave way under the file
    session.store.db.engine.dispose()

    result = call(session, "update_reservation", {"time": "19:00"})

    assert codes(result) == ["store_unavailable"]
    assert (
        "nothing was booked" in result["problems"][0]["message"]
        or "成立していません" in result["problems"][0]["message"]
    )
    assert result["reservation"]["guest_name"] == "Hanako"
    assert codes(call(session, "confirm_reservation")) == ["store_unavailable"]
    assert session.snapshot()["status"] == "collecting"


def test_a_refused_field_is_not_merged_but_its_neighbours_are(session):
    call(session, "update_reservation", {"party_size": 2})
    result = call(session, "update_reservation", {"guest_name": " Hanako ", "party_size": 6})
    assert result["reservation"]["guest_name"] == "Hanako"
    assert result["reservation"]["party_size"] == 2  # the previous valid value stays
    assert result["problems"] == [
        {"field": "party_size", "code": "party_too_large", "message": "We seat at most 4 guests per booking."}
    ]
    # The refusal stays listed until the party size is given again ...
    later = call(session, "update_reservation", {"date": "2026-04-21", "time": "19:00"})
    assert codes(later) == ["party_too_large"] and later["status"] == "collecting"
    assert codes(call(session, "confirm_reservation")) == ["not_ready", "party_too_large"]
    # ... and is gone once it is.
    fixed = call(session, "update_reservation", {"party_size": 4})
    assert fixed["problems"] == [] and fixed["status"] == "ready"


def test_refused_times_come_with_alternatives(session):
    result = call(session, "update_reservation", {"date": "2026-04-21", "time": "21:15"})
    assert codes(result) == ["outside_hours"] and result["reservation"]["time"] is None
    assert result["alternatives"] == [
        {"date": "2026-04-21", "time": "20:30"},
        {"date": "2026-04-21", "time": "20:45"},
        {"date": "2026-04-21", "time": "21:00"},
    ]
    off_step = call(session, "update_reservation", {"time": "18:10"})
    assert codes(off_step) == ["not_on_step"]
    assert off_step["alternatives"][:2] == [
        {"date": "2026-04-21", "time": "18:00"},
        {"date": "2026-04-21", "time": "18:15"},
    ]
    closed = call(session, "check_availability", {"date": "2026-04-19", "time": "19:00"})  # yesterday
    assert codes(closed)[0] == "in_past" and closed["available_times"] == []
    assert closed["alternatives"][0] == {"date": "2026-04-20", "time": "19:00"}
    good = call(session, "update_reservation", {"time": "19:00"})
    assert good["problems"] == [] and good["alternatives"] == []


def test_check_availability_for_a_time_and_a_party(session):
    bookable = call(session, "check_availability", {"date": "2026-04-25", "time": "10:00", "party_size": 4})
    assert bookable["problems"] == [] and bookable["alternatives"] == []
    assert bookable["available_times"][0] == "10:00" and bookable["available_times"][-1] == "22:00"
    too_many = call(session, "check_availability", {"date": "2026-04-25", "party_size": 5})
    assert codes(too_many) == ["party_too_large"] and too_many["available_times"] == []
    closed = call(session, "check_availability", {"date": "2026-06-20"})
    assert codes(closed) == ["too_far_ahead"] and closed["hours"] is not None and closed["available_times"] == []


def test_check_defaults_to_the_drafts_date(session):
    call(session, "update_reservation", {"date": "2026-04-21"})
    assert call(session, "check_availability", None)["date"] == "2026-04-21"


def test_confirm_when_incomplete_lists_each_missing_field(session):
    call(session, "update_reservation", {"guest_name": "Hanako"})
    result = call(session, "confirm_reservation", "")
    assert [(p["code"], p["field"]) for p in result["problems"]] == [
        ("missing_field", "date"),
        ("missing_field", "time"),
        ("missing_field", "party_size"),
    ]
    assert result["status"] == "collecting" and result["booking_id"] is None
    assert count(session.store) == 0


def test_confirm_when_the_last_table_went_meanwhile(session):
    call(
        session, "update_reservation", {"guest_name": "Hanako", "date": "2026-04-21", "time": "19:00", "party_size": 2}
    )
    assert session.snapshot()["status"] == "ready"
    config = load_config(DEFAULT_CONFIG_PATH)
    for _ in range(config.tables):  # other calls take every table while this guest listens to the read-back
        session.store.book(booking(dt.date(2026, 4, 21), 19), config, NOW)
    result = call(session, "confirm_reservation")
    assert codes(result) == ["fully_booked"] and result["status"] == "collecting"
    assert result["alternatives"] and {"date": "2026-04-21", "time": "19:00"} not in result["alternatives"]
    assert count(session.store) == config.tables


def test_messages_follow_the_sessions_language(session):
    result = call(session, "update_reservation", {"party_size": 5})
    assert result["problems"][0]["message"] == "We seat at most 4 guests per booking."
    session.language = "ja"
    assert session.snapshot()["problems"][0]["message"] == "ご予約は1組4名様までです。"
    with pytest.raises(ValueError):
        session.language = "fr"


def test_today_follows_the_restaurants_clock(tmp_path):
    utc_evening = dt.datetime(2026, 3, 1, 15, 30, tzinfo=dt.UTC)  # already 2026-03-02 in Tokyo
    session = make_session(tmp_path, utc_evening)
    assert codes(call(session, "update_reservation", {"date": "2026-03-01"})) == ["in_past"]
    result = call(session, "update_reservation", {"date": "2026-03-02"})
    assert result["problems"] == [] and result["reservation"]["date"] == "2026-03-02"
