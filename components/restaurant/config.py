"""The restaurant's settings, loaded from one owner-edited TOML file.

Everything restaurant-specific (name, hours, closed days, party limits, tables)
lives in ``assets/restaurant.toml``; the rules, the tools and the prompt read it
from the :class:`RestaurantConfig` built here, so there is never a second copy
of a rule to keep in sync. Loading is strict: a missing, mistyped or unknown
setting raises ``ValueError`` naming the key, because a silently ignored typo in
opening hours would turn into wrong bookings.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "assets" / "restaurant.toml"
CONFIG_ENV_VAR = "RESTAURANT_CONFIG"

LANGUAGES = ("ja", "en")
# What callers ask about besides bookings: the owner fills these in (`[facts]`), the agent answers from them only.
FACT_TOPICS = ("menu", "allergies", "access", "parking", "payment", "children", "cancellation")
WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_TIME = re.compile(r"(\d{2}):(\d{2})")
_MONTH_DAY = re.compile(r"(\d{2})-(\d{2})")
_PREFIX = re.compile(r"[A-Z0-9]{1,6}")
_MINUTES_PER_DAY = 24 * 60


def language_code(value: str) -> str:
    """Map a language tag ("ja", "en-US", "EN") to a supported code, or raise ``ValueError``."""
    code = str(value).strip().lower()[:2]
    if code not in LANGUAGES:
        raise ValueError(f"unsupported language {value!r}; use one of {', '.join(LANGUAGES)}")
    return code


@dataclass(frozen=True)
class Localized:
    """A short text in every supported language."""

    ja: str
    en: str

    def get(self, language: str) -> str:
        return self.ja if language_code(language) == "ja" else self.en


@dataclass(frozen=True)
class OpeningHours:
    open: time
    close: time


MonthDay = tuple[int, int]


@dataclass(frozen=True)
class ClosedPeriod:
    """Inclusive closed range: recurring (month, day) pairs, possibly wrapping the year end, or fixed dates."""

    start: MonthDay | date
    end: MonthDay | date
    reason: Localized

    @property
    def recurring(self) -> bool:
        return not isinstance(self.start, date)

    def contains(self, day: date) -> bool:
        if isinstance(self.start, date) and isinstance(self.end, date):
            return self.start <= day <= self.end
        key = (day.month, day.day)
        if self.start <= self.end:
            return self.start <= key <= self.end
        return key >= self.start or key <= self.end


@dataclass(frozen=True)
class RestaurantConfig:
    """One restaurant's settings; see ``assets/restaurant.toml`` for what each one means."""

    display_name: Localized
    description: Localized
    address: Localized
    phone: str
    timezone: str
    default_language: str
    booking_id_prefix: str
    weekday_hours: OpeningHours
    weekend_hours: OpeningHours
    public_holidays: str
    last_seating_minutes: int
    closed_weekdays: tuple[int, ...]
    closed_periods: tuple[ClosedPeriod, ...]
    min_party_size: int
    max_party_size: int
    table_minutes: int
    tables: int
    max_days_ahead: int
    step_minutes: int
    facts: dict[str, Localized] = field(hash=False)  # topic -> the owner's answer (may be empty)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def name(self, language: str) -> str:
        return self.display_name.get(language)


def load_config(path: str | os.PathLike | None = None) -> RestaurantConfig:
    """Read and validate the restaurant config.

    ``path`` wins; otherwise ``$RESTAURANT_CONFIG``; otherwise ``assets/restaurant.toml``
    next to this package (not the working directory, which differs between the
    Space, the tests and a developer's shell).
    """
    source = Path(path or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)
    try:
        with source.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{source}: not valid TOML: {error}") from error
    try:
        return _parse(_Table(data, ""))
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from error


class _Table:
    """A TOML table that remembers its dotted key path and which keys were read, to name bad or unknown keys."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ValueError(f"{where or 'the file'} must be a table")
        self.data = data
        self.where = where
        self.unread = set(data)

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def raw(self, name: str, default: Any = ...) -> Any:
        self.unread.discard(name)
        if name in self.data:
            return self.data[name]
        if default is ...:
            typo = difflib.get_close_matches(name, list(self.data), n=1)
            hint = f" (is {self.key(typo[0])} a typo?)" if typo else ""
            raise ValueError(f"missing setting {self.key(name)}{hint}")
        return default

    def table(self, name: str) -> _Table:
        return _Table(self.raw(name), self.key(name))

    def text(self, name: str, default: Any = ..., *, required: bool = False) -> str:
        value = self.raw(name, default)
        if not isinstance(value, str) or (required and not value.strip()):
            raise ValueError(f"{self.key(name)} must be {'a non-empty' if required else 'a'} string")
        return value.strip()

    def localized(self, name: str, *, required: bool = False) -> Localized:
        default = ... if required else ""
        table = _Table(self.raw(name, default if required else {}), self.key(name))
        result = Localized(table.text("ja", default, required=required), table.text("en", default, required=required))
        table.done()
        return result

    def integer(self, name: str, minimum: int) -> int:
        value = self.raw(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{self.key(name)} must be a whole number of at least {minimum} (got {value!r})")
        return value

    def clock(self, name: str) -> time:
        value = self.raw(name)
        match = _TIME.fullmatch(value) if isinstance(value, str) else None
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise ValueError(f'{self.key(name)} must be a 24-hour time "HH:MM" (got {value!r})')
        return time(int(match[1]), int(match[2]))

    def done(self) -> None:
        if self.unread:
            raise ValueError(f"unknown setting {self.key(sorted(self.unread)[0])}")


def _parse(root: _Table) -> RestaurantConfig:
    restaurant = root.table("restaurant")
    hours = root.table("hours")
    booking = root.table("booking")
    config = RestaurantConfig(
        display_name=restaurant.localized("name", required=True),
        description=restaurant.localized("description"),
        address=restaurant.localized("address"),
        phone=restaurant.text("phone", ""),
        timezone=_timezone(restaurant),
        default_language=_language(restaurant),
        booking_id_prefix=_prefix(restaurant),
        weekday_hours=_hours(hours, "weekday"),
        weekend_hours=_hours(hours, "weekend"),
        public_holidays=_holiday_country(hours),
        last_seating_minutes=hours.integer("last_seating_minutes", 0),
        closed_weekdays=_weekdays(hours),
        closed_periods=_closed_periods(root),
        min_party_size=booking.integer("min_party_size", 1),
        max_party_size=booking.integer("max_party_size", 1),
        table_minutes=booking.integer("table_minutes", 1),
        tables=booking.integer("tables", 1),
        max_days_ahead=booking.integer("max_days_ahead", 0),
        step_minutes=booking.integer("step_minutes", 1),
        facts=_facts(root),
    )
    for table in (restaurant, hours, booking, root):
        table.done()
    _check_consistency(config)
    return config


def _facts(root: _Table) -> dict[str, Localized]:
    """The `[facts]` section; a topic left out or empty means "ask the staff"."""
    table = _Table(root.raw("facts", {}), "facts")
    facts = {topic: table.localized(topic) for topic in FACT_TOPICS}
    table.done()
    return facts


def _timezone(table: _Table) -> str:
    name = table.text("timezone", required=True)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"{table.key('timezone')}: unknown time zone {name!r}") from error
    return name


def _language(table: _Table) -> str:
    value = table.text("default_language", required=True)
    if value not in LANGUAGES:
        raise ValueError(f"{table.key('default_language')} must be one of {', '.join(LANGUAGES)} (got {value!r})")
    return value


def _prefix(table: _Table) -> str:
    value = table.text("booking_id_prefix", required=True)
    if not _PREFIX.fullmatch(value):
        raise ValueError(f"{table.key('booking_id_prefix')} must be 1-6 capital letters or digits (got {value!r})")
    return value


def _hours(hours: _Table, name: str) -> OpeningHours:
    table = hours.table(name)
    result = OpeningHours(table.clock("open"), table.clock("close"))
    table.done()
    if result.close <= result.open:
        raise ValueError(f"{table.key('close')} must be later than {table.key('open')}")
    return result


def _holiday_country(table: _Table) -> str:
    value = table.text("public_holidays", "")
    if value and value not in holidays.list_supported_countries():
        raise ValueError(f"{table.key('public_holidays')}: the holidays package has no country {value!r}")
    return value


def _weekdays(table: _Table) -> tuple[int, ...]:
    value = table.raw("closed_weekdays", [])
    names = [str(item).strip().lower() for item in value] if isinstance(value, list) else [None]
    if not all(name in WEEKDAY_NAMES for name in names):
        raise ValueError(f'{table.key("closed_weekdays")} must be a list of day names like "monday" (got {value!r})')
    return tuple(sorted({WEEKDAY_NAMES.index(name) for name in names}))


def _closed_periods(root: _Table) -> tuple[ClosedPeriod, ...]:
    blocks = root.raw("closed", [])
    if not isinstance(blocks, list):
        raise ValueError("closed must be a list of [[closed]] blocks")
    return tuple(_closed_period(_Table(block, f"closed[{index}]")) for index, block in enumerate(blocks))


def _closed_period(table: _Table) -> ClosedPeriod:
    start, end = _closed_day(table, "from"), _closed_day(table, "to")
    period = ClosedPeriod(start, end, table.localized("reason", required=True))
    table.done()
    if type(start) is not type(end):
        raise ValueError(f"{table.key('from')} and {table.key('to')} must both be MM-DD or both be YYYY-MM-DD")
    if not period.recurring and start > end:
        raise ValueError(f"{table.key('to')} must not be before {table.key('from')}")
    return period


def _closed_day(table: _Table, name: str) -> MonthDay | date:
    value = table.text(name, required=True)
    try:
        if match := _MONTH_DAY.fullmatch(value):
            date(2000, int(match[1]), int(match[2]))  # a leap year, so "02-29" is accepted
            return int(match[1]), int(match[2])
        return date.fromisoformat(value)
    except ValueError as error:
        raise ValueError(f'{table.key(name)} must be "MM-DD" or "YYYY-MM-DD" (got {value!r})') from error


def _minutes(moment: time) -> int:
    return moment.hour * 60 + moment.minute


def _check_consistency(config: RestaurantConfig) -> None:
    """Cross-setting checks a single key cannot catch."""
    if config.min_party_size > config.max_party_size:
        raise ValueError("booking.min_party_size must not exceed booking.max_party_size")
    if _MINUTES_PER_DAY % config.step_minutes:
        raise ValueError("booking.step_minutes must divide a day evenly (e.g. 5, 10, 15, 30, 60)")
    step = config.step_minutes
    for name, hours in (("weekday", config.weekday_hours), ("weekend", config.weekend_hours)):
        first_start = -(-_minutes(hours.open) // step) * step
        if first_start > _minutes(hours.close) - config.last_seating_minutes:
            raise ValueError(f"hours.last_seating_minutes leaves no booking time on hours.{name}")
