"""What the scenario needs from wherever bookings are kept: the `BookingBook` protocol, which `store/` implements.

The rules, the draft and the lookups are pure logic; they still have to read the evening's bookings, write one,
and leave a callback request. They do it through this small protocol, so `restaurant/` imports no database code,
and the store depends on the scenario rather than the other way round. A stored booking is a plain dict with the
`Reservation` fields plus `booking_id`, `status`, `source` and `language`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from components.restaurant.problems import Problem

if TYPE_CHECKING:
    from components.restaurant.config import RestaurantConfig
    from components.restaurant.fields import Reservation
    from components.restaurant.seating import Seated

CONFIRMED, CANCELLED = "confirmed", "cancelled"  # a stored booking's status


class StoreUnavailable(Exception):
    """The bookings could not be read or written in time (the database is down or too slow); nothing was written."""


class BookingRefused(Exception):
    """The book would not write a booking; `problems` say why (the same codes as the rules)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(", ".join(problem.code.value for problem in problems))
        self.problems = list(problems)


class CallbackRequests(Protocol):
    def add(
        self, now: dt.datetime, *, guest_name: str | None, phone: str, request: str, language: str, source: str
    ) -> int: ...


class Tally(Protocol):
    """What a caller did across calls and replicas (lookup misses, bookings, callbacks), counted per kind."""

    def count(self, kind: str, who: str, since: dt.datetime) -> int: ...

    def take(self, kind: str, who: str, now: dt.datetime, *, since: dt.datetime, limit: int | None) -> bool:
        """Count one more unless `limit` were counted since `since`; whether it was counted."""
        ...


class WaitingList(Protocol):
    """Guests waiting for a full slot; the first who fits is notified when a table frees up."""

    def join(self, reservation: Reservation, now: dt.datetime, *, phone: str, language: str, source: str) -> int: ...

    def notify_freed(
        self, day: dt.date, config: RestaurantConfig, now: dt.datetime, *, freed_by: str
    ) -> dict[str, Any] | None: ...


class BookingBook(Protocol):
    """Bookings and callback requests. Every write re-checks the rules and capacity atomically (two calls may race
    for the last table); any method may raise `StoreUnavailable`, a write also `BookingRefused`."""

    callbacks: CallbackRequests
    tally: Tally
    waitlist: WaitingList

    def get(self, booking_id: str) -> dict[str, Any] | None: ...

    def seated_between(self, first: dt.date, last: dt.date, exclude: str | None = None) -> list[Seated]:
        """Confirmed bookings dated `first` to `last` as the seating sees them, but for the booking `exclude`."""
        ...

    def book(
        self,
        reservation: Reservation,
        config: RestaurantConfig,
        now: dt.datetime,
        language: str | None = None,
        *,
        source: str = "web",
        actor: str | None = None,
        override: str | None = None,
    ) -> str:
        """The new booking's id."""
        ...

    def change(
        self,
        booking_id: str,
        reservation: Reservation,
        config: RestaurantConfig,
        now: dt.datetime,
        *,
        actor: str,
        override: str | None = None,
    ) -> dict[str, Any]: ...

    def cancel(self, booking_id: str, now: dt.datetime, *, actor: str) -> dict[str, Any]: ...
