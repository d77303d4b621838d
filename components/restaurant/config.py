"""The restaurant's settings, loaded from one owner-edited TOML file.

Everything restaurant-specific (name, hours, closed days, party limits, tables)
lives in ``assets/restaurant.toml``; the rules, the tools and the prompt read it
from the :class:`RestaurantConfig` built here, so there is never a second copy
of a rule to keep in sync. Loading is strict (pydantic models of the file): a
missing, mistyped or unknown setting raises ``ValueError`` naming the key,
because a silently ignored typo in opening hours would turn into wrong bookings.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, time
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from components.settings import PROJECT_ROOT  # noqa: E402 (after the third-party imports above)

DEFAULT_CONFIG_PATH = PROJECT_ROOT / "assets" / "restaurant.toml"
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
class Table:
    """One table: its name as the owner writes it (``T1``), its seats, and the smallest party it is given."""

    id: str
    seats: int
    min_party: int = 1


@dataclass(frozen=True)
class Seats:
    """What a party can be given: one table, or tables pushed together (for more than any one of them seats)."""

    area: str
    tables: tuple[str, ...]
    seats: int
    min_party: int

    def takes(self, party: int) -> bool:
        return self.min_party <= party <= self.seats


@dataclass(frozen=True)
class Area:
    """Where guests can sit (counter, tables, a private room): its tables, the tables that push together, and how
    long a booking there keeps its table."""

    id: str
    name: Localized
    tables: tuple[Table, ...]
    combinations: tuple[tuple[str, ...], ...]
    table_minutes: int


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
    large_party_max: int  # parties above max_party_size and up to this go to the owner as a request
    table_minutes: int
    tables: int
    max_days_ahead: int
    step_minutes: int
    facts: dict[str, Localized] = field(hash=False)  # topic -> the owner's answer (may be empty)
    areas: tuple[Area, ...] = ()  # [[area]] blocks; without them, `tables` identical tables in one area

    def area(self, area_id: str | None) -> Area | None:
        return next((area for area in self.areas if area.id == area_id), None)

    @cached_property
    def seat_options(self) -> tuple[Seats, ...]:
        """Every table and combination, best fit first: fewest seats, then one table before several, then the
        order the owner wrote them in (so a party of two gets a two-top before a four-top)."""
        options = []
        for rank, area in enumerate(self.areas):
            seats = {table.id: table for table in area.tables}
            for order, table in enumerate(area.tables):
                options.append((Seats(area.id, (table.id,), table.seats, table.min_party), rank, order))
            for order, combination in enumerate(area.combinations):
                members = [seats[name] for name in combination]
                total, smallest = sum(t.seats for t in members), max(t.seats for t in members) + 1
                options.append((Seats(area.id, combination, total, smallest), rank, len(area.tables) + order))
        options.sort(key=lambda option: (option[0].seats, len(option[0].tables), option[1], option[2]))
        return tuple(option for option, _, _ in options)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def name(self, language: str) -> str:
        return self.display_name.get(language)


def load_config(path: str | os.PathLike | None = None) -> RestaurantConfig:
    """Read and validate the restaurant config: ``path`` (`RESTAURANT_CONFIG`, read by the settings), else
    ``assets/restaurant.toml`` next to this package (not the working directory, which differs between the Space,
    the tests and a developer's shell)."""
    source = Path(path or DEFAULT_CONFIG_PATH)
    try:
        with source.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{source}: not valid TOML: {error}") from error
    try:
        return _File.model_validate(data).config()
    except ValidationError as invalid:
        message = _explain(invalid.errors()[0], data)
    except ValueError as inconsistent:  # settings that disagree with each other
        message = str(inconsistent)
    raise ValueError(f"{source}: {message}") from None


# ---- the file, as pydantic models (strict: a string is not a number, and unknown keys are refused) --------------


def _clock(value: Any) -> Any:
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f'must be a 24-hour time "HH:MM" (got {value!r})')
    return time(int(match[1]), int(match[2]))


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {value!r}") from error
    return value


def _holiday_country(value: str) -> str:
    if value and value not in holidays.list_supported_countries():
        raise ValueError(f"the holidays package has no country {value!r}")
    return value


def _weekday(value: Any) -> Any:
    name = value.strip().lower() if isinstance(value, str) else None
    if name not in WEEKDAY_NAMES:
        raise ValueError(f'must be a list of day names like "monday" (got {value!r})')
    return WEEKDAY_NAMES.index(name)


def _closed_day(value: Any) -> Any:
    try:
        if isinstance(value, str) and (match := _MONTH_DAY.fullmatch(value)):
            date(2000, int(match[1]), int(match[2]))  # a leap year, so "02-29" is accepted
            return int(match[1]), int(match[2])
        if isinstance(value, str):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise ValueError(f'must be "MM-DD" or "YYYY-MM-DD" (got {value!r})')


Clock = Annotated[time, BeforeValidator(_clock)]
Text = Annotated[str, AfterValidator(str.strip)]
Required = Annotated[str, AfterValidator(str.strip), Field(min_length=1)]
Count = Annotated[int, Field(ge=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Text(_Model):
    ja: Text = ""
    en: Text = ""

    def localized(self) -> Localized:
        return Localized(self.ja, self.en)


class _RequiredText(_Text):
    ja: Required
    en: Required


class _Hours(_Model):
    open: Clock
    close: Clock

    @field_validator("close")
    @classmethod
    def _later(cls, close: time, info: ValidationInfo) -> time:
        if "open" in info.data and close <= info.data["open"]:
            raise ValueError("must be later than open")
        return close


class _Restaurant(_Model):
    name: _RequiredText
    description: _Text = _Text()
    address: _Text = _Text()
    phone: Text = ""
    timezone: Annotated[Required, AfterValidator(_zone)]
    default_language: Literal[*LANGUAGES]
    booking_id_prefix: Annotated[str, Field(pattern=_PREFIX.pattern)]


class _HoursSection(_Model):
    weekday: _Hours
    weekend: _Hours
    public_holidays: Annotated[Text, AfterValidator(_holiday_country)] = ""
    last_seating_minutes: Annotated[int, Field(ge=0)]
    closed_weekdays: list[Annotated[int, BeforeValidator(_weekday)]] = []


class _Closed(_Model):
    start: Annotated[tuple[int, int] | date, BeforeValidator(_closed_day)] = Field(alias="from")
    end: Annotated[tuple[int, int] | date, BeforeValidator(_closed_day)] = Field(alias="to")
    reason: _RequiredText

    @model_validator(mode="after")
    def _ordered(self) -> _Closed:
        if type(self.start) is not type(self.end):
            raise ValueError(".from must have the same form as its to: both MM-DD, or both YYYY-MM-DD")
        if isinstance(self.start, date) and self.start > self.end:
            raise ValueError(".to must not be before its from")
        return self


class _Booking(_Model):
    min_party_size: Count
    max_party_size: Count
    large_party_max: Count | None = None
    table_minutes: Count
    tables: Count | None = None  # required without [[area]] blocks
    max_days_ahead: Annotated[int, Field(ge=0)]
    step_minutes: Count


class _Table(_Model):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,16}$")]
    seats: Count
    min: Count = 1

    @model_validator(mode="after")
    def _fits(self) -> _Table:
        if self.min > self.seats:
            raise ValueError(".min must not exceed its seats")
        return self


class _Area(_Model):
    id: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,24}$")]
    name: _RequiredText
    table_minutes: Count | None = None
    tables: Annotated[list[_Table], Field(min_length=1)]
    combine: list[Annotated[list[str], Field(min_length=2)]] = []

    def area(self, default_minutes: int) -> Area:
        tables = tuple(Table(table.id, table.seats, table.min) for table in self.tables)
        combinations = tuple(tuple(combination) for combination in self.combine)
        return Area(self.id, self.name.localized(), tables, combinations, self.table_minutes or default_minutes)


_Facts = create_model("_Facts", __base__=_Model, **{topic: (_Text, _Text()) for topic in FACT_TOPICS})


class _File(_Model):
    restaurant: _Restaurant
    hours: _HoursSection
    closed: list[_Closed] = []
    booking: _Booking
    area: list[_Area] = []
    facts: _Facts = _Facts()  # type: ignore[valid-type]

    def config(self) -> RestaurantConfig:
        restaurant, hours, booking = self.restaurant, self.hours, self.booking
        if self.area and booking.tables is not None:
            raise ValueError("booking.tables: delete it when [[area]] blocks describe the tables")
        if self.area:
            areas = tuple(area.area(booking.table_minutes) for area in self.area)
        elif booking.tables is None:
            raise ValueError("missing setting booking.tables (or [[area]] blocks with their tables)")
        else:  # one area of identical tables, as before areas existed
            tables = tuple(Table(str(number), booking.max_party_size) for number in range(1, booking.tables + 1))
            areas = (Area("table", Localized("テーブル席", "table"), tables, (), booking.table_minutes),)
        config = RestaurantConfig(
            display_name=restaurant.name.localized(),
            description=restaurant.description.localized(),
            address=restaurant.address.localized(),
            phone=restaurant.phone,
            timezone=restaurant.timezone,
            default_language=restaurant.default_language,
            booking_id_prefix=restaurant.booking_id_prefix,
            weekday_hours=OpeningHours(hours.weekday.open, hours.weekday.close),
            weekend_hours=OpeningHours(hours.weekend.open, hours.weekend.close),
            public_holidays=hours.public_holidays,
            last_seating_minutes=hours.last_seating_minutes,
            closed_weekdays=tuple(sorted(set(hours.closed_weekdays))),
            closed_periods=tuple(ClosedPeriod(c.start, c.end, c.reason.localized()) for c in self.closed),
            min_party_size=booking.min_party_size,
            max_party_size=booking.max_party_size,
            large_party_max=booking.large_party_max or booking.max_party_size,
            table_minutes=booking.table_minutes,
            tables=sum(len(area.tables) for area in areas),
            max_days_ahead=booking.max_days_ahead,
            step_minutes=booking.step_minutes,
            facts={topic: getattr(self.facts, topic).localized() for topic in FACT_TOPICS},
            areas=areas,
        )
        _check_consistency(config)
        return config


def _explain(error: dict[str, Any], data: Any) -> str:
    """One problem, naming the setting as the owner writes it (`closed[0].reason.en`)."""
    location = [str(part) for part in error["loc"]]
    key = "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in location).lstrip(".")
    key = re.sub(r"\.(start|end)\b", lambda match: ".from" if match[1] == "start" else ".to", key)
    if error["type"] == "missing":
        table = _lookup(data, location[:-1])
        typo = difflib.get_close_matches(location[-1], list(table), n=1) if isinstance(table, dict) else []
        hint = f" (is {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{typo[0]} a typo?)" if typo else ""
        return f"missing setting {key}{hint}"
    if error["type"] == "extra_forbidden":
        return f"unknown setting {key}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] in ("int_type", "greater_than_equal"):
        minimum = (error.get("ctx") or {}).get("ge", 0 if key.endswith(("minutes", "ahead")) else 1)
        message = f"must be a whole number of at least {minimum} (got {error.get('input')!r})"
    if error["type"] == "literal_error":
        message = f"must be one of {', '.join(LANGUAGES)} (got {error.get('input')!r})"
    if error["type"] == "string_pattern_mismatch":
        message = f"must be 1-6 capital letters or digits (got {error.get('input')!r})"
    if error["type"] in ("string_type", "string_too_short"):
        message = "must be a non-empty string"
    if message.startswith("."):  # a check of several keys names them itself, relative to `key`
        return f"{key}{message}"
    return f"{key} {message}" if key else message


def _lookup(data: Any, path: list[str]) -> Any:
    for part in path:
        data = data[int(part)] if part.isdigit() and isinstance(data, list) else (data or {}).get(part)
    return data


def _minutes(moment: time) -> int:
    return moment.hour * 60 + moment.minute


def _check_consistency(config: RestaurantConfig) -> None:
    """Cross-setting checks a single key cannot catch."""
    if config.min_party_size > config.max_party_size:
        raise ValueError("booking.min_party_size must not exceed booking.max_party_size")
    if config.large_party_max < config.max_party_size:
        raise ValueError("booking.large_party_max must not be below booking.max_party_size")
    _check_seating(config)
    if _MINUTES_PER_DAY % config.step_minutes:
        raise ValueError("booking.step_minutes must divide a day evenly (e.g. 5, 10, 15, 30, 60)")
    step = config.step_minutes
    for name, hours in (("weekday", config.weekday_hours), ("weekend", config.weekend_hours)):
        first_start = -(-_minutes(hours.open) // step) * step
        if first_start > _minutes(hours.close) - config.last_seating_minutes:
            raise ValueError(f"hours.last_seating_minutes leaves no booking time on hours.{name}")


def _check_seating(config: RestaurantConfig) -> None:
    """Table names are unique, combinations name tables of their own area, and every party the agent may book
    has somewhere to sit."""
    seen: set[str] = set()
    for number, area in enumerate(config.areas):
        if [other.id for other in config.areas].count(area.id) > 1:
            raise ValueError(f"area[{number}].id {area.id!r} is used by two areas")
        names = [table.id for table in area.tables]
        for name in names:
            if name in seen:
                raise ValueError(f"area[{number}].tables: the table name {name!r} is used twice")
            seen.add(name)
        for index, combination in enumerate(area.combinations):
            stray = [name for name in combination if name not in names]
            if stray or len(set(combination)) != len(combination):
                raise ValueError(
                    f"area[{number}].combine[{index}] must name two or more different tables of area {area.id!r}"
                )
    fitting = config.seat_options
    for size in range(config.min_party_size, config.max_party_size + 1):
        if not any(unit.takes(size) for unit in fitting):
            raise ValueError(f"no table or combination seats a party of {size} (booking.max_party_size)")
