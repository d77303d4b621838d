"""Has the caller finished? Smart Turn v3.2 (Pipecat's end-of-turn model) from a file in `assets/`, off the loop.

The model reads the last 8 s of the caller's audio (prosody and words, 23 languages including Japanese) and
gives the probability that the turn is complete, so "明日の夜七時に、" followed by a pause waits while
"四名でお願いします。" is answered at once. It is an int8 ONNX file of 8.7 MB, copied from the `pipecat-ai`
wheel into `assets/smart_turn/` (licence and provenance beside it) rather than depending on `pipecat-ai`,
which would bring some twenty packages (loguru, numba, resampy, soxr, Pillow, ...) and pipecat's own framework.
It is never downloaded: a missing file is an error when the first check runs.

One `onnxruntime` session per process, built on first use under a lock, is shared by every call (onnxruntime's
`run` is thread-safe). Checks run on a small executor of their own, never on the event loop and never on the
loop's default executor (store and audio I/O use that); each check uses one core (`intra_op_num_threads=1`),
so two calls can be checked at once and the model never takes the whole machine. Their threads run at a lower
priority, so the loop carrying every call's audio gets a core first (a check may wait a few ms, a frame not).
onnxruntime releases the GIL while it computes, so the loop keeps serving audio meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from components.listening.features import SAMPLES, log_mel

if TYPE_CHECKING:
    import onnxruntime

MODEL_PATH = Path(__file__).resolve().parents[2] / "assets" / "smart_turn" / "smart-turn-v3.2-cpu.onnx"
WORKERS = 2  # checks of different calls at once (this Space has 2 cores)
CHECK_NICENESS = 10  # the checks' threads yield the CPU to the audio's (see `_yield_to_audio`)


class EndOfTurn(Protocol):
    """Judges whether an utterance is a finished turn (`Ears` asks after a short silence)."""

    async def complete(self, audio: np.ndarray) -> float:
        """Probability in [0, 1] that the caller has finished, from float32 16 kHz mono audio ending now."""
        ...


def last_window(audio: np.ndarray) -> np.ndarray:
    """The model's input: the last 8 s, or all of it zero-padded at the start (where the model expects silence)."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size >= SAMPLES:
        return audio[-SAMPLES:]
    return np.concatenate((np.zeros(SAMPLES - audio.size, dtype=np.float32), audio))


class SmartTurn:
    """`EndOfTurn` on the vendored Smart Turn model. Use `shared()` in the app: one model per process."""

    def __init__(self, path: Path = MODEL_PATH, *, workers: int = WORKERS) -> None:
        self.path = path
        self._session: onnxruntime.InferenceSession | None = None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="smart-turn", initializer=_yield_to_audio
        )

    def load(self) -> None:
        """Build the session now (about 0.2 s) instead of at the first check; safe from any thread."""
        self._model()

    def _model(self) -> onnxruntime.InferenceSession:
        with self._lock:
            if self._session is None:
                import onnxruntime

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
                options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.log_severity_level = 3  # warnings about the quantised graph are not ours to act on
                self._session = onnxruntime.InferenceSession(
                    str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
                )
            return self._session

    def probability(self, audio: np.ndarray) -> float:
        """Blocking check (features + model) in the calling thread: for the executor, the bench and tests."""
        features = log_mel(last_window(audio))[np.newaxis]
        (output,) = self._model().run(None, {"input_features": features})
        return float(np.asarray(output).reshape(-1)[0])

    async def complete(self, audio: np.ndarray) -> float:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.probability, audio)


def _yield_to_audio() -> None:
    """Run this worker thread at a lower priority (Linux nice, per thread), so that the event loop, which carries
    every call's audio, gets a core first when a check and the loop want the same one: a check waits a few ms
    more, a frame never does. Elsewhere (or if not allowed) the thread keeps its priority."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CHECK_NICENESS)
    except (AttributeError, OSError):
        pass


_shared: SmartTurn | None = None
_shared_lock = threading.Lock()


def shared() -> SmartTurn:
    """The process's Smart Turn (its session is built at the first check, or by `load()` at start-up)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SmartTurn()
        return _shared
