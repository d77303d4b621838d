"""Booking rules as pure functions: normalise fields, validate a reservation, list bookable times.

The model never decides whether a booking is allowed; these functions do, from
the restaurant config and an injected aware ``now``. Everything is computed in
the restaurant's time zone, so "today" is the restaurant's today even when the
server runs in UTC. Capacity is checked against the start times of existing
bookings (restaurant-local wall-clock datetimes) which the caller reads from the
store; :func:`validate_reservation` is the single validator used by both the
per-call session (to report problems early) and the store (inside its booking
transaction).

Every problem has a stable machine code (:class:`Code`) and a short message in
each supported language, rendered late so a caller switching language mid-call
gets messages in the new language.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum

import holidays

from components.config import Localized, OpeningHours, RestaurantConfig

REQUIRED_FIELDS = ("guest_name", "date", "time", "party_size")
FIELDS = (*REQUIRED_FIELDS, "requests")
MAX_NAME_LENGTH = 60
MAX_REQUESTS_LENGTH = 300
ALTERNATIVES_LIMIT = 3

_DATE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_MAX_ECHO = 40


class Code(StrEnum):
    CLOSED_DAY = "closed_day"
    OUTSIDE_HOURS = "outside_hours"
    PARTY_TOO_LARGE = "party_too_large"
    PARTY_TOO_SMALL = "party_too_small"
    IN_PAST = "in_past"
    TOO_FAR_AHEAD = "too_far_ahead"
    INVALID_DATE = "invalid_date"
    INVALID_TIME = "invalid_time"
    NOT_ON_STEP = "not_on_step"
    INVALID_PARTY_SIZE = "invalid_party_size"
    INVALID_NAME = "invalid_name"
    INVALID_REQUESTS = "invalid_requests"
    FULLY_BOOKED = "fully_booked"
    MISSING_FIELD = "missing_field"
    INVALID_ARGUMENTS = "invalid_arguments"
    UNKNOWN_FIELD = "unknown_field"
    ALREADY_CONFIRMED = "already_confirmed"
    NOT_READY = "not_ready"
    UNKNOWN_TOOL = "unknown_tool"
    INTERNAL_ERROR = "internal_error"


# Codes meaning "you cannot start at that date/time": these come with nearby bookable alternatives.
SLOT_CODES = frozenset(
    {Code.CLOSED_DAY, Code.OUTSIDE_HOURS, Code.IN_PAST, Code.TOO_FAR_AHEAD, Code.NOT_ON_STEP, Code.FULLY_BOOKED}
)

_MESSAGES: dict[Code, Localized] = {
    Code.CLOSED_DAY: Localized("{date}は{reason}のため休業日です。", "We are closed on {date} ({reason})."),
    Code.OUTSIDE_HOURS: Localized(
        "{date}のご予約は{open}から{last_seating}までのご来店で承ります（{close}閉店）。",
        "On {date} bookings can start from {open} to {last_seating} (we close at {close}).",
    ),
    Code.PARTY_TOO_LARGE: Localized("ご予約は1組{max}名様までです。", "We seat at most {max} guests per booking."),
    Code.PARTY_TOO_SMALL: Localized("ご予約は{min}名様から承ります。", "A booking is for at least {min} guest(s)."),
    Code.IN_PAST: Localized("{when}はすでに過ぎています。", "{when} has already passed."),
    Code.TOO_FAR_AHEAD: Localized(
        "ご予約は{days}日先の{last_date}まで承ります。", "We take bookings up to {days} days ahead, until {last_date}."
    ),
    Code.INVALID_DATE: Localized(
        "「{value}」は日付として読み取れません。YYYY-MM-DD形式でお願いします。",
        "'{value}' is not a valid date; use YYYY-MM-DD.",
    ),
    Code.INVALID_TIME: Localized(
        "「{value}」は時刻として読み取れません。24時間制のHH:MM形式でお願いします。",
        "'{value}' is not a valid time; use 24-hour HH:MM.",
    ),
    Code.NOT_ON_STEP: Localized(
        "ご来店時刻は{step}分単位で承ります（例: {example}）。",
        "Bookings start on {step}-minute steps (for example {example}).",
    ),
    Code.INVALID_PARTY_SIZE: Localized(
        "「{value}」は人数として読み取れません。数字でお願いします。",
        "'{value}' is not a number of guests; use a whole number.",
    ),
    Code.INVALID_NAME: Localized(
        "お名前を{max}文字以内でお伺いできますか。", "Please give a name of at most {max} characters."
    ),
    Code.INVALID_REQUESTS: Localized(
        "ご要望は{max}文字以内の文章でお願いします。", "Requests must be text of at most {max} characters."
    ),
    Code.FULLY_BOOKED: Localized("{date} {time:%H:%M}は満席です。", "We are fully booked at {time:%H:%M} on {date}."),
    Code.MISSING_FIELD: Localized("{label}をまだお伺いしていません。", "We still need the {label}."),
    Code.INVALID_ARGUMENTS: Localized(
        "ツールの引数を読み取れませんでした（{detail}）。", "The tool arguments could not be read ({detail})."
    ),
    Code.UNKNOWN_FIELD: Localized(
        "「{name}」は予約の項目ではありません（項目: {fields}）。",
        "'{name}' is not a reservation field (fields: {fields}).",
    ),
    Code.ALREADY_CONFIRMED: Localized(
        "ご予約はすでに確定しています（予約番号 {booking_id}）。"
        "変更や別のご予約は、お手数ですがもう一度お電話ください。",
        "This booking is already confirmed (booking ID {booking_id}). "
        "For changes or another booking, please call again.",
    ),
    Code.NOT_READY: Localized(
        "まだご予約を確定できません。先にほかの問題を解決してください。",
        "The booking cannot be confirmed yet; resolve the other problems first.",
    ),
    Code.UNKNOWN_TOOL: Localized(
        "「{name}」というツールはありません（ツール: {tools}）。", "There is no tool named '{name}' (tools: {tools})."
    ),
    Code.INTERNAL_ERROR: Localized(
        "システムで問題が発生しました。もう一度お試しください。", "Something went wrong on our side; please try again."
    ),
}

FIELD_LABELS: dict[str, Localized] = {
    "guest_name": Localized("お名前", "guest's name"),
    "date": Localized("ご来店日", "date"),
    "time": Localized("ご来店時刻", "time"),
    "party_size": Localized("人数", "number of guests"),
    "requests": Localized("ご要望", "requests"),
}

_REGULAR_HOLIDAY = Localized("定休日", "our regular day off")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One reason a value or a reservation is not acceptable.

    ``params`` fill the message templates; slot problems also carry the refused
    ``date`` (and ``time`` when known) so callers can look for alternatives.
    """

    code: Code
    field: str | None = None
    params: Mapping[str, object] = dataclasses.field(default_factory=dict, hash=False)

    def message(self, language: str) -> str:
        values = {key: text.get(language) if isinstance(text, Localized) else text for key, text in self.params.items()}
        return _MESSAGES[self.code].get(language).format(**values)

    def to_dict(self, language: str) -> dict[str, str | None]:
        return {"field": self.field, "code": self.code.value, "message": self.message(language)}


class FieldError(ValueError):
    """A raw field value that cannot be normalised; carries the problem to report."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.code.value)
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class Reservation:
    """A (possibly partial) reservation with normalised values; ``None`` means not given yet."""

    guest_name: str | None = None
    date: dt.date | None = None
    time: dt.time | None = None
    party_size: int | None = None
    requests: str | None = None

    def missing(self) -> list[str]:
        return [name for name in REQUIRED_FIELDS if getattr(self, name) is None]

    def to_dict(self) -> dict[str, str | int | None]:
        return {
            "guest_name": self.guest_name,
            "date": self.date.isoformat() if self.date else None,
            "time": format_time(self.time) if self.time else None,
            "party_size": self.party_size,
            "requests": self.requests,
        }


@dataclasses.dataclass(frozen=True)
class Opening:
    """One day's hours: the first and last allowed start (last seating) and closing time."""

    open: dt.time
    last_seating: dt.time
    close: dt.time

    def to_dict(self) -> dict[str, str]:
        return {name: format_time(getattr(self, name)) for name in ("open", "last_seating", "close")}


def format_time(moment: dt.time) -> str:
    return moment.strftime("%H:%M")


# ── normalisation ────────────────────────────────────────────────────────────


def normalize_field(name: str, value: object) -> object:
    """Turn a raw tool value into the field's normalised value, or raise :class:`FieldError`."""
    parser = _PARSERS.get(name)
    if parser is None:
        raise FieldError(unknown_field(name, FIELDS))
    return parser(value)


def unknown_field(name: str, allowed: Sequence[str]) -> Problem:
    return Problem(Code.UNKNOWN_FIELD, name, {"name": _echo(name), "fields": ", ".join(allowed)})


def missing_field(name: str) -> Problem:
    return Problem(Code.MISSING_FIELD, name, {"label": FIELD_LABELS[name]})


def _echo(value: object) -> str:
    text = value if isinstance(value, str) else "null" if value is None else repr(value)
    return text if len(text) <= _MAX_ECHO else text[: _MAX_ECHO - 1] + "…"


def _plain(value: str) -> str:
    """Fold full-width digits and punctuation ("１８：３０") to ASCII; speech recognisers produce both."""
    return unicodedata.normalize("NFKC", value).strip()


def _parse_name(value: object) -> str:
    name = " ".join(value.split()) if isinstance(value, str) else ""
    if not name or len(name) > MAX_NAME_LENGTH:
        raise FieldError(Problem(Code.INVALID_NAME, "guest_name", {"max": MAX_NAME_LENGTH}))
    return name


def _parse_date(value: object) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    match = _DATE.fullmatch(_plain(value)) if isinstance(value, str) else None
    try:
        if match:
            return dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        pass
    raise FieldError(Problem(Code.INVALID_DATE, "date", {"value": _echo(value)}))


def _parse_time(value: object) -> dt.time:
    if isinstance(value, dt.time):
        return value
    match = _TIME.fullmatch(_plain(value)) if isinstance(value, str) else None
    try:
        if match:
            return dt.time(int(match[1]), int(match[2]), int(match[3] or 0))
    except ValueError:
        pass
    raise FieldError(Problem(Code.INVALID_TIME, "time", {"value": _echo(value)}))


def _parse_party_size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and (digits := _plain(value)).isascii() and digits.isdigit():
        return int(digits)
    raise FieldError(Problem(Code.INVALID_PARTY_SIZE, "party_size", {"value": _echo(value)}))


def _parse_requests(value: object) -> str | None:
    """Empty text or null clears the requests: "no requests after all" is a valid answer."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value.strip()) > MAX_REQUESTS_LENGTH:
        raise FieldError(Problem(Code.INVALID_REQUESTS, "requests", {"max": MAX_REQUESTS_LENGTH}))
    return value.strip() or None


_PARSERS = {
    "guest_name": _parse_name,
    "date": _parse_date,
    "time": _parse_time,
    "party_size": _parse_party_size,
    "requests": _parse_requests,
}


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
    existing: Sequence[dt.datetime] = (),
    *,
    partial: bool = False,
) -> list[Problem]:
    """Every problem of ``reservation`` at ``now``, given the start times of ``existing`` bookings.

    ``partial`` skips the completeness check, for drafts still being collected.
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
    if party_size is not None:
        problems += _party_problems(party_size, config)
    if moment is not None:
        problems += _step_problems(moment, day, config)
    if day is None:
        return problems
    day_problems = _day_problems(day, moment, config, now)
    problems += day_problems
    if moment is not None and not day_problems:
        problems += _slot_problems(day, moment, config, now)
        if not problems and not _fits(dt.datetime.combine(day, moment), existing, config):
            problems.append(_slot(Code.FULLY_BOOKED, day, moment))
    return problems


def _slot(code: Code, day: dt.date, moment: dt.time | None, field: str = "time", **params: object) -> Problem:
    return Problem(code, field, {"date": day, "time": moment, **params})


def _party_problems(size: int, config: RestaurantConfig) -> list[Problem]:
    if size > config.max_party_size:
        return [Problem(Code.PARTY_TOO_LARGE, "party_size", {"max": config.max_party_size})]
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


def _fits(start: dt.datetime, existing: Iterable[dt.datetime], config: RestaurantConfig) -> bool:
    """Whether a booking starting at ``start`` leaves at every instant of its stay fewer than ``tables`` tables in use.

    Counting all overlapping bookings would over-refuse: two bookings that overlap
    the new one but not each other need only one table between them. So this
    sweeps the overlapping intervals, clipped to the new stay, and takes the peak.
    """
    stay = dt.timedelta(minutes=config.table_minutes)
    end = start + stay
    events = []
    for other in existing:
        if other < end and other + stay > start:
            events += [(max(other, start), 1), (min(other + stay, end), -1)]
    in_use = peak = 0
    for _, change in sorted(events):  # at equal instants -1 sorts first: a table freed at 19:00 is free at 19:00
        in_use += change
        peak = max(peak, in_use)
    return peak < config.tables


# ── availability ─────────────────────────────────────────────────────────────


def bookable_times(
    day: dt.date, config: RestaurantConfig, now: dt.datetime, existing: Sequence[dt.datetime]
) -> list[dt.time]:
    """Start times on ``day`` a new booking could take right now (hours, past, horizon and capacity)."""
    hours = opening(day, config)
    if hours is None or _day_problems(day, None, config, now):
        return []
    step = config.step_minutes
    first = -(-(hours.open.hour * 60 + hours.open.minute) // step) * step
    last = hours.last_seating.hour * 60 + hours.last_seating.minute
    nearby = [start for start in existing if abs(start.date() - day) <= dt.timedelta(days=1)]
    times = []
    for minute in range(first, last + 1, step):
        moment = dt.time(minute // 60, minute % 60)
        start = dt.datetime.combine(day, moment)
        if start.replace(tzinfo=config.tz) > now and _fits(start, nearby, config):
            times.append(moment)
    return times


def alternatives(
    day: dt.date,
    preferred: dt.time | None,
    config: RestaurantConfig,
    now: dt.datetime,
    existing: Sequence[dt.datetime],
    limit: int = ALTERNATIVES_LIMIT,
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
        times = bookable_times(candidate, config, now, existing)
        nearest = sorted(times, key=lambda moment: (abs(moment.hour * 60 + moment.minute - target), moment))
        if candidate == day and nearest:
            return [{"date": day.isoformat(), "time": format_time(moment)} for moment in sorted(nearest[:limit])]
        if nearest:
            found.append({"date": candidate.isoformat(), "time": format_time(nearest[0])})
        candidate += dt.timedelta(days=1)
    return found
