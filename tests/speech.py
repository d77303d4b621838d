"""Test speech: real spoken audio from espeak-ng, resampled with sox, cached per text and rate; and the echo of
a handset that plays the agent back into its own microphone."""

from __future__ import annotations

import functools
import tempfile
from collections import deque
from pathlib import Path

import numpy as np

from tests.browser import _speak


@functools.cache
def speech_pcm(text: str, rate: int = 24_000, voice: str = "en") -> np.ndarray:
    """`text` spoken by espeak-ng as int16 mono at `rate` Hz, with its leading and trailing silence trimmed."""
    with tempfile.TemporaryDirectory(prefix="speech-") as tmp:
        pcm = _speak(text, voice, 160, rate, -3.0, Path(tmp))
    pcm.setflags(write=False)
    return pcm


class Echo:
    """A handset that leaks its earpiece into its microphone, `loss_db` quieter: what the caller's speaker
    plays (`played`) comes back mixed into the microphone's frames at the time it plays (`into`)."""

    def __init__(self, loss_db: float, mic_rate: int) -> None:
        self.gain = 10 ** (-abs(loss_db) / 20)
        self.rate = mic_rate
        self._due: deque[tuple[float, np.ndarray]] = deque()  # (when it plays, samples at the microphone's rate)

    def played(self, at: float, pcm: np.ndarray, rate: int) -> None:
        if rate != self.rate:
            n = round(pcm.size * self.rate / rate)
            pcm = np.interp(np.arange(n) * rate / self.rate, np.arange(pcm.size), pcm)
        self._due.append((at, np.asarray(pcm, dtype=np.float64) * self.gain))

    def clear(self, now: float) -> None:
        """What had not started playing by `now` never will."""
        self._due = deque(item for item in self._due if item[0] <= now)

    def into(self, frame: np.ndarray, now: float) -> np.ndarray:
        """The microphone's int16 `frame`, with what the speaker is playing by `now` mixed in."""
        need, leak = frame.size, []
        while need and self._due and self._due[0][0] <= now:
            start, pcm = self._due[0]
            leak.append(pcm[:need])
            need -= leak[-1].size
            if pcm.size > leak[-1].size:
                self._due[0] = (start + leak[-1].size / self.rate, pcm[leak[-1].size :])
            else:
                self._due.popleft()
        if not leak:
            return frame
        mixed = frame.astype(np.float64).reshape(-1)
        echo = np.concatenate(leak)
        mixed[: echo.size] += echo
        return np.clip(mixed, -32768, 32767).astype(np.int16).reshape(frame.shape)
