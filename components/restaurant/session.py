"""One call's reservation: the draft being collected or changed, its problems, and what the call did.

The session is what the tools act on and what the UI card renders. It keeps only valid values in the draft:
a field the rules refuse is not merged (the previous value stays) and its problem stays listed until that
field is given again, so the card and the model both see what still needs fixing. Problems are stored as
codes and rendered on every snapshot, so switching :attr:`ReservationSession.language` mid-call switches the
messages too.

A call works on one booking at a time: a new one, or one the guest looked up (`find`), which becomes the
draft, marked as a change of that booking. Once it is booked or changed, the guest has proved who they are on
this call: a further change reopens the draft as a change of that same booking, and a cancel cancels it, with no
second lookup. Once cancelled, the draft is frozen; the guest can look another booking up to go on. Callback
requests (`request_callback`) and the restaurant's facts (`info`) answer what no booking can.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from components.restaurant.book import BookingBook, BookingRefused, StoreUnavailable
from components.restaurant.caps import BOOKING, CALLBACK, DAY, WAITLIST, Caps
from components.restaurant.config import RestaurantConfig, language_code
from components.restaurant.fields import (
    FIELDS,
    Reservation,
    format_time,
    mask_phone,
    missing_field,
    normalize_field,
    unknown_field,
)
from components.restaurant.lookup import Caller, Lookup
from components.restaurant.problems import SLOT_CODES, Code, FieldError, Problem
from components.restaurant.rules import (
    alternatives,
    area_for,
    bookable_times,
    booking_window,
    opening,
    validate_reservation,
)
from components.restaurant.seating import Seated

COLLECTING, READY, CONFIRMED, CANCELLED, REQUESTED = "collecting", "ready", "confirmed", "cancelled", "requested"
CHECK_FIELDS = ("date", "time", "party_size", "seating")
CALLBACK_FIELDS = ("guest_name", "phone", "request")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ReservationSession:
    """The state of one call, safe to read from the UI thread while a tool runs.

    `source` is where the call came from (`web` or `phone`); on the phone, `caller` is who Twilio says is
    calling, whose number goes with the booking unless the guest gives another.
    """

    def __init__(
        self,
        config: RestaurantConfig,
        store: BookingBook,
        language: str = "ja",
        clock: Callable[[], dt.datetime] | None = None,
        *,
        source: str = "web",
        caller: Caller | None = None,
        caps: Caps | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.language = language
        self.source = source
        self._clock = clock or _utc_now
        self._caller = caller or Caller()
        self.caps = caps or Caps()
        self._draft = Reservation(phone=self._caller.phone)
        self._rejected: dict[str, list[Problem]] = {}  # field -> why its latest value was not merged
        self._booking_id: str | None = None  # the booking this call made, changed or cancelled
        self._changing: str | None = None  # the booking looked up on this call, being changed
        self._found_start: dt.datetime | None = None  # when that booking starts, as stored
        self._cancelled = False
        self._callbacks = 0
        self._requested = False  # a party too large to book went to the owner as a request
        self._waitlisted: str | None = None  # the slot this call put the guest on the waitlist for
        self._lookup = Lookup(store, config.booking_id_prefix, self._caller, self.caps)
        self.touched: set[str] = set()  # every booking this call wrote
        self._lock = threading.RLock()

    @property
    def language(self) -> str:
        return self._language

    @language.setter
    def language(self, value: str) -> None:
        self._language = language_code(value)

    @property
    def actor(self) -> str:
        return f"agent:{self.source}"

    def snapshot(self) -> dict:
        """``{status, mode, reservation, missing, problems, booking_id, changing, alternatives, …}``, JSON-able,
        for the UI card."""
        with self._lock:
            return self._result(self._clock(), [])

    # ---- the draft ---------------------------------------------------------------------------------

    def update(self, fields: Mapping[str, object]) -> dict:
        """Merge the valid ones of ``fields`` into the draft; report the others and unknown names."""
        with self._lock:
            now = self._clock()
            if not fields:
                return self._result(now, [Problem(Code.INVALID_ARGUMENTS, None, {"detail": "no fields given"})])
            if self._booking_id and self._cancelled:
                return self._result(now, [self._done()])
            self._reopen()
            unknown, accepted, rejected = _normalize(fields)
            candidate = dataclasses.replace(self._draft, **accepted)
            try:
                existing = self._existing(candidate.date)
            except StoreUnavailable:  # keep what the guest said; capacity is checked again once the store is back
                existing, unknown = [], [*unknown, Problem(Code.STORE_UNAVAILABLE)]
            for problem in validate_reservation(candidate, self.config, now, existing, partial=True):
                if problem.field in accepted and problem.code != Code.LARGE_PARTY:  # kept: it goes to the owner
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
            seating = values.get("seating", self._draft.seating)
            party = values.get("party_size")
            drafted = self._draft.party_size
            if party is None and drafted and drafted <= self.config.max_party_size:  # a large one goes to the owner
                party = drafted  # the draft's party needs a table it fits
            probe = Reservation(date=day, time=values.get("time"), party_size=party, seating=seating)
            existing = self._existing(day)
            probe_problems = validate_reservation(probe, self.config, now, existing, partial=True)
            refused = any(problem.field in ("party_size", "seating") for problem in probe_problems)
            area = area_for(seating, self.config)
            times = [] if refused else bookable_times(day, self.config, now, existing, party, area)
            hours = opening(day, self.config)
            return self._result(
                now,
                problems + probe_problems,
                date=day.isoformat(),
                hours=hours.to_dict() if hours else None,
                available_times=[format_time(moment) for moment in times],
            )

    def confirm(self) -> dict:
        """Write the draft (a new booking, or the change of the one looked up); the guest agreed to the read-back.

        The store re-validates it atomically."""
        with self._lock:
            now = self._clock()
            if self._booking_id:
                return self._result(now, [self._done()])
            if self._rejected:  # the guest's latest wish was refused: booking the old value would be wrong
                return self._result(now, [*map(missing_field, self._draft.missing()), Problem(Code.NOT_READY)])
            if self._large_party() and not self._changing:
                return self._request_for_owner(now)
            try:
                if self._changing:
                    self.store.change(self._changing, self._draft, self.config, now, actor=self.actor)
                    self._booking_id = self._changing
                    self._tell_the_waitlist(self._found_start, now)
                else:
                    limit = self.caps.bookings_per_caller_per_day
                    if self.store.tally.count(BOOKING, self._caller.who, now - DAY) >= limit:
                        return self._result(now, [Problem(Code.TOO_MANY_BOOKINGS, None, {"max": limit})])
                    self._booking_id = self.store.book(
                        self._draft, self.config, now, self.language, source=self.source, actor=self.actor
                    )
                    self.store.tally.take(BOOKING, self._caller.who, now, since=now, limit=None)
            except BookingRefused as refusal:
                return self._result(now, refusal.problems)
            self.touched.add(self._booking_id)
            return self._result(now, [])

    # ---- a guest's own booking ---------------------------------------------------------------------

    def find(self, booking_id: object, guest_name: object = None) -> dict:
        """Look up a booking by its number and the guest's name (or the verified caller's number); a match
        becomes this call's draft, to change or cancel."""
        with self._lock:
            now = self._clock()
            if not isinstance(booking_id, str) or not booking_id.strip():
                return self._result(now, [missing_field("booking_id")])
            name = guest_name if isinstance(guest_name, str) else None
            row, problem = self._lookup.find(booking_id, name, now)
            if row is None:
                return self._result(now, [problem] if problem else [])
            self._draft = Reservation(
                guest_name=row["guest_name"],
                date=dt.date.fromisoformat(row["date"]),
                time=dt.time.fromisoformat(row["time"]),
                party_size=row["party_size"],
                requests=row["requests"],
                phone=row.get("phone"),
            )
            self._changing, self._booking_id, self._cancelled = row["booking_id"], None, False
            self._found_start = dt.datetime.combine(self._draft.date, self._draft.time)  # type: ignore[arg-type]
            self._rejected.clear()
            return self._result(now, [])

    def cancel(self) -> dict:
        """Cancel the booking looked up on this call; the guest agreed to the read-back."""
        with self._lock:
            now = self._clock()
            if self._booking_id and self._cancelled:
                return self._result(now, [self._done()])
            self._reopen()
            if not self._changing:
                return self._result(now, [Problem(Code.NO_BOOKING_FOUND, "booking_id")])
            start = self._found_start
            if start is not None and start.replace(tzinfo=self.config.tz) <= now:
                when = f"{start.date().isoformat()} {format_time(start.time())}"
                return self._result(now, [Problem(Code.IN_PAST, "date", {"when": when})])
            try:
                self.store.cancel(self._changing, now, actor=self.actor)
            except BookingRefused as refusal:
                return self._result(now, refusal.problems)
            self._booking_id, self._cancelled = self._changing, True
            self.touched.add(self._booking_id)
            self._tell_the_waitlist(start, now)
            return self._result(now, [])

    def join_waitlist(self) -> dict:
        """Put the guest on the waitlist for the slot they asked for, which must be fully booked (a full time is
        refused, so it is not in the draft: it is the one the refusal names); they are told if a table frees up."""
        with self._lock:
            now = self._clock()
            full = next((problem for problem in self._current_problems(now) if problem.code == Code.FULLY_BOOKED), None)
            draft = self._draft
            if full is not None:
                draft = dataclasses.replace(draft, date=full.params["date"], time=full.params["time"])
            missing = [missing_field(name) for name in draft.missing()]
            phone = draft.phone or self._caller.phone
            if not phone:
                missing.append(missing_field("phone"))
            if missing:
                return self._result(now, missing)
            if full is None:
                return self._result(now, [Problem(Code.NOT_FULL, "time", {"date": draft.date, "time": draft.time})])
            limit = self.caps.callbacks_per_caller_per_day
            if not self.store.tally.take(WAITLIST, self._caller.who, now, since=now - DAY, limit=limit):
                return self._result(now, [Problem(Code.TOO_MANY_CALLBACKS, None, {"max": limit})])
            self.store.waitlist.join(draft, now, phone=phone, language=self.language, source=self.source)
            self._waitlisted = f"{draft.date} {format_time(draft.time)}"  # type: ignore[arg-type]
            return self._result(now, [])

    def _tell_the_waitlist(self, freed: dt.datetime | None, now: dt.datetime) -> None:
        """A table on the day of `freed` may be free now: the first waiting guest who fits is notified. The booking
        is already written, so a store that fails here loses nothing of it (the console still lists the waitlist)."""
        if freed is None or self._booking_id is None:
            return
        try:
            self.store.waitlist.notify_freed(freed.date(), self.config, now, freed_by=self._booking_id)
        except StoreUnavailable:
            pass

    # ---- what no booking can answer ----------------------------------------------------------------

    def request_callback(self, fields: Mapping[str, object]) -> dict:
        """Leave a callback request (name, number, what the guest wants) for the staff; the name and number
        default to the draft's (on the phone, the caller's number)."""
        with self._lock:
            now = self._clock()
            problems = [unknown_field(name, CALLBACK_FIELDS) for name in fields if name not in CALLBACK_FIELDS]
            given = {"requests" if name == "request" else name: value for name, value in fields.items()}
            wanted = {name: given[name] for name in ("guest_name", "phone", "requests") if name in given}
            _, values, rejected = _normalize(wanted)
            problems += [problem for field_problems in rejected.values() for problem in field_problems]
            name = values.get("guest_name", self._draft.guest_name)
            phone = values.get("phone") or self._draft.phone or self._caller.phone
            request = values.get("requests")
            if not phone and "phone" not in rejected:
                problems.append(missing_field("phone"))
            if not request and "requests" not in rejected:
                problems.append(missing_field("request"))
            if problems:
                return self._result(now, problems)
            refused = self._callback(now, name, phone, request)
            return self._result(now, [refused] if refused else [])

    def _callback(self, now: dt.datetime, name: str | None, phone: str, request: str) -> Problem | None:
        """Leave a callback request within the caps (per call, per caller a day); the problem if over them."""
        if self._callbacks >= self.caps.callbacks_per_call:
            return Problem(Code.TOO_MANY_CALLBACKS, None, {"max": self.caps.callbacks_per_call})
        limit = self.caps.callbacks_per_caller_per_day
        if not self.store.tally.take(CALLBACK, self._caller.who, now, since=now - DAY, limit=limit):
            return Problem(Code.TOO_MANY_CALLBACKS, None, {"max": limit})
        self.store.callbacks.add(
            now, guest_name=name, phone=phone, request=request, language=self.language, source=self.source
        )
        self._callbacks += 1
        return None

    def info(self, topic: object) -> dict:
        """The restaurant's own answer about ``topic`` (menu, allergies, …), or a problem saying there is none."""
        with self._lock:
            now = self._clock()
            key = topic.strip().lower() if isinstance(topic, str) else ""
            fact = self.config.facts.get(key)
            answer = (fact.get(self.language) or fact.get("en" if self.language == "ja" else "ja")) if fact else ""
            if key == "access" and self.config.address.get(self.language):
                answer = f"{self.config.address.get(self.language)} {answer}".strip()
            if not answer:
                return self._result(now, [Problem(Code.NOT_IN_FACTS, "topic")], topic=key or None, answer=None)
            return self._result(now, [], topic=key, answer=answer)

    def report(self, problem: Problem, *, check: bool = True) -> dict:
        """A result carrying ``problem`` for a call the tools refused before reaching the session.

        ``check=False`` skips the store, for reporting a failure of the store itself.
        """
        with self._lock:
            return self._result(self._clock(), [problem], check=check)

    # ---- the result every tool answers with --------------------------------------------------------

    def _large_party(self) -> bool:
        size = self._draft.party_size
        return size is not None and self.config.max_party_size < size <= self.config.large_party_max

    def _request_for_owner(self, now: dt.datetime) -> dict:
        """A party too large to book online goes to the owner as a callback request with its details, once the
        draft holds everything else a booking would (and a number to call back)."""
        current = [problem for problem in self._current_problems(now) if problem.code != Code.LARGE_PARTY]
        missing = [missing_field(name) for name in self._draft.missing()]
        if not self._draft.phone and not self._caller.phone:
            missing.append(missing_field("phone"))
        if current or missing:
            return self._result(now, [*missing, Problem(Code.NOT_READY)])
        draft = self._draft
        assert draft.date is not None and draft.time is not None  # nothing is missing
        request = (
            f"{draft.party_size}名 / party of {draft.party_size}: {draft.date.isoformat()} {format_time(draft.time)}"
        )
        if draft.requests:
            request += f" — {draft.requests}"
        refused = self._callback(now, draft.guest_name, draft.phone or self._caller.phone, request)
        if refused:
            return self._result(now, [refused])
        self._requested = True
        return self._result(now, [])

    def _reopen(self) -> None:
        """The booking this call made or changed becomes the one being changed again (the guest already proved
        who they are on this call)."""
        if self._booking_id and not self._cancelled:
            self._changing, self._booking_id = self._booking_id, None
            self._found_start = dt.datetime.combine(self._draft.date, self._draft.time)  # type: ignore[arg-type]

    def _done(self) -> Problem:
        code = Code.ALREADY_CANCELLED if self._cancelled else Code.ALREADY_CONFIRMED
        return Problem(code, None, {"booking_id": self._booking_id})

    def _existing(self, day: dt.date | None) -> list[Seated]:
        """Bookings that may share tables with one on ``day`` (its stay may cross midnight); the booking being
        changed does not count against itself."""
        if day is None:
            return []
        one_day = dt.timedelta(days=1)
        return self.store.seated_between(day - one_day, day + one_day, exclude=self._changing)

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
        existing = self.store.seated_between(max(day, today) - one_day, last_day + one_day, exclude=self._changing)
        area = refused[0].params.get("area_id") or area_for(self._draft.seating, self.config)  # the area asked for
        return alternatives(day, moment, self.config, now, existing, party=self._draft.party_size, area=area)

    def _result(self, now: dt.datetime, call_problems: list[Problem], *, check: bool = True, **extra: object) -> dict:
        try:
            current = self._current_problems(now) if check else []
            problems = _unique(call_problems + current)
            options = self._alternatives(problems, now) if check and not self._booking_id else []
        except StoreUnavailable:  # the draft is still shown; the model is told nothing could be checked or saved
            check, current, options = False, [], []
            problems = _unique([*call_problems, Problem(Code.STORE_UNAVAILABLE)])
        missing = self._draft.missing()
        if self._cancelled:
            status = CANCELLED
        elif self._booking_id:
            status = CONFIRMED
        elif self._requested and self._large_party():
            status = REQUESTED
        elif check and not missing and not current:
            status = READY
        else:
            status = COLLECTING
        reservation: dict[str, Any] = self._draft.to_dict()
        reservation["phone"] = mask_phone(self._draft.phone)
        return {
            "status": status,
            "mode": "change" if self._changing else "new",
            "reservation": reservation,
            "missing": missing,
            "problems": [problem.to_dict(self.language) for problem in problems],
            "booking_id": self._booking_id,
            "changing": self._changing,
            "alternatives": options,
            "callback_requested": self._callbacks > 0,
            "owner_request": self._requested,
            "waitlisted": self._waitlisted,
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
