"""A scripted fake of the OpenAI Realtime API (GA protocol) for tests.

The fake is a local ``websockets`` server that speaks the Realtime **GA** event
protocol closely enough that the real ``openai`` SDK (3.57, ``client.realtime``)
can drive it.  Point the SDK (or the app, in a subprocess) at it with
``OPENAI_BASE_URL=server.base_url`` (``http://127.0.0.1:PORT/v1``); the SDK then
connects to ``ws://127.0.0.1:PORT/v1/realtime?model=...`` with
``Authorization: Bearer <key>``.

Quick start::

    from tests.fake_realtime import (FakeRealtimeServer, Script, greet, on_caller_speech,
                                     user_said, call_tool, say)

    script = Script(
        greet("いらっしゃいませ、AI-SHIFTです。ご予約ですか？"),
        on_caller_speech(
            user_said("Yamada, four people, tomorrow at 7pm"),
            call_tool("update_reservation", {"guest_name": "Yamada", "party_size": 4}),
            say("Thank you. What time?"),
        ),
        on_caller_speech(
            user_said("Please confirm"),
            call_tool("confirm_reservation", {}),
            say(lambda out: f"Booked, id {out['booking_id']}"),
        ),
    )
    with FakeRealtimeServer(script) as server:          # .start() / .stop() also work
        os.environ["OPENAI_BASE_URL"] = server.base_url
        ...
        server.wait_for("conversation.item.create", lambda e: e["item"]["type"] == "function_call_output")

The server runs in a background thread with its own event loop, so it works for
in-process async tests (the SDK in the test's loop) and for an app subprocess.

Script
======
A :class:`Script` is a list of *turns*.  Each turn is a list of *steps* that run
in order.  Two kinds of turn exist and each kind is consumed in order:

``greet(*steps, **say_options)`` / ``on_response_create(*steps)``
    Runs when the client sends a ``response.create`` while nothing is pending
    (the handler's greeting; a ``response.create`` that arrives while a turn is
    still between steps is served after that turn ends).  **The greeting starts only on the client's
    ``response.create``** -- the fake never speaks first.
``on_caller_speech(*steps)``
    Runs when a user audio turn is committed (server VAD detected speech then
    ``silence_ms`` of quiet, or the client sent ``input_audio_buffer.commit``),
    or when the client created a user *text* message and then ``response.create``.

A plain ``str`` inside ``greet``/``on_caller_speech`` is shorthand for ``say(str)``.

Steps:

``user_said(text, *, deltas=True, late=False)``
    Scripted transcript of the caller's audio:
    ``conversation.item.input_audio_transcription.delta`` (word pieces, unless
    ``deltas=False``) + ``.completed``.  A caller turn without ``user_said`` or
    ``inaudible`` is transcribed as the script's ``default_transcript``.
    Sent right after the commit, or after the first ``response.created`` of the
    turn when ``late=True`` (the real API often transcribes late).  Transcription
    events are only sent if the session enabled ``audio.input.transcription``
    (like the real API) unless the server has ``always_transcribe=True``.
``inaudible(message="Audio could not be transcribed.", code=None)``
    ``conversation.item.input_audio_transcription.failed`` instead.
``say(text, *, audio_ms=None, pace=<server>, delta_delay_s=<server>, drop_after_deltas=None,
      stall_after_deltas=None, fail_after_deltas=None)``
    One audio response.  ``text`` may be a callable ``f(last_tool_output)`` where
    ``last_tool_output`` is the parsed JSON (or raw string, or ``None``) of the
    last ``function_call_output`` the client sent on this connection.
    Audio is a voiced, non-silent synthetic signal of ``audio_ms`` (default
    ``ms_per_char * len(text)`` clamped to ``[min_audio_ms, max_audio_ms]``),
    sent as ``chunk_ms`` (100 ms) deltas.  ``pace``: ``None``/``0`` = as fast as
    possible (like the real API), ``1.0`` = real time, ``0.5`` = 2x faster.
    ``delta_delay_s`` adds a fixed delay per delta (slow network).  Faults:
    ``drop_after_deltas=N`` aborts the TCP connection (no close frame) after N
    audio deltas, ``stall_after_deltas=N`` goes silent after N deltas and keeps
    the socket open, ``fail_after_deltas=N`` ends with ``response.done`` status
    ``failed`` (server_error).
``call_tool(name, arguments)``
    One response containing a ``function_call`` item.  ``arguments`` may be a
    dict (json-dumped), a raw string (sent as-is: use it for malformed-argument
    tests) or a callable of the last tool output.  The turn then waits for the
    client's ``response.create`` (normally after its ``conversation.item.create``
    ``function_call_output``) and continues; if nothing follows the call in the
    turn, the script's ``default_reply`` is spoken.
``branch(fn)``
    ``fn(last_tool_output)`` returns a step, a str, a list of those, or None;
    they run in its place.  (If a script callable raises, the fake records a
    problem and sends an ``error`` with code ``fake_script_error``.)
``send_error(message=..., *, type="server_error", code=None, param=None)``
    An ``error`` event.
``pause(seconds)``; ``stall()`` (send nothing more, keep the socket open);
``drop()`` (abort the TCP transport now); ``send_event(dict)`` (raw event,
``event_id`` added if missing).

``Script(*turns, default_reply="Sorry, could you say that again?",
default_transcript="(unscripted speech)", default_greeting=None)``: when the caller
speaks and no ``on_caller_speech`` turn is left, the fake transcribes it as
``default_transcript`` and says ``default_reply``; a ``response.create`` with no
greeting turn left says ``default_greeting`` (or ``default_reply``).

Server
======
``FakeRealtimeServer(script=None, *, host="127.0.0.1", port=0, api_key=None,
reject_auth=False, handshake_status=None, handshake_body=None,
vad_threshold_dbfs=-45.0, speech_start_ms=60, silence_ms=None, prefix_padding_ms=None,
pace=None, delta_delay_s=0.0, ms_per_char=60, min_audio_ms=400, max_audio_ms=8000, chunk_ms=100,
legacy_event_names=False, always_transcribe=False, send_rate_limits=True,
script_scope="connection", voice="marin")``

* ``api_key``: expected key; a different/missing key gets HTTP 401.
  ``reject_auth=True``: every handshake gets 401.  ``handshake_status`` (+ optional
  ``handshake_body`` dict) rejects every handshake with that status (e.g. 429, 500).
* VAD: RMS dBFS over 20 ms windows; speech starts after ``speech_start_ms`` of
  windows >= ``vad_threshold_dbfs`` and stops after ``silence_ms`` of quiet.
  ``silence_ms``/``prefix_padding_ms`` default to the session's
  ``audio.input.turn_detection`` values (500/300 when unset); an explicit
  constructor value wins.  ``turn_detection: null`` in ``session.update`` turns VAD
  off (the client must ``input_audio_buffer.commit`` *and* send ``response.create``,
  as with the real API), ``create_response: false`` makes the fake wait for
  ``response.create`` after a commit, ``interrupt_response: false`` disables
  barge-in cancellation.
* ``pace``/``delta_delay_s``: defaults for every ``say`` (see above).
* ``legacy_event_names=True``: send ``response.audio.delta``/``.done`` and
  ``response.audio_transcript.delta``/``.done`` instead of the GA names.  The SDK
  then parses those into a *wrong* model class (its discriminator does not know
  them), so a handler must dispatch on ``event.type`` strings, not ``isinstance``.
* ``script_scope``: ``"connection"`` (each connection replays the script from the
  start) or ``"server"`` (one cursor shared by all connections, e.g. to continue
  after a reconnect).  ``set_script(script)`` swaps the script for new connections.

Inspection (all thread-safe; the returned objects are copies):

* ``base_url``, ``ws_url``, ``port``; ``start()`` returns the server, ``stop()``;
  context manager.
* ``client_events(event_type=None, *, conn=None)`` -- recorded client events as
  dicts with extra keys ``_conn`` (connection id), ``_seq`` (index) and ``_t``
  (``time.monotonic()`` when recorded);
  ``input_audio_buffer.append`` events have ``audio`` replaced by
  ``_audio_bytes`` (decoded length).  ``sent_events(...)`` likewise for what the
  fake sent.  ``mark()`` / ``sent_mark()`` give the current lengths to pass as
  ``after=`` below.
* ``wait_for(event_type, predicate=None, timeout=10.0, *, conn=None, after=0)`` ->
  first matching client event at index >= ``after`` (raises ``TimeoutError``);
  ``wait_for_sent(...)`` the same for sent events; ``wait_for_connections(n)``;
  ``wait_until(fn)``.  ``async_wait_for``/``async_wait_for_sent`` run them in a
  worker thread for use inside an async test (never call the blocking ones on
  the loop that runs the SDK client).
* ``connections`` -> list of :class:`ConnectionInfo` (every handshake, accepted or
  rejected: id, path, model, ``api_key_present``, ``api_key_sha256`` (16 hex),
  ``api_key_last4``, ``beta_header``, ``status`` (101 or the HTTP rejection),
  ``closed``, ``session``, ``problems``); ``connection_count`` (accepted);
  ``session(conn=None)`` (latest session of a connection).
* ``sent_audio_ms(item_id)``, ``last_audio_item_id``, ``tool_outputs(name=None)``
  (:class:`ToolOutput`: call_id, name, arguments, output_raw, output (parsed)),
  ``last_tool_output``, ``truncations()``, ``received_audio(conn)`` (PCM16
  bytes), ``remaining_turns(conn=None)``, ``problems()`` (protocol misuse the fake
  noticed, e.g. ``OpenAI-Beta`` header, unknown ``call_id``), ``reset_records()``,
  ``interrupted_responses()`` (audio responses that ended cancelled/failed, with
  ``audio_sent_ms``), ``vad_log()``, ``total_usage``.

Protocol notes for the handler
==============================
* ``session.update`` must contain ``session.type == "realtime"`` (GA) or the fake
  answers an ``error`` (``missing_required_parameter``), like the real API.  Do not
  send an ``OpenAI-Beta: realtime=v1`` header (it selects the beta protocol).
* The greeting (and every answer after a tool output) starts on the client's
  ``response.create``.  A ``response.create`` while a response is active gets an
  ``error`` with code ``conversation_already_has_active_response``;
  ``response.cancel`` without an active response gets ``response_cancel_not_active``.
* Barge-in: speech while audio is still *being sent* gives
  ``input_audio_buffer.speech_started`` then ``response.done`` with status
  ``cancelled`` / ``status_details.reason == "turn_detected"``.  Because audio is
  sent faster than real time by default, most audio has normally already arrived
  when the caller interrupts: the handler must stop its own playback and send
  ``conversation.item.truncate`` with the played ms; ``audio_end_ms`` beyond what
  was sent for the item gets an ``error`` (``invalid_value``).
* ``input_audio_buffer.commit`` with < 100 ms of uncommitted audio gets an
  ``error`` (``input_audio_buffer_commit_empty``).
* Errors: on a rejected handshake ``client.realtime.connect().__aenter__`` raises
  ``websockets.exceptions.InvalidStatus`` (``exc.response.status_code == 401``,
  ``exc.response.body`` is the JSON error body; not an ``openai.APIError``).  When
  the connection drops without a close frame, iterating the connection (or
  ``recv()``) raises ``websockets.exceptions.ConnectionClosedError`` (unless the
  SDK was given ``on_reconnecting``, in which case it reconnects: 1006 is
  "recoverable").  A clean close (``stop()`` sends close code 1001) just ends the
  ``async for`` without an exception -- treat that as a disconnect too.  Nothing
  listening at all gives ``ConnectionRefusedError`` (an ``OSError``).
* Legacy event names parse into the wrong SDK class (see ``legacy_event_names``).
* The fake also sends ``conversation.item.added``/``.done`` for assistant and
  function-call items and ``rate_limits.updated`` after each ``response.done``,
  like the real API; a handler must ignore events it does not use.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import json
import math
import secrets
import string
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

__all__ = [
    "SAMPLE_RATE",
    "ConnectionInfo",
    "FakeRealtimeServer",
    "Script",
    "ToolOutput",
    "branch",
    "call_tool",
    "drop",
    "greet",
    "inaudible",
    "on_caller_speech",
    "on_response_create",
    "pause",
    "pcm16_dbfs",
    "pcm16_silence",
    "pcm16_tone",
    "say",
    "send_error",
    "send_event",
    "stall",
    "synth_voice",
    "user_said",
]

SAMPLE_RATE = 24_000
_BYTES_PER_MS = SAMPLE_RATE * 2 // 1000  # PCM16 mono: 48 bytes per ms
_VAD_WINDOW_MS = 20
_VAD_WINDOW = SAMPLE_RATE * _VAD_WINDOW_MS // 1000

_LEGACY_NAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
}

_CLIENT_EVENT_TYPES = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
)

# --------------------------------------------------------------------------- audio helpers


def pcm16_silence(duration_ms: float) -> bytes:
    """Digital silence, PCM16 mono 24 kHz."""
    return b"\x00\x00" * int(SAMPLE_RATE * duration_ms / 1000)


def pcm16_tone(duration_ms: float, freq: float = 220.0, dbfs: float = -20.0) -> bytes:
    """A sine tone at ``dbfs`` RMS, PCM16 mono 24 kHz (loud enough for the fake VAD)."""
    n = int(SAMPLE_RATE * duration_ms / 1000)
    t = np.arange(n) / SAMPLE_RATE
    amp = 32768.0 * 10 ** (dbfs / 20) * math.sqrt(2)
    return np.clip(amp * np.sin(2 * np.pi * freq * t), -32768, 32767).astype("<i2").tobytes()


def pcm16_dbfs(pcm: bytes) -> float:
    """RMS level of PCM16 audio in dBFS (-inf for digital silence)."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return float("-inf")
    rms = math.sqrt(float(np.mean(samples * samples)))
    return 20 * math.log10(rms / 32768.0) if rms > 0 else float("-inf")


def synth_voice(duration_ms: float, *, seed: int = 0, level_dbfs: float = -18.0) -> bytes:
    """A voiced, speech-like synthetic signal (harmonic buzz with pitch contour and
    syllable-rate amplitude modulation), PCM16 mono 24 kHz.  Never silent."""
    n = int(SAMPLE_RATE * duration_ms / 1000)
    if n <= 0:
        return b""
    t = np.arange(n) / SAMPLE_RATE
    f0 = 150.0 + 25.0 * np.sin(2 * np.pi * 0.8 * t + seed) + 10.0 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    sig = sum(np.sin(k * phase) / k for k in range(1, 7))
    sig = sig * (0.6 + 0.4 * np.abs(np.sin(np.pi * 4.0 * t + seed)))
    ramp = min(n // 2, SAMPLE_RATE // 100)
    if ramp:
        sig[:ramp] *= np.linspace(0.0, 1.0, ramp)
        sig[-ramp:] *= np.linspace(1.0, 0.0, ramp)
    rms = float(np.sqrt(np.mean(sig * sig))) or 1.0
    sig = sig / rms * 32768.0 * 10 ** (level_dbfs / 20)
    return np.clip(sig, -32768, 32767).astype("<i2").tobytes()


# --------------------------------------------------------------------------- ids


def _rand_id(prefix: str, n: int = 21) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(n))


# --------------------------------------------------------------------------- script API


@dataclass(frozen=True)
class UserSaid:
    text: str
    deltas: bool = True
    late: bool = False


@dataclass(frozen=True)
class Inaudible:
    message: str = "Audio could not be transcribed."
    code: str | None = None


@dataclass(frozen=True)
class Say:
    text: str | Callable[[Any], str]
    audio_ms: float | None = None
    pace: float | None | str = "server"
    delta_delay_s: float | None = None
    drop_after_deltas: int | None = None
    stall_after_deltas: int | None = None
    fail_after_deltas: int | None = None


@dataclass(frozen=True)
class CallTool:
    name: str
    arguments: dict | list | str | Callable[[Any], Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Branch:
    fn: Callable[[Any], Any]


@dataclass(frozen=True)
class SendError:
    message: str
    type: str = "server_error"
    code: str | None = None
    param: str | None = None


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Stall:
    pass


@dataclass(frozen=True)
class Drop:
    pass


@dataclass(frozen=True)
class SendEvent:
    event: dict


Step = UserSaid | Inaudible | Say | CallTool | Branch | SendError | Pause | Stall | Drop | SendEvent


@dataclass(frozen=True)
class Turn:
    trigger: str  # "response_create" | "caller_speech"
    steps: tuple


def user_said(text: str, *, deltas: bool = True, late: bool = False) -> UserSaid:
    """Scripted transcript of the caller's committed audio."""
    return UserSaid(text, deltas, late)


def inaudible(message: str = "Audio could not be transcribed.", code: str | None = None) -> Inaudible:
    """The caller's audio fails transcription (``...transcription.failed``)."""
    return Inaudible(message, code)


def say(
    text: str | Callable[[Any], str],
    *,
    audio_ms: float | None = None,
    pace: float | None | str = "server",
    delta_delay_s: float | None = None,
    drop_after_deltas: int | None = None,
    stall_after_deltas: int | None = None,
    fail_after_deltas: int | None = None,
) -> Say:
    """One spoken (audio + transcript) response."""
    return Say(text, audio_ms, pace, delta_delay_s, drop_after_deltas, stall_after_deltas, fail_after_deltas)


def call_tool(name: str, arguments: dict | list | str | Callable[[Any], Any] | None = None) -> CallTool:
    """One response with a function call; the turn then waits for ``response.create``."""
    return CallTool(name, {} if arguments is None else arguments)


def branch(fn: Callable[[Any], Any]) -> Branch:
    """Steps chosen at run time from the last tool output."""
    return Branch(fn)


def send_error(
    message: str = "The server had an error while processing your request. Sorry about that!",
    *,
    type: str = "server_error",  # noqa: A002 - mirrors the API field name
    code: str | None = None,
    param: str | None = None,
) -> SendError:
    """An ``error`` server event."""
    return SendError(message, type, code, param)


def pause(seconds: float) -> Pause:
    return Pause(seconds)


def stall() -> Stall:
    """Stop sending anything on this connection; keep the socket open."""
    return Stall()


def drop() -> Drop:
    """Abort the TCP connection without a close frame."""
    return Drop()


def send_event(event: dict) -> SendEvent:
    """Send a raw server event (``event_id`` is added if missing)."""
    return SendEvent(dict(event))


def _norm_steps(steps: Iterable[Any], say_options: dict | None = None) -> tuple:
    out = []
    for s in steps:
        if isinstance(s, str):
            out.append(say(s, **(say_options or {})))
        elif isinstance(s, (UserSaid, Inaudible, Say, CallTool, Branch, SendError, Pause, Stall, Drop, SendEvent)):
            out.append(s)
        else:
            raise TypeError(f"not a script step: {s!r}")
    return tuple(out)


def greet(*steps: Any, **say_options: Any) -> Turn:
    """Turn run on the client's ``response.create`` (strings are ``say(str, **say_options)``)."""
    return Turn("response_create", _norm_steps(steps, say_options))


def on_response_create(*steps: Any) -> Turn:
    """Same as :func:`greet`."""
    return Turn("response_create", _norm_steps(steps))


def on_caller_speech(*steps: Any) -> Turn:
    """Turn run when the caller's next utterance is committed."""
    return Turn("caller_speech", _norm_steps(steps))


class Script:
    """An ordered conversation timeline made of :func:`greet` and :func:`on_caller_speech` turns."""

    def __init__(
        self,
        *turns: Turn,
        default_reply: str = "Sorry, could you say that again?",
        default_transcript: str = "(unscripted speech)",
        default_greeting: str | None = None,
    ) -> None:
        for t in turns:
            if not isinstance(t, Turn):
                raise TypeError(f"Script() takes greet()/on_caller_speech() turns, got {t!r}")
        self.turns = tuple(turns)
        self.default_reply = default_reply
        self.default_transcript = default_transcript
        self.default_greeting = default_greeting

    def __repr__(self) -> str:
        return f"Script({len(self.turns)} turns)"


class _Cursor:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.greets = deque(t for t in script.turns if t.trigger == "response_create")
        self.speech = deque(t for t in script.turns if t.trigger == "caller_speech")

    def next_greet(self) -> Turn | None:
        return self.greets.popleft() if self.greets else None

    def next_speech(self) -> Turn | None:
        return self.speech.popleft() if self.speech else None

    def remaining(self) -> dict:
        return {"greet": len(self.greets), "caller_speech": len(self.speech)}


# --------------------------------------------------------------------------- records


@dataclass
class ToolOutput:
    conn: int
    call_id: str
    name: str | None
    arguments: Any
    output_raw: str
    output: Any


@dataclass
class ConnectionInfo:
    id: int
    path: str
    model: str | None
    api_key_present: bool
    api_key_sha256: str | None
    api_key_last4: str | None
    beta_header: str | None
    status: int
    opened_at: float
    closed_at: float | None = None
    close_code: int | None = None
    session: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.status == 101

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


class _Abandon(Exception):
    """The current turn cannot continue (connection dropped / stalled)."""


@dataclass
class _ActiveResponse:
    id: str
    cancel_reason: str | None = None
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)
    done_event: asyncio.Event = field(default_factory=asyncio.Event)


# --------------------------------------------------------------------------- per-connection logic


class _Conn:
    def __init__(self, server: FakeRealtimeServer, ws: ServerConnection, info: ConnectionInfo, cursor: _Cursor):
        self.server = server
        self.ws = ws
        self.info = info
        self.id = info.id
        self.cursor = cursor
        self.script = cursor.script
        self.send_lock = asyncio.Lock()
        self.stalled = False
        self.dropped = False
        self.session = server._initial_session(info.model)
        self.conversation_id = _rand_id("conv_")
        self.items: dict[str, dict] = {}
        self.item_order: list[str] = []
        self.audio_sent_ms: dict[str, float] = {}
        self.call_ids: dict[str, tuple[str, Any]] = {}
        self.last_tool_output: Any = None
        self.active_response: _ActiveResponse | None = None
        self.turn_task: asyncio.Task | None = None
        self.side_tasks: set[asyncio.Task] = set()  # transcriptions of turns that did not interrupt an answer
        self.continuation: asyncio.Future | None = None
        self.pending: tuple[list, list] | None = None
        self.deferred_creates: deque = deque()
        self.items_prev: dict[str, str | None] = {}
        self.late_events: list = []
        self.warned_no_transcription = False
        # audio / VAD state
        self.remainder = b""
        self.vad_buf = np.zeros(0, dtype=np.int16)
        self.samples_in = 0  # samples processed by VAD (position)
        self.buffer_start_samples = 0  # start of the uncommitted input buffer
        self.speaking = False
        self.loud_ms = 0
        self.loud_start_ms = 0
        self.quiet_ms = 0
        self.speech_item_id: str | None = None
        self.input_audio_total_ms = 0.0

    # ---- helpers
    @property
    def last_item_id(self) -> str | None:
        return self.item_order[-1] if self.item_order else None

    def problem(self, text: str) -> None:
        self.server._add_problem(self.id, text)

    def _turn_detection(self) -> dict | None:
        audio = self.session.get("audio") or {}
        inp = audio.get("input") or {}
        return inp.get("turn_detection")

    def _vad_param(self, name: str, ctor_value: int | None, default: int) -> int:
        if ctor_value is not None:
            return ctor_value
        td = self._turn_detection() or {}
        v = td.get(name)
        return int(v) if isinstance(v, (int, float)) else default

    def _transcription_enabled(self) -> bool:
        if self.server.always_transcribe:
            return True
        inp = (self.session.get("audio") or {}).get("input") or {}
        return bool(inp.get("transcription"))

    async def send(self, event: dict) -> None:
        if self.dropped or self.stalled:
            return
        event = dict(event)
        if self.server.legacy_event_names and event.get("type") in _LEGACY_NAMES:
            event["type"] = _LEGACY_NAMES[event["type"]]
        event.setdefault("event_id", _rand_id("event_"))
        # keep "type" first like the real API (cosmetic)
        event = {"type": event["type"], **{k: v for k, v in event.items() if k != "type"}}
        data = json.dumps(event, ensure_ascii=False)
        async with self.send_lock:
            try:
                await self.ws.send(data)
            except ConnectionClosed:
                return
        self.server._record_sent(self.id, event)

    async def error(
        self,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,  # noqa: A002
        param: str | None = None,
        client_event_id: str | None = None,
    ) -> None:
        await self.send(
            {
                "type": "error",
                "error": {
                    "type": type,
                    "code": code,
                    "message": message,
                    "param": param,
                    "event_id": client_event_id,
                },
            }
        )

    # ---- lifecycle
    async def run(self) -> None:
        await self.send({"type": "session.created", "session": copy.deepcopy(self.session)})
        try:
            async for message in self.ws:
                await self.on_message(message)
        except ConnectionClosed:
            pass
        finally:
            await self._stop_turn()
            for task in list(self.side_tasks):
                task.cancel()
            for resp_fut in (self.continuation,):
                if resp_fut is not None and not resp_fut.done():
                    resp_fut.cancel()

    async def _stop_turn(self, reason: str | None = None) -> None:
        """End the running turn.  With ``reason``, an active response is first cancelled
        cooperatively (it finishes with ``response.done`` status cancelled)."""
        resp = self.active_response
        if resp is not None and reason is not None and not (self.stalled or self.dropped):
            resp.cancel_reason = resp.cancel_reason or reason
            resp.cancel_event.set()
            try:
                await asyncio.wait_for(resp.done_event.wait(), 5)
            except TimeoutError:
                self.problem(f"response {resp.id} did not finish after cancel")
        task = self.turn_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])
        self.turn_task = None
        self.continuation = None
        self.deferred_creates.clear()

    async def cancel_turn(self, reason: str) -> None:
        await self._stop_turn(reason)

    def start_turn(self, steps: list, *, transcription: list | None = None) -> None:
        self.turn_task = asyncio.get_running_loop().create_task(self._turn_main(list(steps), transcription or []))

    # ---- incoming
    async def on_message(self, message: str | bytes) -> None:
        try:
            ev = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            self.server._record_client(self.id, {"type": "<invalid json>", "raw": str(message)[:200]})
            await self.error("We could not parse the JSON body of your request.", code="invalid_json")
            return
        if not isinstance(ev, dict):
            await self.error("Invalid event: expected a JSON object.", code="invalid_value")
            return
        etype = ev.get("type")
        cid = ev.get("event_id")
        if etype == "input_audio_buffer.append":
            await self.on_append(ev)
            return
        self.server._record_client(self.id, ev)
        if etype not in _CLIENT_EVENT_TYPES:
            supported = ", ".join(f"'{t}'" for t in _CLIENT_EVENT_TYPES)
            await self.error(
                f"Invalid value: '{etype}'. Supported values are: {supported}.",
                code="invalid_value",
                param="type",
                client_event_id=cid,
            )
            return
        handler = getattr(self, "on_" + etype.replace(".", "_"))
        await handler(ev)

    async def on_session_update(self, ev: dict) -> None:
        cid = ev.get("event_id")
        sess = ev.get("session")
        if not isinstance(sess, dict):
            await self.error(
                "Missing required parameter: 'session'.",
                code="missing_required_parameter",
                param="session",
                client_event_id=cid,
            )
            return
        if "type" not in sess:
            await self.error(
                "Missing required parameter: 'session.type'.",
                code="missing_required_parameter",
                param="session.type",
                client_event_id=cid,
            )
            return
        if sess["type"] != "realtime":
            await self.error(
                f"Invalid value: '{sess['type']}'. Supported values are: 'realtime'.",
                code="invalid_value",
                param="session.type",
                client_event_id=cid,
            )
            return
        fmt = ((sess.get("audio") or {}).get("input") or {}).get("format")
        if isinstance(fmt, dict) and fmt.get("type", "audio/pcm") != "audio/pcm":
            self.problem(f"fake only decodes audio/pcm input, session asked for {fmt!r}")
        _deep_merge(self.session, sess)
        self.server._set_session(self.id, self.session)
        await self.send({"type": "session.updated", "session": copy.deepcopy(self.session)})

    async def on_append(self, ev: dict) -> None:
        audio = ev.get("audio")
        try:
            pcm = base64.b64decode(audio or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            pcm = None
        rec = {k: v for k, v in ev.items() if k != "audio"}
        rec["_audio_bytes"] = len(pcm) if pcm is not None else -1
        self.server._record_client(self.id, rec)
        if pcm is None or not isinstance(audio, str):
            await self.error(
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                code="invalid_value",
                param="audio",
                client_event_id=ev.get("event_id"),
            )
            return
        self.server._record_audio(self.id, pcm)
        for action in self.feed_vad(pcm):
            await action()

    def feed_vad(self, pcm: bytes) -> list[Callable[[], Any]]:
        data = self.remainder + pcm
        if len(data) % 2:
            self.remainder, data = data[-1:], data[:-1]
        else:
            self.remainder = b""
        samples = np.frombuffer(data, dtype="<i2")
        self.input_audio_total_ms += len(samples) / (SAMPLE_RATE / 1000)
        self.vad_buf = np.concatenate([self.vad_buf, samples]) if self.vad_buf.size else samples.copy()
        actions: list[Callable[[], Any]] = []
        td = self._turn_detection()
        srv = self.server
        while self.vad_buf.size >= _VAD_WINDOW:
            win = self.vad_buf[:_VAD_WINDOW].astype(np.float64)
            self.vad_buf = self.vad_buf[_VAD_WINDOW:]
            self.samples_in += _VAD_WINDOW
            if td is None:
                continue
            pos_ms = self.samples_in * 1000 // SAMPLE_RATE
            rms = math.sqrt(float(np.mean(win * win)))
            level = 20 * math.log10(rms / 32768.0) if rms > 0 else -200.0
            loud = level >= srv.vad_threshold_dbfs
            if not self.speaking:
                if loud:
                    if self.loud_ms == 0:
                        self.loud_start_ms = pos_ms - _VAD_WINDOW_MS
                    self.loud_ms += _VAD_WINDOW_MS
                    if self.loud_ms >= srv.speech_start_ms:
                        self.speaking = True
                        self.quiet_ms = 0
                        self.speech_item_id = _rand_id("item_")
                        prefix = self._vad_param("prefix_padding_ms", srv.prefix_padding_ms, 300)
                        buf_start_ms = self.buffer_start_samples * 1000 // SAMPLE_RATE
                        start_ms = max(buf_start_ms, self.loud_start_ms - prefix)
                        actions.append(self._make_speech_started(self.speech_item_id, start_ms))
                else:
                    self.loud_ms = 0
            else:
                if loud:
                    self.quiet_ms = 0
                else:
                    self.quiet_ms += _VAD_WINDOW_MS
                    if self.quiet_ms >= self._vad_param("silence_duration_ms", srv.silence_ms, 500):
                        self.speaking = False
                        self.loud_ms = 0
                        item_id = self.speech_item_id or _rand_id("item_")
                        self.speech_item_id = None
                        actions.append(self._make_speech_stopped(item_id, pos_ms))
        return actions

    def _make_speech_started(self, item_id: str, start_ms: int) -> Callable[[], Any]:
        async def action() -> None:
            await self.send(
                {"type": "input_audio_buffer.speech_started", "audio_start_ms": int(start_ms), "item_id": item_id}
            )
            self.server._record_vad(self.id, "speech_started", item_id, start_ms)
            td = self._turn_detection() or {}
            if self.active_response is not None and td.get("interrupt_response", True) is not False:
                await self.cancel_turn("turn_detected")

        return action

    def _make_speech_stopped(self, item_id: str, end_ms: int) -> Callable[[], Any]:
        async def action() -> None:
            await self.send(
                {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": int(end_ms), "item_id": item_id}
            )
            self.server._record_vad(self.id, "speech_stopped", item_id, end_ms)
            await self.commit(item_id, end_samples=end_ms * SAMPLE_RATE // 1000)

        return action

    async def commit(self, item_id: str, *, end_samples: int | None = None) -> None:
        prev = self.last_item_id
        await self.send({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": prev})
        item = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self.items[item_id] = item
        self.item_order.append(item_id)
        self.buffer_start_samples = self.samples_in if end_samples is None else max(end_samples, 0)
        await self.send({"type": "conversation.item.added", "item": copy.deepcopy(item), "previous_item_id": prev})
        await self.send({"type": "conversation.item.done", "item": copy.deepcopy(item), "previous_item_id": prev})
        # the caller took the floor: whatever the previous turn was doing is abandoned, unless the session
        # says turns do not interrupt answers (`interrupt_response: false`: the client decides)
        td = self._turn_detection() or {}
        if td.get("interrupt_response", True) is not False:
            await self.cancel_turn("turn_detected")
            self.continuation = None
        turn = self.cursor.next_speech()
        if turn is None:
            steps: list = [user_said(self.script.default_transcript), say(self.script.default_reply)]
        else:
            steps = list(turn.steps)
        transcription = [s for s in steps if isinstance(s, (UserSaid, Inaudible))]
        rest = [s for s in steps if not isinstance(s, (UserSaid, Inaudible))]
        if not transcription:
            transcription = [user_said(self.script.default_transcript)]
        td = self._turn_detection()
        auto = td is not None and td.get("create_response", True) is not False
        tagged = [(item_id, s) for s in transcription]
        if auto:
            self.pending = None
            self.start_turn(rest, transcription=tagged)
        else:
            # transcribe now; the response (and late transcripts) wait for response.create
            late = [(i, s) for i, s in tagged if isinstance(s, UserSaid) and s.late]
            self.pending = (rest, late)
            now = [t for t in tagged if t not in late]
            if self.turn_task is not None and not self.turn_task.done():  # an answer goes on over this turn
                self._side_task(self._transcribe_all(now))
            else:
                self.start_turn([], transcription=now)

    async def _transcribe_all(self, transcription: list) -> None:
        for item_id, s in transcription:
            await self._transcribe(item_id, s)

    def _side_task(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    async def on_input_audio_buffer_commit(self, ev: dict) -> None:
        buffered = (self.samples_in + self.vad_buf.size - self.buffer_start_samples) * 1000 / SAMPLE_RATE
        if buffered < 100:
            await self.error(
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {max(buffered, 0):.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
                client_event_id=ev.get("event_id"),
            )
            return
        item_id = self.speech_item_id or _rand_id("item_")
        self.speaking = False
        self.loud_ms = 0
        self.quiet_ms = 0
        self.speech_item_id = None
        await self.commit(item_id, end_samples=self.samples_in + self.vad_buf.size)

    async def on_input_audio_buffer_clear(self, ev: dict) -> None:
        self.buffer_start_samples = self.samples_in + self.vad_buf.size
        self.speaking = False
        self.loud_ms = 0
        self.quiet_ms = 0
        self.speech_item_id = None
        await self.send({"type": "input_audio_buffer.cleared"})

    async def on_output_audio_buffer_clear(self, ev: dict) -> None:
        # WebRTC/SIP-only in the real API; accepted and ignored here.
        return

    async def on_conversation_item_create(self, ev: dict) -> None:
        cid = ev.get("event_id")
        item = ev.get("item")
        if not isinstance(item, dict) or "type" not in item:
            await self.error(
                "Missing required parameter: 'item.type'.",
                code="missing_required_parameter",
                param="item.type",
                client_event_id=cid,
            )
            return
        item = copy.deepcopy(item)
        itype = item["type"]
        if itype == "function_call_output":
            call_id = item.get("call_id")
            if call_id not in self.call_ids:
                self.problem(f"function_call_output for unknown call_id {call_id!r}")
                await self.error(
                    f"Tool call ID '{call_id}' not found in conversation.",
                    code="invalid_value",
                    param="item.call_id",
                    client_event_id=cid,
                )
                return
            raw = item.get("output")
            if not isinstance(raw, str):
                await self.error(
                    "Invalid type for 'item.output': expected a string.",
                    code="invalid_type",
                    param="item.output",
                    client_event_id=cid,
                )
                return
            try:
                parsed: Any = json.loads(raw)
            except ValueError:
                parsed = raw
            name, args = self.call_ids[call_id]
            self.last_tool_output = parsed
            self.server._record_tool_output(ToolOutput(self.id, call_id, name, args, raw, parsed))
        elif itype == "message":
            if item.get("role") not in ("user", "assistant", "system"):
                await self.error(
                    f"Invalid value: '{item.get('role')}'. Supported values are: 'user', 'assistant', and 'system'.",
                    code="invalid_value",
                    param="item.role",
                    client_event_id=cid,
                )
                return
        elif itype != "function_call":
            await self.error(
                f"Invalid value: '{itype}'. Supported values are: 'message', 'function_call', "
                "and 'function_call_output'.",
                code="invalid_value",
                param="item.type",
                client_event_id=cid,
            )
            return
        item.setdefault("id", _rand_id("item_"))
        item["object"] = "realtime.item"
        item["status"] = "completed"
        prev = self.last_item_id
        self.items[item["id"]] = item
        self.item_order.append(item["id"])
        await self.send({"type": "conversation.item.added", "item": copy.deepcopy(item), "previous_item_id": prev})
        await self.send({"type": "conversation.item.done", "item": copy.deepcopy(item), "previous_item_id": prev})
        if itype == "message" and item.get("role") == "user":
            # typed caller input: the next response.create runs the next caller turn
            turn = self.cursor.next_speech()
            steps = list(turn.steps) if turn else [say(self.script.default_reply)]
            self.pending = ([s for s in steps if not isinstance(s, (UserSaid, Inaudible))], [])

    async def on_conversation_item_retrieve(self, ev: dict) -> None:
        item = self.items.get(ev.get("item_id", ""))
        if item is None:
            await self.error(
                f"Item with item_id '{ev.get('item_id')}' not found.",
                code="item_not_found",
                param="item_id",
                client_event_id=ev.get("event_id"),
            )
            return
        await self.send({"type": "conversation.item.retrieved", "item": copy.deepcopy(item)})

    async def on_conversation_item_delete(self, ev: dict) -> None:
        item_id = ev.get("item_id", "")
        if item_id not in self.items:
            await self.error(
                f"Item with item_id '{item_id}' not found.",
                code="item_not_found",
                param="item_id",
                client_event_id=ev.get("event_id"),
            )
            return
        del self.items[item_id]
        self.item_order.remove(item_id)
        await self.send({"type": "conversation.item.deleted", "item_id": item_id})

    async def on_conversation_item_truncate(self, ev: dict) -> None:
        cid = ev.get("event_id")
        for key in ("item_id", "content_index", "audio_end_ms"):
            if key not in ev:
                await self.error(
                    f"Missing required parameter: '{key}'.",
                    code="missing_required_parameter",
                    param=key,
                    client_event_id=cid,
                )
                return
        item_id, ci, end = ev["item_id"], ev["content_index"], ev["audio_end_ms"]
        item = self.items.get(item_id)
        if item is None:
            await self.error(
                f"Item with item_id '{item_id}' not found.", code="item_not_found", param="item_id", client_event_id=cid
            )
            return
        if item.get("role") != "assistant" or item_id not in self.audio_sent_ms:
            await self.error(
                "Only assistant messages with audio can be truncated.",
                code="invalid_value",
                param="item_id",
                client_event_id=cid,
            )
            return
        if ci != 0:
            await self.error(
                f"Invalid value: content_index {ci} does not exist.",
                code="invalid_value",
                param="content_index",
                client_event_id=cid,
            )
            return
        if not isinstance(end, int) or isinstance(end, bool) or end < 0:
            await self.error(
                "Invalid 'audio_end_ms': expected a non-negative integer.",
                code="invalid_value",
                param="audio_end_ms",
                client_event_id=cid,
            )
            return
        sent = int(self.audio_sent_ms[item_id])
        if end > sent:
            await self.error(
                f"Audio content of {sent}ms is already shorter than {end}ms",
                code="invalid_value",
                param="audio_end_ms",
                client_event_id=cid,
            )
            return
        self.server._record_truncation(self.id, {"item_id": item_id, "audio_end_ms": end, "audio_sent_ms": sent})
        await self.send(
            {"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0, "audio_end_ms": end}
        )

    async def on_response_create(self, ev: dict) -> None:
        if self.active_response is not None:
            rid = self.active_response.id
            await self.error(
                f"Conversation already has an active response in progress: {rid}. Wait until the "
                "response is finished before creating a new one.",
                code="conversation_already_has_active_response",
                client_event_id=ev.get("event_id"),
            )
            return
        fut = self.continuation
        if fut is not None and not fut.done():
            fut.set_result(ev)
            return
        if self.pending is not None:
            (steps, late), self.pending = self.pending, None
            task = self.turn_task
            if task is not None and not task.done():
                await asyncio.wait([task], timeout=5)  # the transcription of the committed turn
            if self.side_tasks:
                await asyncio.wait(list(self.side_tasks), timeout=5)
            await self._stop_turn()
            self.start_turn(steps, transcription=late)
            return
        if self.turn_task is not None and not self.turn_task.done():
            # the scripted turn is still between steps: run this once it has finished
            self.deferred_creates.append(ev)
            return
        self._start_next_greet()

    def _start_next_greet(self) -> None:
        turn = self.cursor.next_greet()
        if turn is not None:
            self.start_turn(list(turn.steps))
        else:
            self.start_turn([say(self.script.default_greeting or self.script.default_reply)])

    async def on_response_cancel(self, ev: dict) -> None:
        if self.active_response is None:
            await self.error(
                "Cancellation failed: no active response found",
                code="response_cancel_not_active",
                client_event_id=ev.get("event_id"),
            )
            return
        await self.cancel_turn("client_cancelled")

    # ---- turn execution
    async def _turn_main(self, steps: list, transcription: list) -> None:
        try:
            self.late_events = []
            for item_id, s in transcription:
                if isinstance(s, UserSaid) and s.late:
                    self.late_events.append((item_id, s))
                else:
                    await self._transcribe(item_id, s)
            queue = deque(steps)
            while queue:
                step = queue.popleft()
                if isinstance(step, Branch):
                    res = step.fn(self.last_tool_output)
                    if res is None:
                        res = []
                    elif not isinstance(res, (list, tuple)):
                        res = [res]
                    queue.extendleft(reversed(_norm_steps(res)))
                elif isinstance(step, Say):
                    await self._say(step)
                elif isinstance(step, CallTool):
                    fut = await self._call_tool(step)
                    try:
                        await fut
                    finally:
                        if self.continuation is fut:
                            self.continuation = None
                    if not queue:
                        queue.append(say(self.script.default_reply))
                elif isinstance(step, SendError):
                    await self.send(
                        {
                            "type": "error",
                            "error": {
                                "type": step.type,
                                "code": step.code,
                                "message": step.message,
                                "param": step.param,
                                "event_id": None,
                            },
                        }
                    )
                elif isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, Stall):
                    await self._stall()
                elif isinstance(step, Drop):
                    self._drop()
                elif isinstance(step, SendEvent):
                    await self.send(step.event)
            # late transcripts that never got a response.created to follow
            await self._flush_late()
        except _Abandon:
            return
        except Exception as exc:  # a broken script callable must not hang the test silently
            self.problem(f"script step failed: {exc!r}")
            await self.send(
                {
                    "type": "error",
                    "error": {
                        "type": "server_error",
                        "code": "fake_script_error",
                        "param": None,
                        "event_id": None,
                        "message": f"fake_realtime script step failed: {exc!r}",
                    },
                }
            )
            return
        if self.deferred_creates and self.turn_task is asyncio.current_task():
            self.deferred_creates.popleft()
            self.deferred_creates.clear()
            self._start_next_greet()

    async def _transcribe(self, item_id: str, s: UserSaid | Inaudible) -> None:
        if not self._transcription_enabled():
            if not self.warned_no_transcription:
                self.warned_no_transcription = True
                self.problem(
                    "caller audio committed but session has no audio.input.transcription; no transcription events sent"
                )
            return
        if isinstance(s, Inaudible):
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": item_id,
                    "content_index": 0,
                    "error": {"type": "transcription_error", "code": s.code, "message": s.message, "param": None},
                }
            )
            return
        if s.deltas:
            words = s.text.split(" ") if " " in s.text else [s.text[i : i + 4] for i in range(0, len(s.text), 4)]
            for i, w in enumerate(words):
                delta = w if (i == 0 or " " not in s.text) else " " + w
                if delta:
                    await self.send(
                        {
                            "type": "conversation.item.input_audio_transcription.delta",
                            "item_id": item_id,
                            "content_index": 0,
                            "delta": delta,
                            "logprobs": None,
                        }
                    )
        item = self.items.get(item_id)
        if item is not None:
            item["content"][0]["transcript"] = s.text
        audio_tokens = max(1, int(self.input_audio_total_ms / 100))
        out_tokens = max(1, len(s.text) // 3)
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": s.text,
                "logprobs": None,
                "usage": {
                    "type": "tokens",
                    "input_tokens": audio_tokens,
                    "output_tokens": out_tokens,
                    "total_tokens": audio_tokens + out_tokens,
                    "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                },
            }
        )

    async def _flush_late(self) -> None:
        late, self.late_events = self.late_events, []
        for item_id, s in late:
            await self._transcribe(item_id, s)

    def _response_obj(
        self, resp_id: str, status: str, output: list, *, usage: dict | None = None, status_details: dict | None = None
    ) -> dict:
        voice = ((self.session.get("audio") or {}).get("output") or {}).get("voice") or self.server.voice
        return {
            "object": "realtime.response",
            "id": resp_id,
            "status": status,
            "status_details": status_details,
            "output": output,
            "conversation_id": self.conversation_id,
            "output_modalities": ["audio"],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": SAMPLE_RATE}, "voice": voice}},
            "usage": usage,
            "metadata": None,
        }

    def _usage(self, text: str, audio_ms: float) -> dict:
        text_in = 120 + 12 * len(self.item_order)
        audio_in = int(self.input_audio_total_ms / 100)
        text_out = max(1, math.ceil(len(text) / 3))
        audio_out = int(audio_ms / 50)
        usage = {
            "total_tokens": text_in + audio_in + text_out + audio_out,
            "input_tokens": text_in + audio_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }
        self.server._add_usage(usage)
        return usage

    async def _after_response_done(self) -> None:
        if self.server.send_rate_limits:
            await self.send(
                {
                    "type": "rate_limits.updated",
                    "rate_limits": [
                        {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                        {"name": "tokens", "limit": 800000, "remaining": 795000, "reset_seconds": 0.375},
                    ],
                }
            )

    def _end_response(self, resp: _ActiveResponse | None) -> None:
        if resp is not None:
            resp.done_event.set()
            if self.active_response is resp:
                self.active_response = None

    async def _response_created(self) -> _ActiveResponse:
        resp = _ActiveResponse(_rand_id("resp_"))
        self.active_response = resp
        await self.send({"type": "response.created", "response": self._response_obj(resp.id, "in_progress", [])})
        await self._flush_late()
        return resp

    async def _say(self, step: Say) -> None:
        srv = self.server
        text = step.text(self.last_tool_output) if callable(step.text) else step.text
        text = str(text)
        audio_ms = step.audio_ms
        if audio_ms is None:
            audio_ms = min(max(len(text) * srv.ms_per_char, srv.min_audio_ms), srv.max_audio_ms)
        pace = srv.pace if step.pace == "server" else step.pace
        pcm = synth_voice(audio_ms, seed=len(self.item_order))
        chunk_bytes = max(2, int(srv.chunk_ms * _BYTES_PER_MS) // 2 * 2)
        chunks = [pcm[i : i + chunk_bytes] for i in range(0, len(pcm), chunk_bytes)] or [b""]
        n = len(chunks)
        pieces = [text[round(i * len(text) / n) : round((i + 1) * len(text) / n)] for i in range(n)]

        item_id = _rand_id("item_")
        item = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        resp = await self._response_created()
        ids = {"response_id": resp.id, "item_id": item_id, "output_index": 0, "content_index": 0}
        sent_text = ""
        try:
            prev = self.last_item_id
            self.items_prev[item_id] = prev
            self.items[item_id] = item
            self.item_order.append(item_id)
            self.audio_sent_ms[item_id] = 0.0
            srv._record_audio_sent(self.id, item_id, 0.0)
            await self.send(
                {"type": "response.output_item.added", "response_id": resp.id, "output_index": 0, "item": item}
            )
            await self.send({"type": "conversation.item.added", "item": item, "previous_item_id": prev})
            await self.send({"type": "response.content_part.added", **ids, "part": {"type": "audio", "transcript": ""}})
            status, details = "completed", None
            for i, chunk in enumerate(chunks):
                if resp.cancel_event.is_set():
                    status, details = "cancelled", {"type": "cancelled", "reason": resp.cancel_reason}
                    break
                if step.drop_after_deltas is not None and i >= step.drop_after_deltas:
                    self._drop()
                if step.stall_after_deltas is not None and i >= step.stall_after_deltas:
                    await self._stall()
                if step.fail_after_deltas is not None and i >= step.fail_after_deltas:
                    status, details = (
                        "failed",
                        {
                            "type": "failed",
                            "error": {
                                "type": "server_error",
                                "code": None,
                                "message": "The server had an error while processing your request. Sorry about that!",
                            },
                        },
                    )
                    break
                if chunk:
                    await self.send(
                        {"type": "response.output_audio.delta", **ids, "delta": base64.b64encode(chunk).decode("ascii")}
                    )
                    self.audio_sent_ms[item_id] += len(chunk) / _BYTES_PER_MS
                    srv._record_audio_sent(self.id, item_id, self.audio_sent_ms[item_id])
                if pieces[i]:
                    await self.send({"type": "response.output_audio_transcript.delta", **ids, "delta": pieces[i]})
                    sent_text += pieces[i]
                extra = srv.delta_delay_s if step.delta_delay_s is None else step.delta_delay_s
                delay = (pace or 0.0) * len(chunk) / _BYTES_PER_MS / 1000.0 + extra
                if delay > 0:
                    try:
                        await asyncio.wait_for(resp.cancel_event.wait(), delay)
                    except TimeoutError:
                        pass
                else:
                    await asyncio.sleep(0)
            else:
                if resp.cancel_event.is_set():
                    status, details = "cancelled", {"type": "cancelled", "reason": resp.cancel_reason}

            item_status = "completed" if status == "completed" else "incomplete"
            done_item = {**item, "status": item_status, "content": [{"type": "output_audio", "transcript": sent_text}]}
            self.items[item_id] = done_item
            await self.send({"type": "response.output_audio.done", **ids})
            await self.send({"type": "response.output_audio_transcript.done", **ids, "transcript": sent_text})
            await self.send(
                {"type": "response.content_part.done", **ids, "part": {"type": "audio", "transcript": sent_text}}
            )
            await self.send(
                {"type": "response.output_item.done", "response_id": resp.id, "output_index": 0, "item": done_item}
            )
            await self.send({"type": "conversation.item.done", "item": done_item, "previous_item_id": prev})
            usage = self._usage(sent_text, self.audio_sent_ms.get(item_id, 0.0))
            self.active_response = None
            await self.send(
                {
                    "type": "response.done",
                    "response": self._response_obj(resp.id, status, [done_item], usage=usage, status_details=details),
                }
            )
            if status != "completed":
                self.server._record_interrupted(self.id, item_id, status, self.audio_sent_ms[item_id])
        finally:
            self._end_response(resp)
        await self._after_response_done()
        if status == "cancelled":
            raise _Abandon  # a cancelled response abandons the rest of the turn

    async def _call_tool(self, step: CallTool) -> asyncio.Future:
        """Send a function-call response; return the future resolved by the client's response.create."""
        args = step.arguments(self.last_tool_output) if callable(step.arguments) else step.arguments
        args_str = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        call_id = _rand_id("call_", 16)
        item_id = _rand_id("item_")
        self.call_ids[call_id] = (step.name, args)
        item = {
            "id": item_id,
            "type": "function_call",
            "object": "realtime.item",
            "status": "in_progress",
            "name": step.name,
            "call_id": call_id,
            "arguments": "",
        }
        resp = await self._response_created()
        try:
            prev = self.last_item_id
            self.items[item_id] = item
            self.item_order.append(item_id)
            await self.send(
                {"type": "response.output_item.added", "response_id": resp.id, "output_index": 0, "item": item}
            )
            await self.send({"type": "conversation.item.added", "item": item, "previous_item_id": prev})
            common = {"response_id": resp.id, "item_id": item_id, "output_index": 0, "call_id": call_id}
            for i in range(0, len(args_str), 24):
                await self.send(
                    {"type": "response.function_call_arguments.delta", **common, "delta": args_str[i : i + 24]}
                )
            await self.send(
                {"type": "response.function_call_arguments.done", **common, "name": step.name, "arguments": args_str}
            )
            done_item = {**item, "status": "completed", "arguments": args_str}
            self.items[item_id] = done_item
            await self.send(
                {"type": "response.output_item.done", "response_id": resp.id, "output_index": 0, "item": done_item}
            )
            await self.send({"type": "conversation.item.done", "item": done_item, "previous_item_id": prev})
            usage = self._usage(args_str, 0.0)
            # the continuation must exist before the client can see response.done
            fut = asyncio.get_running_loop().create_future()
            self.continuation = fut
            self.active_response = None
            await self.send(
                {
                    "type": "response.done",
                    "response": self._response_obj(resp.id, "completed", [done_item], usage=usage),
                }
            )
        finally:
            self._end_response(resp)
        await self._after_response_done()
        return fut

    async def _stall(self) -> None:
        self.stalled = True
        self.problem("stalled by script")
        await asyncio.get_running_loop().create_future()  # until the connection goes away

    def _drop(self) -> None:
        """Abort the TCP connection (no close frame) and abandon the turn."""
        self.dropped = True
        self.problem("connection dropped by script")
        transport = self.ws.transport
        if transport is not None:
            transport.abort()
        raise _Abandon


def _deep_merge(dst: dict, src: dict) -> dict:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


# --------------------------------------------------------------------------- the server


class FakeRealtimeServer:
    """Scripted OpenAI Realtime (GA) WebSocket server in a background thread.  See module docstring."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        reject_auth: bool = False,
        handshake_status: int | None = None,
        handshake_body: dict | None = None,
        vad_threshold_dbfs: float = -45.0,
        speech_start_ms: int = 60,
        silence_ms: int | None = None,
        prefix_padding_ms: int | None = None,
        pace: float | None = None,
        delta_delay_s: float = 0.0,
        ms_per_char: float = 60.0,
        min_audio_ms: float = 400.0,
        max_audio_ms: float = 8000.0,
        chunk_ms: float = 100.0,
        legacy_event_names: bool = False,
        always_transcribe: bool = False,
        send_rate_limits: bool = True,
        script_scope: str = "connection",
        voice: str = "marin",
    ) -> None:
        if script_scope not in ("connection", "server"):
            raise ValueError("script_scope must be 'connection' or 'server'")
        self.host = host
        self.port = port
        self.api_key = api_key
        self.reject_auth = reject_auth
        self.handshake_status = handshake_status
        self.handshake_body = handshake_body
        self.vad_threshold_dbfs = vad_threshold_dbfs
        self.speech_start_ms = speech_start_ms
        self.silence_ms = silence_ms
        self.prefix_padding_ms = prefix_padding_ms
        self.pace = pace
        self.delta_delay_s = delta_delay_s
        self.ms_per_char = ms_per_char
        self.min_audio_ms = min_audio_ms
        self.max_audio_ms = max_audio_ms
        self.chunk_ms = chunk_ms
        self.legacy_event_names = legacy_event_names
        self.always_transcribe = always_transcribe
        self.send_rate_limits = send_rate_limits
        self.script_scope = script_scope
        self.voice = voice

        self._cond = threading.Condition()
        self._script = script or Script()
        self._shared_cursor = _Cursor(self._script)
        self._conn_cursors: dict[int, _Cursor] = {}
        self._infos: list[ConnectionInfo] = []
        self._pending_infos: dict[int, ConnectionInfo] = {}
        self._client_log: list[dict] = []
        self._sent_log: list[dict] = []
        self._audio_sent: dict[str, float] = {}
        self._last_audio_item: str | None = None
        self._tool_outputs: list[ToolOutput] = []
        self._truncations: list[dict] = []
        self._received_audio: dict[int, bytearray] = {}
        self._problems: list[str] = []
        self._usage_total: dict[str, int] = {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0}
        self._vad_log: list[dict] = []
        self._interrupted: list[dict] = []

        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # ---- lifecycle
    def start(self) -> FakeRealtimeServer:
        if self._thread is not None:
            return self
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._thread_main, name="fake-realtime", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake realtime server did not start")
        if self._startup_error is not None:
            raise RuntimeError("fake realtime server failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        loop, ev = self._loop, self._stop_event
        if loop is not None and ev is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeRealtimeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/v1/realtime"

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # pragma: no cover - surfaced by start()
            self._startup_error = exc
            self._ready.set()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            finally:
                loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        async with serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=16 * 2**20,
            compression=None,
            close_timeout=1,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop_event.wait()

    # ---- handshake
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        params = parse_qs(query)
        model = (params.get("model") or [None])[0]
        auth = request.headers.get("Authorization") or ""
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with self._cond:
            conn_id = len(self._infos) + 1
            info = ConnectionInfo(
                id=conn_id,
                path=path,
                model=model,
                api_key_present=bool(key),
                api_key_sha256=hashlib.sha256(key.encode()).hexdigest()[:16] if key else None,
                api_key_last4=key[-4:] if key else None,
                beta_header=request.headers.get("OpenAI-Beta"),
                status=101,
                opened_at=time.time(),
            )
            self._infos.append(info)
            self._cond.notify_all()
        if info.beta_header:
            self._add_problem(conn_id, f"client sent OpenAI-Beta: {info.beta_header} (GA must not)")

        def reject(status: int, body: dict) -> Response:
            with self._cond:
                info.status = status
                info.closed_at = time.time()
                self._cond.notify_all()
            resp = connection.respond(status, json.dumps(body, indent=2) + "\n")
            del resp.headers["Content-Type"]
            resp.headers["Content-Type"] = "application/json"
            return resp

        if request.headers.get("Upgrade", "").lower() != "websocket":
            return reject(
                426,
                {
                    "error": {
                        "message": "This endpoint requires a WebSocket upgrade.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
        if path.rstrip("/") != "/v1/realtime":
            return reject(
                404,
                {
                    "error": {
                        "message": f"Invalid URL (GET {path})",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
        if self.handshake_status is not None:
            body = self.handshake_body or {
                "error": {
                    "message": "The server had an error while processing your request.",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
            return reject(self.handshake_status, body)
        if not key:
            return reject(
                401,
                {
                    "error": {
                        "message": "You didn't provide an API key. You need to provide your API key in an "
                        "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
        if self.reject_auth or (self.api_key is not None and not secrets.compare_digest(key, self.api_key)):
            redacted = key[:3] + "*" * max(len(key) - 7, 4) + key[-4:]
            return reject(
                401,
                {
                    "error": {
                        "message": f"Incorrect API key provided: {redacted}. You can find your API key at "
                        "https://platform.openai.com/account/api-keys.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
            )
        if not model:
            return reject(
                400,
                {
                    "error": {
                        "message": "Missing required parameter: 'model'.",
                        "type": "invalid_request_error",
                        "param": "model",
                        "code": "missing_required_parameter",
                    }
                },
            )
        with self._cond:
            self._pending_infos[id(connection)] = info
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        with self._cond:
            info = self._pending_infos.pop(id(ws))
            if self.script_scope == "server":
                cursor = self._shared_cursor
            else:
                cursor = _Cursor(self._script)
            self._conn_cursors[info.id] = cursor
        conn = _Conn(self, ws, info, cursor)
        with self._cond:
            info.session = copy.deepcopy(conn.session)
        try:
            await conn.run()
        finally:
            with self._cond:
                info.closed_at = time.time()
                info.close_code = ws.close_code
                self._cond.notify_all()

    def _initial_session(self, model: str | None) -> dict:
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": _rand_id("sess_"),
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "You are a helpful assistant.",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "expires_at": int(time.time()) + 3600,
            "include": None,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": SAMPLE_RATE},
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": self.prefix_padding_ms if self.prefix_padding_ms is not None else 300,
                        "silence_duration_ms": self.silence_ms if self.silence_ms is not None else 500,
                        "idle_timeout_ms": None,
                        "create_response": True,
                        "interrupt_response": True,
                    },
                },
                "output": {"format": {"type": "audio/pcm", "rate": SAMPLE_RATE}, "voice": self.voice, "speed": 1.0},
            },
        }

    # ---- recording (called from the server loop)
    def _record_client(self, conn_id: int, ev: dict) -> None:
        with self._cond:
            rec = copy.deepcopy(ev)
            rec["_conn"] = conn_id
            rec["_seq"] = len(self._client_log)
            rec["_t"] = time.monotonic()
            self._client_log.append(rec)
            self._cond.notify_all()

    def _record_sent(self, conn_id: int, ev: dict) -> None:
        with self._cond:
            rec = dict(ev)
            rec["_conn"] = conn_id
            rec["_seq"] = len(self._sent_log)
            rec["_t"] = time.monotonic()
            self._sent_log.append(rec)
            self._cond.notify_all()

    def _record_audio(self, conn_id: int, pcm: bytes) -> None:
        with self._cond:
            buf = self._received_audio.setdefault(conn_id, bytearray())
            if len(buf) < 30 * 60 * SAMPLE_RATE * 2:  # keep at most 30 minutes
                buf.extend(pcm)

    def _record_audio_sent(self, conn_id: int, item_id: str, ms: float) -> None:
        with self._cond:
            self._audio_sent[item_id] = ms
            self._last_audio_item = item_id
            self._cond.notify_all()

    def _record_tool_output(self, out: ToolOutput) -> None:
        with self._cond:
            self._tool_outputs.append(out)
            self._cond.notify_all()

    def _record_truncation(self, conn_id: int, rec: dict) -> None:
        with self._cond:
            self._truncations.append({**rec, "_conn": conn_id})
            self._cond.notify_all()

    def _record_interrupted(self, conn_id: int, item_id: str, status: str, sent_ms: float) -> None:
        with self._cond:
            self._interrupted.append({"conn": conn_id, "item_id": item_id, "status": status, "audio_sent_ms": sent_ms})
            self._cond.notify_all()

    def _record_vad(self, conn_id: int, kind: str, item_id: str, ms: int) -> None:
        with self._cond:
            self._vad_log.append({"conn": conn_id, "kind": kind, "item_id": item_id, "ms": ms})

    def _set_session(self, conn_id: int, session: dict) -> None:
        with self._cond:
            for info in self._infos:
                if info.id == conn_id:
                    info.session = copy.deepcopy(session)
            self._cond.notify_all()

    def _add_problem(self, conn_id: int, text: str) -> None:
        with self._cond:
            self._problems.append(f"conn {conn_id}: {text}")
            for info in self._infos:
                if info.id == conn_id:
                    info.problems.append(text)

    def _add_usage(self, usage: dict) -> None:
        with self._cond:
            for k in self._usage_total:
                self._usage_total[k] += int(usage.get(k) or 0)

    # ---- public inspection
    def set_script(self, script: Script) -> None:
        """Use ``script`` for connections opened from now on (and reset the shared cursor)."""
        with self._cond:
            self._script = script
            self._shared_cursor = _Cursor(script)

    def reset_records(self) -> None:
        """Forget recorded events/outputs (connections keep running)."""
        with self._cond:
            self._client_log.clear()
            self._sent_log.clear()
            self._tool_outputs.clear()
            self._truncations.clear()
            self._problems.clear()
            self._vad_log.clear()
            self._interrupted.clear()

    def mark(self) -> int:
        with self._cond:
            return len(self._client_log)

    def sent_mark(self) -> int:
        with self._cond:
            return len(self._sent_log)

    @staticmethod
    def _filter(log: list[dict], event_type: str | None, conn: int | None, after: int = 0) -> list[dict]:
        return [
            copy.deepcopy(e)
            for e in log[after:]
            if (event_type is None or e.get("type") == event_type) and (conn is None or e["_conn"] == conn)
        ]

    def client_events(self, event_type: str | None = None, *, conn: int | None = None) -> list[dict]:
        with self._cond:
            return self._filter(self._client_log, event_type, conn)

    def sent_events(self, event_type: str | None = None, *, conn: int | None = None) -> list[dict]:
        with self._cond:
            return self._filter(self._sent_log, event_type, conn)

    def _wait(
        self,
        log: list[dict],
        what: str,
        event_type: str,
        predicate: Callable[[dict], bool] | None,
        timeout: float,
        conn: int | None,
        after: int,
    ) -> dict:
        deadline = time.monotonic() + timeout
        idx = after
        with self._cond:
            while True:
                while idx < len(log):
                    e = log[idx]
                    idx += 1
                    if e.get("type") != event_type or (conn is not None and e["_conn"] != conn):
                        continue
                    cand = copy.deepcopy(e)
                    if predicate is None or predicate(cand):
                        return cand
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [e.get("type") for e in log[after:]][-15:]
                    raise TimeoutError(f"no {what} event {event_type!r} within {timeout}s; last types: {seen}")
                self._cond.wait(remaining)

    def wait_for(
        self,
        event_type: str,
        predicate: Callable[[dict], bool] | None = None,
        timeout: float = 10.0,
        *,
        conn: int | None = None,
        after: int = 0,
    ) -> dict:
        """Block until a matching *client* event was received (at index >= ``after``)."""
        return self._wait(self._client_log, "client", event_type, predicate, timeout, conn, after)

    def wait_for_sent(
        self,
        event_type: str,
        predicate: Callable[[dict], bool] | None = None,
        timeout: float = 10.0,
        *,
        conn: int | None = None,
        after: int = 0,
    ) -> dict:
        """Block until the fake has sent a matching event (at index >= ``after``)."""
        return self._wait(self._sent_log, "sent", event_type, predicate, timeout, conn, after)

    async def async_wait_for(self, *args: Any, **kwargs: Any) -> dict:
        return await asyncio.to_thread(self.wait_for, *args, **kwargs)

    async def async_wait_for_sent(self, *args: Any, **kwargs: Any) -> dict:
        return await asyncio.to_thread(self.wait_for_sent, *args, **kwargs)

    def wait_until(self, fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)

    def wait_for_connections(self, count: int = 1, timeout: float = 10.0) -> list[ConnectionInfo]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for i in self._infos if i.accepted) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"fewer than {count} accepted connections within {timeout}s")
                self._cond.wait(remaining)
            return copy.deepcopy(self._infos)

    @property
    def connections(self) -> list[ConnectionInfo]:
        with self._cond:
            return copy.deepcopy(self._infos)

    @property
    def connection_count(self) -> int:
        with self._cond:
            return sum(1 for i in self._infos if i.accepted)

    def session(self, conn: int | None = None) -> dict:
        with self._cond:
            infos = [i for i in self._infos if i.accepted and (conn is None or i.id == conn)]
            return copy.deepcopy(infos[-1].session) if infos else {}

    def sent_audio_ms(self, item_id: str) -> float:
        with self._cond:
            return self._audio_sent.get(item_id, 0.0)

    @property
    def last_audio_item_id(self) -> str | None:
        with self._cond:
            return self._last_audio_item

    def tool_outputs(self, name: str | None = None) -> list[ToolOutput]:
        with self._cond:
            return [copy.deepcopy(t) for t in self._tool_outputs if name is None or t.name == name]

    @property
    def last_tool_output(self) -> Any:
        with self._cond:
            return copy.deepcopy(self._tool_outputs[-1].output) if self._tool_outputs else None

    def truncations(self) -> list[dict]:
        with self._cond:
            return copy.deepcopy(self._truncations)

    def received_audio(self, conn: int | None = None) -> bytes:
        with self._cond:
            if conn is None:
                conn = max(self._received_audio, default=None)
            return bytes(self._received_audio.get(conn, b"")) if conn is not None else b""

    def interrupted_responses(self) -> list[dict]:
        """Audio responses that ended cancelled/failed: item_id, status, audio_sent_ms."""
        with self._cond:
            return copy.deepcopy(self._interrupted)

    def vad_log(self) -> list[dict]:
        with self._cond:
            return copy.deepcopy(self._vad_log)

    def remaining_turns(self, conn: int | None = None) -> dict:
        """Unconsumed turns (``{"greet": n, "caller_speech": m}``) of a connection (default: latest)."""
        with self._cond:
            if self.script_scope == "server":
                return self._shared_cursor.remaining()
            if conn is None:
                conn = max(self._conn_cursors, default=None)
            cursor = self._conn_cursors.get(conn) if conn is not None else None
            return cursor.remaining() if cursor else _Cursor(self._script).remaining()

    def problems(self) -> list[str]:
        with self._cond:
            return list(self._problems)

    @property
    def total_usage(self) -> dict:
        with self._cond:
            return dict(self._usage_total)
