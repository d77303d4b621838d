"""The GPT-Live fake itself, driven by the real SDK: it refuses what the real endpoint refuses, and its timeline only
moves with input audio. The engine's tests trust it, so these check it."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI
from websockets.exceptions import InvalidStatus

from tests.fake_live import FakeLiveServer, Script, call_tool, greet, on_caller_speech, say, user_said, voice

KEY = "sk-test-fake-live"
TOOLS = [{"type": "function", "name": "book", "description": "Book.", "parameters": {"type": "object"}}]
RESPONSES = {"type": "responses", "responses": {"model": "gpt-5.4-mini", "tools": TOOLS}}
pytestmark = pytest.mark.timeout(60)


class Client:
    """One SDK connection to the fake, reading every server event into `events`."""

    def __init__(self, conn: Any, rate: int, mulaw: bool = False) -> None:
        self.conn, self.rate, self.mulaw = conn, rate, mulaw
        self.events: list[Any] = []

    async def read(self) -> None:
        async for event in self.conn:
            self.events.append(event)

    def of(self, kind: str) -> list[Any]:
        return [event for event in self.events if event.type == kind]

    async def stream(self, pcm: np.ndarray, frame_ms: int = 20) -> None:
        """The caller's audio (silence included), as fast as the fake takes it."""
        frame = self.rate * frame_ms // 1000
        for start in range(0, pcm.size, frame):
            chunk = pcm[start : start + frame]
            data = _mulaw(chunk) if self.mulaw else chunk.astype(np.int16).tobytes()
            audio = base64.b64encode(data).decode()
            await self.conn.send_raw(json.dumps({"type": "session.input_audio.append", "audio": audio}))
            await asyncio.sleep(0.001)

    async def settle(self) -> None:
        await asyncio.sleep(0.3)


def _mulaw(pcm: np.ndarray) -> bytes:
    value = np.clip(pcm.astype(np.int32), -32635, 32635)
    magnitude = np.abs(value) + 0x84
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(np.where(value < 0, 0x80, 0) | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def silence(ms: int, rate: int = 24_000) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def session(server: FakeLiveServer, body: Callable[[Client], Awaitable[None]], **config: Any) -> None:
    """Connect, start a session (`config` merged over a plain one), run `body`, close."""

    async def main() -> None:
        client = AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
        conn = await client.live.connect().enter()
        fmt = config.get("audio", {}).get("format", {})
        live = Client(conn, int(fmt.get("rate", 24_000)), fmt.get("type") == "audio/pcmu")
        reader = asyncio.create_task(live.read())
        await conn.session.start(session={"model": "gpt-live-1.1", **config})
        await asyncio.sleep(0.2)
        try:
            await body(live)
        finally:
            reader.cancel()
            await conn.close()

    asyncio.run(main())


def test_a_turn_with_a_delegated_tool_call_answered_and_spoken_on() -> None:
    script = Script(
        greet("Hello there."),
        on_caller_speech(
            user_said("Two at seven"), call_tool("book", {"party": 2}), say(lambda out: f"Booked {out['id']}.")
        ),
    )

    async def body(live: Client) -> None:
        await live.conn.session.instructions.append(content="Greet the caller.", delegation_id=None)
        await live.stream(np.concatenate([silence(1200), voice(900, 24_000, 1), silence(800)]))
        (call,) = [e.event["item"] for e in live.of("response.event") if e.event["type"] == "response.output_item.done"]
        assert (call["name"], json.loads(call["arguments"])) == ("book", {"party": 2})
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": json.dumps({"id": "AS-1"})}
        await live.conn.response.item.create(item=output)
        await live.conn.response.create()
        await live.stream(silence(2000))
        await live.settle()
        said = "".join(e.delta for e in live.of("session.output_transcript.delta"))
        assert said == "Hello there.Booked AS-1."
        assert "".join(e.delta for e in live.of("session.input_transcript.delta")) == "Two at seven"
        assert live.of("session.delegation.created")[0].delegation.target == "responses"
        assert live.of("session.instructions.appended")

    with FakeLiveServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:
        session(server, body, delegation=RESPONSES)
        assert server.problems() == []
        assert [(out.name, out.output) for out in server.tool_outputs()] == [("book", {"id": "AS-1"})]


def test_unknown_fields_bad_event_types_and_out_of_order_events_are_refused() -> None:
    async def body(live: Client) -> None:
        await live.conn.send_raw(json.dumps({"type": "session.input_audio.commit"}))
        await live.conn.send_raw(json.dumps({"type": "session.instructions.append", "content": "x"}))
        await live.conn.send_raw(json.dumps({"type": "response.create"}))
        await live.settle()
        errors = [(e.error.code, e.error.param) for e in live.of("error")]
        assert errors[0] == ("unknown_event_type", "type")
        assert errors[1] == ("missing_required_parameter", "delegation_id")
        assert errors[2][0] == "invalid_request"  # response.create under client delegation

    with FakeLiveServer(api_key=KEY) as server:
        session(server, body)
        assert len(server.problems()) == 2  # the unknown type and the missing key (a refusal, not a violation)

    async def voice_at_the_top(live: Client) -> None:
        await live.settle()
        assert [(e.error.code, e.error.param) for e in live.of("error")] == [("unknown_parameter", "session.voice")]
        assert live.of("session.started") == []

    with FakeLiveServer(api_key=KEY) as server:
        session(server, voice_at_the_top, voice="marin")  # the Realtime API's place for it, not Live's
        assert server.problems() == ["connection 1: session.start: unknown_parameter at event.session.voice"]


def test_an_output_is_needed_for_every_open_call_before_the_backend_goes_on() -> None:
    script = Script(greet(call_tool("book", {})))

    async def body(live: Client) -> None:
        await live.conn.session.instructions.append(content="Go.", delegation_id=None)
        await live.stream(silence(500))
        await live.conn.response.create()  # no output yet
        await live.settle()
        assert live.of("error")[-1].error.code == "open_function_calls"

    with FakeLiveServer(script, api_key=KEY) as server:
        session(server, body, delegation=RESPONSES)
        assert any("calls still open" in problem for problem in server.problems())


def test_a_wrong_key_is_refused_on_the_upgrade_or_right_after_it() -> None:
    async def connect(server: FakeLiveServer) -> None:
        client = AsyncOpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0)
        await client.live.connect().enter()

    with FakeLiveServer(api_key=KEY) as server, pytest.raises(InvalidStatus) as refused:
        asyncio.run(connect(server))
    assert refused.value.response.status_code == 401

    async def event_style(server: FakeLiveServer) -> list[Any]:
        client = AsyncOpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0)
        conn = await client.live.connect().enter()
        await conn.session.start(session={"model": "gpt-live-1.1"})
        return [event async for event in conn]

    with FakeLiveServer(api_key=KEY, bad_key_mode="event") as server:
        events = asyncio.run(event_style(server))
    assert [(e.type, e.error.code) for e in events] == [("error", "invalid_api_key")]


def test_the_timeline_moves_only_with_input_audio_in_the_sessions_format() -> None:
    script = Script(greet("Hello."))

    async def body(live: Client) -> None:
        await live.conn.session.instructions.append(content="Greet.", delegation_id=None)
        await asyncio.sleep(0.5)
        assert live.of("session.output_audio.delta") == [] and live.of("session.instructions.appended") == []
        await live.stream(silence(1000, 8000))
        await live.settle()
        audio = b"".join(base64.b64decode(e.delta) for e in live.of("session.output_audio.delta"))
        assert len(audio) == 8000  # one μ-law byte a sample: exactly as much output as input, at 8 kHz
        assert live.of("session.output_transcript.delta") and live.of("session.instructions.appended")

    with FakeLiveServer(script, api_key=KEY, min_audio_ms=300) as server:
        session(server, body, audio={"format": {"type": "audio/pcmu", "rate": 8000}})
        assert server.problems() == [] and server.received_audio().size == 8000


def test_the_caller_talking_over_the_model_stops_it_and_usage_is_cumulative() -> None:
    script = Script(greet("A very long greeting that goes on and on. " * 4))

    async def body(live: Client) -> None:
        await live.conn.session.instructions.append(content="Greet.", delegation_id=None)
        await live.stream(np.concatenate([silence(1500), voice(600, 24_000, 2), silence(3000)]))
        await live.settle()
        levels = [
            np.abs(np.frombuffer(base64.b64decode(e.delta), np.int16)).max()
            for e in live.of("session.output_audio.delta")
        ]
        assert all(levels[10:75])  # the greeting plays (20 ms frames)...
        after = levels[(1500 + 200) // 20 + 1 : (1500 + 600 + 500) // 20 - 1]
        assert not any(after)  # ...and 200 ms into the caller's speech the model is silent, until the caller's turn
        assert any(levels[(1500 + 600 + 500) // 20 :])  # which it then answers
        used = [e.usage.seconds for e in live.of("session.usage.updated")]
        assert used == sorted(used) and len(used) >= 2
        await live.conn.session.close()
        await live.settle()
        (closed,) = live.of("session.closed")
        assert closed.reason == "close_requested" and closed.usage.seconds >= used[-1]

    with FakeLiveServer(script, api_key=KEY, usage_every_s=2) as server:
        session(server, body)
        assert len(server.interrupted()) == 1 and server.problems() == []
