"""One call, whatever engine speaks it: its options, the booking draft, what the screen shows, the clock, the end.

Both voice engines hold a `Call` (composition, not a base class), so the life of a call is written once:

* **start**: the page's language, voice and key (or the phone's defaults), "no key" as a clear ending, the
  draft session, the deadline and the clock;
* **the screen**: the transcript and card (`CallState`), product notices, and the throttled push of views to
  the UI as fastrtc `AdditionalOutputs`;
* **tools**: run against the session in a worker thread (the store does blocking I/O), then the card refreshed;
* **the clock**: a warning, the agent asked to wrap up, then a goodbye and the end at the time limit;
* **the end**: it happens once, whatever triggers it (time limit, error, no key), with a bilingual message
  on screen and on fastrtc's data channel, then `CloseStream` once the last words have played.

An engine gives the call three small hooks (`Voice`): say this now, am I busy, and hang up on the service.
Everything else an engine does (its client, reconnects, turn-taking, barge-in, tool schema, per-turn
figures) stays in the engine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from fastrtc import AdditionalOutputs, CloseStream

from components.call.allowance import Allowance, Meter
from components.call.notices import notice
from components.call.state import CallState
from components.restaurant.config import RestaurantConfig
from components.restaurant.lookup import Caller
from components.restaurant.prompt import goodbye_instruction, wrap_up_instruction
from components.restaurant.session import ReservationSession
from components.restaurant.tools import run_tool
from components.settings import AgentSettings, CallOptions
from components.store.database import StoreUnavailable
from components.store.reservations import ReservationStore

log = logging.getLogger(__name__)

UI_PUSH_INTERVAL_S = 0.25  # transcript and card updates: live to a reader, yet few enough to leave audio alone
TIME_WARNING_S = 30
GOODBYE_WAIT_S = 10.0
METER_S = 5.0  # how often a call on the owner's key is counted and checked against the day's budget


class CallEnded(Exception):
    """The call cannot go on; `message` tells the person why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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


class Handler(Protocol):
    """The part of a fastrtc stream handler a call reads its options from."""

    phone_mode: bool
    latest_args: list[Any]

    async def wait_for_args(self) -> None: ...


async def ui_inputs(handler: Handler) -> Sequence[Any] | None:
    """The call's UI inputs `[call, language, voice, key]`; None on the phone, which has no page."""
    if handler.phone_mode:
        return None
    await handler.wait_for_args()
    return handler.latest_args


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
    ) -> None:
        self.config = config
        self.store = store
        self.settings = settings
        self.voice = voice
        self.engine = engine
        self._notify = notify  # fastrtc's data channel to the page (errors and warnings as toasts)
        self.state = CallState(language=config.default_language)
        self.options: CallOptions | None = None
        self.session: ReservationSession | None = None
        self.caller: Caller | None = None  # who is on the line, set by the phone line before the call starts
        self.close_message: str | None = None  # set once the call is over
        self.closed = False  # CloseStream has been handed to fastrtc
        self._ending = False
        self._dirty = False
        self._last_push = 0.0
        self._clock: asyncio.Task | None = None
        self._meter: Meter | None = None  # counts a call on the owner's key against the demo's allowances
        self.limit_s = float(settings.call_time_limit_s)

    @property
    def language(self) -> str:
        return self.state.language

    async def begin(self, inputs: Sequence[Any] | None) -> bool:
        """Start the call from its UI inputs (None on the phone); False if it ended at once (no key)."""
        self.options = CallOptions.from_inputs(inputs, self.config.default_language, self.settings)
        self.state.language = self.options.language
        if not self.options.api_key:
            await self.end(notice("no_key"), error=True)
            return False
        if not self.options.own_key:  # the owner's key: the demo's allowances apply
            allowance = Allowance(self.settings.demo, self.store.usage, self.config)
            visitor = None  # the phone: the restaurant's own line
            if inputs is not None:  # a page that sent no visitor (an API client) is counted as an unknown one
                unknown = {"id": "ip:unknown", "code_ok": self.settings.demo.access_code is None}
                visitor = self.options.visitor or unknown
            self._meter, refusal = await asyncio.to_thread(Meter.start, allowance, visitor, self.engine)
            if refusal:
                await self.end(refusal, error=True)
                return False
            if self._meter is not None and self._meter.seconds is not None:
                self.limit_s = min(self.limit_s, self._meter.seconds)
        source = "web" if inputs is not None else "phone"
        self.session = ReservationSession(
            self.config, self.store, language=self.options.language, source=source, caller=self.caller
        )
        self.state.reservation = await asyncio.to_thread(self.session.snapshot)
        self.state.deadline = time.time() + self.limit_s
        self.changed()
        self._clock = asyncio.create_task(self._watch_clock())
        return True

    # ---- what the screen shows -----------------------------------------------------------------------

    def changed(self) -> None:
        """The view changed: the next `output` pushes it (at most every `UI_PUSH_INTERVAL_S`)."""
        self._dirty = True

    def system(self, text: str) -> None:
        """A notice from the product itself (errors, reconnects, time left) in the transcript."""
        self.state.system(text)
        self.changed()

    def output(self, view: Callable[[], dict[str, Any]] | None = None) -> AdditionalOutputs | CloseStream | None:
        """What the engine's `emit` should hand fastrtc before any audio: a due view update, or the close.

        `view` builds the snapshot where the state lives, for an engine whose `emit` runs in another thread.
        """
        now = time.monotonic()
        closing = self.close_message is not None
        if self._dirty and (now - self._last_push >= UI_PUSH_INTERVAL_S or closing):
            self._dirty, self._last_push = False, now
            return AdditionalOutputs((view or self.state.view)())
        if closing and not self.voice.busy():
            self.closed = True
            return CloseStream(self.close_message)
        return None

    # ---- tools ---------------------------------------------------------------------------------------

    async def run_tool(self, name: str, arguments: Any) -> dict[str, Any]:
        """Run one of the model's tool calls against the draft and refresh the card; never raises."""
        session = self.session
        assert session is not None

        def work() -> tuple[dict[str, Any], dict[str, Any]]:
            return run_tool(session, name, arguments), session.snapshot()

        written = set(session.touched)
        result, snapshot = await asyncio.to_thread(work)
        self.state.reservation = snapshot
        self.changed()
        if session.touched != written:
            await self.keep_transcript()
        return result

    async def keep_transcript(self) -> None:
        """Keep the call's view (transcript, card, figures) with every booking it wrote, for the restaurant."""
        session = self.session
        if session is None or not session.touched:
            return
        try:
            await asyncio.to_thread(self.store.save_transcript, set(session.touched), self.state.view())
        except StoreUnavailable as unavailable:  # the booking itself is safe; only this copy of the call is lost
            log.warning("could not keep a call's transcript: %s", unavailable)

    # ---- the clock and the end -----------------------------------------------------------------------

    async def _watch_clock(self) -> None:
        """Warn, let the agent wrap up, then say goodbye and end when the call's time (or the demo's budget) is
        up; meanwhile count the call against the demo's allowances."""
        loop = asyncio.get_running_loop()
        started, limit = loop.time(), self.limit_s
        warn_after = max(limit - TIME_WARNING_S, limit * 2 / 3)  # a short call is not warned at its start
        ends_at, warned, why = started + limit, False, notice("time_up")
        while (now := loop.time()) < ends_at:
            if not warned and now >= started + warn_after:
                warned = True
                self.system(notice("time_warning", seconds=round(ends_at - now)))
                await self.voice.say_now(wrap_up_instruction(self.language))
            next_check = ends_at if warned else min(ends_at, started + warn_after)
            await asyncio.sleep(min(METER_S, max(0.05, next_check - loop.time())))
            if self._meter is not None and await asyncio.to_thread(self._meter.over_budget, self.state.cost_usd()):
                ends_at, why = loop.time(), notice("budget_end")
        if await self.voice.say_now(goodbye_instruction(self.language)):
            deadline = time.monotonic() + GOODBYE_WAIT_S
            await asyncio.sleep(0.1)
            while self.voice.busy() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        await self.end(why)

    async def end(self, message: str, error: bool = False) -> None:
        """End the call once: tell the person why, hang up on the service, close after the last words."""
        if self._ending:
            return
        self._ending = True
        self.system(message)
        self.state.ended = True
        self.changed()
        await self._notify(json.dumps({"type": "error" if error else "warning", "message": message}))
        self.close_message = message
        if self._clock is not None and self._clock is not asyncio.current_task():
            self._clock.cancel()
        await self.voice.hang_up()
        await self._settle()

    def stop(self) -> None:
        """The call's work is over (the engine's conversation ended): no more clock."""
        if self._clock is not None:
            self._clock.cancel()

    async def close(self) -> None:
        """The transport is shutting the call down (hang-up, page closed): stop, and keep the final transcript."""
        self.stop()
        await self._settle()

    async def _settle(self) -> None:
        """What a finished call leaves behind: its transcript with its bookings, its cost in the demo's count."""
        await self.keep_transcript()
        if self._meter is not None:
            await asyncio.to_thread(self._meter.finish, self.state.cost_usd())
