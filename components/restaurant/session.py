"""One phone call's reservation: the draft being collected, its problems, and the booking once made.

The session is what the tools act on and what the UI card renders. It keeps
only valid values in the draft: a field the rules refuse is not merged (the
previous value stays) and its problem stays listed until that field is given
again, so the card and the model both see what still needs fixing. Problems
are stored as codes and rendered on every snapshot, so switching
:attr:`ReservationSession.language` mid-call switches the messages too.

A session makes at most one booking. After it is confirmed the draft is
frozen: changes or a second booking mean a new call, which keeps "what did
this call book?" unambiguous for the guest and the restaurant.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Iterable, Mapping

from components.restaurant.config import RestaurantConfig, language_code
from components.restaurant.fields import FIELDS, Reservation, format_time, missing_field, normalize_field, unknown_field
from components.restaurant.problems import SLOT_CODES, Code, FieldError, Problem
from components.restaurant.rules import alternatives, bookable_times, booking_window, opening, validate_reservation
from components.restaurant.store import BookingRefused, ReservationStore

COLLECTING, READY, CONFIRMED = "collecting", "ready", "confirmed"
CHECK_FIELDS = ("date", "time", "party_size")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ReservationSession:
    """The state of one call, safe to read from the UI thread while a tool runs."""

    def __init__(
        self,
        config: RestaurantConfig,
        store: ReservationStore,
        language: str = "ja",
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.language = language
        self._clock = clock or _utc_now
        self._draft = Reservation()
        self._rejected: dict[str, list[Problem]] = {}  # field -> why its latest value was not merged
        self._booking_id: str | None = None
        self._lock = threading.RLock()

    @property
    def language(self) -> str:
        return self._language

    @language.setter
    def language(self, value: str) -> None:
        self._language = language_code(value)

    def snapshot(self) -> dict:
        """``{status, reservation, missing, problems, booking_id, alternatives}``, JSON-able, for the UI card."""
        with self._lock:
            return self._result(self._clock(), [])

    def update(self, fields: Mapping[str, object]) -> dict:
        """Merge the valid ones of ``fields`` into the draft; report the others and unknown names."""
        with self._lock:
            now = self._clock()
            if self._booking_id:
                return self._result(now, [self._already_confirmed()])
            if not fields:
                return self._result(now, [Problem(Code.INVALID_ARGUMENTS, None, {"detail": "no fields given"})])
            unknown, accepted, rejected = _normalize(fields)
            candidate = dataclasses.replace(self._draft, **accepted)
            existing = self._existing(candidate.date)
            for problem in validate_reservation(candidate, self.config, now, existing, partial=True):
                if problem.field in accepted:
                    rejected.setdefault(problem.field, []).append(problem)
            self._draft = dataclasses.replace(
                self._draft, **{name: value for name, value in accepted.items() if name not in rejected}
            )
            for name in accepted.keys() | rejected.keys():
                self._rejected.pop(name, None)
            self._rejected.update(rejected)
            return self._result(now, unknown)

    def check_availability(self, query: Mapping[str, object]) -> dict:
        """Bookable start times on ``query["date"]`` (default: the draft's date); the draft is not changed.

        With a ``time``, says whether that time can be booked and offers the nearest
        alternatives if not; with a ``party_size``, checks the party limits too.
        The result adds ``date``, ``hours`` (``None`` when closed) and ``available_times``.
        """
        with self._lock:
            now = self._clock()
            problems = [unknown_field(name, CHECK_FIELDS) for name in query if name not in CHECK_FIELDS]
            given = {name: value for name, value in query.items() if name in CHECK_FIELDS and value is not None}
            _, values, rejected = _normalize(given)
            problems += [problem for field_problems in rejected.values() for problem in field_problems]
            day = values.get("date") if "date" in given else self._draft.date
            if day is None:
                problems += [] if "date" in rejected else [missing_field("date")]
                return self._result(now, problems, date=None, hours=None, available_times=[])
            probe = Reservation(date=day, time=values.get("time"), party_size=values.get("party_size"))
            existing = self._existing(day)
            probe_problems = validate_reservation(probe, self.config, now, existing, partial=True)
            party_refused = any(problem.field == "party_size" for problem in probe_problems)
            times = [] if party_refused else bookable_times(day, self.config, now, existing)
            hours = opening(day, self.config)
            return self._result(
                now,
                problems + probe_problems,
                date=day.isoformat(),
                hours=hours.to_dict() if hours else None,
                available_times=[format_time(moment) for moment in times],
            )

    def confirm(self) -> dict:
        """Book the draft in the store, which re-validates it atomically; the guest has agreed to the read-back."""
        with self._lock:
            now = self._clock()
            if self._booking_id:
                return self._result(now, [self._already_confirmed()])
            if self._rejected:  # the guest's latest wish was refused: booking the old value would be wrong
                return self._result(now, [*map(missing_field, self._draft.missing()), Problem(Code.NOT_READY)])
            try:
                self._booking_id = self.store.book(self._draft, self.config, now, self.language)
            except BookingRefused as refusal:
                return self._result(now, refusal.problems)
            return self._result(now, [])

    def report(self, problem: Problem, *, check: bool = True) -> dict:
        """A result carrying ``problem`` for a call the tools refused before reaching the session.

        ``check=False`` skips the store, for reporting a failure of the store itself.
        """
        with self._lock:
            return self._result(self._clock(), [problem], check=check)

    def _already_confirmed(self) -> Problem:
        return Problem(Code.ALREADY_CONFIRMED, None, {"booking_id": self._booking_id})

    def _existing(self, day: dt.date | None) -> list[dt.datetime]:
        """Start times of bookings that may share tables with one on ``day`` (its stay may cross midnight)."""
        if day is None:
            return []
        one_day = dt.timedelta(days=1)
        return self.store.starts_between(day - one_day, day + one_day)

    def _current_problems(self, now: dt.datetime) -> list[Problem]:
        """Refused inputs still awaiting a new value, then what is wrong with the draft as it stands."""
        if self._booking_id:
            return []
        rejected = [problem for problems in self._rejected.values() for problem in problems]
        existing = self._existing(self._draft.date)
        return rejected + validate_reservation(self._draft, self.config, now, existing, partial=True)

    def _alternatives(self, problems: Iterable[Problem], now: dt.datetime) -> list[dict[str, str]]:
        """Nearest bookable slots for the first refused slot among ``problems``."""
        refused = [problem for problem in problems if problem.code in SLOT_CODES and "date" in problem.params]
        if not refused:
            return []
        day, moment = refused[0].params["date"], refused[0].params.get("time")
        today, last_day = booking_window(self.config, now)
        one_day = dt.timedelta(days=1)
        existing = self.store.starts_between(max(day, today) - one_day, last_day + one_day)
        return alternatives(day, moment, self.config, now, existing)

    def _result(self, now: dt.datetime, call_problems: list[Problem], *, check: bool = True, **extra: object) -> dict:
        current = self._current_problems(now) if check else []
        problems = _unique(call_problems + current)
        missing = self._draft.missing()
        if self._booking_id:
            status = CONFIRMED
        elif check and not missing and not current:
            status = READY
        else:
            status = COLLECTING
        return {
            "status": status,
            "reservation": self._draft.to_dict(),
            "missing": missing,
            "problems": [problem.to_dict(self.language) for problem in problems],
            "booking_id": self._booking_id,
            "alternatives": self._alternatives(problems, now) if check and not self._booking_id else [],
            **extra,
        }


def _normalize(fields: Mapping[str, object]) -> tuple[list[Problem], dict[str, object], dict[str, list[Problem]]]:
    """Split raw fields into unknown-name problems, normalised values, and per-field format problems."""
    unknown: list[Problem] = []
    values: dict[str, object] = {}
    rejected: dict[str, list[Problem]] = {}
    for name, raw in fields.items():
        try:
            values[name] = normalize_field(name, raw)
        except FieldError as error:
            if name in FIELDS:
                rejected[name] = [error.problem]
            else:
                unknown.append(error.problem)
    return unknown, values, rejected


def _unique(problems: list[Problem]) -> list[Problem]:
    """Drop repeats of the same code on the same field, keeping the first (the most specific)."""
    seen: set[tuple[str | None, Code]] = set()
    kept = []
    for problem in problems:
        if (problem.field, problem.code) not in seen:
            seen.add((problem.field, problem.code))
            kept.append(problem)
    return kept
