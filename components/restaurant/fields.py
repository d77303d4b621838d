"""What a booking is made of: its fields, and how a raw value from the model becomes a normalised one.

Speech recognisers and models produce "１８：３０", "2025/4/18" or "four"; each parser accepts what can be
read without guessing and refuses the rest with a problem the model can speak about.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import unicodedata
from collections.abc import Sequence

from components.restaurant.config import Localized
from components.restaurant.problems import Code, FieldError, Problem

REQUIRED_FIELDS = ("guest_name", "date", "time", "party_size")
FIELDS = (*REQUIRED_FIELDS, "requests")
MAX_NAME_LENGTH = 60
MAX_REQUESTS_LENGTH = 300

_DATE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_MAX_ECHO = 40

FIELD_LABELS: dict[str, Localized] = {
    "guest_name": Localized("お名前", "guest's name"),
    "date": Localized("ご来店日", "date"),
    "time": Localized("ご来店時刻", "time"),
    "party_size": Localized("人数", "number of guests"),
    "requests": Localized("ご要望", "requests"),
}


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
