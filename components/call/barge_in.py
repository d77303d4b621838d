"""Barge-in, heard locally: the agent stops talking the instant the caller does, and goes on after a cough.

Waiting for the speech service to say "the caller is speaking" costs the caller's first 60 ms of speech plus
the uplink, while the audio already queued keeps playing: a fifth of a second of the bot talking over them.
So every engine hands the caller's frames to a `BargeIn`, which listens for the energy of speech itself:

1. **Onset** (`onset_ms` of frames above the threshold, 40 ms by default): the engine *pauses* its playout at
   once (what was handed to the transport but not yet heard is taken back, so nothing is lost).
2. **Confirmed** speech (still sounding `confirm_ms` after the onset, 250 ms by default, at least half of it
   loud; once paused, loud means up to `HOLD_DB` under the threshold, a VAD's hysteresis, since a word's fading
   syllables and a browser's gain control dip under the level that started it; or the engine's own evidence:
   the Realtime server's turn, the pipeline's ears): the answer is *cut* as before, with what was heard. An
   engine whose ears tell an interruption from a backchannel (はい, uh-huh, as loud as any word) is the only one
   to confirm (`confirms_itself=False`).
3. **Nothing confirmed** within `resume_ms` (500 ms by default): it was a cough, a door, a click; playback
   *resumes* where it paused and the transcript shows no cut.

Echo of the agent's own voice must not trigger it. Browsers cancel echo, so there the threshold is a fixed
level above silence; on the phone the caller's handset does not always, so the threshold also stays a margin
above what the echo of the agent's current playout level can be (`echo_guard`).

On the event loop, where every engine hears the caller's frames: a hook runs within the `hear` that triggered it,
so anything it raises reaches the engine's own error handling (a callback scheduled for later would only be logged).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from components.call.clock import Clock, LoopClock, Timer
from components.settings import BargeInSettings

SILENT_DBFS = -120.0
HOLD_DB = 6.0  # once the caller has started, audio this far under the onset threshold still counts as speech


def level_dbfs(pcm: np.ndarray) -> float:
    """The RMS level of int16 audio in dB below full scale."""
    if not pcm.size:
        return SILENT_DBFS
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64))))
    return 20 * math.log10(rms / 32768) if rms > 0 else SILENT_DBFS


class BargeIn:
    """One call's local barge-in (see the module docstring). The engine gives it four hooks, all run on the loop:
    `pause()` and `resume()` the playout, `cut()` the answer, and `speaking()` (is the agent's voice out?);
    `played_dbfs()` is the level of what is being played now (for the echo guard)."""

    IDLE, PAUSED = "idle", "paused"

    def __init__(
        self,
        *,
        speaking: Callable[[], bool],
        pause: Callable[[], None],
        resume: Callable[[], None],
        cut: Callable[[], None],
        played_dbfs: Callable[[], float],
        echo_guard: bool,
        settings: BargeInSettings,
        clock: Clock | None = None,
        confirms_itself: bool = True,
    ) -> None:
        self.confirms_itself = confirms_itself
        self.settings = settings
        self.clock = clock or LoopClock()
        self._speaking, self._pause, self._resume, self._cut = speaking, pause, resume, cut
        self._played_dbfs = played_dbfs
        self.echo_guard = echo_guard
        self.state = self.IDLE
        self.pauses = self.resumes = self.cuts = 0  # what happened on this call, for the figures
        self._loud_ms = 0.0  # loud audio in a row (the onset), then since the pause (the confirmation)
        self._span_ms = self._quiet_ms = 0.0  # since the pause: all audio, and the quiet since the last loud frame
        self._timer: Timer | None = None

    def threshold_dbfs(self) -> float:
        """The level of speech: the onset's, or `HOLD_DB` under it once paused (an espeak "Stop," has ~240 ms
        over -40 dBFS and ~280 over -46 after a browser's processing). Never under what echo can reach."""
        floor = self.settings.threshold_dbfs - (HOLD_DB if self.state == self.PAUSED else 0.0)
        if not self.echo_guard:
            return floor
        echo = self._played_dbfs() - self.settings.echo_loss_db + self.settings.echo_margin_db
        return max(floor, echo)

    def hear(self, pcm: np.ndarray, rate: int) -> None:
        """One frame of the caller's audio (on the loop)."""
        frame_ms = pcm.size * 1000 / max(1, rate)
        loud = level_dbfs(pcm) >= self.threshold_dbfs()
        if self.state == self.IDLE:  # an onset is loud audio in a row
            self._loud_ms = self._loud_ms + frame_ms if loud else 0.0
            heard = self._loud_ms >= self.settings.onset_ms
            then = self._on_onset
        else:  # paused: is the caller still talking `confirm_ms` after the onset?
            self._span_ms += frame_ms
            self._loud_ms += frame_ms if loud else 0.0
            self._quiet_ms = 0.0 if loud else self._quiet_ms + frame_ms
            heard = self.confirms_itself and self._still_talking()
            then = self.confirm
        if heard:
            then()

    def _still_talking(self) -> bool:
        """Speech goes on, syllable after syllable; a burst stops. So: `confirm_ms` of loud audio, or a loud
        frame still coming `confirm_ms` or more after the onset, with at least half of that time loud."""
        confirm = self.settings.confirm_ms
        if self._loud_ms >= confirm:
            return True
        return self._span_ms >= confirm and self._quiet_ms == 0.0 and self._loud_ms >= confirm / 2

    def _on_onset(self) -> None:
        if self.state != self.IDLE or not self._speaking():
            if self.state == self.IDLE:
                self._loud_ms = 0.0  # the agent is quiet: this is an ordinary turn, the engine's to hear
            return
        self.state = self.PAUSED
        self.pauses += 1
        self._span_ms = self._quiet_ms = 0.0
        self._pause()
        self._timer = self.clock.call_later(self.settings.resume_ms / 1000, self._expire)

    def confirm(self) -> bool:
        """The caller is really speaking (heard here, or the engine's own evidence): cut the answer, if one is
        playing or paused. On the loop; True if it cut."""
        paused = self.state == self.PAUSED
        self.state, self._loud_ms = self.IDLE, 0.0
        self._cancel_timer()
        if not paused and not self._speaking():
            return False
        self.cuts += 1
        self._cut()
        return True

    def _expire(self) -> None:
        if self.state != self.PAUSED:
            return
        self.state, self._loud_ms = self.IDLE, 0.0
        self.resumes += 1
        self._timer = None
        self._resume()

    @property
    def paused(self) -> bool:
        return self.state == self.PAUSED

    def reset(self) -> None:
        """Forget an onset in progress (the answer ended, or was cut by other means)."""
        was_paused = self.state == self.PAUSED
        self.state, self._loud_ms = self.IDLE, 0.0
        self._cancel_timer()
        if was_paused:
            self._resume()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
