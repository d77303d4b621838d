"""Tests of the scripted Realtime fake, driven by the real openai SDK (no product code)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from typing import Any

import openai
import pytest
from openai.types.realtime.realtime_server_event import RealtimeServerEvent
from pydantic import TypeAdapter
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests.fake_realtime import (
    SAMPLE_RATE,
    FakeRealtimeServer,
    Script,
    branch,
    call_tool,
    drop,
    greet,
    inaudible,
    on_caller_speech,
    pause,
    pcm16_dbfs,
    pcm16_silence,
    pcm16_tone,
    say,
    send_error,
    send_event,
    user_said,
)
from tests.speech import speech_pcm as spoken

MODEL = "gpt-realtime"
API_KEY = "sk-test-fake-0000abcd"
FRAME_BYTES = SAMPLE_RATE * 2 * 20 // 1000  # 20 ms of PCM16
_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
SESSION = {
    "type": "realtime",
    "instructions": "You are a restaurant reservation assistant.",
    "output_modalities": ["audio"],
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500, "prefix_padding_ms": 300},
        },
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
    },
    "tools": [
        {
            "type": "function",
            "name": "update_reservation",
            "description": "Update the reservation draft.",
            "parameters": {"type": "object", "properties": {"guest_name": {"type": "string"}}},
        },
    ],
}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def speech_pcm() -> bytes:
    """Real speech from espeak-ng as PCM16 mono 24 kHz."""
    return spoken("Yamada, four people, tomorrow at seven p m.", SAMPLE_RATE).tobytes()


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")


async def stream(conn: Any, pcm: bytes) -> None:
    """Append audio in 20 ms frames, as a microphone would (faster than real time)."""
    for i in range(0, len(pcm), FRAME_BYTES):
        await conn.input_audio_buffer.append(audio=b64(pcm[i : i + FRAME_BYTES]))


async def next_event(conn: Any, *types: str, timeout: float = 5.0, seen: list | None = None) -> Any:
    """Receive events until one of ``types`` arrives (the others are appended to ``seen``)."""
    async with asyncio.timeout(timeout):
        while True:
            ev = await conn.recv()
            if ev.type in types:
                return ev
            if seen is not None:
                seen.append(ev)


async def collect_response(conn: Any, timeout: float = 5.0) -> list:
    """All events up to and including the next response.done."""
    events: list = []
    done = await next_event(conn, "response.done", timeout=timeout, seen=events)
    return [*events, done]


def client(server: FakeRealtimeServer, key: str = API_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=server.base_url, max_retries=0)


def assert_events_valid(server: FakeRealtimeServer) -> None:
    """Every event the fake sent validates strictly against the SDK's pydantic models."""
    for ev in server.sent_events():
        body = {k: v for k, v in ev.items() if not k.startswith("_")}
        _EVENT_ADAPTER.validate_python(body)


def first_loud_ms(pcm: bytes, threshold: float = -45.0) -> int:
    for i in range(0, len(pcm), FRAME_BYTES):
        if pcm16_dbfs(pcm[i : i + FRAME_BYTES]) >= threshold:
            return i // (FRAME_BYTES // 20)
    raise AssertionError("no loud frame")


def last_loud_ms(pcm: bytes, threshold: float = -45.0) -> int:
    last = 0
    for i in range(0, len(pcm), FRAME_BYTES):
        if pcm16_dbfs(pcm[i : i + FRAME_BYTES]) >= threshold:
            last = (i + FRAME_BYTES) // (FRAME_BYTES // 20)
    return last


# --------------------------------------------------------------------------- tests


@pytest.mark.timeout(20)
def test_session_update_and_handshake_record() -> None:
    async def main(server: FakeRealtimeServer) -> None:
        async with client(server).realtime.connect(model=MODEL) as conn:
            created = await next_event(conn, "session.created")
            assert created.session.type == "realtime" and created.session.model == MODEL
            assert created.session.audio.output.format.rate == 24000

            await conn.session.update(session=SESSION)
            updated = await next_event(conn, "session.updated")
            assert updated.session.instructions == SESSION["instructions"]
            assert updated.session.audio.input.transcription.model == "gpt-4o-mini-transcribe"
            assert updated.session.audio.input.turn_detection.silence_duration_ms == 500
            assert updated.session.audio.output.voice == "marin"  # merged with defaults
            assert updated.session.tools[0].name == "update_reservation"

            # GA requires session.type
            await conn.session.update(session={"instructions": "x"})  # type: ignore[typeddict-item]
            err = await next_event(conn, "error")
            assert err.error.code == "missing_required_parameter" and err.error.param == "session.type"

            # nothing is spoken until the client asks with response.create
            with pytest.raises(TimeoutError):
                await next_event(conn, "response.created", timeout=0.3)

    with FakeRealtimeServer(Script(greet("Hello"))) as server:
        asyncio.run(main(server))
        info = server.connections[0]
        assert info.accepted and info.model == MODEL and info.path == "/v1/realtime"
        assert info.api_key_present and info.api_key_last4 == "abcd" and len(info.api_key_sha256 or "") == 16
        assert info.beta_header is None
        assert API_KEY not in repr(server.connections)
        assert server.session()["instructions"] == SESSION["instructions"]
        assert [e["type"] for e in server.client_events()] == ["session.update", "session.update"]
        assert_events_valid(server)


@pytest.mark.timeout(30)
def test_espeak_speech_drives_vad_transcript_tool_call_and_answer(speech_pcm: bytes) -> None:
    script = Script(
        greet("Welcome to the restaurant. Would you like a reservation?"),
        on_caller_speech(
            user_said("Yamada, four people, tomorrow at 7pm"),
            call_tool("update_reservation", {"guest_name": "Yamada", "party_size": 4}),
            say(lambda out: f"Booked, your id is {out['booking_id']}."),
        ),
    )
    silence_ms = 500

    async def main(server: FakeRealtimeServer) -> None:
        async with client(server).realtime.connect(model=MODEL) as conn:
            await next_event(conn, "session.created")
            await conn.session.update(session=SESSION)
            await next_event(conn, "session.updated")

            # greeting on response.create
            await conn.response.create()
            greeting = await collect_response(conn)
            types = [e.type for e in greeting]
            assert types[:4] == [
                "response.created",
                "response.output_item.added",
                "conversation.item.added",
                "response.content_part.added",
            ]
            audio = b"".join(base64.b64decode(e.delta) for e in greeting if e.type == "response.output_audio.delta")
            assert len(audio) > SAMPLE_RATE * 2 * 0.5 and pcm16_dbfs(audio) > -30  # audible, not silence
            transcript = "".join(e.delta for e in greeting if e.type == "response.output_audio_transcript.delta")
            assert transcript == "Welcome to the restaurant. Would you like a reservation?"
            assert greeting[-1].response.status == "completed"

            # the caller speaks (real TTS audio), then is silent
            await stream(conn, pcm16_silence(400) + speech_pcm + pcm16_silence(1000))
            seen: list = []
            started = await next_event(conn, "input_audio_buffer.speech_started", seen=seen)
            stopped = await next_event(conn, "input_audio_buffer.speech_stopped", seen=seen)
            committed = await next_event(conn, "input_audio_buffer.committed", seen=seen)
            assert started.item_id == stopped.item_id == committed.item_id
            assert committed.previous_item_id == greeting[1].item.id
            onset = 400 + first_loud_ms(speech_pcm)
            assert max(0, onset - 300 - 20) <= started.audio_start_ms <= onset
            end = 400 + last_loud_ms(speech_pcm)
            assert end + silence_ms - 40 <= stopped.audio_end_ms <= end + silence_ms + 40

            user_item = await next_event(conn, "conversation.item.added", seen=seen)
            assert user_item.item.role == "user" and user_item.item.id == committed.item_id
            completed = await next_event(conn, "conversation.item.input_audio_transcription.completed", seen=seen)
            assert completed.transcript == "Yamada, four people, tomorrow at 7pm"
            assert completed.item_id == committed.item_id
            deltas = [e.delta for e in seen if e.type == "conversation.item.input_audio_transcription.delta"]
            assert "".join(deltas) == completed.transcript

            args_done = await next_event(conn, "response.function_call_arguments.done")
            assert args_done.name == "update_reservation"
            assert json.loads(args_done.arguments) == {"guest_name": "Yamada", "party_size": 4}
            call_done = await next_event(conn, "response.done")
            assert call_done.response.output[0].type == "function_call"
            assert call_done.response.output[0].call_id == args_done.call_id

            # nothing more until the tool output and response.create arrive
            with pytest.raises(TimeoutError):
                await next_event(conn, "response.created", timeout=0.3)
            await conn.conversation.item.create(
                item={
                    "type": "function_call_output",
                    "call_id": args_done.call_id,
                    "output": json.dumps({"ok": True, "booking_id": "R-0042"}),
                }
            )
            added = await next_event(conn, "conversation.item.added")
            assert added.item.type == "function_call_output"
            recorded = await server.async_wait_for("conversation.item.create", timeout=2)
            assert recorded["item"]["call_id"] == args_done.call_id
            await conn.response.create()

            answer = await collect_response(conn)
            text = "".join(e.delta for e in answer if e.type == "response.output_audio_transcript.delta")
            assert text == "Booked, your id is R-0042."
            assert any(e.type == "response.output_audio.delta" for e in answer)
            done = answer[-1].response
            assert done.status == "completed" and done.output[0].role == "assistant"
            assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens > 0
            assert done.usage.output_token_details.audio_tokens > 0
            assert done.usage.input_token_details.cached_tokens_details is not None
            item_id = next(e for e in answer if e.type == "response.output_item.added").item.id
            assert server.last_audio_item_id == item_id
            assert server.sent_audio_ms(item_id) == pytest.approx(len(text) * 60, abs=100)

    with FakeRealtimeServer(script) as server:
        asyncio.run(main(server))
        (out,) = server.tool_outputs("update_reservation")
        assert out.output == {"ok": True, "booking_id": "R-0042"}
        assert out.arguments == {"guest_name": "Yamada", "party_size": 4}
        assert server.last_tool_output["booking_id"] == "R-0042"
        assert server.remaining_turns() == {"greet": 0, "caller_speech": 0}
        assert len(server.received_audio()) == len(pcm16_silence(400) + speech_pcm + pcm16_silence(1000))
        assert server.problems() == []
        assert_events_valid(server)


@pytest.mark.timeout(20)
def test_barge_in_cancels_response_and_truncate_is_validated(speech_pcm: bytes) -> None:
    long_text = "Our restaurant is open every day from eleven to twenty two, and we have a terrace. " * 2
    script = Script(
        greet(long_text, pace=1.0),  # real-time pace so the caller can interrupt mid-stream
        on_caller_speech(user_said("Wait, stop."), say("Sure, go ahead.")),
    )

    async def main(server: FakeRealtimeServer) -> None:
        async with client(server).realtime.connect(model=MODEL) as conn:
            await next_event(conn, "session.created")
            await conn.session.update(session=SESSION)
            await next_event(conn, "session.updated")
            await conn.response.create()
            first = await next_event(conn, "response.output_audio.delta")
            item_id = first.item_id
            for _ in range(2):
                await next_event(conn, "response.output_audio.delta")

            # a second response.create while one is active is an error
            await conn.response.create()
            err = await next_event(conn, "error")
            assert err.error.code == "conversation_already_has_active_response"

            t0 = time.monotonic()
            await stream(conn, speech_pcm[: FRAME_BYTES * 25] + pcm16_silence(700))
            seen: list = []
            started = await next_event(conn, "input_audio_buffer.speech_started", seen=seen)
            done = await next_event(conn, "response.done", seen=seen)
            assert time.monotonic() - t0 < 1.0  # stopped at once, not after the whole answer
            assert done.response.status == "cancelled"
            assert done.response.status_details.reason == "turn_detected"
            assert done.response.output[0].status == "incomplete"
            assert started.audio_start_ms >= 0
            deltas_after_start = [
                e
                for e in seen[seen.index(started) if started in seen else 0 :]
                if e.type == "response.output_audio.delta"
            ]
            assert deltas_after_start == []
            sent = server.sent_audio_ms(item_id)
            assert 300 <= sent < 3000, sent
            assert server.interrupted_responses()[0]["item_id"] == item_id

            # the interruption itself is the next caller turn
            await next_event(conn, "input_audio_buffer.committed")
            tr = await next_event(conn, "conversation.item.input_audio_transcription.completed")
            assert tr.transcript == "Wait, stop."
            answer = await collect_response(conn)
            assert answer[-1].response.status == "completed"

            # truncate beyond what was sent -> error; within -> truncated
            await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=int(sent) + 1000)
            err = await next_event(conn, "error")
            assert err.error.code == "invalid_value" and err.error.param == "audio_end_ms"
            await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=200)
            truncated = await next_event(conn, "conversation.item.truncated")
            assert truncated.item_id == item_id and truncated.audio_end_ms == 200

    with FakeRealtimeServer(script) as server:
        asyncio.run(main(server))
        assert server.truncations()[0]["audio_end_ms"] == 200
        assert_events_valid(server)


@pytest.mark.timeout(20)
def test_response_cancel_and_cancel_without_response() -> None:
    async def main(server: FakeRealtimeServer) -> None:
        async with client(server).realtime.connect(model=MODEL) as conn:
            await next_event(conn, "session.created")
            await conn.response.cancel()
            err = await next_event(conn, "error")
            assert err.error.code == "response_cancel_not_active"
            await conn.response.create()
            await next_event(conn, "response.output_audio.delta")
            await conn.response.cancel()
            done = await next_event(conn, "response.done")
            assert done.response.status == "cancelled"
            assert done.response.status_details.reason == "client_cancelled"
            # output_audio_buffer.clear is accepted quietly
            await conn.output_audio_buffer.clear()
            with pytest.raises(TimeoutError):
                await next_event(conn, "error", timeout=0.2)

    with FakeRealtimeServer(Script(greet("A long greeting that is still playing. " * 3, pace=1.0))) as server:
        asyncio.run(main(server))


@pytest.mark.timeout(20)
def test_handshake_401_raises_invalid_status() -> None:
    async def connect(server: FakeRealtimeServer, key: str) -> None:
        async with client(server, key).realtime.connect(model=MODEL) as conn:
            await next_event(conn, "session.created")

    with FakeRealtimeServer(reject_auth=True) as server:
        with pytest.raises(InvalidStatus) as exc_info:
            asyncio.run(connect(server, API_KEY))
        assert exc_info.value.response.status_code == 401
        body = json.loads(exc_info.value.response.body)
        assert body["error"]["code"] == "invalid_api_key"
        assert body["error"]["type"] == "invalid_request_error"
        assert API_KEY not in body["error"]["message"]
        assert server.connection_count == 0 and server.connections[0].status == 401

    with FakeRealtimeServer(api_key=API_KEY) as server:
        with pytest.raises(InvalidStatus):
            asyncio.run(connect(server, "sk-wrong-key-1234"))
        asyncio.run(connect(server, API_KEY))  # the expected key is accepted
        assert [c.status for c in server.connections] == [401, 101]


@pytest.mark.timeout(20)
def test_drop_mid_answer_raises_connection_closed_error() -> None:
    script = Script(greet("This answer will be cut off by a network failure. " * 2, drop_after_deltas=3))

    async def main(server: FakeRealtimeServer) -> int:
        deltas = 0
        async with client(server).realtime.connect(model=MODEL) as conn:
            await conn.response.create()
            with pytest.raises(ConnectionClosedError) as exc_info:
                async for ev in conn:
                    if ev.type == "response.output_audio.delta":
                        deltas += 1
            assert exc_info.value.rcvd is None  # no close frame from the server
        return deltas

    with FakeRealtimeServer(script) as server:
        assert asyncio.run(main(server)) == 3
        server.wait_until(lambda: server.connections[0].closed, timeout=2)
        assert server.connections[0].close_code is None or server.connections[0].close_code == 1006


@pytest.mark.timeout(20)
def test_error_injection_unknown_events_and_stall() -> None:
    script = Script(
        greet(send_error("Rate limit reached", type="server_error", code="rate_limit_exceeded"), say("Still here.")),
        on_caller_speech(user_said("hello?"), say("First words.", stall_after_deltas=1)),
    )

    async def main(server: FakeRealtimeServer) -> None:
        async with client(server).realtime.connect(model=MODEL) as conn:
            await next_event(conn, "session.created")
            await conn.send({"type": "bogus.event"})  # type: ignore[arg-type, typeddict-item]
            err = await next_event(conn, "error")
            assert err.error.type == "invalid_request_error" and err.error.param == "type"

            await conn.response.create()
            err = await next_event(conn, "error")
            assert err.error.type == "server_error" and err.error.code == "rate_limit_exceeded"
            assert err.error.message == "Rate limit reached"
            await collect_response(conn)

            await conn.input_audio_buffer.commit()  # nothing buffered yet
            err = await next_event(conn, "error")
            assert err.error.code == "input_audio_buffer_commit_empty"

            await stream(conn, pcm16_tone(400) + pcm16_silence(600))
            await next_event(conn, "response.output_audio.delta")
            with pytest.raises(TimeoutError):  # stalled: nothing more arrives, the socket stays open
                await next_event(conn, "response.output_audio.delta", "response.done", timeout=0.5)
            assert not server.connections[-1].closed

    with FakeRealtimeServer(script) as server:
        asyncio.run(main(server))
        assert any("stalled" in p for p in server.problems())


@pytest.mark.timeout(20)
def test_slow_deltas_and_legacy_event_names() -> None:
    async def main(server: FakeRealtimeServer) -> list:
        async with client(server).realtime.connect(model=MODEL) as conn:
            await conn.response.create()
            events: list = []
            async with asyncio.timeout(5):
                async for ev in conn:
                    events.append(ev)
                    if ev.type == "response.done":
                        break
            return events

    script = Script(greet("Slow hi", audio_ms=400, delta_delay_s=0.08))
    with FakeRealtimeServer(script, legacy_event_names=True) as server:
        events = asyncio.run(main(server))
        stamps = [e["_t"] for e in server.sent_events("response.audio.delta")]  # server-side send times
    assert len(stamps) == 4
    assert min(b - a for a, b in zip(stamps, stamps[1:], strict=False)) >= 0.075
    types = {e.type for e in events}
    assert {
        "response.audio.delta",
        "response.audio_transcript.delta",
        "response.audio.done",
        "response.audio_transcript.done",
    } <= types
    assert not any(t.startswith("response.output_audio") for t in types)
    done = next(e for e in events if e.type == "response.audio_transcript.done")
    assert done.transcript == "Slow hi"  # fields are reachable even though the SDK picks a wrong model class


@pytest.mark.timeout(20)
def test_manual_commit_inaudible_text_input_branch_and_default_reply() -> None:
    script = Script(
        on_caller_speech(inaudible(), say("Sorry, I could not hear you.")),
        on_caller_speech(
            call_tool("check_availability", {"date": "2030-01-01"}),
            branch(lambda out: say("We have a table.") if out["available"] else say("Fully booked.")),
        ),
        default_reply="Could you repeat that?",
        default_transcript="(mumble)",
    )
    no_vad = {**SESSION, "audio": {**SESSION["audio"], "input": {**SESSION["audio"]["input"], "turn_detection": None}}}

    async def main(server: FakeRealtimeServer) -> None:
        async with client(server).realtime.connect(model=MODEL) as conn:
            await conn.session.update(session=no_vad)
            await next_event(conn, "session.updated")

            # VAD off: loud audio alone does nothing, the client commits
            await stream(conn, pcm16_tone(300))
            with pytest.raises(TimeoutError):
                await next_event(conn, "input_audio_buffer.speech_started", timeout=0.2)
            await conn.input_audio_buffer.commit()
            committed = await next_event(conn, "input_audio_buffer.committed")
            failed = await next_event(conn, "conversation.item.input_audio_transcription.failed")
            assert failed.item_id == committed.item_id and failed.error.message
            # without turn detection the API never answers on its own: the client asks
            with pytest.raises(TimeoutError):
                await next_event(conn, "response.created", timeout=0.2)
            await conn.response.create()
            answer = await collect_response(conn)
            assert (
                "".join(e.delta for e in answer if e.type == "response.output_audio_transcript.delta")
                == "Sorry, I could not hear you."
            )

            # typed caller input also consumes the next caller turn (on response.create)
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Jan 1st?"}]}
            )
            await next_event(conn, "conversation.item.done")
            await conn.response.create()
            call = await next_event(conn, "response.function_call_arguments.done")
            await next_event(conn, "response.done")
            await conn.conversation.item.create(
                item={"type": "function_call_output", "call_id": call.call_id, "output": '{"available": false}'}
            )
            await conn.response.create()
            answer = await collect_response(conn)
            assert (
                "".join(e.delta for e in answer if e.type == "response.output_audio_transcript.delta")
                == "Fully booked."
            )

            # unknown call_id is rejected
            await conn.conversation.item.create(
                item={"type": "function_call_output", "call_id": "call_nope", "output": "{}"}
            )
            err = await next_event(conn, "error")
            assert err.error.param == "item.call_id"

            # script exhausted: default transcript + default reply
            await stream(conn, pcm16_tone(300))
            await conn.input_audio_buffer.commit()
            tr = await next_event(conn, "conversation.item.input_audio_transcription.completed")
            assert tr.transcript == "(mumble)"
            await conn.response.create()
            answer = await collect_response(conn)
            assert (
                "".join(e.delta for e in answer if e.type == "response.output_audio_transcript.delta")
                == "Could you repeat that?"
            )

    with FakeRealtimeServer(script) as server:
        asyncio.run(main(server))
        assert server.tool_outputs()[0].output == {"available": False}
        assert_events_valid(server)


@pytest.mark.timeout(20)
def test_script_drop_step_and_server_scoped_script() -> None:
    script = Script(greet(drop()), greet("Welcome back."))

    async def first() -> None:
        async with client(server).realtime.connect(model=MODEL) as conn:
            await conn.response.create()
            with pytest.raises(ConnectionClosedError):
                async for _ in conn:
                    pass

    async def second() -> str:
        async with client(server).realtime.connect(model=MODEL) as conn:
            await conn.response.create()
            answer = await collect_response(conn)
            return "".join(e.delta for e in answer if e.type == "response.output_audio_transcript.delta")

    with FakeRealtimeServer(script, script_scope="server") as server:
        asyncio.run(first())
        assert asyncio.run(second()) == "Welcome back."  # continues where the dropped connection stopped
        assert server.connection_count == 2
        assert server.wait_for_connections(2, timeout=1)[1].accepted


@pytest.mark.timeout(20)
def test_create_response_false_late_transcript_and_stop_with_open_connection() -> None:
    script = Script(on_caller_speech(user_said("Two people please", late=True), say("Two people, noted.")))
    session = {
        **SESSION,
        "audio": {
            **SESSION["audio"],
            "input": {
                **SESSION["audio"]["input"],
                "turn_detection": {"type": "server_vad", "create_response": False, "silence_duration_ms": 300},
            },
        },
    }

    async def main(server: FakeRealtimeServer) -> None:
        async with client(server).realtime.connect(model=MODEL) as conn:
            await conn.session.update(session=session)
            await next_event(conn, "session.updated")
            await stream(conn, pcm16_tone(500) + pcm16_silence(400))
            stopped = await next_event(conn, "input_audio_buffer.speech_stopped")
            assert stopped.audio_end_ms == 500 + 300
            await next_event(conn, "input_audio_buffer.committed")
            with pytest.raises(TimeoutError):  # create_response false: wait for the client
                await next_event(conn, "response.created", timeout=0.2)
            await conn.response.create()
            seen: list = []
            await next_event(conn, "response.created", seen=seen)
            late = await next_event(conn, "conversation.item.input_audio_transcription.completed", seen=seen)
            assert late.transcript == "Two people please"  # arrives after response.created
            await next_event(conn, "response.done")

            # stopping the server under a live connection ends the iterator cleanly (close 1001)
            await asyncio.to_thread(server.stop)
            async with asyncio.timeout(5):
                async for _ in conn:
                    pass

    server = FakeRealtimeServer(script, always_transcribe=True).start()
    try:
        asyncio.run(main(server))
    finally:
        server.stop()


_SUBPROCESS_CLIENT = """
import asyncio, os, openai
async def main():
    client = openai.AsyncOpenAI()  # OPENAI_BASE_URL / OPENAI_API_KEY from the environment
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime"})
        await conn.response.create()
        async for ev in conn:
            if ev.type == "response.output_audio_transcript.done":
                print("TRANSCRIPT", ev.transcript, flush=True)
            if ev.type == "response.done":
                break
asyncio.run(main())
"""


@pytest.mark.timeout(30)
def test_usable_from_a_subprocess_with_blocking_waits() -> None:
    with FakeRealtimeServer(Script(greet("Hello from the fake."))) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": API_KEY}
        proc = subprocess.Popen(
            [sys.executable, "-c", _SUBPROCESS_CLIENT],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            update = server.wait_for("session.update", timeout=20)
            assert update["session"]["type"] == "realtime"
            done = server.wait_for_sent("response.done", timeout=10)
            assert done["response"]["status"] == "completed"
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert "TRANSCRIPT Hello from the fake." in out
        assert server.connections[0].api_key_last4 == API_KEY[-4:]


@pytest.mark.timeout(20)
def test_failed_response_raw_event_script_error_and_handshake_status() -> None:
    script = Script(
        greet(
            pause(0.05),
            send_event({"type": "rate_limits.updated", "rate_limits": []}),
            say("This answer fails halfway through.", fail_after_deltas=2),
        ),
        greet(say(lambda out: out["missing"])),  # no tool output yet: the callable raises
    )

    async def main(server: FakeRealtimeServer) -> None:
        async with client(server).realtime.connect(model=MODEL) as conn:
            await conn.response.create()
            raw = await next_event(conn, "rate_limits.updated")
            assert raw.rate_limits == [] and raw.event_id
            answer = await collect_response(conn)
            assert sum(e.type == "response.output_audio.delta" for e in answer) == 2
            done = answer[-1].response
            assert done.status == "failed" and done.status_details.error.type == "server_error"
            await conn.response.create()
            err = await next_event(conn, "error")
            assert err.error.code == "fake_script_error"

    with FakeRealtimeServer(script) as server:
        asyncio.run(main(server))
        assert server.interrupted_responses()[0]["status"] == "failed"
        assert server.interrupted_responses()[0]["audio_sent_ms"] == 200
        assert any("script step failed" in p for p in server.problems())

    async def connect(server: FakeRealtimeServer) -> None:
        async with client(server).realtime.connect(model=MODEL):
            pass

    body = {
        "error": {
            "message": "You exceeded your current quota.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }
    with FakeRealtimeServer(handshake_status=429, handshake_body=body) as server:
        with pytest.raises(InvalidStatus) as exc_info:
            asyncio.run(connect(server))
        assert exc_info.value.response.status_code == 429
        assert json.loads(exc_info.value.response.body) == body
