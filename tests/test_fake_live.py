"""The GPT-Live fake itself, driven by the real SDK (`AsyncOpenAI().live.connect()`): it refuses what the real
endpoint refuses, its timeline moves only with input audio, and it plays the model, the backend and the caller's
turns as the engine's tests expect. The engine's tests trust it, so these check it.

The caller here pushes audio faster than real time: the fake paces its output by the input it gets, not by a clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from tests.fake_live import (
    FakeLiveServer,
    Script,
    call_tool,
    call_tools,
    decode_audio,
    drop,
    encode_audio,
    greet,
    on_caller_speech,
    on_instructions,
    say,
    user_said,
    voice,
)

KEY = "sk-test-fake-live"
TOOLS = [
    {"type": "function", "name": "book", "description": "Book a table.", "parameters": {"type": "object"}},
    {"type": "function", "name": "check", "description": "Check a day.", "parameters": {"type": "object"}},
]
RESPONSES = {"type": "responses", "responses": {"model": "gpt-5.4-mini", "instructions": "Rules.", "tools": TOOLS}}
PCM24 = {"type": "audio/pcm", "rate": 24_000}
pytestmark = pytest.mark.timeout(60)


class Caller:
    """One SDK connection to the fake: it streams the caller's audio and keeps every server event it reads."""

    def __init__(self, conn: Any, fmt: dict[str, Any]) -> None:
        self.conn, self.fmt = conn, fmt
        self.events: list[Any] = []
        self.track: list[np.ndarray] = []  # the model's audio, decoded
        self.sent = 0  # samples of the caller's audio
        self.closed = False
        self.ended: BaseException | None = None

    async def read(self) -> None:
        try:
            async for event in self.conn:
                self.events.append(event)
                if event.type == "session.output_audio.delta":
                    self.track.append(decode_audio(base64.b64decode(event.delta), self.fmt))
        except Exception as ended:  # a dropped socket, for the test that drops it
            self.ended = ended
        finally:
            self.closed = True

    def of(self, kind: str) -> list[Any]:
        return [event for event in self.events if event.type == kind]

    def backend(self, kind: str) -> list[dict[str, Any]]:
        """The nested Responses events of `kind`, out of the `response.event` envelopes."""
        return [event.event for event in self.of("response.event") if event.event["type"] == kind]

    def said(self, kind: str = "session.output_transcript.delta") -> str:
        return "".join(event.delta for event in self.of(kind))

    def heard(self) -> np.ndarray:
        return np.concatenate(self.track) if self.track else np.zeros(0, np.int16)

    async def stream(self, pcm: np.ndarray, frame_ms: int = 20) -> None:
        """The caller's microphone (silence included), as fast as the fake takes it; then wait for as much output,
        which the fake sends once it has heard all of it."""
        frame = self.fmt["rate"] * frame_ms // 1000
        with contextlib.suppress(ConnectionClosed):
            for start in range(0, pcm.size, frame):
                audio = base64.b64encode(encode_audio(pcm[start : start + frame], self.fmt)).decode()
                await self.conn.session.input_audio.append(audio=audio)
                self.sent += pcm[start : start + frame].size
        await self.until(lambda: self.closed or self.heard().size >= self.sent, "the output for the input")
        await asyncio.sleep(0.02)  # and whatever followed it

    async def until(self, condition: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            assert time.monotonic() < deadline, f"waited in vain for {what}"
            await asyncio.sleep(0.01)
        return value

    def errors(self) -> list[tuple[str, str | None]]:
        return [(event.error.code, event.error.param) for event in self.of("error")]


def silence(ms: int, rate: int = 24_000) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def speech(ms: int, rate: int = 24_000) -> np.ndarray:
    return voice(ms, rate, seed=3)


def call(
    server: FakeLiveServer,
    body: Callable[[Caller], Awaitable[None]],
    key: str = KEY,
    start: bool = True,
    **session: Any,
) -> None:
    """Connect with the real SDK, start a session (`session` merged over a plain one), run `body`, hang up."""

    async def main() -> None:
        client = AsyncOpenAI(base_url=server.base_url, api_key=key, max_retries=0)
        conn = await client.live.connect().enter()
        caller = Caller(conn, session.get("audio", {}).get("format", PCM24))
        reader = asyncio.create_task(caller.read())
        try:
            if start:
                await conn.session.start(session={"model": "gpt-live-1.1", **session})
                await caller.until(lambda: caller.of("session.started") or caller.of("error"), "the start")
            await body(caller)
        finally:
            reader.cancel()
            await conn.close()

    asyncio.run(main())


def test_a_greeting_then_a_caller_turn_with_a_delegated_tool_call_answered_and_spoken_on() -> None:
    script = Script(
        greet("Hello, this is AI-SHIFT."),
        on_caller_speech(
            user_said("Two at seven please"),
            call_tool("book", {"party_size": 2, "time": "19:00"}),
            say(lambda out: f"Booked, your number is {out['booking_id']}."),
        ),
    )

    async def conversation(caller: Caller) -> None:
        started = caller.of("session.started")[0].session
        assert started.id.startswith("live_") and started.status == "active" and started.expires_at > time.time()
        assert started.audio.format.type == "audio/pcm" and started.audio.format.rate == 24_000  # the default

        await caller.conn.session.instructions.append(content="Greet the caller.", delegation_id=None)
        await caller.stream(silence(2000))
        assert caller.said() == "Hello, this is AI-SHIFT." and caller.of("session.instructions.appended")

        await caller.stream(np.concatenate([speech(900), silence(700)]))
        assert caller.said("session.input_transcript.delta") == "Two at seven please"
        pieces = caller.of("session.input_transcript.delta")
        assert pieces[0].start_ms >= 2000 and pieces[-1].end_ms <= 2900 + 20  # timed over the caller's speech
        (delegation,) = caller.of("session.delegation.created")
        assert delegation.delegation.target == "responses" and delegation.delegation.response_id
        nested = [event.event["type"] for event in caller.of("response.event")]
        assert nested == [
            "response.created",
            "response.output_item.added",
            "response.output_item.done",
            "response.completed",
        ]
        (item,) = [event["item"] for event in caller.backend("response.output_item.done")]
        assert (item["type"], item["name"], item["status"]) == ("function_call", "book", "completed")
        assert json.loads(item["arguments"]) == {"party_size": 2, "time": "19:00"}
        assert caller.backend("response.completed")[0]["response"]["usage"]["total_tokens"] > 0

        answer = json.dumps({"booking_id": "A1"})
        await caller.conn.response.item.create(
            item={"type": "function_call_output", "call_id": item["call_id"], "output": answer}
        )
        await caller.conn.response.create()
        await caller.stream(silence(3000))
        assert caller.said() == "Hello, this is AI-SHIFT.Booked, your number is A1."
        # The backend wrote the reply (in the same delegation, its usage reported), then the voice spoke it.
        assert caller.backend("response.output_text.done")[0]["text"] == "Booked, your number is A1."
        assert {event.delegation_id for event in caller.of("response.event")} == {delegation.delegation.id}
        kinds = [event.event["type"] if event.type == "response.event" else event.type for event in caller.events]
        spoken = next(i for i, e in enumerate(caller.events) if getattr(e, "delta", None) == "Booked,")
        assert kinds[:spoken].count("response.completed") == 2  # the call's response, then the reply's

    with FakeLiveServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:
        call(server, conversation, delegation=RESPONSES)
        assert server.problems() == []
        assert [(out.name, out.output) for out in server.tool_outputs()] == [("book", {"booking_id": "A1"})]
        assert server.session()["delegation"]["responses"]["tools"] == TOOLS
        assert server.total_usage()["total_tokens"] > 0


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"voice": "marin"}, "session.voice"),  # the Realtime API's place for it, not Live's
        ({"audio": {"output": {"voice": "marin", "speed": 1.1}}}, "session.audio.output.speed"),
        (
            {"delegation": {**RESPONSES, "responses": {"model": "m", "temperature": 0}}},
            "session.delegation.responses.temperature",
        ),
        (
            {"delegation": {**RESPONSES, "responses": {"model": "m", "tools": [{**TOOLS[0], "strict_mode": True}]}}},
            "session.delegation.responses.tools[0].strict_mode",
        ),
    ],
    ids=["voice-at-the-top", "audio", "delegation.responses", "a-tool"],
)
def test_an_unknown_field_anywhere_in_session_start_is_refused_by_name(session: dict, param: str) -> None:
    async def refused(caller: Caller) -> None:
        assert caller.errors() == [("unknown_parameter", param)]
        (error,) = caller.of("error")
        assert error.error.type == "invalid_request_error" and param in error.error.message
        assert caller.of("session.started") == []  # the session never started

    with FakeLiveServer(api_key=KEY) as server:
        call(server, refused, **session)
        assert server.problems() == [f"connection 1: session.start: unknown_parameter ({param})"]


def test_bad_event_types_missing_keys_wrong_types_and_early_commands_are_refused() -> None:
    async def mistakes(caller: Caller) -> None:
        raw = caller.conn.send_raw
        await raw(json.dumps({"type": "session.input_audio.append", "audio": ""}))  # before session.start
        await caller.conn.session.start(session={"model": "gpt-live-1.1"}, event_id="evt_start")
        await raw(json.dumps({"type": "session.input_audio.commit", "event_id": "evt_commit"}))  # no commit in Live
        await raw(json.dumps({"type": "session.instructions.append", "content": "Hi."}))  # delegation_id is required
        await raw(json.dumps({"type": "session.thinking.append", "content": 3, "delegation_id": None}))
        await raw(json.dumps({"type": "session.start", "session": {"model": "gpt-live-1.1"}}))  # a second start
        await caller.until(lambda: len(caller.errors()) == 5, "five refusals")
        assert caller.errors() == [
            ("session_not_started", None),
            ("unknown_event_type", "type"),
            ("missing_required_parameter", "delegation_id"),
            ("invalid_type", "content"),
            ("session_already_started", None),
        ]
        unknown = caller.of("error")[1].error
        assert "session.input_audio.append" in unknown.message and "response.create" in unknown.message
        assert caller.of("session.started")[0].client_event_id == "evt_start"

    with FakeLiveServer(api_key=KEY) as server:
        call(server, mistakes, start=False)
        assert len(server.problems()) == 5


def test_a_session_update_may_change_the_backend_but_nothing_immutable() -> None:
    async def updates(caller: Caller) -> None:
        await caller.conn.send_raw(json.dumps({"type": "session.update", "session": {"instructions": "Be brief."}}))
        await caller.conn.session.update(session={"delegation": {"type": "client"}})
        await caller.conn.session.update(
            session={"delegation": {"type": "responses", "responses": {"instructions": "New rules."}}}
        )
        await caller.until(lambda: caller.of("session.updated"), "the accepted update")
        assert caller.errors() == [
            ("immutable_field_update", "session.instructions"),
            ("immutable_field_update", "session.delegation.type"),
        ]
        backend = caller.of("session.updated")[0].session.delegation.responses
        assert (backend.instructions, backend.model, len(backend.tools)) == ("New rules.", "gpt-5.4-mini", 2)

    with FakeLiveServer(api_key=KEY) as server:
        call(server, updates, delegation=RESPONSES)
        assert len(server.problems()) == 2


def test_responses_commands_are_refused_under_client_delegation() -> None:
    async def commands(caller: Caller) -> None:
        await caller.conn.response.item.create(item={"type": "function_call_output", "call_id": "c1", "output": "{}"})
        await caller.conn.response.create()
        await caller.until(lambda: len(caller.errors()) == 2, "two refusals")
        assert caller.errors() == [("responses_delegation_required", None)] * 2
        assert "requires Responses delegation" in caller.of("error")[0].error.message

    with FakeLiveServer(api_key=KEY) as server:
        call(server, commands, delegation={"type": "client"})
        assert len(server.problems()) == 2


def test_the_backend_goes_on_only_once_every_parallel_call_has_its_output() -> None:
    script = Script(
        greet(call_tools(call_tool("check", {"date": "2026-05-01"}), call_tool("book", {})), say("Both done.")),
    )

    async def batch(caller: Caller) -> None:
        await caller.conn.session.instructions.append(content="Go.", delegation_id=None)
        await caller.stream(silence(600))
        first, second = (event["item"]["call_id"] for event in caller.backend("response.output_item.done"))
        await caller.conn.response.item.create(item={"type": "function_call_output", "call_id": first, "output": "1"})
        await caller.conn.response.create()  # the second call is still open: a partial batch
        await caller.until(caller.errors, "the refusal")
        assert caller.errors() == [("open_function_calls", None)] and second in caller.of("error")[0].error.message
        await caller.conn.response.item.create(item={"type": "function_call_output", "call_id": second, "output": "2"})
        await caller.conn.response.create()
        await caller.stream(silence(1500))
        assert caller.said() == "Both done." and len(caller.errors()) == 1

    with FakeLiveServer(script, api_key=KEY, min_audio_ms=300) as server:
        call(server, batch, delegation=RESPONSES)
        (problem,) = server.problems()
        assert problem.startswith("connection 1: response.create: open_function_calls")
        assert [(out.name, out.output) for out in server.tool_outputs()] == [("check", 1), ("book", 2)]


def test_under_client_delegation_the_apps_commentary_is_the_result() -> None:
    script = Script(greet(call_tool("book", {}), say(lambda out: f"Booked {out['id']}.")))

    async def delegated(caller: Caller) -> None:
        await caller.conn.session.instructions.append(content="Go.", delegation_id=None)
        await caller.stream(silence(500))
        (created,) = caller.of("session.delegation.created")
        assert created.delegation.target == "client" and created.delegation.response_id is None
        await caller.conn.session.thinking.append(content="Checking.", delegation_id="dlg_unknown")
        await caller.conn.session.commentary.append(content='{"id": "B2"}', delegation_id=created.delegation.id)
        await caller.stream(silence(1500))
        assert caller.errors() == [("invalid_value", "delegation_id")]
        assert caller.said() == "Booked B2." and caller.of("session.commentary.appended")

    with FakeLiveServer(script, api_key=KEY, min_audio_ms=300) as server:
        call(server, delegated)
        assert [(out.name, out.output) for out in server.tool_outputs()] == [("book", {"id": "B2"})]


def test_a_wrong_key_is_refused_on_the_upgrade_with_401() -> None:
    async def connect(server: FakeLiveServer) -> None:
        await AsyncOpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0).live.connect().enter()

    with FakeLiveServer(api_key=KEY) as server, pytest.raises(InvalidStatus) as refused:
        asyncio.run(connect(server))
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "invalid_api_key"
    assert server.connection_count() == 0


@pytest.mark.parametrize(
    ("options", "key", "code"),
    [({"bad_key_mode": "event"}, "sk-wrong", "invalid_api_key"), ({"quota_error": True}, KEY, "insufficient_quota")],
    ids=["wrong-key", "spent-quota"],
)
def test_an_admission_error_can_also_answer_the_start_as_an_event(options: dict, key: str, code: str) -> None:
    async def refused(caller: Caller) -> None:
        await caller.until(lambda: caller.closed, "the socket to close")
        assert caller.errors() == [(code, None)] and caller.of("session.started") == []

    with FakeLiveServer(api_key=KEY, **options) as server:
        call(server, refused, key=key)
        assert server.connection_count() == 1 and server.problems() == []


def test_a_muted_caller_is_not_heard_but_the_timeline_goes_on() -> None:
    script = Script(on_caller_speech(user_said("Now you hear me."), say("Yes.")))

    async def muted(caller: Caller) -> None:
        await caller.conn.session.input_audio.mute()
        await caller.stream(np.concatenate([speech(600), silence(800)]))
        assert caller.of("session.input_audio.muted") and caller.said("session.input_transcript.delta") == ""
        await caller.conn.session.input_audio.unmute()
        await caller.stream(np.concatenate([speech(600), silence(1200)]))
        assert caller.of("session.input_audio.unmuted") and caller.said() == "Yes."

    with FakeLiveServer(script, api_key=KEY, min_audio_ms=300) as server:
        call(server, muted)
        assert server.problems() == [] and server.received_audio().size == 24 * 3200  # it still got the audio


def test_a_mu_law_session_at_8_khz_takes_and_gives_mu_law_at_8_khz() -> None:
    mulaw = {"type": "audio/pcmu", "rate": 8000}
    assert list(decode_audio(bytes([0xFF, 0x7F, 0x80, 0x00]), mulaw)) == [0, 0, 32124, -32124]  # G.711's own values
    script = Script(on_caller_speech(user_said("Hello"), say("Hello, caller.")))

    async def phone(caller: Caller) -> None:
        sent = np.concatenate([speech(600, 8000), silence(2500, 8000)])
        await caller.stream(sent)
        audio = b"".join(base64.b64decode(event.delta) for event in caller.of("session.output_audio.delta"))
        assert len(audio) == sent.size  # one byte a sample: exactly as much output as input, at 8 kHz
        assert caller.heard().max() > 3000 and caller.said() == "Hello, caller."

    with FakeLiveServer(script, api_key=KEY, min_audio_ms=500) as server:
        call(server, phone, audio={"format": mulaw})
        assert server.problems() == [] and server.received_audio().size == 3100 * 8
        assert np.abs(server.received_audio()[:4800].astype(int) - speech(600, 8000)).max() < 1100  # μ-law's steps


def test_the_timeline_stands_still_without_input_audio() -> None:
    script = Script(greet("Hello there, caller."))

    async def frozen(caller: Caller) -> None:
        await caller.conn.session.instructions.append(content="Greet.", delegation_id=None)
        await asyncio.sleep(0.5)
        assert [event.type for event in caller.events] == ["session.started"]  # no ack, no audio, no words
        await caller.stream(silence(200))
        assert caller.of("session.output_audio.delta") and not caller.of("session.instructions.appended")
        await caller.stream(silence(200))
        (ack,) = caller.of("session.instructions.appended")
        assert ack.start_ms == 300
        heard = caller.heard().size
        await asyncio.sleep(0.5)
        assert caller.heard().size == heard  # the greeting waits for the caller's microphone
        await caller.stream(silence(2000))
        assert caller.said() == "Hello there, caller."

    with FakeLiveServer(script, api_key=KEY, min_audio_ms=300) as server:
        call(server, frozen)
        assert server.problems() == []


def test_the_caller_talking_over_the_model_silences_it_and_is_then_answered() -> None:
    long = "We have many tables free that evening, let me list every one of them for you now."
    script = Script(greet(long, "This part is never said."), on_caller_speech(user_said("Stop."), say("Sure.")))

    async def barge_in(caller: Caller) -> None:
        await caller.conn.session.instructions.append(content="Greet.", delegation_id=None)
        await caller.stream(np.concatenate([silence(1500), speech(600), silence(1000)]))
        levels = np.abs(caller.heard()[: 24 * 3100].reshape(-1, 480)).max(axis=1)  # 20 ms frames
        assert levels[(300 + 100) // 20 : 1500 // 20].all()  # the greeting plays...
        assert not levels[(1500 + 220) // 20 : 2600 // 20].any()  # ...and stops ~200 ms into the caller's speech
        assert levels[2700 // 20 :].any()  # then the caller's turn is answered
        assert caller.said().startswith("We have many") and not caller.said().startswith(long)
        assert caller.said().endswith("Sure.") and "never" not in caller.said()

    with FakeLiveServer(script, api_key=KEY, ms_per_char=60) as server:
        call(server, barge_in)
        (stop,) = server.interrupted()
        assert 1700 <= stop["at_ms"] <= 1740 and stop["sent_ms"] < stop["total_ms"] and stop["text"] == long
        assert server.problems() == []


def test_usage_is_cumulative_and_close_answers_session_closed() -> None:
    async def usage(caller: Caller) -> None:
        await caller.stream(silence(5000))
        used = [event.usage.seconds for event in caller.of("session.usage.updated")]
        assert used == [2.0, 4.0]  # every 2 s of timeline, cumulative
        assert caller.of("session.usage.updated")[0].context_window.usage_ratio > 0
        await caller.conn.session.close(event_id="evt_bye")
        await caller.until(lambda: caller.of("session.closed"), "the close")
        (closed,) = caller.of("session.closed")
        assert (closed.reason, closed.usage.seconds, closed.client_event_id) == ("close_requested", 5.0, "evt_bye")
        assert closed.session.id == caller.of("session.started")[0].session.id

    with FakeLiveServer(api_key=KEY, usage_every_s=2) as server:
        call(server, usage)
        assert server.problems() == [] and server.total_usage()["seconds"] == 5.0


def test_a_dropped_socket_and_the_new_session_that_carries_the_call_on() -> None:
    script = Script(greet("Hello.", drop()))

    async def dropped(caller: Caller) -> None:
        await caller.conn.session.instructions.append(content="Greet.", delegation_id=None)
        await caller.stream(silence(500))
        assert caller.said() == "Hello."
        await caller.stream(silence(1000))  # the greeting ends, and the socket drops: no close frame
        assert isinstance(caller.ended, ConnectionClosedError)

    history = [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello."}]},
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Draft: 2 people."}]},
    ]

    async def resumed(caller: Caller) -> None:
        await caller.conn.session.instructions.append(content="Carry on.", delegation_id=None)
        await caller.stream(silence(1000))
        assert caller.said() == "Where were we?"

    with FakeLiveServer(script, api_key=KEY, min_audio_ms=300) as server:
        call(server, dropped)
        server.set_script(Script(on_instructions("Where were we?")))
        call(server, resumed, input=history)
        assert server.connection_count() == 2 and server.session(1)["input"] == history
        assert server.sent_events("session.started", conn=2)[0]["session"]["input"] == history
        assert server.problems() == []
