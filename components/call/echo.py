"""On the phone, a turn the speech service heard over the agent's voice may be the agent's own echo.

A handset that does not cancel echo plays the agent's voice back into its microphone. The local barge-in
(`call.barge_in`) keeps its threshold above that echo, but the engine's own speech detector (the Realtime
server's VAD, the pipeline's Silero VAD) hears any voice, including the agent's. So a turn that detector
starts while the agent speaks, and the local detector has not, is held as a *suspect*:

* the local detector pauses the agent during it: the local barge-in decides what it is (`claim`);
* the caller goes on talking once the agent is quiet (`VOICE_AFTER_ECHO_MS`): echo ends with the agent's
  voice, so it was the caller;
* neither, by the time the turn closes: it was echo (`is_echo`), and the engine drops it, unanswered and
  off the transcript.

On the event loop, where every engine hears the caller's frames.
"""

from __future__ import annotations

import numpy as np

from components.call.barge_in import level_dbfs

VOICE_AFTER_ECHO_MS = 240  # speech this long once the agent is quiet is the caller's, not its echo's tail


class EchoCheck:
    """One call's suspect turn (see the module docstring). `turn` names a turn for the engine: an item id
    (compared by value) or the engine's own object for it (compared by identity)."""

    def __init__(self, threshold_dbfs: float) -> None:
        self.threshold_dbfs = threshold_dbfs  # the local barge-in's level for speech, with the agent quiet
        self._suspect: object | None = None
        self._voice_after_ms = 0.0

    def suspect(self, turn: object) -> None:
        """The engine's detector started `turn` while the agent spoke and the local detector heard nothing."""
        self._suspect, self._voice_after_ms = turn, 0.0

    def holds(self, turn: object) -> bool:
        return _same(self._suspect, turn)

    def hear(self, pcm: np.ndarray, rate: int, *, agent_speaking: bool) -> None:
        """One frame of the caller's audio: speech once the agent is quiet clears the suspect."""
        if self._suspect is None or agent_speaking:
            return
        if level_dbfs(pcm) >= self.threshold_dbfs:
            self._voice_after_ms += pcm.size * 1000 / max(1, rate)
        if self._voice_after_ms >= VOICE_AFTER_ECHO_MS:
            self._suspect = None

    def claim(self) -> object | None:
        """The local detector paused the agent: it decides the suspect turn from here (returned, if any)."""
        turn, self._suspect = self._suspect, None
        return turn

    def is_echo(self, turn: object) -> bool:
        """The engine's detector closed `turn`: True if it is still a suspect (echo, to drop)."""
        if not _same(self._suspect, turn):
            return False
        self._suspect = None
        return True


def _same(suspect: object | None, turn: object) -> bool:
    return suspect is turn or (isinstance(turn, str) and suspect == turn)
