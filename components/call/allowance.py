"""Who may spend the owner's OpenAI key on a call, and how much of it is left today.

The limits (`settings.DemoLimits`) are counted in the booking database (`store.usage`), so a restart resets
nothing and replicas share the counts. A visitor is known as well as the platform allows: the Hugging Face user
signed in on the page, else the client address Gradio reports behind the Space's proxy (README "Share the demo
safely" says what this can and cannot stop). Phone calls come from the restaurant's own number and spend from
the daily budget, not from a visitor's allowance. A call on the visitor's own key is not counted at all.

The day is the restaurant's (its time zone); every refusal says, in both languages, when it resets and that the
visitor's own key still works.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from components.call.clock import Clock
from components.call.notices import notice
from components.call.options import Visitor
from components.restaurant.book import StoreUnavailable
from components.restaurant.config import RestaurantConfig
from components.settings import DemoLimits
from components.store.usage import UsageLedger

log = logging.getLogger(__name__)
PHONE = "phone"


@dataclass(frozen=True)
class Admission:
    """A call on the owner's key: let through (with at most `seconds` of the day's minutes left), or refused."""

    call_id: str
    refusal: str | None = None
    seconds: float | None = None


class Allowance:
    """The day's limits on the owner's key, checked before a call and counted as it goes."""

    def __init__(self, limits: DemoLimits, ledger: UsageLedger, config: RestaurantConfig) -> None:
        self.limits = limits
        self.ledger = ledger
        self.config = config

    def day(self, now: dt.datetime) -> dt.date:
        return now.astimezone(self.config.tz).date()

    def resets_at(self, now: dt.datetime) -> str:
        """When today's counts start again, as the restaurant's clock shows it ("2026-12-02 0:00 JST")."""
        tomorrow = dt.datetime.combine(self.day(now) + dt.timedelta(days=1), dt.time(0), tzinfo=self.config.tz)
        return f"{tomorrow:%Y-%m-%d} 0:00 {tomorrow.tzname()}"

    def refusal(self, visitor: Visitor | None, now: dt.datetime) -> str | None:
        """Why a call on the owner's key would be refused right now (both languages), or None."""
        day, resets = self.day(now), self.resets_at(now)
        if visitor is not None and not visitor.code_ok:
            return notice("demo_code", "own_key")
        minutes, budget = self.limits.daily_minutes, self.limits.daily_budget_usd
        used = self.ledger.day(day) if minutes is not None or budget is not None else None
        if used is not None and minutes is not None and used.seconds >= minutes * 60:
            return notice("daily_minutes", "own_key", minutes=minutes, resets=resets)
        if used is not None and budget is not None and used.cost_usd >= budget:
            return notice("daily_budget", "own_key", budget=f"{budget:.2f}", resets=resets)
        per_visitor = self.limits.calls_per_visitor
        if visitor is not None and per_visitor is not None:
            if self.ledger.visitor_calls(day, visitor.id) >= per_visitor:
                return notice("visitor_calls", "own_key", calls=per_visitor, resets=resets)
        return None

    def admit(self, visitor: Visitor | None, engine: str, now: dt.datetime) -> Admission:
        """Check and count one call on the owner's key (atomically across replicas for the visitor's count)."""
        call_id = uuid.uuid4().hex
        refused = self.refusal(visitor, now)
        if refused:
            return Admission(call_id, refused)
        per_visitor = self.limits.calls_per_visitor if visitor is not None else None
        who = visitor.id if visitor is not None else PHONE
        counted = self.ledger.admit(
            call_id, day=self.day(now), visitor=who, engine=engine, now=now, per_visitor=per_visitor
        )
        if not counted:  # another replica let this visitor's last call through a moment ago
            return Admission(call_id, notice("visitor_calls", "own_key", calls=per_visitor, resets=self.resets_at(now)))
        return Admission(call_id, seconds=self.seconds_left(now))

    def seconds_left(self, now: dt.datetime) -> float | None:
        """What is left of the day's call minutes (None without that limit)."""
        if self.limits.daily_minutes is None:
            return None
        return max(0.0, self.limits.daily_minutes * 60 - self.ledger.day(self.day(now)).seconds)

    def over_budget(self, now: dt.datetime) -> bool:
        """Whether the day's dollar budget is gone (by what the calls recorded so far)."""
        if self.limits.daily_budget_usd is None:
            return False
        return self.ledger.day(self.day(now)).cost_usd >= self.limits.daily_budget_usd


class Meter:
    """One call on the owner's key, counted as it goes: how long it has lasted and what it has cost."""

    def __init__(self, allowance: Allowance, call_id: str, seconds: float | None, clock: Clock) -> None:
        self.allowance = allowance
        self.call_id = call_id
        self.seconds = seconds  # of the day's minutes left when the call started (None: no such limit)
        self.clock = clock
        self._started = clock.now()

    @classmethod
    def start(
        cls, allowance: Allowance, visitor: Visitor | None, engine: str, clock: Clock
    ) -> tuple[Meter | None, str | None]:
        """Admit a call: its meter, or why it may not use the owner's key. A database that is down refuses the
        call only if there are limits to enforce (it could not count them); otherwise the call goes uncounted."""
        try:
            admission = allowance.admit(visitor, engine, dt.datetime.now(dt.UTC))
        except StoreUnavailable as unavailable:
            log.warning("the demo's allowances could not be read: %s", unavailable)
            return None, (notice("allowance_unavailable", "own_key") if allowance.limits.active else None)
        if admission.refusal:
            return None, admission.refusal
        return cls(allowance, admission.call_id, admission.seconds, clock), None

    def over_budget(self, cost_usd: float) -> bool:
        """Record the call so far, then say whether the day's dollar budget is gone."""
        try:
            self.allowance.ledger.record(self.call_id, seconds=self.clock.now() - self._started, cost_usd=cost_usd)
            return self.allowance.over_budget(dt.datetime.now(dt.UTC))
        except StoreUnavailable as unavailable:
            log.warning("a call could not be counted: %s", unavailable)
            return False

    def finish(self, cost_usd: float, reason: str) -> None:
        """The call is over: its length, its cost and why it ended."""
        try:
            seconds = self.clock.now() - self._started
            self.allowance.ledger.record(self.call_id, seconds=seconds, cost_usd=cost_usd, close_reason=reason)
        except StoreUnavailable as unavailable:
            log.warning("a call could not be counted: %s", unavailable)
