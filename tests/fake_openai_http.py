"""A scripted fake of the OpenAI HTTP API for the pipeline engine: transcription, chat completions, speech.

A local aiohttp server in a background thread (its own event loop), so it serves the real ``openai`` SDK from
an in-process test or from an app subprocess alike: point the SDK at it with ``OPENAI_BASE_URL=server.base_url``
(``http://127.0.0.1:PORT/v1``).

Endpoints
=========
``POST /v1/audio/transcriptions`` (multipart, like the SDK sends it)
    Answers ``{"text": ...}`` with the transcript of the next :func:`on_caller_speech` turn, in order (the
    script's ``default_transcript`` once none is left). Audio that goes on from the previous request's (the same
    utterance, asked early at a pause and again once the caller said more) is the same turn: its transcript
    again, no new turn taken. Records the model, the ``language`` hint, the ``prompt`` and the audio (WAV
    duration, sample rate; ``same_utterance``).
``POST /v1/chat/completions`` (``stream: true``: SSE chunks, ``data: [DONE]``; ``stream: false``: one JSON)
    Plays the script: text is streamed in small ``delta.content`` pieces, tool calls as ``delta.tool_calls``
    (id, name, then the arguments in fragments), ``finish_reason`` ``tool_calls``/``stop``, and a usage chunk
    when ``stream_options.include_usage`` is set. Which turn a request belongs to comes from the request
    itself, so cancelled requests and retries never shift the script:

    * last message ``user`` -> the caller turn whose transcript it is (else the next unclaimed caller turn);
    * last message ``tool`` -> the turn that issued that tool call, from the step after the call;
    * only the system prompt -> the next :func:`greet` turn;
    * a trailing ``system`` message after the conversation (the handler's wrap-up or goodbye instruction)
      -> the next :func:`on_instruction` turn.
``POST /v1/audio/speech`` (JSON)
    Streams 24 kHz mono int16 PCM: an audible synthetic voice (harmonics with a moving pitch and syllable
    rhythm) of ``ms_per_char * len(input)`` ms, clamped to ``[min_audio_ms, max_audio_ms]``, in 100 ms pieces.

Every endpoint answers 401 (``invalid_api_key``, which the SDK raises as ``openai.AuthenticationError``) for a
key other than ``api_key`` (when set), and a queued fault (:meth:`FakeOpenAIServer.fail`) first. ``latency``
(per endpoint, seconds before the first byte) and ``delta_delay_s`` make the server slow.

Script
======
``Script(*turns, default_reply=..., default_transcript=..., default_greeting=...)`` with turns made of steps:

* ``greet(*steps)``, ``on_caller_speech(*steps)``, ``on_instruction(*steps)``; a ``str`` step is ``say(str)``.
* ``user_said(text)``: the caller turn's transcript; ``inaudible()``: an empty transcript.
* ``call_tool(name, arguments, preamble=None)``: one completion with that tool call (``arguments``: a dict,
  a raw string sent as is, or a callable of the last tool output), optionally after spoken ``preamble`` text.
  ``call_tools(call_tool(...), ...)``: several calls in one completion. The turn goes on when the handler
  sends the tool results.
* ``say(text)``: the answer; ``text`` may be a callable of the last tool output (parsed JSON of the request's
  last ``tool`` message), so a reply can read back a real booking id. It ends the turn.
* ``branch(fn)``: ``fn(last_tool_output)`` returns steps (or a str, or None) to run in its place.
* ``fail(status, message)``: this completion fails with that HTTP status; ``pause(seconds)``: wait first.

A turn that runs out of steps after a tool call says ``default_reply``.

Inspection (thread-safe copies): ``requests(endpoint=None)``, ``transcriptions()``, ``chat_requests()``,
``speech_requests()``, ``tool_outputs(name=None)``, ``problems()``, ``wait_for(endpoint, predicate, timeout)``.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import threading
import time
import wave
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fake_realtime import SAMPLE_RATE, synth_voice

__all__ = [
    "SAMPLE_RATE",
    "FakeOpenAIServer",
    "Recorded",
    "Script",
    "ToolOutput",
    "branch",
    "call_tool",
    "call_tools",
    "fail",
    "greet",
    "inaudible",
    "on_caller_speech",
    "on_instruction",
    "pause",
    "say",
    "user_said",
]

ENDPOINTS = ("transcriptions", "chat", "speech")


# --------------------------------------------------------------------------- script


@dataclass(frozen=True)
class UserSaid:
    text: str


@dataclass(frozen=True)
class Say:
    text: str | Callable[[Any], str]


@dataclass(frozen=True)
class CallTool:
    name: str
    arguments: Any
    preamble: str | None = None


@dataclass(frozen=True)
class CallTools:
    calls: tuple[CallTool, ...]


@dataclass(frozen=True)
class Branch:
    fn: Callable[[Any], Any]


@dataclass(frozen=True)
class Fail:
    status: int
    message: str


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Turn:
    trigger: str  # "greet" | "speech" | "instruction"
    steps: tuple


_STEPS = (UserSaid, Say, CallTool, CallTools, Branch, Fail, Pause)


def user_said(text: str) -> UserSaid:
    return UserSaid(text)


def inaudible() -> UserSaid:
    return UserSaid("")


def say(text: str | Callable[[Any], str]) -> Say:
    return Say(text)


def call_tool(name: str, arguments: Any = None, *, preamble: str | None = None) -> CallTool:
    return CallTool(name, {} if arguments is None else arguments, preamble)


def call_tools(*calls: CallTool) -> CallTools:
    return CallTools(tuple(calls))


def branch(fn: Callable[[Any], Any]) -> Branch:
    return Branch(fn)


def fail(status: int = 500, message: str = "The server had an error while processing your request.") -> Fail:
    return Fail(status, message)


def pause(seconds: float) -> Pause:
    return Pause(seconds)


def _steps(steps: Iterable[Any]) -> tuple:
    out = []
    for step in steps:
        if isinstance(step, str):
            step = say(step)
        if not isinstance(step, _STEPS):
            raise TypeError(f"not a script step: {step!r}")
        out.append(step)
    return tuple(out)


def greet(*steps: Any) -> Turn:
    """The agent's first words: served by the completion that has only the system prompt."""
    return Turn("greet", _steps(steps))


def on_caller_speech(*steps: Any) -> Turn:
    """One caller utterance: its transcript (``user_said``) and what the model does with it."""
    return Turn("speech", _steps(steps))


def on_instruction(*steps: Any) -> Turn:
    """A completion asked for by the handler itself (a trailing system instruction: wrap-up, goodbye)."""
    return Turn("instruction", _steps(steps))


class Script:
    def __init__(
        self,
        *turns: Turn,
        default_reply: str = "Sorry, could you say that again?",
        default_transcript: str = "(unscripted speech)",
        default_greeting: str = "Hello, how can I help?",
    ) -> None:
        for turn in turns:
            if not isinstance(turn, Turn):
                raise TypeError(f"Script() takes greet()/on_caller_speech()/on_instruction() turns, got {turn!r}")
        self.turns = tuple(turns)
        self.default_reply = default_reply
        self.default_transcript = default_transcript
        self.default_greeting = default_greeting


# --------------------------------------------------------------------------- records


@dataclass
class Recorded:
    """One request: ``body`` is the JSON body, or the multipart fields (audio replaced by its figures)."""

    endpoint: str
    body: dict[str, Any]
    at: float
    status: int = 200
    key_ok: bool = True
    cancelled: bool = False  # the client went away before the response was complete
    turn: str | None = None  # which script turn served it (chat), e.g. "speech#2"


@dataclass(frozen=True)
class ToolOutput:
    call_id: str
    name: str
    arguments: Any
    output: Any


@dataclass
class _Run:
    """A script turn being played: its steps and where it is."""

    label: str
    steps: list
    position: int = 0
    transcript: str | None = None


@dataclass
class _Reply:
    status: int = 200
    message: str = ""
    text: str = ""
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (call id, name, arguments json)
    delay_s: float = 0.0


def _last_tool_output(messages: list[dict]) -> Any:
    for message in reversed(messages):
        if message.get("role") == "tool":
            content = message.get("content")
            try:
                return json.loads(content) if isinstance(content, str) else content
            except ValueError:
                return content
    return None


def _content(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def _wav_samples(data: bytes) -> bytes:
    try:
        with wave.open(io.BytesIO(data)) as wav:
            return wav.readframes(wav.getnframes())
    except (wave.Error, EOFError):
        return b""


def _wav_figures(data: bytes) -> dict[str, Any]:
    try:
        with wave.open(io.BytesIO(data)) as wav:
            return {
                "audio_rate": wav.getframerate(),
                "audio_channels": wav.getnchannels(),
                "audio_ms": round(wav.getnframes() * 1000 / wav.getframerate()),
            }
    except (wave.Error, EOFError):
        return {"audio_rate": None, "audio_channels": None, "audio_ms": None}


class FakeOpenAIServer:
    """Scripted OpenAI HTTP API (transcriptions, chat completions, speech). See the module docstring."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        latency: dict[str, float] | None = None,
        delta_delay_s: float = 0.0,
        ms_per_char: float = 40.0,
        min_audio_ms: float = 300.0,
        max_audio_ms: float = 8000.0,
        speech_pace: float | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.latency = {endpoint: 0.0 for endpoint in ENDPOINTS} | dict(latency or {})
        self.delta_delay_s = delta_delay_s
        self.ms_per_char = ms_per_char
        self.min_audio_ms = min_audio_ms
        self.max_audio_ms = max_audio_ms
        self.speech_pace = speech_pace  # None: as fast as possible; 1.0: real time
        self._lock = threading.Condition()
        self._log: list[Recorded] = []
        self._problems: list[str] = []
        self._faults: dict[str, deque[tuple[int, str]]] = {endpoint: deque() for endpoint in ENDPOINTS}
        self.set_script(script or Script())
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._thread_main, name="fake-openai-http", daemon=True)
            self._thread.start()
            if not self._ready.wait(10) or self._startup_error is not None:
                raise RuntimeError("the fake OpenAI server did not start") from self._startup_error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as error:  # surfaced by start()
            self._startup_error = error
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/speech", self._speech)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    # ---- control -------------------------------------------------------------------------------------

    def set_script(self, script: Script) -> None:
        with self._lock:
            self.script = script
            self._greets = deque(t for t in script.turns if t.trigger == "greet")
            self._speech_turns = deque(t for t in script.turns if t.trigger == "speech")
            self._instructions = deque(t for t in script.turns if t.trigger == "instruction")
            self._transcribed: deque[_Run] = deque()  # caller turns transcribed, not yet answered
            self._calls: dict[str, tuple[_Run, int]] = {}  # tool call id -> (turn, next step)
            self._seen: dict[str, _Run] = {}  # a request's messages -> its turn, so a retry continues it
            self._speech_count = 0
            self._last_upload: tuple[bytes, _Run] | None = None  # the previous transcription's samples, and turn

    def fail(self, endpoint: str, status: int = 500, *, times: int = 1, message: str | None = None) -> None:
        """The next `times` requests to `endpoint` ("transcriptions", "chat", "speech") get HTTP `status`."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}")
        with self._lock:
            for _ in range(times):
                self._faults[endpoint].append((status, message or f"Injected failure ({status})."))

    # ---- inspection ----------------------------------------------------------------------------------

    def requests(self, endpoint: str | None = None) -> list[Recorded]:
        with self._lock:
            return [
                Recorded(r.endpoint, json.loads(json.dumps(r.body)), r.at, r.status, r.key_ok, r.cancelled, r.turn)
                for r in self._log
                if endpoint is None or r.endpoint == endpoint
            ]

    def transcriptions(self) -> list[dict[str, Any]]:
        """The answered uploads, one per caller turn: an utterance sent again as it went on (an early transcription
        the caller's further words superseded, `same_utterance`) belongs to the turn its first upload opened."""
        return [r.body for r in self.requests("transcriptions") if r.status == 200 and not r.body.get("same_utterance")]

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests("chat") if r.status == 200]

    def speech_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests("speech") if r.status == 200]

    def tool_outputs(self, name: str | None = None) -> list[ToolOutput]:
        """Every tool result the client sent back, once each, in order (from the chat requests' history)."""
        seen: dict[str, ToolOutput] = {}
        for body in self.chat_requests():
            calls: dict[str, tuple[str, Any]] = {}
            for message in body.get("messages", []):
                for call in message.get("tool_calls") or []:
                    function = call.get("function") or {}
                    calls[call.get("id", "")] = (function.get("name", ""), function.get("arguments"))
                if message.get("role") == "tool":
                    call_id = message.get("tool_call_id", "")
                    if call_id in seen:
                        continue
                    called, arguments = calls.get(call_id, ("", None))
                    try:
                        output = json.loads(_content(message))
                    except ValueError:
                        output = _content(message)
                    seen[call_id] = ToolOutput(call_id, called, arguments, output)
        return [out for out in seen.values() if name is None or out.name == name]

    def problems(self) -> list[str]:
        with self._lock:
            return list(self._problems)

    def wait_for(
        self, endpoint: str, predicate: Callable[[Recorded], bool] | None = None, timeout: float = 10.0
    ) -> Recorded:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for record in self._log:
                    if record.endpoint == endpoint and (predicate is None or predicate(record)):
                        return record
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {endpoint} request matched within {timeout} s")
                self._lock.wait(left)

    # ---- request handling ----------------------------------------------------------------------------

    def _record(self, record: Recorded) -> Recorded:
        with self._lock:
            self._log.append(record)
            self._lock.notify_all()
        return record

    def _problem(self, text: str) -> None:
        with self._lock:
            self._problems.append(text)

    def _gate(self, request: web.Request, record: Recorded) -> web.Response | None:
        """401 for a wrong key, then a queued fault; None to go on."""
        header = request.headers.get("Authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if self.api_key is not None and key != self.api_key:
            record.key_ok, record.status = False, 401
            shown = f"{key[:3]}***{key[-2:]}" if len(key) > 6 else "***"
            return self._error(401, f"Incorrect API key provided: {shown}.", "invalid_request_error", "invalid_api_key")
        with self._lock:
            fault = self._faults[record.endpoint].popleft() if self._faults[record.endpoint] else None
        if fault is not None:
            record.status = fault[0]
            return self._error(fault[0], fault[1], "server_error" if fault[0] >= 500 else "invalid_request_error")
        return None

    @staticmethod
    def _error(status: int, message: str, kind: str, code: str | None = None) -> web.Response:
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return web.json_response(body, status=status, headers={"x-request-id": f"req_{secrets.token_hex(8)}"})

    async def _transcriptions(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields: dict[str, Any] = {}
        samples = b""
        for name, value in form.items():
            if isinstance(value, web.FileField):
                data = value.file.read()
                samples = _wav_samples(data)
                fields[name] = {"filename": value.filename, "content_type": value.content_type, "bytes": len(data)}
                fields.update(_wav_figures(data))
            else:
                fields[name] = str(value)
        record = self._record(Recorded("transcriptions", fields, time.monotonic()))
        if (refused := self._gate(request, record)) is not None:
            return refused
        await asyncio.sleep(self.latency["transcriptions"])
        with self._lock:
            last = self._last_upload
            # not yet answered (an answered turn's words said again are a new turn), and the same samples from the start
            unanswered = last is not None and last[1] in self._transcribed
            fields["same_utterance"] = bool(unanswered and last[0] and samples.startswith(last[0]))
            if fields["same_utterance"]:
                assert last is not None
                run, text = last[1], last[1].transcript or ""
            else:
                self._speech_count += 1
                turn = self._speech_turns.popleft() if self._speech_turns else None
                steps = list(turn.steps) if turn else [say(self.script.default_reply)]
                said = [step.text for step in steps if isinstance(step, UserSaid)]
                text = said[0] if said else self.script.default_transcript
                run = _Run(f"speech#{self._speech_count}", steps, transcript=text)
                if text.strip():
                    self._transcribed.append(run)
            self._last_upload = (samples, run)
            record.turn = run.label
        fields["text"] = text
        return web.json_response({"text": text, "usage": {"type": "duration", "seconds": 1}})

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        record = self._record(Recorded("speech", body, time.monotonic()))
        if (refused := self._gate(request, record)) is not None:
            return refused
        if body.get("response_format") != "pcm":
            self._problem(f"speech asked for {body.get('response_format')!r}, not pcm")
        text = str(body.get("input", ""))
        duration = min(self.max_audio_ms, max(self.min_audio_ms, self.ms_per_char * len(text)))
        pcm = synth_voice(duration, seed=len(text))
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        await asyncio.sleep(self.latency["speech"])
        piece = SAMPLE_RATE * 2 // 10  # 100 ms
        try:
            for offset in range(0, len(pcm), piece):
                await response.write(pcm[offset : offset + piece])
                if self.speech_pace:
                    await asyncio.sleep(0.1 * self.speech_pace)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            record.cancelled = True
            raise
        return response

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        record = self._record(Recorded("chat", body, time.monotonic()))
        if (refused := self._gate(request, record)) is not None:
            return refused
        messages = body.get("messages") or []
        reply = self._play(messages, record)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.status != 200:
            record.status = reply.status
            return self._error(
                reply.status, reply.message, "server_error" if reply.status >= 500 else "invalid_request_error"
            )
        usage = {
            "prompt_tokens": max(1, len(json.dumps(messages, ensure_ascii=False)) // 4),
            "completion_tokens": max(1, (len(reply.text) + sum(len(args) for _, _, args in reply.calls)) // 4),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not body.get("stream"):
            return web.json_response(self._completion(body, reply, usage))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await asyncio.sleep(self.latency["chat"])
        try:
            for chunk in self._chunks(body, reply, usage):
                await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
                if self.delta_delay_s:
                    await asyncio.sleep(self.delta_delay_s)
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            record.cancelled = True
            raise
        return response

    # ---- the script ----------------------------------------------------------------------------------

    def _run_for(self, messages: list[dict]) -> tuple[_Run, int]:
        """The turn (and step) a completion request continues or starts (see the module docstring)."""
        last = messages[-1] if messages else {}
        role = last.get("role")
        if role == "tool":
            for message in reversed(messages):
                for call in message.get("tool_calls") or []:
                    found = self._calls.get(call.get("id", ""))
                    if found is not None:
                        return found
            self._problem("a tool result for a call the fake never made")
            return _Run("unknown", [say(self.script.default_reply)]), 0
        if role == "user":
            text = _content(last)
            for run in list(self._transcribed):
                if run.transcript == text:
                    self._transcribed.remove(run)
                    return run, 0
            if self._transcribed:
                return self._transcribed.popleft(), 0
            turn = self._speech_turns.popleft() if self._speech_turns else None
            self._speech_count += 1
            return _Run(
                f"speech#{self._speech_count}", list(turn.steps) if turn else [say(self.script.default_reply)]
            ), 0
        if role == "system" and len(messages) > 1:
            turn = self._instructions.popleft() if self._instructions else None
            return _Run("instruction", list(turn.steps) if turn else [say(self.script.default_reply)]), 0
        turn = self._greets.popleft() if self._greets else None
        return _Run("greet", list(turn.steps) if turn else [say(self.script.default_greeting)]), 0

    def _play(self, messages: list[dict], record: Recorded) -> _Reply:
        last_output = _last_tool_output(messages)
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        with self._lock:
            if key in self._seen:  # the SDK retrying a request that failed: go on where that one stopped
                run = self._seen[key]
                position = run.position
            else:
                run, position = self._run_for(messages)
                self._seen[key] = run
            record.turn = run.label
            reply = _Reply()
            steps = run.steps
            while position < len(steps):
                step = steps[position]
                position += 1
                if isinstance(step, UserSaid):
                    continue
                if isinstance(step, Pause):
                    reply.delay_s += step.seconds
                    continue
                if isinstance(step, Branch):
                    try:
                        chosen = step.fn(last_output)
                    except Exception as error:  # a broken script is the test's problem: say so, go on
                        self._problem(f"branch failed: {error!r}")
                        chosen = None
                    chosen = [] if chosen is None else chosen if isinstance(chosen, list | tuple) else [chosen]
                    steps[position:position] = list(_steps(chosen))
                    continue
                if isinstance(step, Fail):
                    reply.status, reply.message = step.status, step.message
                    break
                if isinstance(step, CallTool | CallTools):
                    for call in step.calls if isinstance(step, CallTools) else (step,):
                        arguments = call.arguments(last_output) if callable(call.arguments) else call.arguments
                        raw = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
                        call_id = f"call_{secrets.token_hex(8)}"
                        reply.calls.append((call_id, call.name, raw))
                        reply.text += call.preamble or ""
                        self._calls[call_id] = (run, position)
                    break
                if isinstance(step, Say):
                    try:
                        reply.text += step.text(last_output) if callable(step.text) else step.text
                    except Exception as error:
                        self._problem(f"say failed: {error!r}")
                        reply.text += self.script.default_reply
                    break
            else:
                reply.text = self.script.default_reply
            run.position = position
        return reply

    # ---- wire format ---------------------------------------------------------------------------------

    @staticmethod
    def _pieces(text: str, size: int) -> list[str]:
        return [text[i : i + size] for i in range(0, len(text), size)]

    def _chunks(self, body: dict, reply: _Reply, usage: dict) -> Iterable[dict]:
        base = {
            "id": f"chatcmpl-{secrets.token_hex(6)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", ""),
        }

        def chunk(delta: dict, finish: str | None = None) -> dict:
            return base | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        yield chunk({"role": "assistant", "content": ""})
        for piece in self._pieces(reply.text, 6):
            yield chunk({"content": piece})
        for index, (call_id, name, arguments) in enumerate(reply.calls):
            yield chunk(
                {
                    "tool_calls": [
                        {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                    ]
                }
            )
            for piece in self._pieces(arguments, 7):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, "tool_calls" if reply.calls else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield base | {"choices": [], "usage": usage}

    @staticmethod
    def _completion(body: dict, reply: _Reply, usage: dict) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                for call_id, name, arguments in reply.calls
            ]
        return {
            "id": f"chatcmpl-{secrets.token_hex(6)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if reply.calls else "stop"}],
            "usage": usage,
        }
