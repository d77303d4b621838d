"""Finding a guest's booking on a call: its number and a second factor, and no way to guess numbers by voice.

A booking is found only when its number and the guest's name match, compared as a person would (case, width,
spacing and honorifics aside; see `fields.name_key`). On a phone call whose Twilio webhook was signed, the
caller's own number may stand in for the name. A miss says only "not found" and never shows anything of the
booking, and after `MAX_MISSES` misses the call can look nothing up any more, not even a correct pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.restaurant.book import CANCELLED, BookingBook
from components.restaurant.fields import booking_key, name_key, phone_key
from components.restaurant.problems import Code, Problem

MAX_MISSES = 3


@dataclass(frozen=True)
class Caller:
    """Who is on the line: the number Twilio reports (`From`), and whether Twilio's signature vouched for it."""

    phone: str | None = None
    verified: bool = False


class Lookup:
    """One call's lookups (see the module docstring)."""

    def __init__(self, store: BookingBook, prefix: str, caller: Caller) -> None:
        self.store = store
        self.prefix = prefix
        self.caller = caller
        self.misses = 0

    @property
    def locked(self) -> bool:
        return self.misses >= MAX_MISSES

    def find(self, booking_id: str, guest_name: str | None) -> tuple[dict[str, Any] | None, Problem | None]:
        """The confirmed booking matching `booking_id` and the name (or the verified caller), else why not."""
        if self.locked:
            return None, Problem(Code.LOOKUP_LOCKED, "booking_id", {"misses": MAX_MISSES})
        row = self.store.get(booking_key(booking_id, self.prefix))
        if row is None or not self._second_factor(row, guest_name):
            self.misses += 1
            return None, Problem(Code.NOT_FOUND, "booking_id")
        if row["status"] == CANCELLED:
            return None, Problem(Code.ALREADY_CANCELLED, "booking_id", {"booking_id": row["booking_id"]})
        return row, None

    def _second_factor(self, row: dict[str, Any], guest_name: str | None) -> bool:
        if guest_name and name_key(guest_name) and name_key(guest_name) == name_key(row["guest_name"]):
            return True
        caller = phone_key(self.caller.phone) if self.caller.verified else ""
        return bool(caller) and caller == phone_key(row.get("phone"))
