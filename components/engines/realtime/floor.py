"""Who has the floor on a Realtime call: the caller's speech against the agent's voice.

The local barge-in, the echo check and the playout's hooks are every engine's (`engines.floor.VoiceFloor`); this
module adds what the Realtime server's own turn events mean.

The session runs the server's VAD with `create_response: false` and `interrupt_response: false`, so the server
neither answers nor cancels on its own: this module decides, from the local barge-in (`call.barge_in`) and the
server's turn events together.

* The caller starts talking over the agent: the local detector pauses the agent within a few tens of ms.
  Confirmed speech cuts the answer (`response.cancel` if it is still coming, `conversation.item.truncate` with
  what was heard, the transport's queue and Twilio's buffer cleared, the line marked as cut).
* Nothing confirmed: the agent resumes, and the server's turn for that noise is dropped when it arrives
  (`conversation.item.delete`, no answer, nothing in the transcript). In a browser, while the server still hears
  a turn that began during the pause, the agent stays paused until that turn closes: more speech in it cuts.
* The server hears the caller when the local detector did not: in a browser (which cancels echo) that is a soft
  voice, and the answer is cut at once; on the phone it may be the echo of the agent's own voice, so the turn is
  held (`call.echo`): unless the local detector hears speech before the turn closes, or the caller goes on
  talking once the agent is quiet, it was echo, and is dropped.
* An ordinary turn (the agent quiet): the server's committed turn is answered (`response.create`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from components.call.call import Call
from components.engines.floor import VoiceFloor
from components.engines.playout import SAMPLE_RATE, Playout

FALSE_ALARM_GRACE_S = 1.0  # after a resume, the server's turn for the same noise may still be on its way


class Floor:
    """The turn-taking of one Realtime call (see the module docstring)."""

    def __init__(
        self,
        call: Call,
        playout: Playout,
        *,
        clear_transport: Callable[[], None],
        send: Callable[[str, dict[str, Any]], Coroutine[Any, Any, None]],
        responding: Callable[[], bool],
        echo_guard: bool,
    ) -> None:
        self.call = call
        self.playout = playout
        self._send = send  # a client event to the server: (type, fields)
        self._responding = responding
        self.cut_items: set[str] = set()  # agent items the caller talked over: their late audio is dropped
        self._false_turns: set[str] = set()  # the server's turns for noises the agent resumed after
        self._resumed_at = -1e9
        self._during_pause: str | None = None  # the server's turn that began while the agent was paused
        self._open_turn: str | None = None  # the server's caller turn that has started and not yet closed
        self._held: str | None = None  # that turn, while the agent stays paused until the server closes it
        self._tasks: set[asyncio.Task] = set()
        self.voice = VoiceFloor(
            call,
            playout,
            rate=SAMPLE_RATE,
            clear_transport=clear_transport,
            speaking=lambda: self.playout.speaking,
            cut=self._cut,
            resume=self._resume,
            claimed=self._claimed,
            echo_guard=echo_guard,
        )
        self.barge, self.echo = self.voice.barge, self.voice.echo

    def hear(self, pcm: np.ndarray) -> None:
        self.voice.hear(pcm)

    # ---- the server's turn events ------------------------------------------------------------------

    def speech_started(self, item_id: str) -> None:
        self._open_turn = item_id
        if self.barge.paused:
            self._during_pause = item_id  # the local detector heard it first and decides what this turn is
            return
        if time.monotonic() - self._resumed_at < FALSE_ALARM_GRACE_S:
            self._false_turns.add(item_id)  # the server's view of the noise we just resumed after
            return
        if not self.playout.speaking:
            return  # an ordinary turn
        if self.barge.echo_guard:  # on the phone: echo, unless the local detector hears speech before it closes
            self.echo.suspect(item_id)
        else:  # a voice too soft for the local detector, not for the server
            self.barge.confirm()

    def committed(self, item_id: str) -> bool:
        """The server closed a caller turn: True to show and answer it, False for a noise (dropped here)."""
        if self._open_turn == item_id:
            self._open_turn = None
        if self._held == item_id:  # closed with nothing confirmed locally: a noise after all
            self._held = None
            self._false_turns.add(item_id)
            self._resumed_at = time.monotonic()
            self.playout.resume()
        if self.echo.is_echo(item_id):
            self._false_turns.add(item_id)
        if item_id in self._false_turns:
            self._spawn(self._send("conversation.item.delete", {"item_id": item_id}))
            return False
        return True

    def shown(self, item_id: str) -> bool:
        """Whether a caller item belongs on screen (a dropped noise does not)."""
        return item_id not in self._false_turns

    def forget_playback(self) -> None:
        """The connection dropped: nothing queued will be played, and no pause is pending."""
        self._held = None
        self.barge.reset()
        cut = self.voice.silence()
        if cut is not None:
            self.call.state.agent_cut(cut.item_id, cut.played_ms / max(1, cut.received_ms))

    # ---- the hooks of the local barge-in (on the loop) ---------------------------------------------

    def _claimed(self, suspect: object) -> None:
        self._during_pause = str(suspect)  # the server was first; the local detector decides it

    def _resume(self) -> None:
        if not self.barge.echo_guard and self._during_pause is not None and self._during_pause == self._open_turn:
            # in a browser the server still hears the sound that paused the agent: wait for it to end (the
            # server's commit), so a caller whose first syllables were soft is not talked over again
            self._held, self._during_pause = self._during_pause, None
            return
        self._resumed_at = time.monotonic()
        if self._during_pause is not None:
            self._false_turns.add(self._during_pause)
            self._during_pause = None
        self.playout.resume()

    def _cut(self) -> None:
        self._during_pause = self._held = None
        if self._open_turn is not None:  # a pause before was a false alarm, but this turn holds real speech
            self._false_turns.discard(self._open_turn)
        cut = self.voice.silence()
        if self._responding():
            self._spawn(self._send("response.cancel", {}))
        if cut is None:
            return
        self.cut_items.add(cut.item_id)
        self.call.state.agent_cut(cut.item_id, cut.played_ms / max(1, cut.received_ms))
        self.call.changed()
        truncate = {"item_id": cut.item_id, "content_index": 0, "audio_end_ms": cut.played_ms}
        self._spawn(self._send("conversation.item.truncate", truncate))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._tasks.discard)
