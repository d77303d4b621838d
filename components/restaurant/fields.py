"""What a booking is made of: its fields, and how a raw value from the model becomes a normalised one.

Speech recognisers and models produce "１８：３０", "2025/4/18" or "four"; each parser accepts what can be
read without guessing and refuses the rest with a problem the model can speak about. Names, booking numbers
and phone numbers are also compared here the way a person would (`name_key`, `booking_key`, `phone_key`),
and a phone number is shown masked but for its last four digits (`mask_phone`).
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
FIELDS = (*REQUIRED_FIELDS, "requests", "phone", "seating")
MAX_NAME_LENGTH = 60
MAX_REQUESTS_LENGTH = 300
MAX_SEATING_LENGTH = 40
PHONE_DIGITS = (6, 15)  # E.164 allows at most 15 digits

_DATE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_MAX_ECHO = 40
_PHONE = re.compile(r"\+?[0-9 ()\-.]+")
_NAME_BREAKS = re.compile(r"[\s・.,\-_'’]+")
_TITLES = ("mr", "mrs", "ms", "miss", "mx", "dr")  # before a name
_ROMAN_HONORIFICS = ("san", "sama", "kun", "chan")  # a separate word after a name
_KANA_HONORIFICS = ("様", "サマ", "サン", "殿", "ドノ", "氏", "チャン", "クン", "君")  # written onto it

FIELD_LABELS: dict[str, Localized] = {
    "guest_name": Localized("お名前", "guest's name"),
    "date": Localized("ご来店日", "date"),
    "time": Localized("ご来店時刻", "time"),
    "party_size": Localized("人数", "number of guests"),
    "requests": Localized("ご要望", "requests"),
    "phone": Localized("お電話番号", "phone number"),
    "seating": Localized("お席のご希望", "seating"),
    "request": Localized("ご用件", "what the guest would like"),
    "booking_id": Localized("予約番号", "booking number"),
}


@dataclasses.dataclass(frozen=True)
class Reservation:
    """A (possibly partial) reservation with normalised values; ``None`` means not given yet."""

    guest_name: str | None = None
    date: dt.date | None = None
    time: dt.time | None = None
    party_size: int | None = None
    requests: str | None = None
    phone: str | None = None
    seating: str | None = None  # an area of the restaurant the guest asked for (its id or name), if any

    def missing(self) -> list[str]:
        return [name for name in REQUIRED_FIELDS if getattr(self, name) is None]

    def to_dict(self) -> dict[str, str | int | None]:
        return {
            "guest_name": self.guest_name,
            "date": self.date.isoformat() if self.date else None,
            "time": format_time(self.time) if self.time else None,
            "party_size": self.party_size,
            "requests": self.requests,
            "phone": self.phone,
            "seating": self.seating,
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


def _parse_phone(value: object) -> str | None:
    """Digits with an optional leading +; empty text or null clears it (the guest may decline to give one)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = _plain(value) if isinstance(value, str) else ""
    digits = re.sub(r"\D", "", text)
    if not _PHONE.fullmatch(text) or not PHONE_DIGITS[0] <= len(digits) <= PHONE_DIGITS[1]:
        raise FieldError(Problem(Code.INVALID_PHONE, "phone", {"value": _echo(value)}))
    return ("+" if text.startswith("+") else "") + digits


def _parse_seating(value: object) -> str | None:
    """Where the guest would like to sit, as said ("counter", "カウンター"); empty or null: anywhere. Whether the
    restaurant has such an area is the rules' to say (`rules.area_for`)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or len(value.strip()) > MAX_SEATING_LENGTH:
        raise FieldError(Problem(Code.UNKNOWN_AREA, "seating", {"value": _echo(value), "areas": ""}))
    return _plain(value).casefold()


_PARSERS = {
    "guest_name": _parse_name,
    "date": _parse_date,
    "time": _parse_time,
    "party_size": _parse_party_size,
    "requests": _parse_requests,
    "phone": _parse_phone,
    "seating": _parse_seating,
}


# ── comparing and showing ────────────────────────────────────────────────────


def name_key(name: str) -> str:
    """A name as a person compares it: case, width, spacing, hiragana/katakana and honorifics ignored."""
    text = unicodedata.normalize("NFKC", name).casefold()
    text = "".join(chr(ord(char) + 0x60) if "ぁ" <= char <= "ゖ" else char for char in text)
    words = [word for word in _NAME_BREAKS.split(text) if word]
    if len(words) > 1 and words[0] in _TITLES:
        words = words[1:]
    if len(words) > 1 and words[-1] in _ROMAN_HONORIFICS:
        words = words[:-1]
    joined = "".join(words)
    for honorific in _KANA_HONORIFICS:
        if joined.endswith(honorific) and len(joined) > len(honorific):
            return joined[: -len(honorific)]
    return joined


def booking_key(value: str, prefix: str) -> str:
    """A booking number as said or typed ("as 7k3 qm2", "７Ｋ３ＱＭ２") in its written form, ``AS-7K3-QM2`` (six
    characters in two threes; the four-character numbers of earlier releases stay ``AS-7K3Q``)."""
    text = re.sub(r"[^A-Z0-9]", "", unicodedata.normalize("NFKC", value).upper())
    if text.startswith(prefix) and len(text) - len(prefix) in (4, 6):
        text = text[len(prefix) :]
    return f"{prefix}-{text[:3]}-{text[3:]}" if len(text) == 6 else f"{prefix}-{text}"


def phone_key(number: str | None) -> str:
    """The last nine digits: the same line written nationally (090…) or internationally (+8190…)."""
    digits = re.sub(r"\D", "", number or "")
    return digits[-9:] if len(digits) >= PHONE_DIGITS[0] else ""


def mask_phone(number: str | None) -> str | None:
    """A phone number as the card and the model see it: all but the last four digits hidden."""
    if not number:
        return None
    digits = re.sub(r"\D", "", number)
    return "•" * max(0, len(digits) - 4) + digits[-4:]
