"""A scripted fake of OpenAI's GPT-Live API (`/v1/live/sessions`) for tests, strict about the wire protocol.

A local `websockets` server that the real `openai` SDK (3.57, `client.live.connect()`) drives through
`OPENAI_BASE_URL=server.base_url` (`http://127.0.0.1:PORT/v1`), with `Authorization: Bearer <key>` on the upgrade. It
runs in a background thread with its own event loop, so it serves in-process tests and app subprocesses alike. The
protocol notes it follows are in `/work/shared/gpt-live.md`.

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
        ...  # the app streams audio; then server.tool_outputs(), server.problems(), server.interrupted()

Strictness
==========
Every client event is checked against the SDK's own `*_param.py` TypedDicts (`openai.types.live.ClientEventParam`),
followed through every nested TypedDict, union, literal and list: the real endpoint is strict, the SDK's models are
not. An unknown field anywhere is an `error` with code `unknown_parameter` and its `param` (`session.voice`); a missing
one `missing_required_parameter`, a wrong type `invalid_type`, a value outside a literal `invalid_value`, an unknown
event type `unknown_event_type` (its message lists the supported ones). So is the protocol's order: nothing but
`session.start` before `session.started`; `response.item.create`/`response.create` only under Responses delegation;
`response.create` only once every open function call has its output; `session.update` may not touch model,
instructions, audio, input, ... nor the delegation type (`immutable_field_update`); a non-null `delegation_id` must
name an open client delegation. Each refusal is also kept in `problems()`, which a test asserts empty, and so is any
event the fake itself sends that the SDK's server models (`ServerEvent`; `ResponseStreamEvent` inside
`response.event`) would refuse or do not name.

Behaviour
=========
* **The timeline advances only with input audio.** Each `session.input_audio.append` (in the session's format:
  `audio/pcm` at 24 or 16 kHz, `audio/pcmu` or `audio/pcma` at 8 kHz) moves it on by its duration, and the fake sends
  as much output in the same format: the model's voice while it speaks, digital silence otherwise. Without input,
  nothing advances: no output, no acknowledgement, no usage. The model's turn runs up to its next wait before each
  input chunk, so when it reacts depends on the timeline, never on how fast the client sends.
* **Caller turns**: an energy detector (RMS dBFS, 20 ms windows) finds the caller's speech; `silence_ms` of quiet after
  it ends the turn and runs the next `on_caller_speech` turn, whose `user_said` words are sent at once as
  `session.input_transcript.delta`s timed over the speech (no done event, no turn boundary). With no turn left the
  caller "said" `default_transcript` and the model says `default_reply`. A muted input is heard as silence.
* **Barge-in is the model's**: `barge_in_ms` of the caller's speech while the model speaks stops it. Its output turns to
  silence, the rest of its transcript is never sent, the rest of the turn is dropped, and `interrupted()` records it.
  No event says so. The caller's speech is then a turn like any other.
* **Context appends** (`session.instructions/thinking/commentary.append`) are acknowledged (`*.appended`) once the
  timeline is `append_delay_ms` past them. An acknowledged `instructions.append` then runs the `greet` turn (the first
  time: the app asks the model to greet) or the next `on_instructions` turn, else `default_instruction_reply`.
* **Responses delegation**: `call_tool` sends `session.delegation.created`, then `response.event`s (`response.created`,
  `response.output_item.added/done` with the `function_call`, `response.completed` with usage), and waits for a
  `function_call_output` for every open call plus one `response.create`. The turn's next `call_tool` goes on in the
  same delegation; its next `say` is the backend's text (`response.output_text.delta/done`, `response.completed`),
  which the voice then speaks. A turn that ends after a tool call speaks `default_reply` that way.
* **Client delegation** (no delegation, or `client`): `call_tool` sends `session.delegation.created` (target `client`,
  no task) and waits for the app's `session.commentary.append` on that id, which is the tool's output.
* **Usage**: cumulative `session.usage.updated` every `usage_every_s` of timeline; `session.close` is answered with
  `session.closed` (`close_requested`, the usage) and the socket closes. A new socket is a new session.

Script
======
Turns: `greet(*steps)`, `on_caller_speech(*steps)`, `on_instructions(*steps)`; a plain `str` step is `say(str)`.
Steps: `user_said(text)`; `say(text, audio_ms=None)` (`text` may be a callable of the last tool output, parsed; its
audio lasts `ms_per_char` a character within `[min_audio_ms, max_audio_ms]`); `call_tool(name, arguments)` (a dict, a
raw string for malformed-argument tests, or a callable of the last output); `call_tools(call_tool(...), ...)` (parallel
calls in one response); `send_error(code, message, type)`; `pause(seconds)` (real time: a slow server); `drop()` (abort
the TCP connection); `stall()` (send nothing more); `send_event(dict)`; `close_session(reason)` (`session.closed`,
then close). `Script(*turns, default_reply=..., default_transcript=..., default_instruction_reply=...)`.

Server options
==============
`FakeLiveServer(script=None, *, api_key=None, bad_key_mode="http" | "event", reject_auth=False, quota_error=False,
handshake_status=None, ms_per_char=60, min_audio_ms=400, max_audio_ms=8000, vad_threshold_dbfs=-45, silence_ms=500,
barge_in_ms=200, append_delay_ms=300, usage_every_s=15)`. A wrong key gets HTTP 401 `invalid_api_key` on the upgrade
(no key: `missing_authorization`); with `bad_key_mode="event"` the upgrade succeeds and an `invalid_api_key` error
answers `session.start`, then the socket closes. `reject_auth` refuses every upgrade with 401, `handshake_status` with
that status; `quota_error` answers `session.start` with an `insufficient_quota` error and closes.

Inspection (thread-safe; connections are numbered from 1, refused upgrades included)
=====================================================================================
`client_events(type=None, conn=None)` (an audio append keeps `_audio_bytes`, not its audio), `sent_events(...)`,
`wait_for(type, predicate=None, timeout=10, conn=None)`, `wait_until(fn, timeout=10)`, `connection_count()` (accepted
sockets), `session(index=None)` (the `session` of the index-th `session.start`, from 0 like a list; default the
latest), `tool_outputs(name=None)`, `interrupted()`, `problems()`, `received_audio(conn=None)` (int16 PCM at the
session's rate), `total_usage()`, `stamps()` (when answers, caller speech and stops happened, for the benchmark).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections.abc
import contextlib
import copy
import functools
import itertools
import json
import math
import threading
import time
import types
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

import numpy as np
import pydantic
import typing_extensions
from openai.types.live import ClientEventParam, ServerEvent
from openai.types.live.session_config_param import SessionConfigParam
from openai.types.live.session_update_config_param import SessionUpdateConfigParam
from openai.types.responses import ResponseStreamEvent
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

WINDOW_MS = 20  # the energy detector's window
MIN_SPEECH_MS = 60  # shorter bursts are not a turn
DEFAULT_FORMAT = {"type": "audio/pcm", "rate": 24_000}
RATES = {"audio/pcm": (16_000, 24_000), "audio/pcmu": (8_000,), "audio/pcma": (8_000,)}


# ---- strictness: the SDK's own types, followed all the way down ------------------------------------------------


@dataclass(frozen=True)
class Violation:
    code: str  # unknown_parameter, missing_required_parameter, invalid_type, invalid_value
    param: str  # the dotted path in the event: session.audio.format.rate, session.input[0].role


def _bare(hint: Any) -> Any:
    """The type under `Required[...]`, `NotRequired[...]` and `Annotated[...]`."""
    while get_origin(hint) in (typing.Required, typing.NotRequired, typing.Annotated):
        hint = get_args(hint)[0]
    return hint


@functools.cache
def _shape(hint: Any) -> tuple[dict[str, Any], frozenset[str]] | None:
    """The fields and required keys of a TypedDict or pydantic model, else None. The SDK's modules use string
    annotations, so a TypedDict's `__required_keys__` is empty: `Required[...]` shows only in the resolved hints."""
    if typing_extensions.is_typeddict(hint):
        hints = typing.get_type_hints(hint, include_extras=True)
        required = {
            key
            for key, item in hints.items()
            if get_origin(item) is typing.Required or (hint.__total__ and get_origin(item) is not typing.NotRequired)
        }
        return {key: _bare(item) for key, item in hints.items()}, frozenset(required)
    if isinstance(hint, type) and issubclass(hint, pydantic.BaseModel):
        fields = {(info.alias or name): info for name, info in hint.model_fields.items()}
        return {key: info.annotation for key, info in fields.items()}, frozenset(
            key for key, info in fields.items() if info.is_required()
        )
    return None


def _candidates(value: Any, options: list[Any]) -> list[Any]:
    """The union members whose literal fields (`type`, `role`) match `value`'s, so that an error names the member
    that was meant (a function tool with a typo'd key) rather than whichever member fits worst."""
    if not isinstance(value, dict):
        return options
    matching = []
    for option in options:
        shape = _shape(option)
        tags = {key: hint for key, hint in (shape[0] if shape else {}).items() if get_origin(hint) is Literal}
        if shape and all(value[key] in get_args(hint) for key, hint in tags.items() if key in value):
            matching.append(option)
    return matching or options


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check(value: Any, hint: Any, path: str = "") -> list[Violation]:
    """Everything about `value` that the SDK type `hint` does not allow (empty when it is valid)."""
    hint = _bare(hint)
    origin = get_origin(hint)
    if hint in (Any, object):
        return []
    if hint is type(None):
        return [] if value is None else [Violation("invalid_type", path)]
    if origin in (Union, types.UnionType):
        options = list(get_args(hint))
        if value is None:
            return [] if type(None) in options else [Violation("invalid_type", path)]
        attempts = [check(value, option, path) for option in _candidates(value, options)]
        return [] if not all(attempts) else min(attempts, key=len)
    if origin is Literal:
        allowed = any(value == choice and type(value) is type(choice) for choice in get_args(hint))
        return [] if allowed else [Violation("invalid_value", path)]
    shape = _shape(hint)
    if shape is not None:
        if not isinstance(value, dict):
            return [Violation("invalid_type", path)]
        fields, required = shape
        found = [Violation("unknown_parameter", _child(path, key)) for key in value if key not in fields]
        found += [Violation("missing_required_parameter", _child(path, key)) for key in sorted(required - set(value))]
        for key, item in value.items():
            if key in fields:
                found += check(item, fields[key], _child(path, key))
        return found
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return [Violation("invalid_type", path)]
        return [problem for key, item in value.items() for problem in check(item, get_args(hint)[1], _child(path, key))]
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence):
        if not isinstance(value, list):
            return [Violation("invalid_type", path)]
        (item_hint,) = get_args(hint)
        return [problem for index, item in enumerate(value) for problem in check(item, item_hint, f"{path}[{index}]")]
    kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}
    if hint not in kinds:
        raise TypeError(f"the fake cannot check {hint!r} at {path}")
    wrong = not isinstance(value, kinds[hint]) or (hint is not bool and isinstance(value, bool))
    return [Violation("invalid_type", path)] if wrong else []


CLIENT_EVENTS = {get_args(_shape(member)[0]["type"])[0]: member for member in get_args(ClientEventParam)}
IMMUTABLE = tuple(key for key in _shape(SessionConfigParam)[0] if key not in _shape(SessionUpdateConfigParam)[0])
_SERVER_EVENT = pydantic.TypeAdapter(ServerEvent)
_MESSAGES = {
    "unknown_parameter": "Unknown parameter: '{}'.",
    "missing_required_parameter": "Missing required parameter: '{}'.",
    "invalid_type": "Invalid type for '{}'.",
    "invalid_value": "Invalid value for '{}'.",
}


# ---- audio ------------------------------------------------------------------------------------------------------


def _g711(kind: str) -> np.ndarray:
    """The 256 PCM16 values of a G.711 code book (μ-law or A-law), decoded with numpy."""
    code = np.arange(256, dtype=np.int32)
    if kind == "audio/pcmu":
        code = ~code & 0xFF
        exponent, mantissa = (code >> 4) & 7, code & 0x0F
        magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
        return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)
    code = code ^ 0x55
    exponent, mantissa = (code >> 4) & 7, code & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


_CODE_BOOKS = {kind: _g711(kind) for kind in ("audio/pcmu", "audio/pcma")}


def decode_audio(data: bytes, fmt: dict[str, Any]) -> np.ndarray:
    """Wire audio in the session format `fmt` as int16 PCM (ValueError when it cannot be that format)."""
    if fmt["type"] == "audio/pcm":
        if len(data) % 2:
            raise ValueError("PCM16 audio has an odd number of bytes")
        return np.frombuffer(data, dtype="<i2").astype(np.int16)
    return _CODE_BOOKS[fmt["type"]][np.frombuffer(data, dtype=np.uint8)]


def encode_audio(pcm: np.ndarray, fmt: dict[str, Any]) -> bytes:
    """int16 PCM as wire audio in the session format `fmt` (G.711: the nearest code)."""
    if fmt["type"] == "audio/pcm":
        return pcm.astype("<i2").tobytes()
    book = _CODE_BOOKS[fmt["type"]]
    order = np.argsort(book, kind="stable")
    ranked = book[order].astype(np.int32)
    value = pcm.astype(np.int32)
    upper = np.clip(np.searchsorted(ranked, value), 1, 255)
    nearer = np.where(value - ranked[upper - 1] <= ranked[upper] - value, upper - 1, upper)
    return order[nearer].astype(np.uint8).tobytes()


def dbfs(pcm: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) if pcm.size else 0.0
    return 20 * math.log10(rms / 32768) if rms > 0 else -120.0


def voice(ms: float, rate: int = 24_000, seed: int = 0) -> np.ndarray:
    """A voiced, speech-like signal (harmonics under a syllable envelope) at about -15 dBFS peak."""
    t = np.arange(int(rate * ms / 1000)) / rate
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    signal = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 4 * t)))
    return (signal / (np.max(np.abs(signal)) + 1e-9) * 32768 * 10 ** (-15 / 20)).astype(np.int16)


# ---- the script -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    kind: str  # user_said, say, call_tools, send_error, pause, drop, stall, send_event, close_session
    value: Any = None
    extra: Any = None


@dataclass(frozen=True)
class Turn:
    kind: str  # greet, speech, instructions
    steps: tuple[Step, ...]


def user_said(text: str) -> Step:
    """What the caller is heard saying (its input transcript)."""
    return Step("user_said", text)


def say(text: str | Callable[[Any], str], audio_ms: float | None = None) -> Step:
    """The model speaks `text`, for `audio_ms` (by default `ms_per_char` a character, within the server's bounds)."""
    return Step("say", text, audio_ms)


def call_tool(name: str, arguments: Any = None) -> Step:
    """The backend calls one tool (under client delegation: the model delegates, and waits for a commentary)."""
    return Step("call_tools", ((name, arguments),))


def call_tools(*calls: Step) -> Step:
    """Several `call_tool`s in one backend response (parallel calls), all answered before it goes on."""
    return Step("call_tools", tuple(pair for step in calls for pair in step.value))


def send_error(code: str, message: str = "Something went wrong.", type: str = "invalid_request_error") -> Step:
    return Step("send_error", code, (message, type))


def pause(seconds: float) -> Step:
    return Step("pause", seconds)


def drop() -> Step:
    return Step("drop")


def stall() -> Step:
    return Step("stall")


def send_event(event: dict[str, Any]) -> Step:
    return Step("send_event", event)


def close_session(reason: str = "expired") -> Step:
    return Step("close_session", reason)


def _steps(steps: Iterable[Step | str]) -> tuple[Step, ...]:
    return tuple(say(step) if isinstance(step, str) else step for step in steps)


def greet(*steps: Step | str) -> Turn:
    """The turn the first `session.instructions.append` runs (the app asks the model to greet)."""
    return Turn("greet", _steps(steps))


def on_caller_speech(*steps: Step | str) -> Turn:
    return Turn("speech", _steps(steps))


def on_instructions(*steps: Step | str) -> Turn:
    """A turn for a later `session.instructions.append` (a wrap-up, a goodbye)."""
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
    conn: int
    call_id: str
    name: str
    arguments: Any  # as the backend sent them (a string); under client delegation, the script's
    output_raw: str
    output: Any  # parsed JSON, or the raw string


# ---- one session ------------------------------------------------------------------------------------------------


class _Interrupted(Exception):
    """The caller talked over the model: the rest of its turn is dropped."""


@dataclass
class _Utterance:
    text: str
    audio: np.ndarray
    words: list[tuple[int, int, str]]  # (start, end) sample in the utterance, and the transcript piece
    start: int | None = None  # the timeline sample where it began playing
    sent: int = 0
    spoken: int = 0  # transcript pieces sent
    interrupted: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Backend:
    """A Responses delegation in progress: the calls it waits on, and whether `response.create` resumed it."""

    id: str
    open: dict[str, dict[str, Any]] = field(default_factory=dict)  # call_id -> its function_call item
    answered: set[str] = field(default_factory=set)
    resumed: asyncio.Event = field(default_factory=asyncio.Event)


class _Session:
    """One socket, one Live session, run on the server's loop."""

    def __init__(self, server: FakeLiveServer, ws: ServerConnection, conn: int) -> None:
        self.server, self.ws, self.conn = server, ws, conn
        self.script = server.script
        self.turns = {kind: [turn for turn in self.script.turns if turn.kind == kind] for kind in server.TURNS}
        self.resource: dict[str, Any] | None = None  # the resolved session, once started
        self.fmt: dict[str, Any] = DEFAULT_FORMAT
        self.samples = 0  # the timeline, in samples of input received
        self.queue: asyncio.Queue[tuple[Step, ...]] = asyncio.Queue()
        self.worker: asyncio.Task | None = None
        self.ready: Callable[[], bool] | None = None  # while the model's turn waits: whether it can go on
        self.speaking: _Utterance | None = None
        self.window: list[np.ndarray] = []
        self.heard_ms = self.quiet_ms = self.barge_ms = 0.0  # the caller's current speech, the quiet after it
        self.caller_start = 0
        self.due: list[tuple[int, dict[str, Any], tuple[Step, ...] | None]] = []  # released as the timeline passes
        self.next_usage = 0
        self.backend: _Backend | None = None
        self.client_calls: dict[str, asyncio.Future[str]] = {}  # client delegations, by id: their first result
        self.last_output: Any = None
        self.instructed = 0
        self.muted = self.stalled = self.closed = False
        self.ids = itertools.count(1)

    @property
    def rate(self) -> int:
        return int(self.fmt["rate"])

    @property
    def now_ms(self) -> int:
        return self.samples * 1000 // self.rate

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{self.conn}x{next(self.ids):04d}"

    def delegation_type(self) -> str:
        delegation = (self.resource or {}).get("delegation")
        return delegation["type"] if delegation else "client"

    def problem(self, text: str) -> None:
        self.server.problem(self.conn, text)

    # ---- sending

    async def send(self, event: dict[str, Any]) -> None:
        """Send `event` (with an `event_id`), after checking it against the SDK's server models."""
        if self.stalled or self.closed:
            return
        if event["type"] != "session.output_audio.delta":  # the primary socket's audio has no id
            event = {"event_id": self.new_id("event"), **event}
        found: list[Any] = check(event, ServerEvent)  # unknown fields too: the models themselves allow extras
        if event["type"] == "response.event":
            found += check(event["event"], ResponseStreamEvent, "event")
        try:
            _SERVER_EVENT.validate_python(event)
        except pydantic.ValidationError as invalid:
            found.append(str(invalid))
        if found:
            self.problem(f"the fake sent a {event['type']} the SDK's models refuse: {found}")
        self.server.record("sent", self.conn, event)
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(event))

    async def refuse(self, code: str, message: str, param: str | None = None, event: dict | None = None) -> None:
        """An `error` event for a client command the server will not run (the session goes on), and a problem."""
        self.problem(f"{(event or {}).get('type', 'a frame')}: {code} ({param or message})")
        await self.error(code, message, param, (event or {}).get("event_id"))

    async def error(
        self, code: str, message: str, param: str | None = None, client_event_id: Any = None, kind: str | None = None
    ) -> None:
        echo = client_event_id if isinstance(client_event_id, str) else None
        body = {"type": kind or "invalid_request_error", "code": code, "message": message, "param": param}
        await self.send({"type": "error", "error": {**body, "client_event_id": echo}, "client_event_id": echo})

    # ---- client events

    async def handle(self, raw: str | bytes) -> None:
        try:
            event = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return await self.refuse("invalid_json", "The message is not valid JSON.")
        if not isinstance(event, dict):
            return await self.refuse("invalid_json", "The message is not a JSON object.")
        kind = event.get("type")
        self.server.record("client", self.conn, _loggable(event))
        if kind not in CLIENT_EVENTS:
            supported = ", ".join(CLIENT_EVENTS)
            message = f"Unsupported event type. Supported: {supported}."
            return await self.refuse("unknown_event_type", message, "type", event)
        if kind == "session.update" and isinstance(event.get("session"), dict):
            frozen = [key for key in IMMUTABLE if key in event["session"]]
            if frozen:
                param = f"session.{frozen[0]}"
                return await self.refuse("immutable_field_update", f"{param} cannot change.", param, event)
        violations = check(event, CLIENT_EVENTS[kind])
        for violation in violations[1:]:
            self.problem(f"{kind}: {violation.code} ({violation.param})")
        if violations:
            first = violations[0]
            return await self.refuse(first.code, _MESSAGES[first.code].format(first.param), first.param, event)
        if self.resource is None and kind != "session.start":
            message = "Send session.start and wait for session.started."
            return await self.refuse("session_not_started", message, None, event)
        await getattr(self, "on_" + kind.replace(".", "_"))(event)

    async def on_session_start(self, event: dict[str, Any]) -> None:
        if self.resource is not None:
            return await self.refuse("session_already_started", "The session has already started.", None, event)
        config = event["session"]
        fmt = dict((config.get("audio") or {}).get("format") or DEFAULT_FORMAT)
        if fmt["rate"] not in RATES[fmt["type"]]:
            return await self.refuse(
                "invalid_value",
                f"{fmt['type']} is not offered at {fmt['rate']} Hz.",
                "session.audio.format.rate",
                event,
            )
        self.server.started(config)
        if self.conn in self.server.key_refused:
            await self.error("invalid_api_key", "Incorrect API key provided.", None, event.get("event_id"))
            return await self.ws.close()
        if self.server.quota_error:
            message = "You exceeded your current quota, please check your plan and billing details."
            await self.error("insufficient_quota", message, None, event.get("event_id"), "insufficient_quota")
            return await self.ws.close()
        self.fmt = fmt
        audio = config.get("audio") or {}
        self.resource = {
            **config,
            "id": f"live_{self.new_id('session')}",
            "expires_at": int(time.time()) + 3600,
            "status": "active",
            "audio": {**audio, "format": fmt, "output": {"voice": "marin", **(audio.get("output") or {})}},
            "input": list(config.get("input") or []),
        }
        self.next_usage = self.rate * self.server.usage_every_s
        self.worker = asyncio.get_running_loop().create_task(self.work())
        await self.send({"type": "session.started", "session": self.resource, "client_event_id": event.get("event_id")})

    async def on_session_update(self, event: dict[str, Any]) -> None:
        assert self.resource is not None
        update = event["session"]
        if "delegation" in update and (update["delegation"] or {}).get("type", "client") != self.delegation_type():
            param = "session.delegation.type"
            return await self.refuse("immutable_field_update", "The delegation type cannot change.", param, event)
        if update.get("delegation"):  # sparse: what it leaves out keeps its value
            merged = {**(self.resource.get("delegation") or {}), **update["delegation"]}
            if "responses" in update["delegation"]:
                merged["responses"] = {**self.resource["delegation"]["responses"], **update["delegation"]["responses"]}
            self.resource["delegation"] = merged
        if "triggers" in update:
            self.resource["triggers"] = update["triggers"]
        await self.send({"type": "session.updated", "session": self.resource, "client_event_id": event.get("event_id")})

    async def on_session_close(self, event: dict[str, Any]) -> None:
        await self.close("close_requested", event.get("event_id"))

    async def on_session_input_audio_append(self, event: dict[str, Any]) -> None:
        try:
            pcm = decode_audio(base64.b64decode(event["audio"], validate=True), self.fmt)
        except (binascii.Error, ValueError) as bad:
            return await self.refuse("invalid_value", f"Not base64 {self.fmt['type']}: {bad}", "audio", event)
        self.server.audio_in(self.conn, pcm)
        await self.advance(pcm)

    async def on_session_input_audio_mute(self, event: dict[str, Any]) -> None:
        self.muted = True
        await self.send({"type": "session.input_audio.muted", "client_event_id": event.get("event_id")})

    async def on_session_input_audio_unmute(self, event: dict[str, Any]) -> None:
        self.muted = False
        await self.send({"type": "session.input_audio.unmuted", "client_event_id": event.get("event_id")})

    async def on_session_instructions_append(self, event: dict[str, Any]) -> None:
        if await self.appendable(event):
            self.instructed += 1
            kind = "greet" if self.instructed == 1 and self.turns["greet"] else "instructions"
            fallback = (say(self.script.default_instruction_reply),)
            self.acknowledge("session.instructions.appended", event, self.next_turn(kind) or fallback)

    async def on_session_thinking_append(self, event: dict[str, Any]) -> None:
        if await self.appendable(event):
            self.acknowledge("session.thinking.appended", event)

    async def on_session_commentary_append(self, event: dict[str, Any]) -> None:
        if await self.appendable(event):
            self.acknowledge("session.commentary.appended", event)
            waiting = self.client_calls.get(event["delegation_id"] or "")
            if waiting is not None and not waiting.done():  # the first result; later ones only add context
                waiting.set_result(event["content"])

    async def appendable(self, event: dict[str, Any]) -> bool:
        """A non-null `delegation_id` must name a client delegation (Responses delegation takes none)."""
        delegation = event["delegation_id"]
        if delegation is None:
            return True
        if self.delegation_type() == "responses":
            message = "Non-null delegation_id is not accepted with Responses delegation."
        elif delegation not in self.client_calls:
            message = "No client delegation has this id."
        else:
            return True
        await self.refuse("invalid_value", message, "delegation_id", event)
        return False

    def acknowledge(self, kind: str, event: dict[str, Any], then: tuple[Step, ...] | None = None) -> None:
        """The `*.appended` event (and what the append makes the model do) once the timeline reaches it."""
        at = self.samples + self.rate * self.server.append_delay_ms // 1000
        ms = at * 1000 // self.rate
        ack = {"type": kind, "start_ms": ms, "end_ms": ms, "client_event_id": event.get("event_id")}
        self.due.append((at, ack, then))

    async def on_response_item_create(self, event: dict[str, Any]) -> None:
        if self.delegation_type() != "responses":
            message = "response.item.create requires Responses delegation."
            return await self.refuse("responses_delegation_required", message, None, event)
        item = event["item"]
        if item.get("type") != "function_call_output":
            return  # a message for the backend's context: nothing the fake plays
        backend, call_id = self.backend, item["call_id"]
        if backend is None or call_id not in backend.open:
            message = "No open function call has this call_id."
            return await self.refuse("unknown_call_id", message, "item.call_id", event)
        if call_id in backend.answered:
            return await self.refuse("duplicate_call_output", "This call already has an output.", "item.call_id", event)
        backend.answered.add(call_id)
        raw = item["output"] if isinstance(item["output"], str) else json.dumps(item["output"])
        self.last_output, call = _parsed(raw), backend.open[call_id]
        self.server.tool_output(ToolOutput(self.conn, call_id, call["name"], call["arguments"], raw, self.last_output))

    async def on_response_create(self, event: dict[str, Any]) -> None:
        if self.delegation_type() != "responses":
            message = "response.create requires Responses delegation."
            return await self.refuse("responses_delegation_required", message, None, event)
        backend = self.backend
        if backend is None or not backend.open:
            return await self.refuse("no_open_function_calls", "No function call is waiting for outputs.", None, event)
        missing = [call_id for call_id in backend.open if call_id not in backend.answered]
        if missing:
            message = f"Send a function_call_output for every open call first; missing: {', '.join(missing)}."
            return await self.refuse("open_function_calls", message, None, event)
        backend.open.clear()
        backend.answered.clear()
        backend.resumed.set()

    async def on_session_output_audio_fixture_play(self, event: dict[str, Any]) -> None:
        await self.refuse("unsupported_by_fake", "The fake does not play fixtures.", None, event)

    async def on_decision_create(self, event: dict[str, Any]) -> None:
        await self.refuse("unsupported_by_fake", "The fake does not play Decisions.", None, event)

    on_decision_item_create = on_decision_item_delete = on_decision_create

    async def close(self, reason: str, client_event_id: Any = None) -> None:
        usage = self.usage()
        self.server.usage(self.conn, usage["seconds"])
        event = {"type": "session.closed", "reason": reason, "session": self.resource, "usage": usage}
        await self.send({**event, "client_event_id": client_event_id})
        self.closed = True
        if self.worker is not None and self.worker is not asyncio.current_task():  # else a `close_session` step
            self.worker.cancel()
        await self.ws.close()

    def usage(self) -> dict[str, Any]:
        seconds = self.samples / self.rate
        return {"seconds": round(seconds, 3), "active_seconds": int(seconds)}

    # ---- the timeline

    async def advance(self, pcm: np.ndarray) -> None:
        """The input moved the timeline on by `pcm`: hear it window by window, and send as much output (the model's
        voice until it stops, else silence) with the transcript it reached, then whatever has come due."""
        out = np.zeros(pcm.size, dtype=np.int16)
        pieces: list[dict[str, Any]] = []
        window = self.rate * WINDOW_MS // 1000
        position = 0
        await self.settle()
        while position < pcm.size:
            take = min(pcm.size - position, window - sum(part.size for part in self.window))
            self.window.append(np.zeros(take, np.int16) if self.muted else pcm[position : position + take])
            self.samples += take
            if sum(part.size for part in self.window) == window:
                await self.hear(np.concatenate(self.window))
                self.window = []
            out[position : position + take] = self.render(take, self.samples - take, pieces)
            position += take
        for piece in pieces:  # the transcript runs a little ahead of its audio
            await self.send(piece)
        wire = base64.b64encode(encode_audio(out, self.fmt)).decode("ascii")
        await self.send({"type": "session.output_audio.delta", "delta": wire})
        for item in [item for item in self.due if item[0] <= self.samples]:
            self.due.remove(item)
            await self.send(item[1])
            if item[2] is not None:
                self.queue.put_nowait(item[2])
        if self.samples >= self.next_usage:
            self.next_usage += self.rate * self.server.usage_every_s
            usage = self.usage()
            self.server.usage(self.conn, usage["seconds"])
            ratio = round(min(1.0, 0.01 + self.samples / self.rate / 3600), 4)
            await self.send({"type": "session.usage.updated", "usage": usage, "context_window": {"usage_ratio": ratio}})

    async def settle(self) -> None:
        """Let the model's turn run up to its next wait (for the caller, the client or real time), so that when it
        reacts depends on the timeline, not on how fast the input comes in."""
        while self.worker is not None and not self.worker.done() and (self.ready is None or self.ready()):
            await asyncio.sleep(0)

    async def wait(self, awaitable: Awaitable[Any], ready: Callable[[], bool]) -> Any:
        """The model's turn waits (`ready()` once it can go on): the timeline may move on meanwhile."""
        self.ready = ready
        try:
            return await awaitable
        finally:
            self.ready = None

    def render(self, size: int, at: int, pieces: list[dict[str, Any]]) -> np.ndarray:
        """`size` samples of the model's track from timeline sample `at`, adding the transcript pieces whose audio
        starts in them."""
        utterance = self.speaking
        if utterance is None:
            return np.zeros(size, dtype=np.int16)
        if utterance.start is None:
            utterance.start = at
            self.server.stamp(self.conn, "answers")
        piece = utterance.audio[utterance.sent : utterance.sent + size]
        utterance.sent += piece.size
        while utterance.spoken < len(utterance.words) and utterance.words[utterance.spoken][0] < utterance.sent:
            start, end, text = utterance.words[utterance.spoken]
            utterance.spoken += 1
            span = {
                key: (utterance.start + bound) * 1000 // self.rate
                for key, bound in (("start_ms", start), ("end_ms", end))
            }
            pieces.append({"type": "session.output_transcript.delta", "delta": text, **span})
        if utterance.sent >= utterance.audio.size:
            self.speaking = None
            utterance.done.set()
        return np.pad(piece, (0, size - piece.size))

    async def hear(self, window: np.ndarray) -> None:
        """One window of the caller: speech starts or goes on (stopping the model after `barge_in_ms`), or quiet
        goes on (ending the caller's turn after `silence_ms`)."""
        ms = window.size * 1000 / self.rate
        if dbfs(window) >= self.server.vad_threshold_dbfs:
            if self.heard_ms == 0:
                self.caller_start = self.now_ms - int(ms)
                self.server.stamp(self.conn, "heard")
            self.heard_ms += ms
            self.quiet_ms = 0.0
            if self.speaking is not None:
                self.barge_ms += ms
                if self.barge_ms >= self.server.barge_in_ms:
                    self.stop_speaking()
        elif self.heard_ms:
            self.quiet_ms += ms
            if self.quiet_ms >= self.server.silence_ms:
                speech = (self.caller_start, self.now_ms - int(self.quiet_ms))
                self.heard_ms = self.quiet_ms = self.barge_ms = 0.0
                if speech[1] - speech[0] >= MIN_SPEECH_MS:
                    await self.caller_turn(speech)

    def stop_speaking(self) -> None:
        """The model hears the caller and stops: silence from here on, the rest of its words never sent."""
        utterance = self.speaking
        assert utterance is not None
        self.speaking = None
        utterance.interrupted = True
        sent_ms, total_ms = (size * 1000 // self.rate for size in (utterance.sent, utterance.audio.size))
        said = "".join(text for _, _, text in utterance.words[: utterance.spoken])
        stop = {"conn": self.conn, "at_ms": self.now_ms, "sent_ms": sent_ms, "total_ms": total_ms}
        self.server.interrupted_at({**stop, "text": utterance.text, "said": said})
        self.server.stamp(self.conn, "stops")
        utterance.done.set()

    async def caller_turn(self, speech: tuple[int, int]) -> None:
        """The caller's turn is over: its transcript now, its answer once the model is free."""
        steps = self.next_turn("speech")
        if steps is None:
            steps = (user_said(self.script.default_transcript), say(self.script.default_reply))
        for step in steps:
            if step.kind == "user_said":
                await self.transcribe(step.value, speech)
        self.queue.put_nowait(tuple(step for step in steps if step.kind != "user_said"))

    def next_turn(self, kind: str) -> tuple[Step, ...] | None:
        return self.turns[kind].pop(0).steps if self.turns[kind] else None

    async def transcribe(self, text: str, speech: tuple[int, int]) -> None:
        """The caller's words, spread over their speech on the timeline."""
        (start, end), pieces = speech, _pieces(text)
        for index, piece in enumerate(pieces):
            span = {"start_ms": start + (end - start) * index // len(pieces)}
            span["end_ms"] = start + (end - start) * (index + 1) // len(pieces)
            await self.send({"type": "session.input_transcript.delta", "delta": piece, **span})

    # ---- the model's turns, one at a time

    async def work(self) -> None:
        while True:
            steps = await self.wait(self.queue.get(), lambda: not self.queue.empty())
            try:
                for step in steps:
                    await self.step(step)
                if self.backend is not None:  # the backend got its outputs but the turn has no reply: a default one
                    await self.step(say(self.script.default_reply))
            except _Interrupted:
                pass
            self.backend = None

    async def step(self, step: Step) -> None:
        try:
            if step.kind == "user_said":
                await self.transcribe(step.value, (self.now_ms, self.now_ms))
            elif step.kind == "say":
                await self.speak(step.value(self.last_output) if callable(step.value) else step.value, step.extra)
            elif step.kind == "call_tools":
                await self.delegate(step.value)
        except _Interrupted:
            raise
        except Exception as failure:  # a script callable that raised
            self.problem(f"the script failed at {step.kind}: {failure!r}")
            await self.error("fake_script_error", repr(failure), kind="server_error")
            return
        if step.kind == "send_error":
            message, kind = step.extra
            await self.error(step.value, message, kind=kind)
        elif step.kind == "pause":
            await self.wait(asyncio.sleep(step.value), lambda: False)
        elif step.kind == "drop":  # what was sent goes out first; what the client has not read yet may be lost
            while self.ws.transport.get_write_buffer_size():
                await asyncio.sleep(0.005)
            self.closed = True
            self.ws.transport.abort()
        elif step.kind == "stall":
            self.stalled = True
        elif step.kind == "send_event":
            await self.send(copy.deepcopy(step.value))
        elif step.kind == "close_session":
            await self.close(step.value)

    async def speak(self, text: str, audio_ms: float | None = None) -> None:
        """The model says `text` (after the backend's text, when the backend has the turn): it plays as the timeline
        moves, until it ends or the caller stops it."""
        if self.backend is not None:
            await self.respond(self.backend, text=text)
            self.backend = None
        server = self.server
        ms = audio_ms or min(server.max_audio_ms, max(server.min_audio_ms, server.ms_per_char * len(text)))
        audio = voice(ms, self.rate, seed=len(text))
        pieces = _pieces(text)
        bounds = [audio.size * index // len(pieces) for index in range(len(pieces) + 1)]
        utterance = _Utterance(text, audio, [(bounds[i], bounds[i + 1], piece) for i, piece in enumerate(pieces)])
        self.speaking = utterance
        await self.wait(utterance.done.wait(), utterance.done.is_set)
        if utterance.interrupted:
            raise _Interrupted

    async def delegate(self, calls: tuple[tuple[str, Any], ...]) -> None:
        kind = self.delegation_type()
        if kind == "client":
            return await self.delegate_to_client(calls)
        if kind != "responses":
            return self.problem(f"call_tool under {kind} delegation, which the fake does not play")
        backend_config = (self.resource or {})["delegation"]["responses"]
        declared = [tool["name"] for tool in backend_config.get("tools") or [] if tool.get("type") == "function"]
        for name, _ in calls:
            if name not in declared:
                self.problem(f"the backend called {name!r}, which is not among the declared tools {declared}")
        if len(calls) > 1 and backend_config.get("parallel_tool_calls") is False:
            self.problem("parallel tool calls in a session that set parallel_tool_calls: false")
        items = []
        for name, arguments in calls:
            value = arguments(self.last_output) if callable(arguments) else arguments
            text = value if isinstance(value, str) else json.dumps({} if value is None else value)
            ids = {"id": self.new_id("fc"), "call_id": self.new_id("call")}
            items.append({"type": "function_call", **ids, "name": name, "arguments": text})
        backend = self.backend
        if backend is None:
            backend = self.backend = _Backend(self.new_id("dlg"))
            response_id = self.new_id("resp")
            created = {"id": backend.id, "target": "responses", "type": "delegation", "response_id": response_id}
            await self.send({"type": "session.delegation.created", "delegation": created, "offset_ms": self.now_ms})
        else:
            response_id = None
        backend.open = {item["call_id"]: item for item in items}  # before sending: the client may answer at once
        backend.resumed.clear()
        await self.respond(backend, items=items, response_id=response_id)
        await self.wait(backend.resumed.wait(), backend.resumed.is_set)

    async def delegate_to_client(self, calls: tuple[tuple[str, Any], ...]) -> None:
        """Client delegation: a bare `session.delegation.created`; the app's commentary on it is the result."""
        for name, arguments in calls:
            delegation = self.new_id("dlg")
            waiting = self.client_calls[delegation] = asyncio.get_running_loop().create_future()
            created = {"id": delegation, "target": "client", "type": "delegation"}
            await self.send({"type": "session.delegation.created", "delegation": created, "offset_ms": self.now_ms})
            raw = await self.wait(waiting, waiting.done)
            self.last_output = _parsed(raw)
            self.server.tool_output(ToolOutput(self.conn, delegation, name, arguments, raw, self.last_output))

    async def respond(
        self,
        backend: _Backend,
        items: list[dict] | None = None,
        text: str | None = None,
        response_id: str | None = None,
    ) -> None:
        """One backend response as `response.event`s: its function calls (left open) or its text, then
        `response.completed` with its token usage. Its snapshots carry no output, as the real ones."""
        model = (self.resource or {})["delegation"]["responses"]["model"]
        snapshot = {"id": response_id or self.new_id("resp"), "object": "response", "created_at": int(time.time())}
        snapshot |= {"model": model, "output": [], "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
        events: list[dict[str, Any]] = [{"type": "response.created", "response": {**snapshot, "status": "in_progress"}}]
        for index, item in enumerate(items or []):
            started = {**item, "arguments": "", "status": "in_progress"}
            events.append({"type": "response.output_item.added", "output_index": index, "item": started})
            events.append(
                {"type": "response.output_item.done", "output_index": index, "item": {**item, "status": "completed"}}
            )
        if text is not None:
            message = {"type": "message", "id": self.new_id("msg"), "role": "assistant", "status": "in_progress"}
            events.append({"type": "response.output_item.added", "output_index": 0, "item": {**message, "content": []}})
            where = {"item_id": message["id"], "output_index": 0, "content_index": 0, "logprobs": []}
            events += [{"type": "response.output_text.delta", **where, "delta": piece} for piece in _pieces(text)]
            events.append({"type": "response.output_text.done", **where, "text": text})
            content = [{"type": "output_text", "text": text, "annotations": []}]
            done = {**message, "status": "completed", "content": content}
            events.append({"type": "response.output_item.done", "output_index": 0, "item": done})
        usage = _usage(json.dumps(items) if items else text or "")
        self.server.tokens(usage)
        events.append({"type": "response.completed", "response": {**snapshot, "status": "completed", "usage": usage}})
        for number, nested in enumerate(events):
            nested["sequence_number"] = number
            await self.send({"type": "response.event", "delegation_id": backend.id, "event": nested})


def _usage(text: str) -> dict[str, Any]:
    """A backend response's token usage: a long prompt, mostly cached, and an answer as long as `text`."""
    output = max(1, len(text) // 4)
    return {
        "input_tokens": 900,
        "input_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 900 + output,
    }


def _pieces(text: str) -> list[str]:
    """`text` as the API streams it: word by word, each but the first with its leading space."""
    return [word if index == 0 else " " + word for index, word in enumerate(text.split(" "))]


def _parsed(raw: str) -> Any:
    """A tool's output as a test reads it: the JSON it holds, else the string itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _loggable(event: dict[str, Any]) -> dict[str, Any]:
    """The event as recorded: an audio append keeps its size, not its base64."""
    if event.get("type") == "session.input_audio.append" and isinstance(event.get("audio"), str):
        audio = event["audio"]
        return {
            **{k: v for k, v in event.items() if k != "audio"},
            "_audio_bytes": len(audio) * 3 // 4 - audio[-2:].count("="),
        }
    return event


# ---- the server -------------------------------------------------------------------------------------------------


class FakeLiveServer:
    """A scripted GPT-Live WebSocket server in a background thread (see the module docstring)."""

    TURNS = ("greet", "speech", "instructions")

    def __init__(
        self,
        script: Script | None = None,
        *,
        api_key: str | None = None,
        bad_key_mode: Literal["http", "event"] = "http",
        reject_auth: bool = False,
        quota_error: bool = False,
        handshake_status: int | None = None,
        ms_per_char: float = 60.0,
        min_audio_ms: float = 400.0,
        max_audio_ms: float = 8000.0,
        vad_threshold_dbfs: float = -45.0,
        silence_ms: float = 500.0,
        barge_in_ms: float = 200.0,
        append_delay_ms: int = 300,
        usage_every_s: int = 15,
    ) -> None:
        self.script = script or Script()
        self.api_key, self.bad_key_mode, self.reject_auth = api_key, bad_key_mode, reject_auth
        self.quota_error, self.handshake_status = quota_error, handshake_status
        self.ms_per_char, self.min_audio_ms, self.max_audio_ms = ms_per_char, min_audio_ms, max_audio_ms
        self.vad_threshold_dbfs, self.silence_ms, self.barge_in_ms = vad_threshold_dbfs, silence_ms, barge_in_ms
        self.append_delay_ms, self.usage_every_s = append_delay_ms, usage_every_s
        self.port = 0
        self.key_refused: set[int] = set()  # connections let through only to be refused by an error event
        self._lock = threading.Condition()
        self._attempts = 0
        self._accepted = 0
        self._sessions: list[dict[str, Any]] = []
        self._log: list[tuple[str, int, dict[str, Any]]] = []
        self._problems: list[str] = []
        self._outputs: list[ToolOutput] = []
        self._interrupted: list[dict[str, Any]] = []
        self._audio: dict[int, list[np.ndarray]] = {}
        self._stamps: dict[int, dict[str, list[float]]] = {}
        self._seconds: dict[int, float] = {}
        self._tokens = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
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
        async with serve(self._serve, "127.0.0.1", 0, process_request=self._upgrade, max_size=None) as ws:
            self.port = ws.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def _upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        """The upgrade: `/v1/live/sessions` with no query, and the right key (else an HTTP refusal, by default)."""
        with self._lock:
            self._attempts += 1
            conn = connection.fake_conn = self._attempts  # type: ignore[attr-defined]
        path, _, query = request.path.partition("?")
        if path != "/v1/live/sessions":
            self.problem(conn, f"connected to {path!r} instead of /v1/live/sessions")
            return _refusal(404, "not_found", "Unknown path.")
        if query:
            self.problem(conn, f"query parameters on the URL ({query}): the model belongs in session.start")
        if self.handshake_status is not None:
            return _refusal(self.handshake_status, "server_error", "The service is unavailable.")
        auth = request.headers.get("Authorization")
        if self.reject_auth or (self.api_key is not None and auth != f"Bearer {self.api_key}"):
            if auth is None:
                return _refusal(401, "missing_authorization", "Missing bearer authentication in header.")
            if self.reject_auth or self.bad_key_mode == "http":
                return _refusal(401, "invalid_api_key", "Incorrect API key provided.")
            self.key_refused.add(conn)
        with self._lock:
            self._accepted += 1
        return None

    async def _serve(self, ws: ServerConnection) -> None:
        session = _Session(self, ws, ws.fake_conn)  # type: ignore[attr-defined]
        try:
            async for raw in ws:
                await session.handle(raw)
        except ConnectionClosed:
            pass
        finally:
            session.closed = True
            if session.worker is not None:
                session.worker.cancel()

    def set_script(self, script: Script) -> None:
        """The script of the sessions that start from now on (a reconnect is a new session)."""
        self.script = script

    # ---- records (called on the server's loop; read from any thread)

    def record(self, direction: str, conn: int, event: dict[str, Any]) -> None:
        with self._lock:
            self._log.append((direction, conn, event))
            self._lock.notify_all()

    def problem(self, conn: int, text: str) -> None:
        with self._lock:
            self._problems.append(f"connection {conn}: {text}")

    def started(self, config: dict[str, Any]) -> None:
        with self._lock:
            self._sessions.append(copy.deepcopy(config))

    def tool_output(self, output: ToolOutput) -> None:
        with self._lock:
            self._outputs.append(output)
            self._lock.notify_all()

    def interrupted_at(self, stop: dict[str, Any]) -> None:
        with self._lock:
            self._interrupted.append({**stop, "at": time.monotonic()})

    def stamp(self, conn: int, kind: str) -> None:
        """When (`time.monotonic()`) something happened on a connection: an answer's first output was sent
        ("answers"), the caller was heard starting to speak ("heard"), the model stopped for the caller ("stops")."""
        with self._lock:
            self._stamps.setdefault(conn, {}).setdefault(kind, []).append(time.monotonic())

    def audio_in(self, conn: int, pcm: np.ndarray) -> None:
        with self._lock:
            self._audio.setdefault(conn, []).append(pcm)

    def usage(self, conn: int, seconds: float) -> None:
        with self._lock:
            self._seconds[conn] = seconds

    def tokens(self, usage: dict[str, Any]) -> None:
        with self._lock:
            for key in self._tokens:
                self._tokens[key] += usage[key]

    # ---- what tests read

    def client_events(self, type: str | None = None, conn: int | None = None) -> list[dict[str, Any]]:
        return self._events("client", type, conn)

    def sent_events(self, type: str | None = None, conn: int | None = None) -> list[dict[str, Any]]:
        return self._events("sent", type, conn)

    def _events(self, direction: str, kind: str | None, conn: int | None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                copy.deepcopy(event)
                for way, number, event in self._log
                if way == direction and kind in (None, event.get("type")) and conn in (None, number)
            ]

    def wait_for(
        self,
        type: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 10.0,
        conn: int | None = None,
    ) -> dict[str, Any]:
        """The first client event of `type` (matching `predicate`), waiting for it. Blocking: from an async test,
        run it in a thread (`asyncio.to_thread`)."""
        matching = lambda: next(  # noqa: E731
            (event for event in self.client_events(type, conn) if predicate is None or predicate(event)), None
        )
        return self.wait_until(matching, timeout)

    def wait_until(self, condition: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the fake Live server waited {timeout} s in vain")
            with self._lock:
                self._lock.wait(0.02)
        return value

    def connection_count(self) -> int:
        with self._lock:
            return self._accepted

    def session(self, index: int | None = None) -> dict[str, Any]:
        """The `session` a `session.start` sent: the index-th one (from 0), by default the latest."""
        with self._lock:
            return copy.deepcopy(self._sessions[-1 if index is None else index])

    def tool_outputs(self, name: str | None = None) -> list[ToolOutput]:
        with self._lock:
            return [copy.deepcopy(output) for output in self._outputs if name in (None, output.name)]

    def interrupted(self) -> list[dict[str, Any]]:
        """Each time the model stopped for the caller: `conn`, `at` (monotonic), `at_ms` (timeline), `sent_ms` (of
        the utterance's audio played), `total_ms`, its `text`, and what of it was `said` (transcript sent)."""
        with self._lock:
            return copy.deepcopy(self._interrupted)

    def problems(self) -> list[str]:
        with self._lock:
            return list(self._problems)

    def received_audio(self, conn: int | None = None) -> np.ndarray:
        """The caller's audio a connection received (by default the latest), as int16 PCM at the session's rate."""
        with self._lock:
            chunks = self._audio.get(max(self._audio, default=0) if conn is None else conn, [])
            return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    def total_usage(self) -> dict[str, float]:
        """Billable seconds over every session (each session's latest cumulative report), and the backend's tokens."""
        with self._lock:
            return {"seconds": round(sum(self._seconds.values()), 3), **self._tokens}

    def stamps(self) -> dict[int, dict[str, list[float]]]:
        with self._lock:
            return copy.deepcopy(self._stamps)


def _refusal(status: int, code: str, message: str) -> Response:
    body = json.dumps({"error": {"type": "invalid_request_error", "code": code, "message": message}}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status, "Refused", headers, body)
