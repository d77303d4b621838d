"""One benchmark level: N callers on a fresh server at once, every call logged, the server measured.

1. The server starts (`bench.servers`); the time until its page is served is kept.
2. One warm-up call (the first call loads code lazily), then the server's idle RSS is read.
3. N callers (WebRTC peers, or Twilio Media Streams for the phone) connect one after the other, so that
   each call's fake connection is known (the one that appeared after it connected), and hear their greeting.
4. Once all are greeted, all talk at once (`bench.calls`), each after a random delay under `SPREAD_S` so
   they are not in lock step. Meanwhile the CPU time of the server, of this process and of the fake is
   read, and the whole machine's (so that other work on it shows), the server's RSS sampled, and this
   process's event-loop lag watched (the callers' stamps are as late as it).
5. Everyone hangs up, and the server side's stamps are added to each call's log: the fake's for our app,
   the floor's own (over the data channel on WebRTC, from `GET /bench/stamps` on the phone).

A call that fails (a wait that times out, a connection that drops) is recorded as failed with its reason;
it never stops the level.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.caller import Caller, OfferRefused, Voice, from_address
from bench.calls import AnyCaller, Speech, converse, reason
from bench.fake_process import FakeProcess
from bench.metrics import CallLog
from bench.phone_caller import PhoneCaller, PhoneVoice
from bench.procstat import CpuWindow, LoopLag, MachineMeter, PeakRss, ProcessMeter
from bench.servers import RunningServer, Target, running

SPREAD_S = 2.0
CONNECTION_TIMEOUT_S = 15.0
WARM_UP_GREETING_S = 30.0


@dataclass
class LevelRun:
    """Everything one level of one target produced, before `report.summarise`."""

    target: str
    calls: int
    page_served_s: float | None = None
    logs: list[CallLog] = field(default_factory=list)
    server_cpu_percent: float | None = None
    harness_cpu_percent: float | None = None
    other_cpu_percent: float | None = None  # every other process on the machine
    harness_lag_s: list[float] = field(default_factory=list)
    idle_rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    talk_s: float | None = None
    fake_problems: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class _Call:
    """One level call: its caller, the fake connection it got (app only), and the task that runs it."""

    caller: AnyCaller
    rng: random.Random
    greeted: asyncio.Future
    conn: int | None = None
    failure: str | None = None
    task: asyncio.Task | None = None

    async def log(self) -> CallLog:
        return await self.task if self.task is not None else CallLog(self.caller.webrtc_id, failure=self.failure)


def _caller(target: Target, name: str, speech: Speech) -> Caller | PhoneCaller:
    if target.transport == "phone":
        assert isinstance(speech.voice, PhoneVoice)
        return PhoneCaller(name, speech.voice)
    assert isinstance(speech.voice, Voice)
    return Caller(name, speech.voice)


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
    except (OfferRefused, httpx.HTTPError, OSError, TimeoutError) as refused:
        call.failure = f"offer failed: {reason(refused)}"
        call.greeted.set_result(None)
        return
    if fake is not None:
        call.conn = await _new_connection(fake, known)


async def _warm_up(target: Target, url: str, client: httpx.AsyncClient, speech: Speech) -> None:
    """One short call, so that lazily loaded code counts neither as a level call's memory nor its latency."""
    caller = _caller(target, f"{target.bench}-{target.name}-warmup", speech)
    try:
        await asyncio.wait_for(caller.connect(url, client, **target.offer_fields), CONNECTION_TIMEOUT_S)
        ear = caller.earpiece
        await ear.until(lambda: ear.audible_count > 0, WARM_UP_GREETING_S, "warm-up greeting")
    finally:
        await caller.hang_up()
    await asyncio.sleep(1.0)  # the server frees the call once it sees the peer connection close


async def _add_server_stamps(
    target: Target, server: RunningServer, calls: list[_Call], logs: list[CallLog], client: httpx.AsyncClient
) -> None:
    """Each call's answer starts and speech detections: the fake's stamps (app) or the floor's."""
    by_conn = {stamps.conn: stamps for stamps in server.fake.stamps()} if server.fake is not None else {}
    floor_phone = (await client.get(f"{server.url}/bench/stamps")).json() if target.transport == "phone" else {}
    for call, log in zip(calls, logs, strict=True):
        caller = call.caller
        log.heard = list(caller.earpiece.heard)
        if isinstance(caller, PhoneCaller):
            log.clears = list(caller.earpiece.clears)
        if server.fake is None and isinstance(caller, PhoneCaller):
            stamps = floor_phone.get(caller.stream_sid, {})
            log.answer_starts, log.detections = stamps.get("emit", []), stamps.get("speech_started", [])
        elif server.fake is None:
            messages = [message for _, message in caller.messages]
            log.answer_starts = [m["t"] for m in messages if m.get("bench") == "emit"]
            log.detections = [m["t"] for m in messages if m.get("bench") == "speech_started"]
        elif call.conn in by_conn:
            stamps = by_conn[call.conn]
            log.answer_starts, log.detections = stamps.answer_starts, stamps.speech_started
            log.turns, log.replies, log.stops = stamps.turns, stamps.replies, stamps.model_stops
        if server.fake is not None and target.transport == "webrtc" and log.failure is None:
            log.card_turns = await _card_turns(client, server.url, caller.webrtc_id)
            if log.card_turns is not None:
                log.cost_usd = sum(turn.get("cost_usd") or 0.0 for turn in log.card_turns)
            log.card_s = (log.spoken[-1].ended - log.spoken[0].started) if log.spoken else None


async def _card_turns(client: httpx.AsyncClient, url: str, webrtc_id: str) -> list[dict] | None:
    """The turns the call's card showed at its end (figures, cost): the live feed keeps an ended call's last view
    a while."""
    try:
        where = {"params": {"webrtc_id": webrtc_id}, "headers": from_address(webrtc_id), "timeout": 10}
        async with client.stream("GET", f"{url}/outputs", **where) as feed:
            async for line in feed.aiter_lines():
                if line.startswith("data:"):
                    return list(json.loads(line[5:]).get("turns", []))
    except httpx.HTTPError:
        return None
    return None


async def run_level(target: Target, calls: int, rounds: int, speech: Speech, workdir: Path, seed: int) -> LevelRun:
    """Run `calls` concurrent calls of `rounds` rounds against a freshly started `target`."""
    run = LevelRun(target.name, calls)
    async with (
        httpx.AsyncClient(timeout=30) as client,
        running(target, calls, rounds, workdir / "logs", client) as server,
    ):
        run.page_served_s = server.page_served_s
        await _warm_up(target, server.url, client, speech)
        meter = ProcessMeter(server.pid)
        run.idle_rss_bytes = meter.rss_bytes()
        harness = [ProcessMeter(os.getpid()), *([ProcessMeter(server.fake.pid)] if server.fake else [])]
        gate, placed = asyncio.Event(), []
        spread_s = SPREAD_S if calls > 1 else 0.0
        with PeakRss(meter) as peak:
            try:
                for index in range(calls):
                    caller = _caller(target, f"{target.bench}-{target.name}{calls}x{index}", speech)
                    call = _Call(caller, random.Random(seed * 1000 + index), asyncio.get_running_loop().create_future())
                    placed.append(call)
                    await _place(target, server.url, client, server.fake, call)
                    if call.failure is None:
                        task = converse(caller, speech, rounds, call.rng, gate, call.greeted, spread_s)
                        call.task = asyncio.create_task(task)
                await asyncio.gather(*(call.greeted for call in placed))
                window = CpuWindow(meter, *harness, MachineMeter())
                gate.set()
                async with LoopLag() as lag:
                    logs = list(await asyncio.gather(*(call.log() for call in placed)))
                run.harness_lag_s = lag.lags_s
                run.talk_s = time.monotonic() - window.started
                cpu = window.percent()
                run.server_cpu_percent, run.harness_cpu_percent = cpu[0], sum(cpu[1:-1])
                run.other_cpu_percent = max(0.0, cpu[-1] - cpu[0] - run.harness_cpu_percent)
            finally:
                await asyncio.gather(*(call.caller.hang_up() for call in placed))
        run.peak_rss_bytes = peak.peak
        await _add_server_stamps(target, server, placed, logs, client)
        run.logs = logs
        if server.fake is not None:
            run.fake_problems = server.fake.problems()
    return run
