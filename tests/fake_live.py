"""A scripted fake of OpenAI's GPT-Live API (`/v1/live/sessions`) for tests, strict about the wire protocol.

A local `websockets` server the real `openai` SDK (3.57, `client.live.connect()`) drives through
`OPENAI_BASE_URL=server.base_url` (`http://127.0.0.1:PORT/v1`), with `Authorization: Bearer <key>` on the upgrade.
It runs in a background thread with its own event loop, so it serves in-process tests and app subprocesses alike.
`../shared/gpt-live.md` has the protocol notes it follows.

Quick start::

    from tests.fake_live import FakeLiveServer, Script, greet, on_caller_speech, user_said, call_tool, say

    script = Script(
        greet("Hello, this is AI-SHIFT."),
        on_caller_speech(
            user_said("A table for two at seven."),
            call_tool("update_reservation", {"party_size": 2, "time": "19:00"}),
            say(lambda out: f"Two at seven; the status is {out['status']}."),
        ),
    )
    with FakeLiveServer(script, api_key="sk-test") as server:
        ...  # the app streams audio; server.tool_outputs(), server.problems(), server.interrupted()

What it checks
==============
* **Every client event against the SDK's own types** (`openai.types.live.ClientEventParam`, followed through every
  nested TypedDict, union and literal): an unknown field anywhere is an `error` with code `unknown_parameter` and
  the field's `param` (the real endpoint is strict; the SDK's models are lenient), a missing one
  `missing_required_parameter`, a wrong type `invalid_type`, an unknown event type `unknown_event_type` with the
  supported types listed. Every violation is also kept in `problems()`, which a test asserts empty.
* **The protocol's order**: nothing but `session.start` before `session.started`; `response.item.create` only under
  Responses delegation; `response.create` only once every open function call has its output; immutable fields in
  `session.update` refused (`immutable_field_update`).
* **Every server event it sends** parses as the SDK's `ServerEvent` (else a problem).

How it behaves
==============
* **The timeline advances only with input audio.** Each `session.input_audio.append` (PCM16 at the session's rate,
  or μ-law at 8 kHz) moves it on by its duration, and the fake sends the same duration of output: the model's voice
  while it speaks, digital silence otherwise. No input, no output, no transcripts, no acknowledgements.
* **Caller turns**: an energy detector (RMS dBFS over 20 ms windows) finds the caller's speech; `silence_ms` of quiet
  after it ends the turn, and the next `on_caller_speech` turn runs (unscripted speech: `default_transcript`, then
  `default_reply`).
* **Barge-in is the model's**: the caller's speech for `barge_in_ms` while the model speaks stops it. Its output turns
  to silence at once, the rest of its transcript is never sent, and `interrupted()` records it. No event says so.
* **Instructions**: the first `session.instructions.append` runs the `greet` turn (the app asks for its greeting);
  later ones run `on_instructions` turns in order, else the model says `default_instruction_reply`. Appends are
  acknowledged (`session.instructions.appended`, …) when the timeline reaches them.
* **Responses delegation**: `call_tool` emits `session.delegation.created`, then `response.event`s (the function call,
  `response.completed` with usage), waits for a `function_call_output` for every open call and one `response.create`,
  and goes on (the backend's text, `response.completed`, then the next step).
* **Usage**: `session.usage.updated` with the cumulative seconds every `usage_every_s` of timeline; `session.close`
  answers `session.closed` (with the usage) and closes the socket.

Script
======
Turns: `greet(*steps)`, `on_caller_speech(*steps)`, `on_instructions(*steps)`; a plain `str` step is `say(str)`.
Steps: `user_said(text)`, `say(text)` (`text` may be a callable of the last tool output, parsed), `call_tool(name,
arguments)` (`arguments` a dict, a raw string, or a callable), `send_error(code, message, type)`, `pause(seconds)`
(real time), `drop()` (abort the TCP connection), `stall()` (send nothing more), `send_event(dict)`.

Server options
==============
`FakeLiveServer(script=None, *, api_key=None, bad_key_mode="http" | "event", quota_error=False,
handshake_status=None, ms_per_char=60, min_audio_ms=400, max_audio_ms=8000, vad_threshold_dbfs=-45, silence_ms=500,
barge_in_ms=200, usage_every_s=15)`.
"""

from __future__ import annotations

import asyncio
import base64
import collections.abc
import contextlib
import itertools
import json
import math
import secrets
import threading
import time
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

import numpy as np
import typing_extensions
from openai.types.live import ClientEventParam, ServerEvent
from pydantic import TypeAdapter, ValidationError
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

WINDOW_MS = 20
IMMUTABLE = ("model", "instructions", "audio", "input", "client", "store")
_SERVER_EVENT = TypeAdapter(ServerEvent)


# ---- strictness: the SDK's own TypedDicts, followed all the way down --------------------------------------------


@dataclass(frozen=True)
class Violation:
    code: str  # unknown_parameter, missing_required_parameter, invalid_type, invalid_value
    param: str


def _hints(typed: Any) -> dict[str, Any]:
    return typing.get_type_hints(typed, include_extras=True)


def _bare(hint: Any) -> Any:
    while get_origin(hint) in (typing.Required, typing.NotRequired, typing.Annotated, typing_extensions.Required):
        hint = get_args(hint)[0]
    return hint


def _required(typed: Any) -> set[str]:
    """The required keys (the SDK's modules use string annotations, so `__required_keys__` cannot see them)."""
    required = set()
    for key, hint in _hints(typed).items():
        origin = get_origin(hint)
        if origin in (typing.Required, typing_extensions.Required) or (typed.__total__ and origin is None):
            required.add(key)
    return required


def check(value: Any, hint: Any, path: str) -> list[Violation]:
    """Everything about `value` that the type `hint` does not allow (an empty list when it is valid)."""
    hint = _bare(hint)
    origin = get_origin(hint)
    if hint in (Any, object):
        return []
    if origin in (Union, types.UnionType):
        options = [option for option in get_args(hint) if option is not type(None)]
        if value is None and len(options) < len(get_args(hint)):
            return []
        attempts = [check(value, option, path) for option in options]
        return [] if any(not found for found in attempts) else min(attempts, key=len)
    if origin in (Literal, typing_extensions.Literal):
        return [] if value in get_args(hint) else [Violation("invalid_value", path)]
    if typing_extensions.is_typeddict(hint):
        if not isinstance(value, dict):
            return [Violation("invalid_type", path)]
        fields = _hints(hint)
        found = [Violation("unknown_parameter", f"{path}.{key}") for key in value if key not in fields]
        found += [Violation("missing_required_parameter", f"{path}.{key}") for key in _required(hint) - set(value)]
        for key, item in value.items():
            if key in fields:
                found += check(item, fields[key], f"{path}.{key}")
        return found
    if origin in (dict, collections.abc.Mapping):
        return [] if isinstance(value, dict) else [Violation("invalid_type", path)]
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence) or "SequenceNotStr" in str(origin):
        if not isinstance(value, list):
            return [Violation("invalid_type", path)]
        (item,) = get_args(hint) or (Any,)
        return [problem for index, element in enumerate(value) for problem in check(element, item, f"{path}[{index}]")]
    kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}
    if hint in kinds:
        wrong = not isinstance(value, kinds[hint]) or (hint is not bool and isinstance(value, bool))
        return [Violation("invalid_type", path)] if wrong else []
    return [Violation("invalid_type", path)]


EVENT_TYPES = {
    get_args(_bare(_hints(member)["type"]))[0]: member for member in get_args(ClientEventParam)
}  # event type -> its TypedDict


# ---- audio ------------------------------------------------------------------------------------------------------


def _mulaw_to_pcm(data: bytes) -> np.ndarray:
    code = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    exponent, mantissa = (code >> 4) & 7, code & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def _pcm_to_mulaw(pcm: np.ndarray) -> bytes:
    value = np.clip(pcm.astype(np.int32), -32635, 32635)
    sign = np.where(value < 0, 0x80, 0)
    magnitude = np.abs(value) + 0x84
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def dbfs(pcm: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) if pcm.size else 0.0
    return 20 * math.log10(rms / 32768) if rms > 0 else -120.0


def voice(ms: float, rate: int, seed: int) -> np.ndarray:
    """A voiced, speech-like signal (harmonics under a syllable envelope) at about -18 dBFS."""
    t = np.arange(int(rate * ms / 1000)) / rate
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    signal = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 4 * t)))
    return (signal / np.max(np.abs(signal) + 1e-9) * 32768 * 10 ** (-15 / 20)).astype(np.int16)


# ---- the script -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    kind: str  # user_said, say, call_tool, send_error, pause, drop, stall, send_event
    value: Any = None
    extra: Any = None


@dataclass(frozen=True)
class Turn:
    kind: str  # greet, speech, instructions
    steps: tuple[Step, ...]


def user_said(text: str) -> Step:
    return Step("user_said", text)


def say(text: str | Callable[[Any], str], audio_ms: float | None = None) -> Step:
    """The model speaks `text` (as long as `audio_ms`, by default the server's `ms_per_char` per character)."""
    return Step("say", text, audio_ms)


def call_tool(name: str, arguments: Any = None) -> Step:
    return Step("call_tool", name, arguments)


def send_error(code: str, message: str = "Something went wrong.", type: str = "invalid_request_error") -> Step:
    return Step("send_error", code, (message, type))


def pause(seconds: float) -> Step:
    return Step("pause", seconds)


def drop() -> Step:
    return Step("drop")


def stall() -> Step:
    return Step("stall")


def send_event(event: dict) -> Step:
    return Step("send_event", event)


def _steps(steps: Iterable[Any]) -> tuple[Step, ...]:
    return tuple(say(step) if isinstance(step, str) else step for step in steps)


def greet(*steps: Any) -> Turn:
    return Turn("greet", _steps(steps))


def on_caller_speech(*steps: Any) -> Turn:
    return Turn("speech", _steps(steps))


def on_instructions(*steps: Any) -> Turn:
    return Turn("instructions", _steps(steps))


class Script:
    def __init__(
        self,
        *turns: Turn,
        default_reply: str = "Sorry, could you say that again?",
        default_transcript: str = "(unscripted speech)",
        default_instruction_reply: str = "Of course.",
    ) -> None:
        self.turns = turns
        self.default_reply = default_reply
        self.default_transcript = default_transcript
        self.default_instruction_reply = default_instruction_reply


@dataclass
class ToolOutput:
    name: str
    call_id: str
    output: Any  # the parsed JSON the client sent back (or the raw string)


# ---- one session ------------------------------------------------------------------------------------------------


@dataclass
class _Utterance:
    audio: np.ndarray
    words: list[tuple[int, str]]  # (sample offset, text) of each transcript piece
    sent: int = 0
    spoken: int = 0  # transcript pieces sent
    done: asyncio.Event = field(default_factory=asyncio.Event)


class _Session:
    """One socket: one Live session, run on the server's loop."""

    def __init__(self, server: FakeLiveServer, ws: ServerConnection, number: int) -> None:
        self.server, self.ws, self.number = server, ws, number
        self.session: dict[str, Any] | None = None
        self.rate, self.mulaw = 24_000, False
        self.samples = 0  # the timeline, in samples of input received
        self.turns = {kind: [turn for turn in server.script.turns if turn.kind == kind] for kind in server.KINDS}
        self.running: asyncio.Task | None = None
        self.speaking: _Utterance | None = None
        self.heard_ms = self.quiet_ms = self.loud_ms = 0.0  # the caller's current speech, and the quiet after it
        self.caller_start = 0
        self.barge_ms = 0.0
        self.due: list[tuple[int, dict]] = []  # (timeline sample, event) sent once the timeline reaches it
        self.next_usage = 0
        self.open_calls: dict[str, str] = {}  # call_id -> name
        self.outputs: dict[str, str] = {}
        self.continued = asyncio.Event()
        self.last_output: Any = None
        self.instructed = 0
        self.stalled = False
        self.closed = False
        self.ids = itertools.count(1)

    @property
    def now_ms(self) -> int:
        return self.samples * 1000 // self.rate

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{self.number}_{next(self.ids)}"

    async def send(self, event: dict[str, Any]) -> None:
        if self.stalled or self.closed:
            return
        if event["type"] != "session.output_audio.delta":
            event.setdefault("event_id", self.new_id("event"))
        try:
            _SERVER_EVENT.validate_python(event)
        except ValidationError as invalid:
            self.server.problem(self.number, f"sent an event the SDK cannot parse ({event['type']}): {invalid}")
        self.server.record("sent", self.number, event)
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(event))

    async def error(self, code: str, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        await self.send({"type": "error", "error": {"type": kind, "code": code, "message": message, "param": param}})

    # ---- client events

    async def handle(self, raw: str | bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            self.server.problem(self.number, "a frame that is not JSON")
            return await self.error("invalid_json", "The message is not valid JSON.")
        kind = event.get("type") if isinstance(event, dict) else None
        if kind != "session.input_audio.append":
            self.server.record("client", self.number, event)
        if kind not in EVENT_TYPES:
            self.server.problem(self.number, f"unknown event type {kind!r}")
            supported = ", ".join(sorted(EVENT_TYPES))
            return await self.error("unknown_event_type", f"Unsupported event type. Supported: {supported}", "type")
        violations = check(event, EVENT_TYPES[kind], "event")
        if violations:
            for violation in violations:
                self.server.problem(self.number, f"{kind}: {violation.code} at {violation.param}")
            first = violations[0]
            return await self.error(first.code, f"Invalid {first.param}.", first.param.removeprefix("event."))
        if self.session is None and kind != "session.start":
            self.server.problem(self.number, f"{kind} before session.started")
            return await self.error("session_not_started", "Send session.start first.")
        await getattr(self, "on_" + kind.replace(".", "_"))(event)

    async def on_session_start(self, event: dict) -> None:
        if self.session is not None:
            return await self.error("session_already_started", "The session has already started.")
        config = event["session"]
        fmt = (config.get("audio") or {}).get("format") or {"type": "audio/pcm", "rate": 24_000}
        self.mulaw, self.rate = fmt["type"] == "audio/pcmu", int(fmt.get("rate") or 24_000)
        self.server.sessions.append(config)
        if self.server.bad_key_mode == "event" and self.server.key_refused.get(self.number):
            await self.error("invalid_api_key", "Incorrect API key provided.", kind="authentication_error")
            return await self.ws.close()
        if self.server.quota_error:
            await self.error("insufficient_quota", "You exceeded your current quota.", kind="insufficient_quota")
            return await self.ws.close()
        self.session = {
            **config,
            "id": f"live_{secrets.token_hex(8)}",
            "expires_at": int(time.time()) + 3600,
            "status": "active",
            "audio": {**(config.get("audio") or {}), "format": fmt},
        }
        self.next_usage = self.rate * self.server.usage_every_s
        await self.send({"type": "session.started", "session": self.session, "client_event_id": event.get("event_id")})

    async def on_session_update(self, event: dict) -> None:
        frozen = [key for key in event["session"] if key in IMMUTABLE]
        if frozen or ("delegation" in event["session"] and self._delegation_type(event["session"]) != self._kind()):
            param = f"session.{frozen[0] if frozen else 'delegation.type'}"
            return await self.error("immutable_field_update", f"{param} cannot change after startup.", param)
        await self.send({"type": "session.updated", "session": self.session, "client_event_id": event.get("event_id")})

    async def on_session_close(self, event: dict) -> None:
        usage = {"seconds": round(self.now_ms / 1000, 3), "active_seconds": self.now_ms // 1000}
        await self.send(
            {"type": "session.closed", "reason": "close_requested", "session": self.session, "usage": usage}
        )
        self.closed = True
        await self.ws.close()

    async def on_session_input_audio_append(self, event: dict) -> None:
        data = base64.b64decode(event["audio"])
        pcm = _mulaw_to_pcm(data) if self.mulaw else np.frombuffer(data[: len(data) // 2 * 2], dtype=np.int16)
        self.server.audio_in(self.number, pcm)
        await self.advance(pcm)

    async def on_session_input_audio_mute(self, event: dict) -> None:
        await self.send({"type": "session.input_audio.muted", "client_event_id": event.get("event_id")})

    async def on_session_input_audio_unmute(self, event: dict) -> None:
        await self.send({"type": "session.input_audio.unmuted", "client_event_id": event.get("event_id")})

    async def on_session_instructions_append(self, event: dict) -> None:
        await self._appended("session.instructions.appended", event)
        self.instructed += 1
        kind = "greet" if self.instructed == 1 and self.turns["greet"] else "instructions"
        fallback = (say(self.server.script.default_instruction_reply),)
        self.start_turn(self.turns[kind].pop(0).steps if self.turns[kind] else fallback)

    async def on_session_thinking_append(self, event: dict) -> None:
        await self._appended("session.thinking.appended", event)

    async def on_session_commentary_append(self, event: dict) -> None:
        await self._appended("session.commentary.appended", event)

    async def on_session_output_audio_fixture_play(self, event: dict) -> None:
        await self.error("unsupported", "Fixtures are not played by this fake.")

    async def on_response_item_create(self, event: dict) -> None:
        if self._kind() != "responses":
            self.server.problem(self.number, "response.item.create without Responses delegation")
            return await self.error("invalid_request", "response.item.create requires Responses delegation.")
        item = event["item"]
        if item.get("type") == "function_call_output":
            if item.get("call_id") not in self.open_calls:
                self.server.problem(self.number, f"an output for an unknown call {item.get('call_id')!r}")
                return await self.error("unknown_call_id", "No open function call has this call_id.", "item.call_id")
            self.outputs[item["call_id"]] = item["output"]

    async def on_response_create(self, event: dict) -> None:
        if self._kind() != "responses":
            return await self.error("invalid_request", "response.create requires Responses delegation.")
        missing = [call_id for call_id in self.open_calls if call_id not in self.outputs]
        if missing:
            self.server.problem(self.number, f"response.create with calls still open: {missing}")
            return await self.error("open_function_calls", "Send an output for every open function call first.")
        for call_id, name in self.open_calls.items():
            output = self.outputs[call_id]
            with contextlib.suppress(ValueError):
                output = json.loads(output)
            self.last_output = output
            self.server.tool_output(ToolOutput(name, call_id, output))
        self.open_calls.clear()
        self.outputs.clear()
        self.continued.set()

    async def on_decision_create(self, event: dict) -> None:
        await self.error("unsupported", "Decisions are not played by this fake.")

    on_decision_item_create = on_decision_item_delete = on_decision_create

    async def _appended(self, kind: str, event: dict) -> None:
        at = self.samples + self.rate // 10  # acknowledged once the timeline reaches the injection point
        ack = {"type": kind, "client_event_id": event.get("event_id"), "start_ms": 0, "end_ms": 0}
        ack["start_ms"] = ack["end_ms"] = at * 1000 // self.rate
        self.due.append((at, ack))

    def _kind(self) -> str:
        return self._delegation_type(self.session or {}) or "client"

    @staticmethod
    def _delegation_type(config: dict) -> str | None:
        delegation = config.get("delegation")
        return delegation.get("type") if isinstance(delegation, dict) else None

    # ---- the timeline

    async def advance(self, pcm: np.ndarray) -> None:
        """The input moved the timeline on by `pcm`'s length: hear it, send as much output, release what is due."""
        for start in range(0, pcm.size, self.rate * WINDOW_MS // 1000):
            await self.hear(pcm[start : start + self.rate * WINDOW_MS // 1000])
        out = np.zeros(pcm.size, dtype=np.int16)
        utterance = self.speaking
        if utterance is not None:
            piece = utterance.audio[utterance.sent : utterance.sent + pcm.size]
            out[: piece.size] = piece
            if utterance.sent == 0:
                self.server.stamp(self.number, "answers")
            began = utterance.sent  # the utterance's position at this chunk's start on the timeline
            utterance.sent += piece.size
            while utterance.spoken < len(utterance.words) and utterance.words[utterance.spoken][0] < utterance.sent:
                await self._say_piece(utterance, began)
            if utterance.sent >= utterance.audio.size:
                self.speaking = None
                utterance.done.set()
        self.samples += pcm.size
        wire = _pcm_to_mulaw(out) if self.mulaw else out.tobytes()
        await self.send({"type": "session.output_audio.delta", "delta": base64.b64encode(wire).decode("ascii")})
        for at, event in [item for item in self.due if item[0] <= self.samples]:
            self.due.remove((at, event))
            await self.send(event)
        if self.samples >= self.next_usage:
            self.next_usage += self.rate * self.server.usage_every_s
            usage = {"seconds": round(self.now_ms / 1000, 3), "active_seconds": self.now_ms // 1000}
            await self.send({"type": "session.usage.updated", "usage": usage, "context_window": {"usage_ratio": 0.01}})

    async def _say_piece(self, utterance: _Utterance, began: int) -> None:
        offset, text = utterance.words[utterance.spoken]
        utterance.spoken += 1
        start = (self.samples + max(0, offset - began)) * 1000 // self.rate
        await self.send({"type": "session.output_transcript.delta", "delta": text, "start_ms": start, "end_ms": start})

    async def hear(self, window: np.ndarray) -> None:
        ms = window.size * 1000 / self.rate
        loud = dbfs(window) >= self.server.vad_threshold_dbfs
        if loud:
            if self.heard_ms == 0:
                self.caller_start = self.now_ms
                self.server.stamp(self.number, "heard")
            self.heard_ms += ms
            self.quiet_ms = 0.0
            if self.speaking is not None:
                self.barge_ms += ms
                if self.barge_ms >= self.server.barge_in_ms:
                    await self.stop_speaking()
        elif self.heard_ms:
            self.quiet_ms += ms
            if self.quiet_ms >= self.server.silence_ms:  # the caller's turn is over
                speech = (self.caller_start, self.now_ms - int(self.quiet_ms))
                self.heard_ms = self.quiet_ms = self.barge_ms = 0.0
                if speech[1] - speech[0] >= 60:
                    self.caller_turn(speech)
        else:
            self.barge_ms = 0.0

    async def stop_speaking(self) -> None:
        """The model hears the caller and stops: silence from here on, the rest of its words never sent."""
        utterance = self.speaking
        assert utterance is not None
        self.speaking = None
        self.server.interrupted_at(self.number, utterance.sent * 1000 // self.rate)
        self.server.stamp(self.number, "stops")
        utterance.done.set()

    def caller_turn(self, speech: tuple[int, int]) -> None:
        turn = self.turns["speech"].pop(0).steps if self.turns["speech"] else None
        if turn is None:
            turn = (user_said(self.server.script.default_transcript), say(self.server.script.default_reply))
        self.start_turn(turn, speech)

    def start_turn(self, steps: tuple[Step, ...], speech: tuple[int, int] | None = None) -> None:
        previous = self.running
        self.running = asyncio.get_running_loop().create_task(self.run(steps, speech, previous))

    async def run(self, steps: tuple[Step, ...], speech: tuple[int, int] | None, previous: asyncio.Task | None):
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        for step in steps:
            await self.step(step, speech)

    async def step(self, step: Step, speech: tuple[int, int] | None) -> None:
        if step.kind == "user_said":
            start, end = speech or (self.now_ms, self.now_ms)
            words = step.value.split(" ")
            for index, word in enumerate(words):
                piece = word if index == 0 else " " + word
                at = start + (end - start) * index // max(1, len(words))
                await self.send(
                    {"type": "session.input_transcript.delta", "delta": piece, "start_ms": at, "end_ms": end}
                )
        elif step.kind == "say":
            await self.speak(step.value(self.last_output) if callable(step.value) else step.value, step.extra)
        elif step.kind == "call_tool":
            await self.delegate(step.value, step.extra)
        elif step.kind == "send_error":
            message, kind = step.extra
            await self.error(step.value, message, kind=kind)
        elif step.kind == "pause":
            await asyncio.sleep(step.value)
        elif step.kind == "drop":
            self.ws.transport.abort()
        elif step.kind == "stall":
            self.stalled = True
        elif step.kind == "send_event":
            await self.send(dict(step.value))

    async def speak(self, text: str, audio_ms: float | None = None) -> None:
        server = self.server
        ms = audio_ms or min(server.max_audio_ms, max(server.min_audio_ms, server.ms_per_char * len(text)))
        audio = voice(ms, self.rate, seed=len(text))
        words = text.split(" ")
        pieces = [(audio.size * i // len(words), word if i == 0 else " " + word) for i, word in enumerate(words)]
        utterance = _Utterance(audio, pieces)
        self.speaking = utterance
        await utterance.done.wait()

    async def delegate(self, name: str, arguments: Any) -> None:
        if self._kind() != "responses":
            self.server.problem(self.number, f"call_tool({name!r}) without Responses delegation")
            return
        tools = [tool.get("name") for tool in (self.session or {})["delegation"]["responses"].get("tools") or []]
        if name not in tools:
            self.server.problem(self.number, f"the backend called {name!r}, which is not among the tools {tools}")
        if callable(arguments):
            arguments = arguments(self.last_output)
        text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
        delegation, response, call_id = self.new_id("dlg"), self.new_id("resp"), self.new_id("call")
        created = {"id": delegation, "target": "responses", "type": "delegation", "response_id": response}
        await self.send({"type": "session.delegation.created", "delegation": created, "offset_ms": self.now_ms})
        item = {"type": "function_call", "id": self.new_id("fc"), "call_id": call_id, "name": name, "arguments": text}
        self.open_calls[call_id] = name
        self.continued.clear()
        for nested in (
            {"type": "response.created", "response": {"id": response, "status": "in_progress"}},
            {"type": "response.output_item.added", "output_index": 0, "item": {**item, "status": "in_progress"}},
            {"type": "response.output_item.done", "output_index": 0, "item": {**item, "status": "completed"}},
            {"type": "response.completed", "response": {"id": response, "status": "completed", "usage": _usage(text)}},
        ):
            await self.send({"type": "response.event", "delegation_id": delegation, "event": nested})
        await self.continued.wait()
        follow = self.new_id("resp")
        for nested in (
            {"type": "response.created", "response": {"id": follow, "status": "in_progress"}},
            {"type": "response.output_text.delta", "delta": "(the result)", "output_index": 0},
            {"type": "response.completed", "response": {"id": follow, "status": "completed", "usage": _usage("ok")}},
        ):
            await self.send({"type": "response.event", "delegation_id": delegation, "event": nested})


def _usage(text: str) -> dict[str, Any]:
    output = max(1, len(text) // 4)
    return {
        "input_tokens": 900,
        "input_tokens_details": {"cached_tokens": 600},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 900 + output,
    }


# ---- the server -------------------------------------------------------------------------------------------------


class FakeLiveServer:
    """A scripted GPT-Live WebSocket server in a background thread (see the module docstring)."""

    KINDS = ("greet", "speech", "instructions")

    def __init__(
        self,
        script: Script | None = None,
        *,
        api_key: str | None = None,
        bad_key_mode: str = "http",
        quota_error: bool = False,
        handshake_status: int | None = None,
        ms_per_char: float = 60.0,
        min_audio_ms: float = 400.0,
        max_audio_ms: float = 8000.0,
        vad_threshold_dbfs: float = -45.0,
        silence_ms: float = 500.0,
        barge_in_ms: float = 200.0,
        usage_every_s: int = 15,
    ) -> None:
        self.script = script or Script()
        self.api_key, self.bad_key_mode, self.quota_error = api_key, bad_key_mode, quota_error
        self.handshake_status = handshake_status
        self.ms_per_char, self.min_audio_ms, self.max_audio_ms = ms_per_char, min_audio_ms, max_audio_ms
        self.vad_threshold_dbfs, self.silence_ms, self.barge_in_ms = vad_threshold_dbfs, silence_ms, barge_in_ms
        self.usage_every_s = usage_every_s
        self.port = 0
        self.sessions: list[dict] = []  # every connection's session.start `session`
        self.key_refused: dict[int, bool] = {}
        self._lock = threading.Condition()
        self._connections = 0
        self._log: list[tuple[str, int, dict]] = []
        self._problems: list[str] = []
        self._outputs: list[ToolOutput] = []
        self._interrupted: list[dict] = []
        self._audio: dict[int, list[np.ndarray]] = {}
        self._stamps: dict[int, dict[str, list[float]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # ---- lifecycle

    def __enter__(self) -> FakeLiveServer:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="fake-live", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake Live server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with serve(
            self._serve, "127.0.0.1", 0, process_request=self._upgrade, max_size=None, close_timeout=1
        ) as ws:
            self.port = ws.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def _upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        """The upgrade: `/v1/live/sessions` with no query, and the right key (HTTP 401 otherwise, by default)."""
        with self._lock:
            self._connections += 1
            number = self._connections
        connection.number = number  # type: ignore[attr-defined]
        if request.path != "/v1/live/sessions":
            self.problem(number, f"connected to {request.path!r}: the model belongs in session.start, not the URL")
            return _refusal(404, "not_found", "Unknown path.")
        if self.handshake_status is not None:
            return _refusal(self.handshake_status, "server_error", "The service is unavailable.")
        auth = request.headers.get("Authorization") or ""
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            if self.bad_key_mode == "event":
                self.key_refused[number] = True
                return None
            return _refusal(401, "invalid_api_key", "Incorrect API key provided.")
        return None

    async def _serve(self, ws: ServerConnection) -> None:
        session = _Session(self, ws, ws.number)  # type: ignore[attr-defined]
        try:
            async for raw in ws:
                await session.handle(raw)
        except ConnectionClosed:
            pass
        finally:
            if session.running is not None:
                session.running.cancel()

    def set_script(self, script: Script) -> None:
        """The script of the sessions that start from now on (a reconnect is a new session)."""
        self.script = script

    # ---- records (thread-safe)

    def record(self, direction: str, number: int, event: dict) -> None:
        with self._lock:
            self._log.append((direction, number, event))
            self._lock.notify_all()

    def problem(self, number: int, text: str) -> None:
        with self._lock:
            self._problems.append(f"connection {number}: {text}")

    def tool_output(self, output: ToolOutput) -> None:
        with self._lock:
            self._outputs.append(output)
            self._lock.notify_all()

    def interrupted_at(self, number: int, sent_ms: int) -> None:
        with self._lock:
            self._interrupted.append({"connection": number, "sent_ms": sent_ms, "at": time.monotonic()})

    def stamp(self, number: int, kind: str) -> None:
        """When (`time.monotonic()`) something happened on a connection: an answer's first audible output was sent
        ("answers"), the caller was heard starting to speak ("heard"), the model stopped for the caller ("stops")."""
        with self._lock:
            self._stamps.setdefault(number, {}).setdefault(kind, []).append(time.monotonic())

    def audio_in(self, number: int, pcm: np.ndarray) -> None:
        with self._lock:
            self._audio.setdefault(number, []).append(pcm)

    # ---- what tests read

    def client_events(self, kind: str | None = None, conn: int | None = None) -> list[dict]:
        return self._events("client", kind, conn)

    def sent_events(self, kind: str | None = None, conn: int | None = None) -> list[dict]:
        return self._events("sent", kind, conn)

    def _events(self, direction: str, kind: str | None, conn: int | None) -> list[dict]:
        with self._lock:
            return [
                event
                for way, number, event in self._log
                if way == direction and (kind is None or event.get("type") == kind) and conn in (None, number)
            ]

    def wait_for(self, kind: str, predicate: Callable[[dict], bool] | None = None, timeout: float = 10.0) -> dict:
        """The first client event of `kind` (matching `predicate`), waiting for it."""
        return self.wait_until(
            lambda: next((e for e in self.client_events(kind) if predicate is None or predicate(e)), None), timeout
        )

    def wait_until(self, condition: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                self._lock.release()
                try:
                    value = condition()
                finally:
                    self._lock.acquire()
                if value:
                    return value
                if time.monotonic() > deadline:
                    raise TimeoutError("the fake Live server waited in vain")
                self._lock.wait(0.05)

    def connection_count(self) -> int:
        with self._lock:
            return self._connections

    def session(self, conn: int = -1) -> dict:
        """The `session` of a connection's `session.start` (by default the latest)."""
        return self.sessions[conn]

    def tool_outputs(self, name: str | None = None) -> list[ToolOutput]:
        with self._lock:
            return [output for output in self._outputs if name is None or output.name == name]

    def interrupted(self) -> list[dict]:
        with self._lock:
            return list(self._interrupted)

    def problems(self) -> list[str]:
        with self._lock:
            return list(self._problems)

    def stamps(self) -> dict[int, dict[str, list[float]]]:
        with self._lock:
            return {number: {kind: [*times] for kind, times in kinds.items()} for number, kinds in self._stamps.items()}

    def received_audio(self, conn: int = 1) -> np.ndarray:
        with self._lock:
            chunks = self._audio.get(conn, [])
            return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def _refusal(status: int, code: str, message: str) -> Response:
    body = json.dumps({"error": {"type": "invalid_request_error", "code": code, "message": message}}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status, "Refused", headers, body)
