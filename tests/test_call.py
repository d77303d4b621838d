"""The life of a call, once for both engines: start, tools and the card, the throttled screen, the clock, the end.

A `FakeVoice` (`tests.call_driver`) stands in for an engine: it records what the call asks it to say, can be made
busy (speaking), and notes when it is hung up on. The call's `output` is what an engine's `emit` hands the
transport (through its fastrtc adapter). The call runs on a `VirtualClock`: nothing here sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components.call.call import UI_PUSH_INTERVAL_S, Call, CallOutput, Hangup, ViewUpdate
from components.call.options import CallRequest
from components.call.state import CloseReason
from components.restaurant.config import load_config
from components.restaurant.prompt import goodbye_instruction, wrap_up_instruction
from components.settings import AgentSettings
from components.store.reservations import ReservationStore
from tests.call_driver import FakeVoice, Page
from tests.domain_fixtures import bookable_day
from tests.virtual_clock import VirtualClock

KEY = "sk-test-call"
pytestmark = pytest.mark.timeout(30)


def new_call(tmp_path: Path, limit_s: int = 300, key: str | None = None) -> tuple[Call, FakeVoice, Page]:
    """A call on a virtual clock (`call.clock`); `key` is the owner's `OPENAI_API_KEY`."""
    voice, page = FakeVoice(), Page()
    settings = AgentSettings(call_time_limit_s=limit_s, api_key=key)
    store = ReservationStore(tmp_path / "reservations.db")
    call = Call(load_config(), store, settings, voice, page.send, clock=VirtualClock(), store_io=inline)
    return call, voice, page


async def inline(work: Callable[..., Any], *args: Any) -> Any:
    """The store's work run on the loop itself: on virtual time, nothing may finish behind the clock's back."""
    return work(*args)


def drain(call: Call) -> list[CallOutput]:
    """Everything `emit` would hand the transport right now."""
    out = []
    while (item := call.output()) is not None:
        out.append(item)
        if isinstance(item, Hangup):
            break
    return out


def test_a_call_without_a_key_ends_at_once_and_says_how_to_add_one(tmp_path) -> None:
    call, voice, page = new_call(tmp_path)

    started = asyncio.run(call.begin(CallRequest("en", "cedar", "")))

    assert started is False
    assert call.session is None
    assert page.messages[0]["type"] == "error" and "OPENAI_API_KEY" in page.messages[0]["message"]
    view, close = drain(call)
    assert view.view.ended is True and view.view.end_reason == CloseReason.NO_KEY
    assert "OPENAI_API_KEY" in view.view.transcript[-1].text
    assert isinstance(close, Hangup) and "OPENAI_API_KEY" in close.message
    assert voice.hung_up == 1


def test_the_page_choices_start_the_call_and_a_tool_refreshes_the_card(tmp_path) -> None:
    call, _, _ = new_call(tmp_path)
    day = bookable_day(call.config)

    async def conversation() -> dict:
        assert await call.begin(CallRequest("en", "cedar", KEY))
        return await call.run_tool("update_reservation", {"guest_name": "Yamada", "date": day, "party_size": 2})

    result = asyncio.run(conversation())

    assert (call.options.language, call.options.voice, call.options.api_key) == ("en", "cedar", KEY)
    assert result["reservation"]["guest_name"] == "Yamada"
    (view,) = drain(call)
    assert view.view.reservation["reservation"] == result["reservation"]
    assert view.view.language == "en"
    assert view.view.deadline is not None


def test_the_screen_is_pushed_at_most_every_quarter_second_and_at_once_when_the_call_ends(tmp_path) -> None:
    call, _, _ = new_call(tmp_path)

    async def conversation() -> list[int]:
        pushes = []
        for step in range(12):  # a notice every 50 ms for 0.6 s
            call.system(f"notice {step}")
            if isinstance(call.output(), ViewUpdate):
                pushes.append(step)
            await call.clock.advance(0.05)
        call.system("last words")
        await call.end(CloseReason.TIME_UP, "goodbye")
        return pushes

    pushes = asyncio.run(conversation())

    assert 2 <= len(pushes) <= 4, pushes  # 0.6 s at one push per 0.25 s
    assert all(b - a >= UI_PUSH_INTERVAL_S / 0.05 - 1 for a, b in zip(pushes, pushes[1:], strict=False))
    view, close = drain(call)  # the end is not held back by the throttle
    assert [line.text for line in view.view.transcript[-2:]] == ["last words", "goodbye"]
    assert close.message == "goodbye"


def test_the_call_closes_only_once_the_last_words_have_played(tmp_path) -> None:
    call, voice, _ = new_call(tmp_path)
    voice.speaking = True

    asyncio.run(call.end(CloseReason.TIME_UP, "goodbye"))

    assert [type(item) for item in drain(call)] == [ViewUpdate]
    assert not call.closed
    voice.speaking = False
    assert isinstance(call.output(), Hangup) and call.closed


def test_the_end_happens_once_whatever_triggers_it(tmp_path) -> None:
    call, voice, page = new_call(tmp_path)

    async def conversation() -> None:
        await asyncio.gather(
            call.end(CloseReason.TIME_UP, "time is up"), call.end(CloseReason.SERVICE, "the line dropped")
        )
        await call.end(CloseReason.HUNG_UP)

    asyncio.run(conversation())

    assert [message["message"] for message in page.messages] == ["time is up"]
    assert call.close_message == "time is up"
    assert voice.hung_up == 1
    view, close = drain(call)
    assert [line.text for line in view.view.transcript] == ["time is up"]
    assert view.view.end_reason == CloseReason.TIME_UP
    assert close.message == "time is up"


def test_the_clock_warns_asks_for_a_wrap_up_then_a_goodbye_and_ends_after_it(tmp_path) -> None:
    call, voice, page = new_call(tmp_path, limit_s=3, key=KEY)
    clock = call.clock

    async def conversation() -> float:
        assert await call.begin(None)  # a phone call: no page inputs
        await clock.advance(2.2)  # the warning comes at two thirds of a short call
        assert voice.said == [wrap_up_instruction("ja")]
        voice.speaking = True  # the agent is saying goodbye...
        while not voice.said[1:]:
            await clock.advance(0.05)
        goodbye_at = clock.now()
        await clock.advance(0.5)
        assert call.close_message is None  # ...and the call waits for it
        voice.speaking = False
        while call.close_message is None:
            await clock.advance(0.05)
        return clock.now() - goodbye_at

    waited = asyncio.run(conversation())

    assert voice.said == [wrap_up_instruction("ja"), goodbye_instruction("ja")]
    assert waited >= 0.5
    texts = [line.text for line in call.state.lines]
    assert "1秒" in texts[0] and "1 second left" in texts[0]  # the warning, both languages
    assert "time limit" in texts[-1]
    assert page.messages == [{"type": "warning", "message": texts[-1]}]
    assert call.state.end_reason == CloseReason.TIME_UP


def test_when_the_agent_cannot_speak_the_clock_ends_the_call_without_waiting(tmp_path) -> None:
    call, voice, _ = new_call(tmp_path, limit_s=3, key=KEY)
    voice.can_speak, voice.speaking = False, True  # disconnected, with audio still queued

    async def conversation() -> None:
        assert await call.begin(None)
        await call.clock.advance(3.4)

    asyncio.run(conversation())

    assert call.close_message is not None and "time limit" in call.close_message
    assert len(voice.said) == 2
