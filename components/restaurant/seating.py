"""Which tables a booking gets: real tables (or tables pushed together) from `assets/restaurant.toml`'s areas,
decided by the code in the same transaction that writes the booking, never by the model.

A new booking takes the best-fitting free option (`RestaurantConfig.seat_options`: fewest seats first, so a party
of two gets a two-top before a four-top), in the area the guest asked for if they asked. When nothing is free as
the evening is seated now, the bookings the owner has not placed by hand are seated again, in order of arrival,
each in its own area, with the new one among them; if everyone then has a table, the booking is taken and the
others' new tables come back as `moves`. For identical tables this is the classic earliest-start assignment,
which seats everyone whenever the number of overlapping bookings allows: exactly the capacity rule the app had
before it knew tables. Bookings made before areas existed have no tables yet: they are seated first, where
they fit, and given those tables with the next write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

from components.restaurant.config import RestaurantConfig, Seats

Busy = dict[str, list[tuple[dt.datetime, dt.datetime]]]  # table -> the stays it holds


@dataclasses.dataclass(frozen=True)
class Seated:
    """A confirmed booking as the seating sees it; `tables` is empty for one booked before areas existed."""

    start: dt.datetime  # restaurant-local wall clock
    party: int
    tables: tuple[str, ...] = ()
    area: str | None = None  # where the guest asked to sit, kept when the booking is seated again
    pinned: bool = False  # the owner put it at its table: never moved
    booking_id: str = ""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Where a new booking sits, and the other bookings seated again to make room (booking id -> tables)."""

    seats: Seats
    moves: dict[str, tuple[str, ...]]


def stay(config: RestaurantConfig, area_id: str | None) -> dt.timedelta:
    area = config.area(area_id)
    return dt.timedelta(minutes=area.table_minutes if area else config.table_minutes)


def plan(
    start: dt.datetime, party: int, config: RestaurantConfig, existing: Sequence[Seated], area: str | None = None
) -> Plan | None:
    """Tables for a party of `party` from `start` (in `area` if given), or None when no seating makes room."""
    tables = _Tables(config)
    busy = tables.busy(existing)
    moves = {}
    for booking in sorted((b for b in existing if not tables.known(b.tables)), key=lambda b: b.start):
        if seats := tables.first_free(booking.party, booking.area, booking.start, busy):
            moves[booking.booking_id] = seats.tables
    if seats := tables.first_free(party, area, start, busy):
        return Plan(seats, moves)
    for keep in (True, False):  # everyone seated again: first leaving each at its own tables, then best fit
        found = tables.seat_again(start, party, area, existing, keep)
        if found is not None:
            return found
    return None


def free_at(tables: Sequence[str], start: dt.datetime, config: RestaurantConfig, existing: Sequence[Seated]) -> bool:
    """Whether ``tables`` (all of one area) are free for a stay from ``start`` as ``existing`` bookings sit now."""
    seating = _Tables(config)
    if not seating.known(tuple(tables)) or len({seating.area_of[name] for name in tables}) > 1:
        return False
    return seating.free(seating.busy(existing), tables, start, start + stay(config, seating.area_of[tables[0]]))


class _Tables:
    """The restaurant's tables, and which of them bookings hold when."""

    def __init__(self, config: RestaurantConfig) -> None:
        self.config = config
        self.area_of = {table.id: area.id for area in config.areas for table in area.tables}

    def known(self, tables: tuple[str, ...]) -> bool:
        return bool(tables) and all(name in self.area_of for name in tables)

    def busy(self, existing: Sequence[Seated], pinned_only: bool = False) -> Busy:
        busy: Busy = defaultdict(list)
        for booking in existing:
            if self.known(booking.tables) and (booking.pinned or not pinned_only):
                self.hold(busy, booking.tables, booking.start)
        return busy

    def hold(self, busy: Busy, tables: Sequence[str], start: dt.datetime) -> None:
        end = start + stay(self.config, self.area_of[tables[0]])
        for name in tables:
            busy[name].append((start, end))

    @staticmethod
    def free(busy: Busy, tables: Sequence[str], start: dt.datetime, end: dt.datetime) -> bool:
        return all(held_end <= start or end <= held_start for name in tables for held_start, held_end in busy[name])

    def first_free(
        self, party: int, area: str | None, start: dt.datetime, busy: Busy, prefer: tuple[str, ...] = ()
    ) -> Seats | None:
        """The first free option for the party (the `prefer`red tables first), held in `busy` for its stay."""
        options = sorted(self.config.seat_options, key=lambda seats: seats.tables != prefer)  # stable: best fit
        for seats in options:
            if not seats.takes(party) or (area is not None and seats.area != area):
                continue
            if self.free(busy, seats.tables, start, start + stay(self.config, seats.area)):
                self.hold(busy, seats.tables, start)
                return seats
        return None

    def seat_again(
        self, start: dt.datetime, party: int, area: str | None, existing: Sequence[Seated], keep: bool
    ) -> Plan | None:
        """Seat every booking the owner did not place, in order of arrival, with the new one among them (each in
        its own area; `keep`: at its own tables when they are free)."""
        busy = self.busy(existing, pinned_only=True)
        movable = [booking for booking in existing if not (booking.pinned and self.known(booking.tables))]
        chosen, moves = None, {}
        for _, new, index in sorted([(b.start, 0, n) for n, b in enumerate(movable)] + [(start, 1, -1)]):
            if new:
                chosen = self.first_free(party, area, start, busy)
                if chosen is None:
                    return None
                continue
            booking = movable[index]
            own_area = booking.area or (self.area_of.get(booking.tables[0]) if booking.tables else None)
            prefer = booking.tables if keep else ()
            seats = self.first_free(booking.party, own_area, booking.start, busy, prefer)
            if seats is None:
                return None
            if seats.tables != booking.tables:
                moves[booking.booking_id] = seats.tables
        return Plan(chosen, moves) if chosen else None
