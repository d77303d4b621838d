"""Booking rules: normalisation, calendar, hours, limits, capacity and alternatives — all with an injected clock."""

from __future__ import annotations

import dataclasses
import datetime as dt

import holidays
import pytest

from components.restaurant.config import DEFAULT_CONFIG_PATH, Area, RestaurantConfig, Table, load_config
from components.restaurant.fields import FIELDS, Reservation, normalize_field
from components.restaurant.problems import Code, FieldError, Problem
from components.restaurant.rules import (
    alternatives,
    bookable_times,
    booking_window,
    is_public_holiday,
    opening,
    validate_reservation,
)
from components.restaurant.seating import Seated
from tests.domain_fixtures import booking, jst

CONFIG = load_config(DEFAULT_CONFIG_PATH)
APRIL = jst(2026, 4, 20, 9, 0)  # a Monday morning; the window runs to 2026-06-19
DECEMBER = jst(2026, 12, 20, 9, 0)

REQUIRED_CODES = {
    "closed_day", "outside_hours", "party_too_large", "party_too_small", "in_past", "too_far_ahead",
    "invalid_date", "invalid_time", "not_on_step", "invalid_party_size", "invalid_name", "fully_booked",
    "missing_field", "invalid_arguments", "unknown_field", "already_confirmed", "not_ready", "unknown_tool",
}  # fmt: skip


def codes(day: str, time: str, party_size: int = 2, now: dt.datetime = APRIL, existing=()) -> set[str]:
    reservation = Reservation(
        guest_name="Hanako",
        date=normalize_field("date", day),
        time=normalize_field("time", time),
        party_size=party_size,
    )
    return {problem.code.value for problem in validate_reservation(reservation, CONFIG, now, existing)}


@pytest.mark.parametrize(
    ("case", "day", "time", "party_size", "now", "expected"),
    [
        # A plain weekday (Tuesday): 11:00-22:00, last seating 21:00.
        ("weekday opening minute", "2026-04-21", "11:00", 2, APRIL, set()),
        ("weekday one minute before opening", "2026-04-21", "10:59", 2, APRIL, {"outside_hours", "not_on_step"}),
        ("weekday on-step before opening", "2026-04-21", "10:45", 2, APRIL, {"outside_hours"}),
        ("weekday last seating", "2026-04-21", "21:00", 2, APRIL, set()),
        ("weekday one minute past last seating", "2026-04-21", "21:01", 2, APRIL, {"outside_hours", "not_on_step"}),
        ("weekday on-step past last seating", "2026-04-21", "21:15", 2, APRIL, {"outside_hours"}),
        # Saturday: 10:00-23:00, last seating 22:00.
        ("saturday opening minute", "2026-04-25", "10:00", 2, APRIL, set()),
        ("saturday before opening", "2026-04-25", "09:45", 2, APRIL, {"outside_hours"}),
        ("saturday last seating", "2026-04-25", "22:00", 2, APRIL, set()),
        ("saturday past last seating", "2026-04-25", "22:15", 2, APRIL, {"outside_hours"}),
        # Showa Day falls on a Wednesday: weekend hours.
        ("weekday holiday opening", "2026-04-29", "10:00", 2, APRIL, set()),
        ("weekday holiday last seating", "2026-04-29", "22:00", 2, APRIL, set()),
        ("weekday holiday past last seating", "2026-04-29", "22:15", 2, APRIL, {"outside_hours"}),
        # 2026-05-06 is a substitute holiday (振替休日) for Constitution Day on a Sunday.
        ("substitute holiday opening", "2026-05-06", "10:00", 2, APRIL, set()),
        ("substitute holiday last seating", "2026-05-06", "22:00", 2, APRIL, set()),
        ("the day after is a weekday again", "2026-05-07", "10:00", 2, APRIL, {"outside_hours"}),
        # New Year closure (Dec 31 - Jan 3, wrapping the year end).
        ("dec 30 is open", "2026-12-30", "19:00", 2, DECEMBER, set()),
        ("dec 31 is closed", "2026-12-31", "19:00", 2, DECEMBER, {"closed_day"}),
        ("jan 2 is closed", "2027-01-02", "19:00", 2, DECEMBER, {"closed_day"}),
        ("jan 4 is open", "2027-01-04", "19:00", 2, DECEMBER, set()),
        # Party size 1-4.
        ("party of 0", "2026-04-21", "19:00", 0, APRIL, {"party_too_small"}),
        ("party of 1", "2026-04-21", "19:00", 1, APRIL, set()),
        ("party of 4", "2026-04-21", "19:00", 4, APRIL, set()),
        ("party of 5", "2026-04-21", "19:00", 5, APRIL, {"party_too_large"}),
        # Past and horizon.
        ("yesterday", "2026-04-19", "19:00", 2, APRIL, {"in_past"}),
        ("earlier today", "2026-04-20", "11:00", 2, jst(2026, 4, 20, 12, 0), {"in_past"}),
        ("starting right now", "2026-04-20", "12:00", 2, jst(2026, 4, 20, 12, 0), {"in_past"}),
        ("later today", "2026-04-20", "12:15", 2, jst(2026, 4, 20, 12, 0), set()),
        ("last day of the window", "2026-06-19", "19:00", 2, APRIL, set()),
        ("one day beyond the window", "2026-06-20", "19:00", 2, APRIL, {"too_far_ahead"}),
        # Steps.
        ("not on a 15-minute step", "2026-04-21", "18:10", 2, APRIL, {"not_on_step"}),
        ("seconds are off-step", "2026-04-21", "18:00:30", 2, APRIL, {"not_on_step"}),
        # 2026-03-01 15:30 UTC is already 2026-03-02 00:30 in Tokyo.
        ("utc date is past in tokyo", "2026-03-01", "19:00", 2, dt.datetime(2026, 3, 1, 15, 30, tzinfo=dt.UTC),
         {"in_past"}),
        ("tokyo today is bookable", "2026-03-02", "19:00", 2, dt.datetime(2026, 3, 1, 15, 30, tzinfo=dt.UTC), set()),
    ],
    ids=lambda value: value if isinstance(value, str) and " " in value else None,
)  # fmt: skip
def test_rules_table(case, day, time, party_size, now, expected):
    assert codes(day, time, party_size, now) == expected, case


def test_holiday_calendar_comes_from_the_holidays_package():
    japan = holidays.country_holidays("JP", years=[2026, 2027])
    for day in (dt.date(2026, 5, 6), dt.date(2027, 3, 22)):  # two substitute holidays
        assert "Substitute" in japan[day]
        assert is_public_holiday(day, CONFIG)
        assert opening(day, CONFIG).open == dt.time(10, 0)
    assert dt.date(2026, 4, 29).weekday() == 2 and is_public_holiday(dt.date(2026, 4, 29), CONFIG)
    assert not is_public_holiday(dt.date(2026, 4, 21), CONFIG)


def test_today_is_the_restaurants_today():
    assert booking_window(CONFIG, dt.datetime(2026, 3, 1, 15, 30, tzinfo=dt.UTC)) == (
        dt.date(2026, 3, 2),
        dt.date(2026, 5, 1),
    )
    assert booking_window(CONFIG, dt.datetime(2026, 3, 1, 14, 59, tzinfo=dt.UTC))[0] == dt.date(2026, 3, 1)


def test_naive_now_is_rejected():
    with pytest.raises(ValueError, match="aware"):
        booking_window(CONFIG, dt.datetime(2026, 3, 1, 12, 0))


def test_completeness_is_checked_unless_partial():
    reservation = Reservation(date=dt.date(2026, 4, 21), time=dt.time(19, 0))
    problems = validate_reservation(reservation, CONFIG, APRIL)
    assert [(p.code, p.field) for p in problems] == [
        (Code.MISSING_FIELD, "guest_name"),
        (Code.MISSING_FIELD, "party_size"),
    ]
    assert validate_reservation(reservation, CONFIG, APRIL, partial=True) == []


def test_unnormalised_values_are_refused_not_crashed_on():
    reservation = Reservation(guest_name="", date=dt.date(2026, 4, 21), time=dt.time(19, 0), party_size="x")
    assert {p.code for p in validate_reservation(reservation, CONFIG, APRIL)} == {
        Code.INVALID_NAME,
        Code.INVALID_PARTY_SIZE,
    }


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("date", "2026-04-21", dt.date(2026, 4, 21)),
        ("date", "2026/4/21", dt.date(2026, 4, 21)),
        ("date", "２０２６－０４－２１", dt.date(2026, 4, 21)),
        ("time", "18:30", dt.time(18, 30)),
        ("time", "9:30", dt.time(9, 30)),
        ("time", "18:30:00", dt.time(18, 30)),
        ("time", "１８：３０", dt.time(18, 30)),
        ("party_size", 3, 3),
        ("party_size", "3", 3),
        ("party_size", "３", 3),
        ("party_size", 2.0, 2),
        ("party_size", 0, 0),  # a number; the limits are a rule, reported separately
        ("guest_name", "  Taro \t  Yamada  ", "Taro Yamada"),
        ("guest_name", "山田\u3000太郎", "山田 太郎"),
        ("guest_name", "x" * 60, "x" * 60),
        ("requests", "  window seat  ", "window seat"),
        ("requests", "", None),
        ("requests", None, None),
        ("requests", "x" * 300, "x" * 300),
    ],
)
def test_normalize_accepts(field, raw, expected):
    assert normalize_field(field, raw) == expected


@pytest.mark.parametrize(
    ("field", "raw", "code"),
    [
        ("date", "2026-02-30", "invalid_date"),
        ("date", "2026-13-01", "invalid_date"),
        ("date", "tomorrow", "invalid_date"),
        ("date", "", "invalid_date"),
        ("date", None, "invalid_date"),
        ("date", 20260421, "invalid_date"),
        ("time", "25:00", "invalid_time"),
        ("time", "24:00", "invalid_time"),
        ("time", "18:60", "invalid_time"),
        ("time", "6pm", "invalid_time"),
        ("time", 1830, "invalid_time"),
        ("party_size", "two", "invalid_party_size"),
        ("party_size", 2.5, "invalid_party_size"),
        ("party_size", True, "invalid_party_size"),
        ("party_size", None, "invalid_party_size"),
        ("party_size", "-1", "invalid_party_size"),
        ("party_size", [2], "invalid_party_size"),
        ("guest_name", "", "invalid_name"),
        ("guest_name", "   ", "invalid_name"),
        ("guest_name", "x" * 61, "invalid_name"),
        ("guest_name", 123, "invalid_name"),
        ("guest_name", None, "invalid_name"),
        ("requests", "x" * 301, "invalid_requests"),
        ("requests", 5, "invalid_requests"),
        ("table", "window", "unknown_field"),
    ],
)
def test_normalize_refuses(field, raw, code):
    with pytest.raises(FieldError) as refused:
        normalize_field(field, raw)
    assert refused.value.problem.code == code
    assert refused.value.problem.field == field


def test_every_code_has_both_messages_and_the_required_codes_exist():
    assert REQUIRED_CODES <= {code.value for code in Code}
    samples = {
        "date": dt.date(2026, 4, 21), "time": dt.time(19, 0), "reason": CONFIG.closed_periods[0].reason,
        "open": "11:00", "last_seating": "21:00", "close": "22:00", "max": 4, "min": 1, "when": "2026-04-19",
        "days": 60, "last_date": dt.date(2026, 6, 19), "value": "x", "step": 15, "example": "18:00, 18:15",
        "label": CONFIG.display_name, "detail": "x", "name": "x", "fields": ", ".join(FIELDS),
        "booking_id": "AS-7K3Q", "tools": "x", "misses": 3, "large_max": 10, "areas": "x", "area": "x", "party": 2,
        "tables": "T1",
    }  # fmt: skip
    for code in Code:
        problem = Problem(code, None, samples)
        assert problem.message("ja") and problem.message("en")
        assert problem.message("ja") != problem.message("en")


def test_messages_include_the_limit_in_both_languages():
    problem = Problem(Code.PARTY_TOO_LARGE, "party_size", {"max": 4})
    assert problem.message("en") == "We seat at most 4 guests per booking."
    assert problem.message("ja") == "ご予約は1組4名様までです。"
    assert problem.to_dict("en") == {"field": "party_size", "code": "party_too_large", "message": problem.message("en")}


# ── capacity ─────────────────────────────────────────────────────────────────

TUESDAY = dt.date(2026, 4, 21)


def starts(*times: tuple[int, int]) -> list[Seated]:
    """Bookings of two made before tables were assigned: the seating finds them a table itself."""
    return [Seated(dt.datetime.combine(TUESDAY, dt.time(hour, minute)), party=2) for hour, minute in times]


def identical_tables(count: int, minutes: int = CONFIG.table_minutes) -> RestaurantConfig:
    """The restaurant as it was before areas: `count` tables for up to `max_party_size`, each for `minutes`."""
    tables = tuple(Table(str(number), CONFIG.max_party_size) for number in range(1, count + 1))
    area = Area("table", CONFIG.areas[0].name, tables, (), minutes)
    return dataclasses.replace(CONFIG, tables=count, table_minutes=minutes, areas=(area,))


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        ("19:00", {"fully_booked"}),
        ("18:00", {"fully_booked"}),  # 18:00-20:00 overlaps the 19:00 bookings
        ("17:15", {"fully_booked"}),
        ("17:00", set()),  # leaves exactly when they arrive
        ("20:45", {"fully_booked"}),
        ("21:00", set()),  # arrives exactly when they leave
    ],
)
def test_all_tables_taken(time, expected):
    assert codes(TUESDAY.isoformat(), time, existing=starts(*[(19, 0)] * 6)) == expected


def test_capacity_uses_peak_concurrency_not_overlap_count():
    two_tables = identical_tables(2)
    new = booking(TUESDAY, 18, 0)
    # 17:00-19:00 and 19:00-21:00 both overlap 18:00-20:00 but never each other: one table is always free.
    assert validate_reservation(new, two_tables, APRIL, starts((17, 0), (19, 0))) == []
    # A third booking 17:30-19:30 makes two tables busy during 18:00-19:00.
    refused = validate_reservation(new, two_tables, APRIL, starts((17, 0), (17, 30), (19, 0)))
    assert [problem.code for problem in refused] == [Code.FULLY_BOOKED]


def test_bookings_from_the_day_before_count_after_midnight():
    late = identical_tables(1, minutes=900)  # a 15-hour stay from 22:00 runs to 13:00
    night_before = [Seated(dt.datetime.combine(TUESDAY - dt.timedelta(days=1), dt.time(22, 0)), party=2)]
    assert codes_with(late, booking(TUESDAY, 12, 0), night_before) == {"fully_booked"}
    assert codes_with(late, booking(TUESDAY, 13, 0), night_before) == set()


def codes_with(config, reservation, existing) -> set[str]:
    return {problem.code.value for problem in validate_reservation(reservation, config, APRIL, existing)}


# ── bookable times and alternatives ──────────────────────────────────────────


def test_bookable_times_follow_hours_steps_and_now():
    times = bookable_times(TUESDAY, CONFIG, APRIL, [])
    assert (times[0], times[-1], len(times)) == (dt.time(11, 0), dt.time(21, 0), 41)
    evening = bookable_times(TUESDAY, CONFIG, jst(2026, 4, 21, 19, 10), [])
    assert evening == [dt.time(19, 15), dt.time(19, 30), dt.time(19, 45), dt.time(20, 0)] + [
        dt.time(20, 15),
        dt.time(20, 30),
        dt.time(20, 45),
        dt.time(21, 0),
    ]
    assert bookable_times(dt.date(2026, 12, 31), CONFIG, DECEMBER, []) == []
    assert dt.time(19, 0) not in bookable_times(TUESDAY, CONFIG, APRIL, starts(*[(19, 0)] * 6))


def test_alternatives_nearest_the_same_day():
    assert alternatives(TUESDAY, dt.time(21, 15), CONFIG, APRIL, []) == [
        {"date": "2026-04-21", "time": "20:30"},
        {"date": "2026-04-21", "time": "20:45"},
        {"date": "2026-04-21", "time": "21:00"},
    ]
    full = starts(*[(19, 0)] * 6)
    assert alternatives(TUESDAY, dt.time(19, 0), CONFIG, APRIL, full) == [
        {"date": "2026-04-21", "time": "16:45"},
        {"date": "2026-04-21", "time": "17:00"},
        {"date": "2026-04-21", "time": "21:00"},
    ]


def test_alternatives_move_to_the_next_open_days():
    assert alternatives(dt.date(2026, 12, 31), dt.time(19, 0), CONFIG, DECEMBER, []) == [
        {"date": "2027-01-04", "time": "19:00"},
        {"date": "2027-01-05", "time": "19:00"},
        {"date": "2027-01-06", "time": "19:00"},
    ]
    assert alternatives(dt.date(2026, 12, 31), None, CONFIG, DECEMBER, [])[0] == {"date": "2027-01-04", "time": "11:00"}
    too_late_today = jst(2026, 4, 21, 21, 30)
    assert alternatives(TUESDAY, dt.time(21, 0), CONFIG, too_late_today, [])[0] == {
        "date": "2026-04-22",
        "time": "21:00",
    }


def test_no_alternatives_beyond_the_window():
    assert alternatives(dt.date(2026, 7, 1), dt.time(19, 0), CONFIG, APRIL, []) == []
