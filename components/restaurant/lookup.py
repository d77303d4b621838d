"""Finding a guest's booking on a call: its number and a second factor, and no way to guess numbers by voice.

A booking is found only when its number and the guest's name match, compared as a person would (case, width,
spacing and honorifics aside; see `fields.name_key`). On a phone call whose Twilio webhook was signed, the
caller's own number may stand in for the name. A miss says only "not found" and never shows anything of the
booking, and after `MAX_MISSES` misses the call can look nothing up any more, not even a correct pair. Misses are
also counted per caller in the store (`Caps.lookup_misses_per_caller_per_day`), so calling again does not buy a
fresh three: guessing a number (31^6, about 900 million of them) and its name is hopeless.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from components.restaurant.book import CANCELLED, BookingBook
from components.restaurant.caps import DAY, LOOKUP_MISS, Caps
from components.restaurant.fields import booking_key, name_key, phone_key
from components.restaurant.problems import Code, Problem

MAX_MISSES = 3


@dataclass(frozen=True)
class Caller:
    """Who is on the line: the number Twilio reports (`From`) and whether Twilio's signature vouched for it; in a
    browser, the page's visitor (`ip:<address>` or `hf:<user>`)."""

    phone: str | None = None
    verified: bool = False
    visitor: str | None = None

    @property
    def who(self) -> str:
        """The caller as the store's `Tally` counts them."""
        if self.phone:
            return f"tel:{phone_key(self.phone) or self.phone}"
        return self.visitor or "unknown"


class Lookup:
    """One call's lookups (see the module docstring)."""

    def __init__(self, store: BookingBook, prefix: str, caller: Caller, caps: Caps) -> None:
        self.store = store
        self.prefix = prefix
        self.caller = caller
        self.caps = caps
        self.misses = 0

    def locked(self, now: dt.datetime) -> bool:
        if self.misses >= MAX_MISSES:
            return True
        return (
            self.store.tally.count(LOOKUP_MISS, self.caller.who, now - DAY)
            >= self.caps.lookup_misses_per_caller_per_day
        )

    def find(
        self, booking_id: str, guest_name: str | None, now: dt.datetime
    ) -> tuple[dict[str, Any] | None, Problem | None]:
        """The confirmed booking matching `booking_id` and the name (or the verified caller), else why not."""
        if self.locked(now):
            return None, Problem(Code.LOOKUP_LOCKED, "booking_id", {"misses": MAX_MISSES})
        row = self.store.get(booking_key(booking_id, self.prefix))
        if row is None or not self._second_factor(row, guest_name):
            self.misses += 1
            self.store.tally.take(LOOKUP_MISS, self.caller.who, now, since=now, limit=None)
            return None, Problem(Code.NOT_FOUND, "booking_id")
        if row["status"] == CANCELLED:
            return None, Problem(Code.ALREADY_CANCELLED, "booking_id", {"booking_id": row["booking_id"]})
        return row, None

    def _second_factor(self, row: dict[str, Any], guest_name: str | None) -> bool:
        if guest_name and name_key(guest_name) and name_key(guest_name) == name_key(row["guest_name"]):
            return True
        caller = phone_key(self.caller.phone) if self.caller.verified else ""
        return bool(caller) and caller == phone_key(row.get("phone"))
