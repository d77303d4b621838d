"""One benchmark call from the caller's side: what it says (encoded once for its transport) and when.

A call hears the greeting, waits for every other call to be greeted, then talks `rounds` rounds, each after a
random delay so the calls are not in lock step:

1. the question, then `BARGE_AFTER_S` of the long answer;
2. the interruption, spoken over the long answer (barge-in), then `BURST_AFTER_S` of the short answer;
3. the burst, `BURST_MS` of a speech-like sound in the middle of the short answer (a false interruption),
   then quiet: the answer has ended (or was cut).

A wait that times out, or a microphone that stops because the call closed, fails the call with its reason;
the level goes on.
"""

from __future__ import annotations

import asyncio
import random
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np

from bench import conversation as talk
from bench.caller import RATE, Ear, Utterance, Voice
from bench.metrics import CallLog, Spoken
from bench.phone_caller import PHONE_RATE, PhoneVoice
from tests.browser import speech_wav

QUIET_S = 0.6  # no audible packet for this long: the bot has finished speaking
BURST_QUIET_S = 1.2  # after a burst, longer: a bot may pause, then go on with its answer
GREETING_TIMEOUT_S = 30.0
ANSWER_TIMEOUT_S = 20.0
FADE_MS = 5


class AnyCaller(Protocol):
    """What the conversation needs of a caller: a WebRTC `Caller` or a `PhoneCaller`."""

    webrtc_id: str
    earpiece: Ear
    messages: list[tuple[float, dict[str, Any]]]

    async def connect(self, base_url: str, client: httpx.AsyncClient, **fields: Any) -> None: ...
    async def say(self, frames: list[Any]) -> Utterance: ...
    async def hang_up(self) -> None: ...


@dataclass(frozen=True)
class Speech:
    """The callers' voice and their three utterances (espeak-ng speech, via sox), encoded for one transport."""

    voice: Voice | PhoneVoice
    question: list[Any]
    interruption: list[Any]
    burst: list[Any]

    @classmethod
    def make(cls, workdir: Path, transport: str = "webrtc") -> Speech:
        """Opus packets at 48 kHz for "webrtc", mu-law payloads at 8 kHz for "phone"."""
        voice, rate = (Voice(), RATE) if transport == "webrtc" else (PhoneVoice(), PHONE_RATE)
        return cls(
            voice,
            voice.encode(_spoken(talk.QUESTION, workdir / f"question-{rate}.wav", rate)),
            voice.encode(_spoken(talk.INTERRUPTION, workdir / f"interruption-{rate}.wav", rate)),
            voice.encode(_burst(workdir / f"burst-{rate}.wav", rate)),
        )

    def utterance_ms(self) -> dict[str, int]:
        return {kind: len(getattr(self, kind)) * 20 for kind in ("question", "interruption", "burst")}


def _spoken(text: str, path: Path, rate: int) -> np.ndarray:
    speech_wav(text, path, pad_silence_s=0.0, rate=rate)  # mono, the utterance alone
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)


def _burst(path: Path, rate: int) -> np.ndarray:
    """The loudest `BURST_MS` of a spoken "ah", faded in and out over `FADE_MS`."""
    sound = _spoken(talk.BURST_SOUND, path, rate).astype(np.float64)
    size, fade = rate * talk.BURST_MS // 1000, rate * FADE_MS // 1000
    energy = np.convolve(sound * sound, np.ones(size), mode="valid")
    burst = sound[int(np.argmax(energy)) :][:size].copy()
    ramp = np.linspace(0.0, 1.0, fade)
    burst[:fade] *= ramp
    burst[-fade:] *= ramp[::-1]
    return burst.astype(np.int16)


def reason(failure: BaseException) -> str:
    return str(failure) or type(failure).__name__


async def _quiet(ear: Ear, what: str, quiet_s: float = QUIET_S) -> None:
    await ear.until(lambda: time.monotonic() - ear.last_audible >= quiet_s, ANSWER_TIMEOUT_S, what)


async def _hear(ear: Ear, seconds: float, what: str) -> None:
    """Wait until `seconds` more of audible audio have reached the caller."""
    heard = ear.audible_s
    await ear.until(lambda: ear.audible_s - heard >= seconds - 1e-6, ANSWER_TIMEOUT_S, what)


async def _say(caller: AnyCaller, frames: list[Any], kind: str, log: CallLog) -> Utterance:
    utterance = await caller.say(frames)
    assert utterance.started is not None and utterance.ended is not None
    log.spoken.append(Spoken(kind, utterance.started, utterance.ended))
    return utterance


async def _round(caller: AnyCaller, speech: Speech, log: CallLog) -> None:
    """Ask; talk over the long answer; sound a burst in the short answer; wait for it to end."""
    ear = caller.earpiece
    question = await _say(caller, speech.question, "question", log)
    await ear.until(lambda: ear.last_audible >= question.ended, ANSWER_TIMEOUT_S, "answer to the question")
    await _hear(ear, talk.BARGE_AFTER_S, "long answer")
    interruption = await _say(caller, speech.interruption, "interruption", log)
    answerable = (interruption.ended or 0) + talk.SILENCE_MS / 1000  # the model answers after its VAD's silence
    await ear.until(lambda: ear.last_audible >= answerable, ANSWER_TIMEOUT_S, "answer to the interruption")
    await _hear(ear, talk.BURST_AFTER_S, "short answer")
    await _say(caller, speech.burst, "burst", log)
    await _quiet(ear, "end of the short answer", BURST_QUIET_S)


async def greeted(caller: AnyCaller) -> None:
    """Hear the greeting through."""
    ear = caller.earpiece
    await ear.until(lambda: ear.audible_count > 0, GREETING_TIMEOUT_S, "greeting")
    await _quiet(ear, "end of the greeting")


async def converse(
    caller: AnyCaller,
    speech: Speech,
    rounds: int,
    rng: random.Random,
    gate: asyncio.Event,
    greeting: asyncio.Future,
    spread_s: float,
) -> CallLog:
    """One caller's side of the call: hear the greeting (then resolve `greeting`), wait for `gate`, talk."""
    log = CallLog(caller.webrtc_id)
    try:
        await greeted(caller)
    except Exception as failure:
        log.failure = reason(failure)
    finally:
        greeting.set_result(None)
    if log.failure:
        return log
    await gate.wait()
    await asyncio.sleep(rng.uniform(0, spread_s))
    try:
        for turn in range(rounds):
            if turn:
                await asyncio.sleep(rng.uniform(0.2, 0.8))
            await _round(caller, speech, log)
    except Exception as failure:
        log.failure = reason(failure)
    return log
