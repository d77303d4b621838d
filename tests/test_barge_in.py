"""Local barge-in: the caller's first tens of ms of speech pause the agent, confirmed speech cuts it, a cough lets it
go on; the playout takes back what was not heard so that nothing is lost; and on the phone a turn the engine
heard over the agent is its echo unless the caller proves otherwise. Driven frame by frame, as an
engine's `receive` does, against a real event loop and a real `Playout` on a controlled clock."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from components.call.barge_in import BargeIn, level_dbfs
from components.call.echo import EchoCheck
from components.engines.playout import Playout
from components.settings import BargeInSettings, Settings
from tests.virtual_clock import VirtualClock

RATE = 24_000
FRAME = RATE // 50  # 20 ms


def tone(ms: int, dbfs: float, seed: int = 0) -> np.ndarray:
    """Noise-like audio at a given RMS level (dB below full scale)."""
    rng = np.random.default_rng(seed)
    samples = rng.standard_normal(RATE * ms // 1000)
    samples *= 32768 * 10 ** (dbfs / 20) / np.sqrt(np.mean(samples**2))
    return np.clip(samples, -32768, 32767).astype(np.int16)


class Agent:
    """What the barge-in's hooks do to an engine, recorded."""

    def __init__(self) -> None:
        self.speaking = True
        self.events: list[str] = []
        self.playing_dbfs = -120.0

    def cut(self) -> None:
        self.events.append("cut")
        self.speaking = False  # its answer is gone: what the caller says next is an ordinary turn

    def hooks(self) -> dict:
        return {
            "speaking": lambda: self.speaking,
            "pause": lambda: self.events.append("pause"),
            "resume": lambda: self.events.append("resume"),
            "cut": self.cut,
            "played_dbfs": lambda: self.playing_dbfs,
        }


async def caller(barge: BargeIn, *segments: tuple[int, float]) -> None:
    """The caller's microphone, in 20 ms frames on the barge-in's (virtual) clock: (ms, level) segments; a level of
    None is silence."""
    for ms, dbfs in segments:
        audio = tone(ms, dbfs) if dbfs is not None else np.zeros(RATE * ms // 1000, dtype=np.int16)
        for start in range(0, audio.size, FRAME):
            barge.hear(audio[start : start + FRAME], RATE)
            await barge.clock.advance(FRAME / RATE)


def new_barge_in(agent: Agent, echo_guard: bool = False, settings: BargeInSettings | None = None) -> BargeIn:
    clock = VirtualClock()
    return BargeIn(echo_guard=echo_guard, settings=settings or BargeInSettings(), clock=clock, **agent.hooks())


def run(agent: Agent, *segments, echo_guard: bool = False, settings: BargeInSettings | None = None) -> BargeIn:
    async def main() -> BargeIn:
        barge = new_barge_in(agent, echo_guard, settings)
        await caller(barge, *segments)
        await barge.clock.advance(0.05)
        return barge

    return asyncio.run(main())


def test_the_caller_speaking_pauses_the_agent_at_once_and_confirmed_speech_cuts_it() -> None:
    agent = Agent()
    barge = run(agent, (600, -22.0))
    assert agent.events == ["pause", "cut"]
    assert (barge.pauses, barge.cuts, barge.resumes) == (1, 1, 0)


def test_a_cough_pauses_the_agent_then_lets_it_go_on_where_it_was() -> None:
    agent = Agent()
    barge = run(agent, (150, -22.0), (700, None))
    assert agent.events == ["pause", "resume"]
    assert (barge.cuts, barge.resumes) == (0, 1)


def test_words_with_pauses_between_them_still_confirm_within_the_window() -> None:
    agent = Agent()
    run(agent, (120, -24.0), (60, None), (160, -24.0), (400, None))
    assert agent.events == ["pause", "cut"]


def test_speech_still_going_after_the_confirm_time_cuts_though_its_syllables_are_only_half_loud() -> None:
    agent = Agent()
    syllables = [(50, -26.0), (70, None)] * 8  # 50 ms voiced, 70 ms between: 400 ms of loud in 960 ms
    run(agent, *syllables, (400, None))
    assert agent.events == ["pause", "cut"]


def test_a_short_word_whose_edges_dip_under_the_threshold_still_confirms_but_cannot_start_a_pause() -> None:
    agent = Agent()
    # "Stop," through a browser's gain control: 40 ms over the threshold, a dip of a few dB, 180 ms over, a fading
    # tail; only 220 ms is over -40 dBFS, 260 ms is within a few dB of it
    run(agent, (40, -30.0), (20, -43.0), (180, -30.0), (20, -43.0), (700, None))
    assert agent.events == ["pause", "cut"]
    quiet = Agent()
    run(quiet, (600, -43.0))  # the same level never starts a pause on its own
    assert quiet.events == []


def test_a_burst_that_stops_is_not_confirmed_however_loud_it_was() -> None:
    agent = Agent()
    run(agent, (200, -10.0), (800, None))  # loud, but over before the confirm time
    assert agent.events == ["pause", "resume"]


def test_nothing_happens_while_the_agent_is_quiet_or_the_caller_is() -> None:
    quiet_agent = Agent()
    quiet_agent.speaking = False
    run(quiet_agent, (600, -22.0))  # an ordinary turn: the engine's own turn-taking hears it
    assert quiet_agent.events == []
    agent = Agent()
    run(agent, (800, -65.0))  # a quiet room
    assert agent.events == []


def test_on_the_phone_the_echo_of_the_agents_voice_does_not_trigger_it_but_speech_over_it_does() -> None:
    agent = Agent()
    agent.playing_dbfs = -16.0  # the agent is talking loudly
    run(agent, (600, -34.0), echo_guard=True)  # its echo comes back 18 dB down
    assert agent.events == []
    run(agent, (600, -20.0), echo_guard=True)  # the caller talking over it
    assert agent.events == ["pause", "cut"]
    assert not agent.speaking
    browser = Agent()
    browser.playing_dbfs = -16.0
    run(browser, (600, -34.0), echo_guard=False)  # a browser cancels echo: that level is a voice
    assert browser.events == ["pause", "cut"]


def test_the_engines_own_evidence_confirms_a_pause_at_once() -> None:
    agent = Agent()

    async def main() -> None:
        barge = new_barge_in(agent)
        await caller(barge, (60, -22.0))
        assert barge.paused
        assert barge.confirm()
        await barge.clock.advance(0.6)
        assert not barge.paused

    asyncio.run(main())
    assert agent.events == ["pause", "cut"]


def test_the_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BARGE_IN_RESUME_MS", "300")
    monkeypatch.setenv("BARGE_IN_ONSET_MS", "60")
    settings = Settings.load().agent.barge_in
    assert (settings.resume_ms, settings.onset_ms, settings.confirm_ms) == (300, 60, 250)
    monkeypatch.setenv("BARGE_IN_RESUME_MS", "soon")
    with pytest.raises(ValueError, match="BARGE_IN_RESUME_MS"):
        Settings.load()
    assert level_dbfs(tone(100, -20.0)) == pytest.approx(-20.0, abs=0.1)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_paused_playout_takes_back_what_was_not_heard_and_resumes_from_there() -> None:
    clock = Clock()
    playout = Playout(chunk_ms=40, lead_s=0.12, clock=clock)
    audio = np.arange(RATE, dtype=np.int16)  # one second, every sample different

    async def main() -> tuple[list[np.ndarray], list[np.ndarray]]:
        playout.push("a", audio)
        first = [await playout.next_chunk() for _ in range(4)]  # 160 ms handed over at t=0
        clock.now = 0.05  # the listener has heard 50 ms
        playout.pause()
        assert playout.played_ms("a") == 50 and playout.paused and playout.speaking
        assert await playout.next_chunk(timeout=0.01) is None  # nothing comes out while paused
        playout.resume()
        rest = []
        while (chunk := await playout.next_chunk(timeout=0.01)) is not None:
            rest.append(chunk)
            clock.now += 0.04
        return first, rest

    first, rest = asyncio.run(main())
    heard = np.concatenate([np.concatenate(first)[: RATE * 50 // 1000], *rest])
    assert np.array_equal(heard, audio)  # every sample exactly once, in order: nothing lost, nothing repeated


def test_a_cut_after_a_pause_reports_what_was_heard_when_the_caller_started() -> None:
    clock = Clock()
    playout = Playout(chunk_ms=40, lead_s=0.12, clock=clock)

    async def main() -> None:
        playout.push("a", np.ones(RATE, dtype=np.int16))
        for _ in range(4):
            await playout.next_chunk()
        clock.now = 0.07
        playout.pause()
        clock.now = 0.4  # the confirmation comes later; nothing more was heard meanwhile
        cut = playout.clear()
        assert cut is not None and (cut.item_id, cut.played_ms, cut.received_ms) == ("a", 70, 1000)
        assert not playout.speaking and not playout.paused

    asyncio.run(main())


def test_a_turn_heard_over_the_agent_on_the_phone_is_echo_unless_the_caller_goes_on_or_is_heard_locally() -> None:
    echo = EchoCheck(threshold_dbfs=-40.0)
    echo.suspect("item_1")
    for _ in range(50):  # a second of the agent's voice leaking back
        echo.hear(tone(20, -30.0), RATE, agent_speaking=True)
    for _ in range(10):  # its tail, and then the line is quiet
        echo.hear(tone(20, -60.0), RATE, agent_speaking=False)
    assert echo.is_echo("item_1") and not echo.is_echo("item_1")  # dropped once

    echo.suspect("item_2")  # the caller started over the agent's last words and went on after them
    for _ in range(13):
        echo.hear(tone(20, -25.0), RATE, agent_speaking=False)
    assert not echo.is_echo("item_2")

    state = object()  # the pipeline names its turns by fastrtc's state object
    echo.suspect(state)
    assert echo.holds(state) and not echo.holds(object())
    assert echo.claim() is state  # the local detector paused the agent: its call now
    assert not echo.is_echo(state)


def test_over_webrtc_the_callers_audio_is_released_as_soon_as_a_frame_is_complete(monkeypatch) -> None:
    from aiortc import rtcrtpreceiver
    from aiortc.rtp import RtpPacket

    from components.adapters.aiortc import hear_callers_sooner

    monkeypatch.setattr(rtcrtpreceiver, "JitterBuffer", rtcrtpreceiver.JitterBuffer)  # put back afterwards
    hear_callers_sooner()

    def frames_out(buffer) -> list[int]:
        released = []
        for seq in range(6):  # one packet per 20 ms frame, as the caller's Opus sends them
            packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=960 * seq)
            packet._data = b"opus"  # what aiortc's receiver attaches (the depacketized payload)
            _, frame = buffer.add(packet)
            released.append(frame.timestamp // 960 if frame is not None else None)
        return released

    audio = rtcrtpreceiver.JitterBuffer(capacity=16, prefetch=4)  # as aiortc's receiver makes it
    assert frames_out(audio) == [None, 0, 1, 2, 3, 4]  # each frame as soon as the next packet arrives
    video = rtcrtpreceiver.JitterBuffer(capacity=16, prefetch=4, is_video=True)
    assert frames_out(video) == [None, None, None, None, 0, 1]  # video (and audio before) waits 4 frames more
