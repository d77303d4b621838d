"""Turn taking: when the caller speaks, when their turn is over, and whether speech over the agent cuts it.

`Ears.hear` takes each frame of the caller's audio on the event loop and returns what it heard:

* `SpeechStarted` when an utterance opens (speech for `start_speech_ms`; `preroll_ms` of audio before it is kept,
  so the first syllable reaches the transcriber whole).
* **Over the agent** (the utterance opened while `agent_speaking`): once its speech reaches
  `interrupt_speech_ms`, one `Interruption` (the engine cuts the agent), and the utterance goes on as a turn.
  If it ends sooner (silence for `floor_ms`), it was a `Backchannel` (はい, うん, uh-huh): neither a cut nor a turn.
  Unless the agent had fallen quiet by the caller's last word: a short answer that overlapped the tail of a
  question ("…よろしいですか" / "はい") is an answer, and is judged as a turn.
* **A turn** ends with `TurnEnded`. After `floor_ms` of silence the end-of-turn model is asked about the
  utterance, and `Pausing` hands the engine the utterance so far, so that it can be transcribed while the model
  and the silence decide (`TurnEnded.pause` names that `Pausing` if only silence was heard since). "Complete"
  (≥ `complete_at`) ends the turn, "not yet" keeps waiting (once per pause, as Pipecat asks: each check costs
  ~80 ms of a core, and on our set more checks shortened no wait; `recheck_ms` asks again after that much more
  silence); `max_silence_ms` of silence ends it whatever the model says, and so does `max_turn_s` of utterance.
  Speech resuming while a check runs voids that check. Without a model (`end_of_turn=None`, the VAD-only
  baseline) a fixed `fallback_silence_ms` of silence ends the turn.

**Time is audio**, counted in samples heard, never the wall clock, so an offline run is deterministic. The model
runs on its own executor and `hear` never waits for it: a check started by one frame is read by a later `hear`
(or by `settle`, which offline runs await). So in a live call `TurnEnded.waited_ms` is the silence heard until
the frame after the model answered (floor + the model's latency, rounded up to a frame); offline, after
`settle`, it is the silence at which the deciding check started, and the model's latency is measured apart.

Imports: numpy and this package only (no fastrtc, nothing of the call or the engines).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

import numpy as np

from components.listening import smart_turn
from components.listening.smart_turn import EndOfTurn
from components.listening.vad import RATE, VAD, WINDOW, SileroStream


@dataclass(frozen=True)
class TurnOptions:
    """The turn-taking policy. Defaults tuned on `bench/end_of_turn.py` (its output states the set's size)."""

    floor_ms: int = 300  # silence before the end-of-turn model is asked (200: more commas taken for ends)
    max_silence_ms: int = 1600  # silence that ends a turn whatever the model says
    interrupt_speech_ms: int = 896  # 28 windows of speech over the agent: an interruption (a backchannel is shorter)
    preroll_ms: int = 300  # audio before speech started kept in the turn (first syllable not clipped)
    max_turn_s: float = 20.0
    start_speech_ms: int = 64  # speech that opens an utterance: a click or a breath is shorter
    recheck_ms: int | None = None  # after "not yet", ask again after this much more silence (None: once a pause)
    complete_at: float = 0.5  # the model's probability from which a turn is complete
    fallback_silence_ms: int = 550  # without a model: the silence that ends a turn (today's VAD rule)


@dataclass(frozen=True)
class SpeechStarted:
    """The caller's voice began (an utterance opened)."""


@dataclass(frozen=True)
class Interruption:
    """Speech over the agent long enough to be a barge-in: cut the agent."""

    speech_ms: int


@dataclass(frozen=True)
class Backchannel:
    """Short speech over the agent that ended (はい, ええ, うん, uh-huh): no turn, no cut."""

    speech_ms: int


@dataclass(frozen=True)
class Pausing:
    """The caller paused long enough for the end-of-turn model to be asked: the utterance so far, for an engine that
    transcribes early. Numbered per stream; a later `Pausing` of the same utterance supersedes it."""

    number: int
    audio: np.ndarray  # int16 mono 16 kHz: the utterance, preroll included, up to this pause


@dataclass(frozen=True)
class TurnEnded:
    """The caller's turn is over."""

    audio: np.ndarray  # int16 mono 16 kHz: the utterance, preroll included, up to the decision
    speech_ms: int
    waited_ms: int  # silence heard after the last speech until the decision
    complete: float | None  # the model's probability; None if decided by a limit or without a model
    pause: int | None = None  # the `Pausing` whose audio holds every word of `audio` (only silence came since)


Heard = SpeechStarted | Interruption | Backchannel | Pausing | TurnEnded

WINDOW_MS = WINDOW * 1000 / RATE


def _windows(ms: float) -> int:
    """`ms` in 32 ms windows, rounded (at least one): the policy is applied window by window."""
    return max(1, round(ms / WINDOW_MS))


class _Check:
    """One question to the end-of-turn model, asked at `silence` windows of silence."""

    def __init__(self, task: asyncio.Task[float], silence: int) -> None:
        self.task = task
        self.silence = silence


class _Utterance:
    """What is known about the utterance in progress."""

    def __init__(self, start: int, over_agent: bool) -> None:
        self.start = start  # sample index (in the stream) where its audio begins, preroll included
        self.over_agent = over_agent
        self.interrupted = False
        self.speech = 0  # speech windows
        self.silence = 0  # silence windows since the last speech window
        self.agent_at_last_word = over_agent  # was the agent speaking at the last speech window?
        self.next_check = 0  # silence (windows) at which the model is asked next
        self.pause: int | None = None  # the last `Pausing` of this utterance, while only silence has followed it


class Ears:
    """One call's turn taking (see the module docstring). Not thread-safe: call it from the event loop."""

    def __init__(
        self,
        *,
        options: TurnOptions = TurnOptions(),
        end_of_turn: EndOfTurn | Literal["shared"] | None = "shared",
        vad: VAD | None = None,
    ) -> None:
        self.options = options
        self.end_of_turn = smart_turn.shared() if end_of_turn == "shared" else end_of_turn
        self.vad: VAD = vad if vad is not None else SileroStream()
        self._audio = bytearray()  # int16 samples of the stream from `_audio_start` on
        self._audio_start = 0
        self._heard = 0  # samples handed to the VAD so far: the stream's clock
        self._run = 0  # speech windows in a row while no utterance is open
        self._utterance: _Utterance | None = None
        self._check: _Check | None = None
        self._pauses = 0  # `Pausing` events so far
        self._floor = _windows(options.floor_ms)
        self._recheck = _windows(options.recheck_ms) if options.recheck_ms is not None else None
        self._max_silence = _windows(options.max_silence_ms)
        self._fallback = _windows(options.fallback_silence_ms)
        self._start_run = _windows(options.start_speech_ms)
        self._interrupt = _windows(options.interrupt_speech_ms)
        self._preroll = int(options.preroll_ms * RATE / 1000)
        self._max_turn = int(options.max_turn_s * RATE)

    def hear(self, pcm: np.ndarray, *, agent_speaking: bool) -> list[Heard]:
        """One frame of the caller's audio: int16 mono 16 kHz, any length (10-40 ms frames). Synchronous and cheap,
        called on the event loop. Never blocks on the end-of-turn model: it starts the model check on its executor
        and reports the result in the events of a later `hear` call (or of `settle`)."""
        samples = np.asarray(pcm).reshape(-1)
        if samples.dtype != np.int16:
            raise TypeError(f"Ears.hear takes int16 samples, not {samples.dtype}")
        heard = self._read_check()
        self._audio += samples.tobytes()
        first = self._heard // WINDOW  # index of the first window these samples may complete
        self._heard += samples.size
        for offset, speech in enumerate(self.vad.windows(samples)):
            heard += self._window(first + offset, speech, agent_speaking)
        if self._utterance is None:
            self._trim()
        return heard

    async def settle(self) -> list[Heard]:
        """Wait for a model check in flight and return what it decided (offline runs: the bench, tests)."""
        if self._check is None:
            return []
        await asyncio.wait([self._check.task])
        return self._read_check()

    def reset(self) -> None:
        """Forget the utterance in progress (e.g. the call's greeting starts). The VAD keeps its stream."""
        self._drop_check()
        self._utterance = None
        self._run = 0
        self._trim()

    @property
    def in_utterance(self) -> bool:
        return self._utterance is not None

    def _window(self, index: int, speech: bool, agent_speaking: bool) -> list[Heard]:
        utterance = self._utterance
        if utterance is None:
            self._run = self._run + 1 if speech else 0
            if self._run < self._start_run:
                return []
            start = (index + 1 - self._run) * WINDOW - self._preroll
            self._utterance = utterance = _Utterance(max(start, self._audio_start), agent_speaking)
            utterance.speech = self._run
            self._run = 0
            return [SpeechStarted(), *self._maybe_interrupt(utterance)]
        if speech:
            utterance.speech += 1
            utterance.silence = 0
            utterance.next_check = 0  # a new pause is judged afresh, from the floor
            utterance.pause = None  # words after the last `Pausing`: its audio is no longer the whole utterance
            utterance.agent_at_last_word = agent_speaking
            self._drop_check()
            heard = self._maybe_interrupt(utterance)
        else:
            utterance.silence += 1
            heard = self._after_silence(utterance)
        if not heard and self._heard - utterance.start >= self._max_turn:
            return [self._end(None)]
        return heard

    def _maybe_interrupt(self, utterance: _Utterance) -> list[Heard]:
        if utterance.over_agent and not utterance.interrupted and utterance.speech >= self._interrupt:
            utterance.interrupted = True
            return [Interruption(speech_ms=self._ms(utterance.speech))]
        return []

    def _after_silence(self, utterance: _Utterance) -> list[Heard]:
        """The policy, at each silent window of an open utterance."""
        if utterance.over_agent and not utterance.interrupted and utterance.agent_at_last_word:
            if utterance.silence < self._floor:
                return []
            self._utterance = None
            return [Backchannel(speech_ms=self._ms(utterance.speech))]
        if self.end_of_turn is None:
            return [self._end(None)] if utterance.silence >= self._fallback else []
        if utterance.silence >= self._max_silence:
            return [self._end(None)]
        if self._check is None and utterance.silence >= max(self._floor, utterance.next_check):
            return self._ask(utterance)
        return []

    def _ask(self, utterance: _Utterance) -> list[Heard]:
        pcm = self._samples(utterance.start)
        task = asyncio.get_running_loop().create_task(
            self.end_of_turn.complete(pcm.astype(np.float32) / 32768.0)  # type: ignore[union-attr]
        )
        self._check = _Check(task, utterance.silence)
        utterance.next_check = utterance.silence + self._recheck if self._recheck is not None else self._max_silence
        if utterance.pause is not None:
            return []  # a recheck in the same silence: the words are those of the last `Pausing`
        self._pauses += 1
        utterance.pause = self._pauses
        return [Pausing(self._pauses, pcm)]

    def _read_check(self) -> list[Heard]:
        """The answer of the check in flight, if it has come: the turn ends, or the utterance waits on."""
        check = self._check
        if check is None or not check.task.done():
            return []
        self._check = None
        if check.task.cancelled() or self._utterance is None:
            return []
        probability = check.task.result()  # a failing model raises here, in the engine's task, not silently
        if probability >= self.options.complete_at:
            return [self._end(probability)]
        return []

    def _end(self, probability: float | None) -> TurnEnded:
        utterance = self._utterance
        assert utterance is not None
        self._drop_check()
        self._utterance = None
        return TurnEnded(
            audio=self._samples(utterance.start),
            speech_ms=self._ms(utterance.speech),
            waited_ms=self._ms(utterance.silence),
            complete=probability,
            pause=utterance.pause,
        )

    def _drop_check(self) -> None:
        if self._check is not None:
            self._check.task.cancel()
            self._check = None

    def _samples(self, start: int) -> np.ndarray:
        """The stream's samples from `start` up to now."""
        offset = (start - self._audio_start) * 2
        return np.frombuffer(bytes(self._audio[offset:]), dtype=np.int16)

    def _trim(self) -> None:
        """Between utterances keep only what a new one's preroll and opening run may need."""
        keep = self._preroll + (self._start_run + 2) * WINDOW
        excess = self._heard - self._audio_start - keep
        if excess > 0:
            del self._audio[: excess * 2]
            self._audio_start += excess

    @staticmethod
    def _ms(windows: int) -> int:
        return int(round(windows * WINDOW_MS))
