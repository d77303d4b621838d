"""One call, whatever engine speaks it: its options, the booking draft, what the screen shows, the clock, the end.

Every voice engine holds a `Call` (composition, not a base class), so the life of a call is written once:

* **start**: the page's request (language, voice, key, visitor) or the phone's defaults, "no key" as a clear
  ending, the demo's allowances, the draft session, the deadline and the clock;
* **the screen**: the transcript and card (`CallState`), product notices, and the throttled push of views;
* **tools**: run against the session on the store's threads (`store_io`), then the card refreshed;
* **the clock**: a warning, the agent asked to wrap up, then a goodbye and the end at the time limit;
* **the end**: one path, whatever triggers it (time limit, budget, error, no key, the caller hanging up), with a
  `CloseReason` and a bilingual message on screen and on the page's data channel, then `Hangup` once the last
  words have played. The transcript and the meter are settled once.

What `output` returns is ours (`ViewUpdate`, `Hangup`): the engine's fastrtc adapter turns it into fastrtc's
types. An engine gives the call three small hooks (`Voice`): say this now, am I busy, and hang up on the service.
Everything else an engine does (its client, reconnects, turn-taking, barge-in, tool schema, per-turn figures)
stays in the engine. Time is read only through `clock` (virtual in tests).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from components.call.allowance import Allowance, Meter
from components.call.clock import Clock, LoopClock
from components.call.notices import notice
from components.call.options import CallOptions, CallRequest, Visitor
from components.call.state import CallState, CallView, CloseReason
from components.call.store_io import StoreRunner, in_store_thread
from components.restaurant.book import StoreUnavailable
from components.restaurant.config import RestaurantConfig
from components.restaurant.lookup import Caller
from components.restaurant.problems import Code, Problem
from components.restaurant.prompt import (
    goodbye_instruction,
    missed_transfer_note,
    render_instructions,
    transfer_failed_instruction,
    transfer_note,
    wrap_up_instruction,
)
from components.restaurant.session import ReservationSession
from components.restaurant.tools import TRANSFER, run_tool
from components.settings import AgentSettings
from components.store.reservations import ReservationStore

log = logging.getLogger(__name__)

UI_PUSH_INTERVAL_S = 0.25  # transcript and card updates: live to a reader, yet few enough to leave audio alone
TIME_WARNING_S = 30
GOODBYE_WAIT_S = 10.0
METER_S = 5.0  # how often a call on the owner's key is counted and checked against the day's budget


class CallEnded(Exception):
    """The call cannot go on; `message` tells the person why."""

    def __init__(self, message: str, reason: CloseReason = CloseReason.SERVICE) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class ViewUpdate:
    """Show this view of the call now (the engine's adapter hands it on to the page and the live feed)."""

    view: CallView


@dataclass(frozen=True)
class Hangup:
    """The call is over and its last words have played: close the transport, with this message."""

    message: str


CallOutput = ViewUpdate | Hangup


class Voice(Protocol):
    """What a call needs from the engine that speaks it."""

    async def say_now(self, instructions: str) -> bool:
        """Have the agent say something now, or right after what it is saying; False if it cannot."""
        ...

    def busy(self) -> bool:
        """The agent is thinking, speaking, or about to answer."""
        ...

    async def hang_up(self) -> None:
        """The call has ended: stop talking to the service (its last words may still be playing)."""
        ...


class Handover(Protocol):
    """What a phone call needs from the line to put the caller through to the staff."""

    def available(self, now: dt.datetime) -> bool:
        """Someone is there to answer now (staff hours)."""
        ...

    async def put_through(self, language: str) -> bool:
        """Redirect the live call to the staff's number; False if it could not be done."""
        ...


SPOKEN_WAIT_S = 10.0  # how long a hand-over waits for the agent's one sentence before putting the caller through


class Handler(Protocol):
    """The part of a fastrtc stream handler a call reads its request from."""

    phone_mode: bool
    latest_args: list[Any]

    async def wait_for_args(self) -> None: ...


async def page_request(handler: Handler) -> CallRequest | None:
    """What the page asked for (its Settings and the visitor); None on the phone, which has no page."""
    if handler.phone_mode:
        return None
    await handler.wait_for_args()
    return CallRequest.from_inputs(handler.latest_args)


class Call:
    """The engine-independent state and mechanics of one call (see the module docstring)."""

    def __init__(
        self,
        config: RestaurantConfig,
        store: ReservationStore,
        settings: AgentSettings,
        voice: Voice,
        notify: Callable[[str], Awaitable[None]],
        engine: str = "realtime",
        clock: Clock | None = None,
        store_io: StoreRunner = in_store_thread,
    ) -> None:
        self.config = config
        self.store = store
        self.settings = settings
        self.voice = voice
        self.engine = engine
        self.clock = clock or LoopClock()
        self.store_io = store_io  # how blocking store work is run (its own threads; inline in some tests)
        self._notify = notify  # the page's data channel (errors and warnings as toasts)
        self.state = CallState(language=config.default_language)
        self.options: CallOptions | None = None
        self.session: ReservationSession | None = None
        self.caller: Caller | None = None  # who is on the line, set by the phone line before the call starts
        self.handover: Handover | None = None  # the phone line's hand-over to staff, where it has one
        self.opening: str | None = None  # "missed_transfer": the caller is back from a hand-over nobody answered
        self.transfer_offered = False  # decided as the call starts: the model is given the tool only then
        self._transferring: asyncio.Task | None = None
        self.close_message: str | None = None  # set once the call is over
        self.closed = False  # `Hangup` has been handed to the transport
        self._ending = False
        self._dirty = False
        self._last_push = -UI_PUSH_INTERVAL_S
        self._timer: asyncio.Task | None = None  # the time limit's task
        self._meter: Meter | None = None  # counts a call on the owner's key against the demo's allowances
        self.limit_s = float(settings.call_time_limit_s)

    @property
    def language(self) -> str:
        return self.state.language

    async def begin(self, request: CallRequest | None) -> bool:
        """Start the call from the page's request (None on the phone); False if it ended at once (no key, or the
        demo's allowances refused it)."""
        self.options = CallOptions.resolve(request, self.config.default_language, self.settings)
        self.state.language = self.options.language
        if not self.options.api_key:
            await self.end(CloseReason.NO_KEY, notice("no_key"))
            return False
        if not self.options.own_key:  # the owner's key: the demo's allowances apply
            allowance = Allowance(self.settings.demo, self.store.usage, self.config)
            visitor = None  # the phone: the restaurant's own line
            if request is not None:  # a page that sent no visitor (an API client) is counted as an unknown one
                visitor = self.options.visitor or Visitor.unknown(code_ok=self.settings.demo.access_code is None)
            self._meter, refusal = await self.store_io(Meter.start, allowance, visitor, self.engine, self.clock)
            if refusal:
                await self.end(CloseReason.NOT_ALLOWED, refusal)
                return False
            if self._meter is not None and self._meter.seconds is not None:
                self.limit_s = min(self.limit_s, self._meter.seconds)
        source = "web" if request is not None else "phone"
        visitor = self.options.visitor or Visitor.unknown(code_ok=False)
        caller = self.caller or Caller(visitor=visitor.id)  # the page's visitor, for the caps per caller
        self.session = ReservationSession(
            self.config,
            self.store,
            language=self.options.language,
            source=source,
            caller=caller,
            caps=self.settings.caps,
        )
        self.state.reservation = await self.store_io(self.session.snapshot)
        self.transfer_offered = self.handover is not None and self.handover.available(dt.datetime.now(dt.UTC))
        self.state.deadline = self.clock.wall() + self.limit_s
        self.changed()
        self._timer = asyncio.create_task(self._watch_clock())
        return True

    # ---- what the screen shows -----------------------------------------------------------------------

    def changed(self) -> None:
        """The view changed: the next `output` pushes it (at most every `UI_PUSH_INTERVAL_S`)."""
        self._dirty = True

    def system(self, text: str) -> None:
        """A notice from the product itself (errors, reconnects, time left) in the transcript."""
        self.state.system(text)
        self.changed()

    def output(self, view: Callable[[], CallView] | None = None) -> CallOutput | None:
        """What the engine's `emit` should hand the transport before any audio: a due view, or the hang-up.

        `view` builds the snapshot where the state lives, for an engine whose `emit` runs in another thread.
        """
        now = self.clock.now()
        closing = self.close_message is not None
        if self._dirty and (now - self._last_push >= UI_PUSH_INTERVAL_S or closing):
            self._dirty, self._last_push = False, now
            return ViewUpdate((view or self.state.view)())
        if closing and not self.voice.busy():
            self.closed = True
            return Hangup(self.close_message or "")
        return None

    # ---- instructions and tools ----------------------------------------------------------------------

    def instructions(self) -> str:
        """The model's instructions for this call: the restaurant's, and what the phone line adds."""
        assert self.options is not None
        language = self.options.language
        parts = [render_instructions(self.config, language)]
        if self.transfer_offered:
            parts.append(transfer_note(language))
        if self.opening == "missed_transfer":
            parts.append(missed_transfer_note(language))
        return "\n\n".join(parts)

    async def run_tool(self, name: str, arguments: Any) -> dict[str, Any]:
        """Run one of the model's tool calls against the draft and refresh the card; never raises."""
        session = self.session
        assert session is not None
        if name == TRANSFER:
            return await self._transfer(session)

        def work() -> tuple[dict[str, Any], dict[str, Any]]:
            return run_tool(session, name, arguments), session.snapshot()

        written = set(session.touched)
        result, snapshot = await self.store_io(work)
        self.state.reservation = snapshot
        self.changed()
        if session.touched != written:
            await self.keep_transcript()
        return result

    async def _transfer(self, session: ReservationSession) -> dict[str, Any]:
        """The model asked to put the caller through: only if this call was offered it and staff are there now;
        the agent says its sentence, then the line redirects the call."""
        now = dt.datetime.now(dt.UTC)
        if not self.transfer_offered or self.handover is None or not self.handover.available(now):
            return await self.store_io(session.report, Problem(Code.TRANSFER_UNAVAILABLE))
        if self._transferring is None:
            self._transferring = asyncio.create_task(self._put_through(self.handover))
        return {**(await self.store_io(session.snapshot)), "transfer": "putting_through"}

    async def _put_through(self, handover: Handover) -> None:
        clock, deadline = self.clock, self.clock.now() + SPOKEN_WAIT_S
        while not self.voice.busy() and clock.now() < deadline:  # the agent starts its sentence...
            await clock.sleep(0.05)
        while self.voice.busy() and clock.now() < deadline:  # ...and finishes it
            await clock.sleep(0.05)
        self.system(notice("transferring"))
        if await handover.put_through(self.language):
            await self.end(CloseReason.TRANSFERRED)
            return
        self._transferring = None
        self.system(notice("transfer_failed"))
        await self.voice.say_now(transfer_failed_instruction(self.language))

    async def keep_transcript(self) -> None:
        """Keep the call's view (transcript, card, figures) with every booking it wrote, for the restaurant."""
        session = self.session
        if session is None or not session.touched:
            return
        try:
            view = self.state.view().model_dump(mode="json")
            await self.store_io(self.store.save_transcript, set(session.touched), view)
        except StoreUnavailable as unavailable:  # the booking itself is safe; only this copy of the call is lost
            log.warning("could not keep a call's transcript: %s", unavailable)

    # ---- the clock and the end -----------------------------------------------------------------------

    async def _watch_clock(self) -> None:
        """Warn, let the agent wrap up, then say goodbye and end when the call's time (or the demo's budget) is
        up; meanwhile count the call against the demo's allowances."""
        clock = self.clock
        started, limit = clock.now(), self.limit_s
        warn_after = max(limit - TIME_WARNING_S, limit * 2 / 3)  # a short call is not warned at its start
        ends_at, warned = started + limit, False
        reason, why = CloseReason.TIME_UP, notice("time_up")
        while (now := clock.now()) < ends_at:
            if not warned and now >= started + warn_after:
                warned = True
                seconds = round(ends_at - now)
                self.system(notice("time_warning", seconds=seconds, unit="second" if seconds == 1 else "seconds"))
                await self.voice.say_now(wrap_up_instruction(self.language))
            next_check = ends_at if warned else min(ends_at, started + warn_after)
            await clock.sleep(min(METER_S, max(0.05, next_check - clock.now())))
            if self._meter is not None and await self.store_io(self._meter.over_budget, self.state.cost_usd()):
                ends_at, reason, why = clock.now(), CloseReason.BUDGET, notice("budget_end")
        if await self.voice.say_now(goodbye_instruction(self.language)):
            deadline = clock.now() + GOODBYE_WAIT_S
            await clock.sleep(0.1)
            while self.voice.busy() and clock.now() < deadline:
                await clock.sleep(0.1)
        await self.end(reason, why)

    async def end(self, reason: CloseReason, message: str | None = None) -> None:
        """End the call, once, whatever triggers it: tell the person why (`message`; none when the caller hung up),
        hang up on the service, settle the transcript and the meter, and close after the last words."""
        if self._ending:
            return
        self._ending = True
        self.state.end_reason = reason
        if message:
            self.system(message)
            await self._notify(json.dumps({"type": "error" if reason.is_error else "warning", "message": message}))
        self.changed()
        self.close_message = message or ""
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        await self.voice.hang_up()
        await self.keep_transcript()
        if self._meter is not None:
            await self.store_io(self._meter.finish, self.state.cost_usd(), reason)
