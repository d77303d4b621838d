"""The life of a call, once for both engines: start, tools and the card, the throttled screen, the clock, the end.

A `FakeVoice` (`tests.call_driver`) stands in for an engine: it records what the call asks it to say, can be made
busy (speaking), and notes when it is hung up on. The call's `output` is what an engine's `emit` hands fastrtc.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastrtc import AdditionalOutputs, CloseStream

from components.call.call import UI_PUSH_INTERVAL_S, Call
from components.restaurant.config import load_config
from components.restaurant.prompt import goodbye_instruction, wrap_up_instruction
from components.settings import AgentSettings
from components.store.reservations import ReservationStore
from tests.call_driver import FakeVoice, Page
from tests.domain_fixtures import bookable_day

KEY = "sk-test-call"
pytestmark = pytest.mark.timeout(30)


def new_call(tmp_path: Path, limit_s: int = 300) -> tuple[Call, FakeVoice, Page]:
    voice, page = FakeVoice(), Page()
    settings = AgentSettings(call_time_limit_s=limit_s)
    call = Call(load_config(), ReservationStore(tmp_path / "reservations.db"), settings, voice, page.send)
    return call, voice, page


def drain(call: Call) -> list[AdditionalOutputs | CloseStream]:
    """Everything `emit` would hand fastrtc right now."""
    out = []
    while (item := call.output()) is not None:
        out.append(item)
        if isinstance(item, CloseStream):
            break
    return out


def test_a_call_without_a_key_ends_at_once_and_says_how_to_add_one(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    call, voice, page = new_call(tmp_path)

    started = asyncio.run(call.begin(["webrtc-id", "en", "cedar", ""]))

    assert started is False
    assert call.session is None
    assert page.messages[0]["type"] == "error" and "OPENAI_API_KEY" in page.messages[0]["message"]
    view, close = drain(call)
    assert view.args[0]["ended"] is True
    assert "OPENAI_API_KEY" in view.args[0]["transcript"][-1]["text"]
    assert isinstance(close, CloseStream) and "OPENAI_API_KEY" in close.msg
    assert voice.hung_up == 1


def test_the_page_choices_start_the_call_and_a_tool_refreshes_the_card(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    call, _, _ = new_call(tmp_path)
    day = bookable_day(call.config)

    async def conversation() -> dict:
        assert await call.begin(["webrtc-id", "en", "cedar", KEY])
        result = await call.run_tool("update_reservation", {"guest_name": "Yamada", "date": day, "party_size": 2})
        call.stop()
        return result

    result = asyncio.run(conversation())

    assert (call.options.language, call.options.voice, call.options.api_key) == ("en", "cedar", KEY)
    assert result["reservation"]["guest_name"] == "Yamada"
    (view,) = drain(call)
    assert view.args[0]["reservation"]["reservation"] == result["reservation"]
    assert view.args[0]["language"] == "en"
    assert view.args[0]["deadline"] is not None


def test_the_screen_is_pushed_at_most_every_quarter_second_and_at_once_when_the_call_ends(tmp_path) -> None:
    call, _, _ = new_call(tmp_path)

    async def conversation() -> list[int]:
        pushes = []
        for step in range(12):  # a notice every 50 ms for 0.6 s
            call.system(f"notice {step}")
            if isinstance(call.output(), AdditionalOutputs):
                pushes.append(step)
            await asyncio.sleep(0.05)
        call.system("last words")
        await call.end("goodbye")
        return pushes

    pushes = asyncio.run(conversation())

    assert 2 <= len(pushes) <= 4, pushes  # 0.6 s at one push per 0.25 s
    assert all(b - a >= UI_PUSH_INTERVAL_S / 0.05 - 1 for a, b in zip(pushes, pushes[1:], strict=False))
    view, close = drain(call)  # the end is not held back by the throttle
    assert [line["text"] for line in view.args[0]["transcript"][-2:]] == ["last words", "goodbye"]
    assert close.msg == "goodbye"


def test_the_call_closes_only_once_the_last_words_have_played(tmp_path) -> None:
    call, voice, _ = new_call(tmp_path)
    voice.speaking = True

    asyncio.run(call.end("goodbye"))

    assert [type(item) for item in drain(call)] == [AdditionalOutputs]
    assert not call.closed
    voice.speaking = False
    assert isinstance(call.output(), CloseStream) and call.closed


def test_the_end_happens_once_whatever_triggers_it(tmp_path) -> None:
    call, voice, page = new_call(tmp_path)

    async def conversation() -> None:
        await asyncio.gather(call.end("time is up"), call.end("the line dropped", error=True))
        await call.end("again")

    asyncio.run(conversation())

    assert [message["message"] for message in page.messages] == ["time is up"]
    assert call.close_message == "time is up"
    assert voice.hung_up == 1
    view, close = drain(call)
    assert [line["text"] for line in view.args[0]["transcript"]] == ["time is up"]
    assert close.msg == "time is up"


def test_the_clock_warns_asks_for_a_wrap_up_then_a_goodbye_and_ends_after_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    call, voice, page = new_call(tmp_path, limit_s=3)

    async def conversation() -> float:
        loop = asyncio.get_running_loop()
        assert await call.begin(None)  # a phone call: no page inputs
        await asyncio.sleep(2.2)  # the warning comes at two thirds of a short call
        assert voice.said == [wrap_up_instruction("ja")]
        voice.speaking = True  # the agent is saying goodbye...
        while not voice.said[1:]:
            await asyncio.sleep(0.05)
        goodbye_at = loop.time()
        await asyncio.sleep(0.5)
        assert call.close_message is None  # ...and the call waits for it
        voice.speaking = False
        while call.close_message is None:
            await asyncio.sleep(0.05)
        return loop.time() - goodbye_at

    waited = asyncio.run(conversation())

    assert voice.said == [wrap_up_instruction("ja"), goodbye_instruction("ja")]
    assert waited >= 0.5
    texts = [line.text for line in call.state.lines]
    assert "1秒" in texts[0] and "1 seconds" in texts[0]  # the warning, both languages
    assert "time limit" in texts[-1]
    assert page.messages == [{"type": "warning", "message": texts[-1]}]


def test_when_the_agent_cannot_speak_the_clock_ends_the_call_without_waiting(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    call, voice, _ = new_call(tmp_path, limit_s=3)
    voice.can_speak, voice.speaking = False, True  # disconnected, with audio still queued

    async def conversation() -> None:
        assert await call.begin(None)
        await asyncio.sleep(3.4)

    asyncio.run(conversation())

    assert call.close_message is not None and "time limit" in call.close_message
    assert len(voice.said) == 2
