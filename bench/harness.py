"""One benchmark level: N callers on a fresh server at once, every call logged, the server measured.

1. The server starts (`bench.servers`); the time until its page is served is kept.
2. One warm-up call (the first call loads code lazily), then the server's idle RSS is read.
3. N callers connect one after the other, so that each call's fake connection is known (the one that
   appeared after it connected), and hear their greeting.
4. Once all are greeted, all talk at once, each after a random delay under `SPREAD_S` so they are not in
   lock step: `rounds` times a question, the long answer, an interruption over it, the short answer.
   Meanwhile the CPU time of the server, of this process and of the fake is read, the server's RSS
   sampled, and this process's event-loop lag watched (the callers' stamps are as late as it).
5. Everyone hangs up, and the server side's stamps are added to each call's log.

A call that fails (a wait that times out, a connection that drops) is recorded as failed with its reason;
it never stops the level.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from bench import conversation as talk
from bench.caller import FRAME_S, Caller, OfferRefused, Voice
from bench.fake_process import FakeProcess
from bench.metrics import CallLog, Spoken
from bench.procstat import CpuWindow, LoopLag, PeakRss, ProcessMeter
from bench.servers import Target, running
from tests.browser import speech_wav

SPREAD_S = 2.0
QUIET_S = 0.6  # no audible packet for this long: the bot has finished speaking
GREETING_TIMEOUT_S = 30.0
ANSWER_TIMEOUT_S = 20.0
CONNECTION_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Speech:
    """The callers' voice and their two utterances: espeak-ng speech (via sox) in WAV files, Opus-encoded."""

    voice: Voice
    question: list[bytes]
    interruption: list[bytes]

    @classmethod
    def make(cls, workdir: Path) -> Speech:
        voice = Voice()
        return cls(
            voice,
            voice.encode(_spoken(talk.QUESTION, workdir / "question.wav")),
            voice.encode(_spoken(talk.INTERRUPTION, workdir / "interruption.wav")),
        )


def _spoken(text: str, path: Path) -> np.ndarray:
    speech_wav(text, path, pad_silence_s=0.0)  # 48 kHz mono, the utterance alone
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)


@dataclass
class LevelRun:
    """Everything one level of one target produced, before `report.summarise`."""

    target: str
    calls: int
    page_served_s: float | None = None
    logs: list[CallLog] = field(default_factory=list)
    server_cpu_percent: float | None = None
    harness_cpu_percent: float | None = None
    harness_lag_s: list[float] = field(default_factory=list)
    idle_rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    talk_s: float | None = None
    fake_problems: list[str] = field(default_factory=list)
    error: str | None = None


# ---- one call --------------------------------------------------------------------------------------------


def _reason(failure: BaseException) -> str:
    return str(failure) or type(failure).__name__


async def _quiet(caller: Caller, what: str) -> None:
    ear = caller.earpiece
    await ear.until(lambda: time.monotonic() - ear.last_audible >= QUIET_S, ANSWER_TIMEOUT_S, what)


async def _round(caller: Caller, speech: Speech, log: CallLog) -> None:
    """Ask, talk over the long answer once `BARGE_AFTER_S` of it was heard, listen to the short answer."""
    ear = caller.earpiece
    question = await caller.say(speech.question)
    log.spoken.append(Spoken("question", question.started, question.ended))
    await ear.until(lambda: ear.last_audible >= question.ended, ANSWER_TIMEOUT_S, "answer to the question")
    heard, enough = ear.audible_count, talk.BARGE_AFTER_S / FRAME_S
    await ear.until(lambda: ear.audible_count - heard >= enough, ANSWER_TIMEOUT_S, "long answer")
    interruption = await caller.say(speech.interruption)
    log.spoken.append(Spoken("interruption", interruption.started, interruption.ended))
    answerable = interruption.ended + talk.SILENCE_MS / 1000  # the model answers after its VAD's silence
    await ear.until(lambda: ear.last_audible >= answerable, ANSWER_TIMEOUT_S, "answer to the interruption")
    await _quiet(caller, "end of the short answer")


async def _converse(call: _Call, speech: Speech, rounds: int, gate: asyncio.Event, spread_s: float) -> CallLog:
    """One caller's side of the call: hear the greeting, wait for everyone, then talk `rounds` rounds."""
    log, ear = CallLog(call.caller.webrtc_id), call.caller.earpiece
    try:
        await ear.until(lambda: ear.audible_count > 0, GREETING_TIMEOUT_S, "greeting")
        await _quiet(call.caller, "end of the greeting")
    except Exception as failure:
        log.failure = _reason(failure)
    finally:
        call.greeted.set_result(None)
    if log.failure:
        return log
    await gate.wait()
    await asyncio.sleep(call.rng.uniform(0, spread_s))
    try:
        for turn in range(rounds):
            if turn:
                await asyncio.sleep(call.rng.uniform(0.2, 0.8))
            await _round(call.caller, speech, log)
    except Exception as failure:
        log.failure = _reason(failure)
    return log


# ---- placing the calls -----------------------------------------------------------------------------------


@dataclass
class _Call:
    """One level call: its caller, the fake connection it got (app only), and the task that runs it."""

    caller: Caller
    rng: random.Random
    greeted: asyncio.Future
    conn: int | None = None
    failure: str | None = None
    task: asyncio.Task | None = None

    async def log(self) -> CallLog:
        return await self.task if self.task is not None else CallLog(self.caller.webrtc_id, failure=self.failure)


async def _new_connection(fake: FakeProcess, known: set[int]) -> int | None:
    """The fake connection that appeared after `known` (the call just placed), if one does in time."""
    deadline = time.monotonic() + CONNECTION_TIMEOUT_S
    while time.monotonic() < deadline:
        if fresh := set(await asyncio.to_thread(fake.connections)) - known:
            return min(fresh)
        await asyncio.sleep(0.05)
    return None


async def _place(target: Target, url: str, client: httpx.AsyncClient, fake: FakeProcess | None, call: _Call) -> None:
    """Connect one caller; for the app, note which fake connection is its own (the one that appears now)."""
    known = set(await asyncio.to_thread(fake.connections)) if fake is not None else set()
    try:
        await asyncio.wait_for(call.caller.connect(url, client, **target.offer_fields), CONNECTION_TIMEOUT_S)
    except (OfferRefused, httpx.HTTPError, TimeoutError) as refused:
        call.failure = f"offer failed: {_reason(refused)}"
        call.greeted.set_result(None)
        return
    if fake is not None:
        call.conn = await _new_connection(fake, known)


async def _warm_up(target: Target, url: str, client: httpx.AsyncClient, voice: Voice) -> None:
    """One short call, so that lazily loaded code counts neither as a level call's memory nor its latency."""
    caller = Caller(f"{target.name}-warmup", voice)
    try:
        await asyncio.wait_for(caller.connect(url, client, **target.offer_fields), CONNECTION_TIMEOUT_S)
        await caller.earpiece.until(lambda: caller.earpiece.audible_count > 0, GREETING_TIMEOUT_S, "warm-up greeting")
    finally:
        await caller.hang_up()
    await asyncio.sleep(1.0)  # the server frees the call once it sees the peer connection close


def _add_server_stamps(calls: list[_Call], logs: list[CallLog], fake: FakeProcess | None) -> None:
    """Each call's answer starts and speech detections: the fake's stamps (app) or the floor's messages."""
    by_conn = {stamps.conn: stamps for stamps in fake.stamps()} if fake is not None else {}
    for call, log in zip(calls, logs, strict=True):
        log.heard = list(call.caller.earpiece.heard)
        if fake is None:
            messages = [message for _, message in call.caller.messages]
            log.answer_starts = [m["t"] for m in messages if m.get("bench") == "emit"]
            log.detections = [m["t"] for m in messages if m.get("bench") == "speech_started"]
        elif call.conn in by_conn:
            log.answer_starts = by_conn[call.conn].answer_starts
            log.detections = by_conn[call.conn].speech_started


# ---- the level -------------------------------------------------------------------------------------------


async def run_level(target: Target, calls: int, rounds: int, speech: Speech, workdir: Path, seed: int) -> LevelRun:
    """Run `calls` concurrent calls of `rounds` rounds against a freshly started `target`."""
    run = LevelRun(target.name, calls)
    async with (
        httpx.AsyncClient(timeout=30) as client,
        running(target, calls, rounds, workdir / "logs", client) as server,
    ):
        run.page_served_s = server.page_served_s
        await _warm_up(target, server.url, client, speech.voice)
        meter = ProcessMeter(server.pid)
        run.idle_rss_bytes = meter.rss_bytes()
        harness = [ProcessMeter(os.getpid()), *([ProcessMeter(server.fake.pid)] if server.fake else [])]
        gate, placed = asyncio.Event(), []
        spread_s = SPREAD_S if calls > 1 else 0.0
        with PeakRss(meter) as peak:
            try:
                for index in range(calls):
                    caller = Caller(f"{target.name}{calls}x{index}", speech.voice)
                    call = _Call(caller, random.Random(seed * 1000 + index), asyncio.get_running_loop().create_future())
                    placed.append(call)
                    await _place(target, server.url, client, server.fake, call)
                    if call.failure is None:
                        call.task = asyncio.create_task(_converse(call, speech, rounds, gate, spread_s))
                await asyncio.gather(*(call.greeted for call in placed))
                window = CpuWindow(meter, *harness)
                gate.set()
                async with LoopLag() as lag:
                    logs = list(await asyncio.gather(*(call.log() for call in placed)))
                run.harness_lag_s = lag.lags_s
                run.talk_s = time.monotonic() - window.started
                cpu = window.percent()
                run.server_cpu_percent, run.harness_cpu_percent = cpu[0], sum(cpu[1:])
            finally:
                await asyncio.gather(*(call.caller.hang_up() for call in placed))
        run.peak_rss_bytes = peak.peak
        _add_server_stamps(placed, logs, server.fake)
        run.logs = logs
        if server.fake is not None:
            run.fake_problems = server.fake.problems()
    return run
