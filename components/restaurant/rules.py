"""Booking rules as pure functions: the restaurant's calendar, validating a reservation, listing bookable times.

The model never decides whether a booking is allowed; these functions do, from
the restaurant config and an injected aware ``now``. Everything is computed in
the restaurant's time zone, so "today" is the restaurant's today even when the
server runs in UTC. Capacity is checked by seating the booking among the existing
ones (`seating.plan`, on the bookings the caller reads from the store);
:func:`validate_reservation` is the single validator used by both the per-call
session (to report problems early) and the store (inside its booking transaction).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import unicodedata
from collections.abc import Sequence

import holidays

from components.restaurant.config import Localized, OpeningHours, RestaurantConfig
from components.restaurant.fields import FIELDS, Reservation, format_time, missing_field, normalize_field
from components.restaurant.problems import Code, FieldError, Problem
from components.restaurant.seating import Seated, plan

ALTERNATIVES_LIMIT = 3

_REGULAR_HOLIDAY = Localized("定休日", "our regular day off")


@dataclasses.dataclass(frozen=True)
class Opening:
    """One day's hours: the first and last allowed start (last seating) and closing time."""

    open: dt.time
    last_seating: dt.time
    close: dt.time

    def to_dict(self) -> dict[str, str]:
        return {name: format_time(getattr(self, name)) for name in ("open", "last_seating", "close")}


# ── calendar ─────────────────────────────────────────────────────────────────


@functools.lru_cache(maxsize=64)
def _holiday_calendar(country: str, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays(country, years=year)


def is_public_holiday(day: dt.date, config: RestaurantConfig) -> bool:
    """Public holidays, substitute holidays included, from the `holidays` package."""
    return bool(config.public_holidays) and day in _holiday_calendar(config.public_holidays, day.year)


def closure(day: dt.date, config: RestaurantConfig) -> Localized | None:
    """Why the restaurant is closed all day on ``day``, or ``None`` when it opens."""
    for period in config.closed_periods:
        if period.contains(day):
            return period.reason
    return _REGULAR_HOLIDAY if day.weekday() in config.closed_weekdays else None


def opening(day: dt.date, config: RestaurantConfig) -> Opening | None:
    """The day's hours, or ``None`` on a closed day. Weekend hours apply on Saturdays, Sundays and public holidays."""
    if closure(day, config):
        return None
    hours = config.weekend_hours if day.weekday() >= 5 or is_public_holiday(day, config) else config.weekday_hours
    return Opening(hours.open, last_seating(hours, config), hours.close)


def last_seating(hours: OpeningHours, config: RestaurantConfig) -> dt.time:
    """The latest start time: ``last_seating_minutes`` before closing."""
    close = dt.datetime.combine(dt.date.min, hours.close)
    return (close - dt.timedelta(minutes=config.last_seating_minutes)).time()


def local_now(config: RestaurantConfig, now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(config.tz)


def booking_window(config: RestaurantConfig, now: dt.datetime) -> tuple[dt.date, dt.date]:
    """First and last bookable dates: the restaurant's today and today + ``max_days_ahead``."""
    today = local_now(config, now).date()
    return today, today + dt.timedelta(days=config.max_days_ahead)


# ── validation ───────────────────────────────────────────────────────────────


def validate_reservation(
    reservation: Reservation,
    config: RestaurantConfig,
    now: dt.datetime,
    existing: Sequence[Seated] = (),
    *,
    partial: bool = False,
    party_limit: bool = True,
) -> list[Problem]:
    """Every problem of ``reservation`` at ``now``, given the ``existing`` bookings around its date.

    ``partial`` skips the completeness check, for drafts still being collected. ``party_limit=False`` lets a
    party larger than the limit through (the owner's deliberate override; the guest's agent never sets it).
    Capacity is only checked once everything else about the slot is fine, so a
    refused slot gets the most useful reason.
    """
    problems = [] if partial else [missing_field(name) for name in reservation.missing()]
    values = {}
    for name in FIELDS:
        if getattr(reservation, name) is not None:
            try:
                values[name] = normalize_field(name, getattr(reservation, name))
            except FieldError as error:
                problems.append(error.problem)
    party_size, day, moment = values.get("party_size"), values.get("date"), values.get("time")
    area = area_for(values.get("seating"), config)
    if values.get("seating") is not None and area is None:
        problems.append(_unknown_area(str(values["seating"]), config))
    if party_size is not None and (party_limit or party_size < config.min_party_size):
        problems += _party_problems(party_size, config)
    if moment is not None:
        problems += _step_problems(moment, day, config)
    if day is None:
        return problems
    day_problems = _day_problems(day, moment, config, now)
    problems += day_problems
    if moment is not None and not day_problems:
        problems += _slot_problems(day, moment, config, now)
        if not problems:
            party = party_size or config.min_party_size
            if not party_limit:  # the owner's override: the party takes the largest seating there is
                party = min(party, max(option.seats for option in config.seat_options))
            problems += _seating_problems(day, moment, party, area, config, existing)
    return problems


def area_for(value: object, config: RestaurantConfig) -> str | None:
    """The area a guest's seating wish names (its id, or its name in either language), or None."""
    if not isinstance(value, str):
        return None
    wish = unicodedata.normalize("NFKC", value).strip().casefold()
    for area in config.areas:
        if wish in (area.id, area.name.ja.casefold(), area.name.en.casefold()):
            return area.id
    return None


def _unknown_area(value: str, config: RestaurantConfig) -> Problem:
    names = Localized("、".join(a.name.ja for a in config.areas), ", ".join(a.name.en for a in config.areas))
    return Problem(Code.UNKNOWN_AREA, "seating", {"value": value, "areas": names})


def _seating_problems(
    day: dt.date, moment: dt.time, party: int, area: str | None, config: RestaurantConfig, existing: Sequence[Seated]
) -> list[Problem]:
    start = dt.datetime.combine(day, moment)
    if plan(start, party, config, existing, area):
        return []
    if area is not None and plan(start, party, config, existing):
        name = config.area(area).name  # type: ignore[union-attr]
        return [_slot(Code.AREA_FULL, day, moment, "seating", area=name, area_id=area, party=party)]
    return [_slot(Code.FULLY_BOOKED, day, moment)]


def _slot(code: Code, day: dt.date, moment: dt.time | None, field: str = "time", **params: object) -> Problem:
    return Problem(code, field, {"date": day, "time": moment, **params})


def _party_problems(size: int, config: RestaurantConfig) -> list[Problem]:
    if config.max_party_size < size <= config.large_party_max:
        return [
            Problem(Code.LARGE_PARTY, "party_size", {"max": config.max_party_size, "large_max": config.large_party_max})
        ]
    if size > config.max_party_size:
        return [Problem(Code.PARTY_TOO_LARGE, "party_size", {"max": config.large_party_max})]
    if size < config.min_party_size:
        return [Problem(Code.PARTY_TOO_SMALL, "party_size", {"min": config.min_party_size})]
    return []


def _step_problems(moment: dt.time, day: dt.date | None, config: RestaurantConfig) -> list[Problem]:
    step = config.step_minutes * 60
    seconds = (moment.hour * 60 + moment.minute) * 60 + moment.second
    if seconds % step == 0:
        return []
    before = seconds - seconds % step
    examples = [value for value in (before, before + step) if value < 24 * 3600]
    example = ", ".join(format_time(dt.time(value // 3600, value // 60 % 60)) for value in examples)
    params = {"step": config.step_minutes, "example": example}
    return [Problem(Code.NOT_ON_STEP, "time", {**params, "date": day, "time": moment} if day else params)]


def _day_problems(day: dt.date, moment: dt.time | None, config: RestaurantConfig, now: dt.datetime) -> list[Problem]:
    today, last_day = booking_window(config, now)
    if day < today:
        return [_slot(Code.IN_PAST, day, moment, "date", when=day.isoformat())]
    if day > last_day:
        return [_slot(Code.TOO_FAR_AHEAD, day, moment, "date", days=config.max_days_ahead, last_date=last_day)]
    reason = closure(day, config)
    return [_slot(Code.CLOSED_DAY, day, moment, "date", reason=reason)] if reason else []


def _slot_problems(day: dt.date, moment: dt.time, config: RestaurantConfig, now: dt.datetime) -> list[Problem]:
    hours = opening(day, config)
    if hours and not hours.open <= moment <= hours.last_seating:
        return [_slot(Code.OUTSIDE_HOURS, day, moment, **hours.to_dict())]
    if dt.datetime.combine(day, moment, tzinfo=config.tz) <= now:
        return [_slot(Code.IN_PAST, day, moment, when=f"{day.isoformat()} {format_time(moment)}")]
    return []


# ── availability ─────────────────────────────────────────────────────────────


def bookable_times(
    day: dt.date,
    config: RestaurantConfig,
    now: dt.datetime,
    existing: Sequence[Seated],
    party: int | None = None,
    area: str | None = None,
) -> list[dt.time]:
    """Start times on ``day`` a new booking (of ``party``, in ``area``) could take right now: hours, past, horizon
    and a free table."""
    hours = opening(day, config)
    if hours is None or _day_problems(day, None, config, now):
        return []
    step = config.step_minutes
    first = -(-(hours.open.hour * 60 + hours.open.minute) // step) * step
    last = hours.last_seating.hour * 60 + hours.last_seating.minute
    nearby = [booking for booking in existing if abs(booking.start.date() - day) <= dt.timedelta(days=1)]
    times = []
    for minute in range(first, last + 1, step):
        moment = dt.time(minute // 60, minute % 60)
        start = dt.datetime.combine(day, moment)
        if start.replace(tzinfo=config.tz) > now and plan(start, party or config.min_party_size, config, nearby, area):
            times.append(moment)
    return times


def alternatives(
    day: dt.date,
    preferred: dt.time | None,
    config: RestaurantConfig,
    now: dt.datetime,
    existing: Sequence[Seated],
    limit: int = ALTERNATIVES_LIMIT,
    party: int | None = None,
    area: str | None = None,
) -> list[dict[str, str]]:
    """Bookable slots closest to a refused one.

    Up to ``limit`` start times on ``day`` nearest to ``preferred``; if ``day`` has
    none, the nearest time on each of the next open days (the first time when
    no time was asked for). Searches no further than the booking window.
    """
    today, last_day = booking_window(config, now)
    target = preferred.hour * 60 + preferred.minute if preferred else 0
    candidate = max(day, today)
    found: list[dict[str, str]] = []
    while candidate <= last_day and len(found) < limit:
        times = bookable_times(candidate, config, now, existing, party, area)
        nearest = sorted(times, key=lambda moment: (abs(moment.hour * 60 + moment.minute - target), moment))
        if candidate == day and nearest:
            return [{"date": day.isoformat(), "time": format_time(moment)} for moment in sorted(nearest[:limit])]
        if nearest:
            found.append({"date": candidate.isoformat(), "time": format_time(nearest[0])})
        candidate += dt.timedelta(days=1)
    return found
