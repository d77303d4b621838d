"""The agent's voice against the caller's, wired once for every engine that plays its own audio.

Each such engine (Realtime, pipeline; on the page and on the phone) needs the same three pieces around its
`Playout`: the local barge-in (`call.barge_in`) hearing every frame of the caller, the echo check (`call.echo`)
for a handset that plays the agent back, and the hooks that hold the agent's voice (the playout paused and the
transport's queue cleared at once) and silence it (the playout cleared, with where it was cut). `VoiceFloor` is that
wiring; what a cut means (cancel a response and truncate its item, or cancel a turn's task) and who decides
about a turn stay with the engine, which gives its hooks.

On the event loop: every engine hears the caller's frames and plays its audio there.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np

from components.call.barge_in import BargeIn
from components.call.call import Call
from components.call.echo import EchoCheck
from components.engines.playout import Cut, Playout

log = logging.getLogger(__name__)


class VoiceFloor:
    """One call's local barge-in and echo check around its playout (see the module docstring).

    `speaking()`: is the agent's voice out (or, for an engine that thinks before it speaks, is it answering)?
    `cut()`: the caller really talks over the agent (the engine silences it through `silence`). `resume()`: the
    pause was a false alarm (default: play on). `claimed(turn)`: the local detector paused the agent during a
    turn the engine's detector held as possible echo, which is now the local detector's to judge.
    `confirms_itself=False` leaves the confirmation to the engine (`confirm`), and `hold_ms` then keeps a pause
    that long while the engine decides."""

    def __init__(
        self,
        call: Call,
        playout: Playout,
        *,
        rate: int,
        clear_transport: Callable[[], None],
        speaking: Callable[[], bool],
        cut: Callable[[], None],
        echo_guard: bool,
        resume: Callable[[], None] | None = None,
        claimed: Callable[[object], None] | None = None,
        confirms_itself: bool = True,
        hold_ms: int | None = None,
    ) -> None:
        self.playout = playout
        self.rate = rate
        self._clear_transport = clear_transport
        self._claimed = claimed
        settings = call.settings.barge_in
        if hold_ms is not None:
            settings = dataclasses.replace(settings, resume_ms=max(settings.resume_ms, hold_ms))
        self.barge = BargeIn(
            speaking=speaking,
            pause=self._pause,
            resume=resume or playout.resume,
            cut=cut,
            played_dbfs=playout.level_dbfs,
            echo_guard=echo_guard,
            settings=settings,
            clock=call.clock,
            confirms_itself=confirms_itself,
        )
        self.echo = EchoCheck(settings.threshold_dbfs)

    def hear(self, pcm: np.ndarray) -> None:
        """One frame of the caller's audio (int16 mono at `rate`)."""
        self.barge.hear(pcm, self.rate)
        self.echo.hear(pcm, self.rate, agent_speaking=self.playout.speaking)

    def silence(self) -> Cut | None:
        """Stop the agent's voice now, here and in the transport; which item was cut and where, if one was."""
        cut = self.playout.clear()
        self._clear_transport()
        return cut

    def let_go(self) -> None:
        """The call is ending: a voice held for the caller will never resume, so it is cut where they stopped
        hearing it (the engine's `cut`), and the call can close instead of waiting for it."""
        if not self.barge.paused:
            return
        try:
            self.barge.confirm()
        except Exception:  # the ending must not fail with what it ends (e.g. a transport that broke)
            log.exception("cutting the held voice at the end of the call failed")
            self.playout.clear()

    def _pause(self) -> None:
        """Hold the agent's voice: what was not yet heard comes back on `resume`."""
        suspect = self.echo.claim()
        if suspect is not None and self._claimed is not None:
            self._claimed(suspect)
        self.playout.pause()
        self._clear_transport()
