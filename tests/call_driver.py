"""Plays fastrtc's part around one voice handler, so handler tests read like a phone call.

fastrtc gives a handler microphone frames through `receive`, pulls `emit` in a loop into an output queue that
the caller's speaker plays at real time, forwards `AdditionalOutputs` to the UI, ends on `CloseStream`, and
hands the handler a `clear_queue` callback for barge-in, which drops what the queue has not played yet.
`CallDriver` does exactly that and records what a caller and the screen would get: audio (with timestamps, to
see when the agent goes quiet), views, closing messages and the data-channel messages (errors and warnings) the
browser would show. With `phone_line`, `telephone` makes the caller's voice sound as it does over a phone line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastrtc import AdditionalOutputs, CloseStream

from tests.speech import Echo, speech_pcm


@dataclass
class Heard:
    """One chunk of agent audio as it was handed to the caller."""

    at: float
    samples: int
    rms: float


class DataChannel:
    """Collects what fastrtc would send to the browser over the data channel."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def send(self, message: str) -> None:
        self.messages.append(message)


@dataclass
class CallDriver:
    handler: Any
    heard: list[Heard] = field(default_factory=list)
    views: list[dict] = field(default_factory=list)
    closed: str | None = None
    cleared: int = 0
    dropped_ms: float = 0.0  # of audio handed over that a clear kept from the caller
    channel: DataChannel = field(default_factory=DataChannel)
    _mic: deque = field(default_factory=deque)
    _out: deque = field(default_factory=deque)  # fastrtc's output queue: handed over, not yet played
    _tasks: list[asyncio.Task] = field(default_factory=list)
    echo: Echo | None = None  # a handset that plays the agent back into its microphone
    phone_line: bool = False  # the caller's voice arrives over a phone line

    async def __aenter__(self) -> CallDriver:
        self.handler._loop = asyncio.get_running_loop()
        self.handler._clear_queue = self._clear_queue
        self.handler.set_channel(self.channel)
        self._tasks = [
            asyncio.create_task(self._start_up()),
            asyncio.create_task(self._player()),
            asyncio.create_task(self._speaker()),
            asyncio.create_task(self._microphone()),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.handler.shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def rate(self) -> int:
        """The rate of the agent's audio (24 kHz, or 8 kHz for an engine that keeps a phone call's rate)."""
        return self.handler.output_sample_rate

    def _clear_queue(self) -> None:
        """fastrtc's `clear_queue`: what was handed over but not yet played is dropped."""
        self.cleared += 1
        self.dropped_ms += sum(pcm.size for pcm in self._out) * 1000 / self.rate
        self._out.clear()

    # fastrtc's calls into the handler (an async handler's, on the event loop)
    async def _start_up(self) -> None:
        await self.handler.start_up()

    async def _emit(self) -> Any:
        return await self.handler.emit()

    async def _receive(self, frame: tuple[int, np.ndarray]) -> None:
        await self.handler.receive(frame)

    def _speech(self, text: str, rate: int) -> np.ndarray:
        pcm = speech_pcm(text, rate)
        return telephone(pcm, rate) if self.phone_line else pcm

    async def _player(self) -> None:
        while self.closed is None:
            out = await self._emit()
            if isinstance(out, AdditionalOutputs):
                self.views.append(out.args[0].model_dump(mode="json"))  # what the page and the feed get
            elif isinstance(out, CloseStream):
                self.closed = out.msg
            elif out is not None:
                rate, pcm = out
                assert rate == self.rate and pcm.dtype == np.int16
                self._out.append(pcm)

    async def _speaker(self) -> None:
        """The caller's speaker: plays the output queue in real time, one chunk after the other."""
        ends = 0.0
        while True:
            if not self._out:
                await asyncio.sleep(0.005)
                continue
            pcm = self._out.popleft()
            starts = max(time.monotonic(), ends)
            await asyncio.sleep(starts - time.monotonic())
            rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0
            self.heard.append(Heard(starts, pcm.size, rms))
            if self.echo is not None:
                self.echo.played(starts, pcm, self.rate)
            ends = starts + pcm.size / self.rate

    async def _microphone(self) -> None:
        """A live microphone at the handler's input rate: 20 ms frames in real time, silence between words."""
        rate = self.handler.input_sample_rate
        frame = rate // 50
        silence = np.zeros((1, frame), dtype=np.int16)
        next_at = time.monotonic()
        while True:
            chunk = self._mic.popleft() if self._mic else silence
            if self.echo is not None:
                chunk = self.echo.into(chunk, time.monotonic())
            await self._receive((rate, chunk))
            next_at += frame / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    # ---- what the caller does --------------------------------------------------------------------------

    async def say(self, text: str) -> None:
        """Speak `text` (espeak-ng) into the microphone and return once it has all been sent."""
        rate = self.handler.input_sample_rate
        frame = rate // 50
        pcm = self._speech(text, rate)
        pad = (-pcm.size) % frame
        self._mic.extend(np.concatenate([pcm, np.zeros(pad, dtype=np.int16)]).reshape(-1, 1, frame))
        while self._mic:
            await asyncio.sleep(0.02)

    async def noise(self, ms: int, dbfs: float = -20.0, voiced: bool = False) -> None:
        """A burst into the microphone, loud but no words: noise (a door, a click), or `voiced`, the loudest `ms`
        of a spoken "ah" (a cough, an "uh", which a speech detector may well take for the start of a word)."""
        rate = self.handler.input_sample_rate
        frame = rate // 50
        size = rate * ms // 1000
        if voiced:
            sound = speech_pcm("ah", rate).astype(np.float64)
            start = int(np.argmax(np.convolve(sound * sound, np.ones(size), mode="valid")))
            samples = sound[start : start + size]
        else:
            samples = np.random.default_rng(ms).standard_normal(size)
        samples *= 32768 * 10 ** (dbfs / 20) / np.sqrt(np.mean(samples**2))
        pcm = np.clip(samples, -32768, 32767).astype(np.int16)
        pad = (-pcm.size) % frame
        self._mic.extend(np.concatenate([pcm, np.zeros(pad, dtype=np.int16)]).reshape(-1, 1, frame))
        while self._mic:
            await asyncio.sleep(0.02)

    async def until(self, predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; last view: {self.view}")

    async def until_quiet(self, quiet_s: float = 0.4, timeout: float = 20.0) -> None:
        """Wait until the agent has said nothing for `quiet_s` (its audio drained)."""
        await self.until(
            lambda: not self.heard or time.monotonic() - self.heard[-1].at > quiet_s, timeout, "the agent to finish"
        )

    async def greeting(self) -> str:
        line = await self.until(lambda: self.agent_lines(final=True), what="the greeting")
        await self.until_quiet()
        return line[0]

    async def turn(self, text: str, timeout: float = 20.0) -> str:
        """Say something once the agent is quiet, then wait for its spoken answer to finish; return the answer."""
        await self.until_quiet()
        before = len(self.lines("assistant"))  # every line, so one cut after it was final still counts once
        await self.say(text)
        last = await self.until(
            lambda: len(lines := self.lines("assistant")) > before and lines[-1]["status"] == "final" and lines[-1],
            timeout,
            f"an answer to {text!r}",
        )
        await self.until_quiet()
        return last["text"]

    # ---- what the screen shows ---------------------------------------------------------------------------

    @property
    def view(self) -> dict:
        return self.views[-1] if self.views else {}

    def lines(self, role: str | None = None) -> list[dict]:
        return [line for line in self.view.get("transcript", []) if role is None or line["role"] == role]

    def agent_lines(self, final: bool = False) -> list[str]:
        return [line["text"] for line in self.lines("assistant") if not final or line["status"] == "final"]

    @property
    def card(self) -> dict:
        return self.view.get("reservation", {})

    def audible_ms(self, since: float = 0.0, threshold: float = 100.0) -> float:
        return sum(h.samples for h in self.heard if h.at >= since and h.rms > threshold) * 1000 / self.rate


def telephone(pcm: np.ndarray, rate: int) -> np.ndarray:
    """What a phone line does to speech: 8 kHz, 8-bit mu-law, then back up to `rate` (as fastrtc resamples it)."""
    x = pcm.astype(np.float64) / 32768.0
    x8 = x[: x.size // 2 * 2].reshape(-1, 2).mean(axis=1) if rate == 16_000 else x
    mu = 255.0
    coded = np.round(np.sign(x8) * np.log1p(mu * np.abs(x8)) / np.log1p(mu) * 127) / 127
    decoded = np.sign(coded) * ((1 + mu) ** np.abs(coded) - 1) / mu
    back = np.interp(np.arange(decoded.size * 2) / 2, np.arange(decoded.size), decoded)
    return np.clip(back * 32768.0, -32768, 32767).astype(np.int16)


# ---- an engine, as the shared call sees one ---------------------------------------------------------------


@dataclass
class FakeVoice:
    """An engine as the call sees it (`components.call.call.Voice`): records what it is asked to say, can be made
    busy speaking, and counts the hang-ups."""

    said: list[str] = field(default_factory=list)
    speaking: bool = False
    hung_up: int = 0
    can_speak: bool = True

    async def say_now(self, instructions: str) -> bool:
        self.said.append(instructions)
        return self.can_speak

    def busy(self) -> bool:
        return self.speaking

    async def hang_up(self) -> None:
        self.hung_up += 1


@dataclass
class Page:
    """fastrtc's data channel to the browser, as a call's `notify` sees it: the toasts the page would show."""

    messages: list[dict] = field(default_factory=list)

    async def send(self, message: str) -> None:
        self.messages.append(json.loads(message))
