"""The phone line: a Twilio number's calls, answered by the same voice agent as the browser.

Twilio asks `/telephone/incoming` what to do with a call; the TwiML answer greets the caller in the
restaurant's language and connects a bidirectional Media Stream to `/telephone/handler`, where fastrtc's
`WebSocketHandler` converts 8 kHz mu-law to and from the handler's 24 kHz PCM. What fastrtc 0.0.34 leaves
out, this module adds around it (never by patching it):

* barge-in tells Twilio to drop the audio it has buffered (`{"event": "clear"}`), not only fastrtc's queue;
* a phone call counts against the same concurrency limit as browser calls: the webhook holds a slot for
  the call, and a full line or a missing OpenAI key is a polite `<Say>` instead of silence;
* the call's transcript and card reach the live feed (`/outputs`), which fastrtc drops for phone calls;
* when the agent ends the call (`CloseStream`: time limit, error), the line hangs up once the caller has
  heard the last words (a Twilio `mark` echoed back), and `/telephone/ended` apologises if it was an error;
* with `TWILIO_AUTH_TOKEN` set, webhooks must carry a valid Twilio signature, and the media WebSocket must
  present the one-time token handed out in the TwiML, so nobody else can spend the owner's OpenAI budget.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Request, WebSocket
from fastapi.responses import Response
from fastapi.websockets import WebSocketDisconnect, WebSocketState
from fastrtc.websocket import WebSocketHandler
from twilio.request_validator import SIGNATURE_SETTINGS_HEADER, RequestValidator, get_signature_algorithm
from twilio.twiml.voice_response import Connect, VoiceResponse

from components.config import RestaurantConfig
from components.settings import AgentSettings

if TYPE_CHECKING:
    from fastrtc import AdditionalOutputs, AsyncStreamHandler

log = logging.getLogger(__name__)

SID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$")
PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
HANGUP_MARK = "hangup"
PLAYOUT_MARGIN_S = 0.3  # network and jitter-buffer delay between our send and the caller's ear
HANGUP_GRACE_S = 2.0  # beyond the audio still playing, how long to wait for Twilio to echo the hang-up mark
HANGUP_WAIT_MAX_S = 10.0
RESERVATION_TTL_S = 30.0  # from the webhook's answer to the media stream's `start`
MAX_MEDIA_PAYLOAD = 16_000  # base64 characters: Twilio sends 20 ms (160 bytes) per message

# What Twilio's own voice says, in the restaurant's language (the agent speaks everything else).
PHONE_TEXTS: dict[str, dict[str, str]] = {
    "ja": {
        "connecting": "お電話ありがとうございます。{name}です。AIの予約受付におつなぎします。",
        "busy": "ただいま回線が大変混み合っております。恐れ入りますが、しばらくしてからおかけ直しください。",
        "not_configured": "申し訳ございません。ただいま電話での自動予約受付はご利用いただけません。"
        "恐れ入りますが、時間をおいておかけ直しください。",
        "trouble": "申し訳ございません。システムの不具合のため、通話を終了いたします。"
        "恐れ入りますが、しばらくしてからおかけ直しください。",
    },
    "en": {
        "connecting": "Thank you for calling {name}. Connecting you to our AI reservation assistant.",
        "busy": "All our lines are busy right now. Please call again in a few minutes.",
        "not_configured": "Sorry, phone reservations are not available at the moment. Please call again later.",
        "trouble": "Sorry, we are having technical trouble and have to end this call. Please call again later.",
    },
}
# <Say> needs a voice that speaks the language: Twilio's default voice speaks English only.
SAY_VOICES = {"ja": ("ja-JP", "Polly.Mizuki"), "en": ("en-US", "Polly.Joanna")}
_BACKGROUND: set[asyncio.Task] = set()


class Feed(Protocol):
    def open(self, call_id: str) -> None: ...
    def publisher(self, call_id: str) -> Callable[[AdditionalOutputs], None]: ...
    def close(self, call_id: str) -> None: ...


class Limiter(Protocol):
    def full(self) -> bool: ...
    def reserve(self, call_sid: str | None) -> str | None: ...
    def redeem(self, token: str, call_sid: str | None) -> bool: ...
    def add_phone(self, stream_sid: str) -> None: ...
    def release_phone(self, stream_sid: str) -> None: ...


def valid_sid(value: Any) -> bool:
    return isinstance(value, str) and bool(SID.match(value))


def has_openai_key() -> bool:
    return bool(os.environ.get("OPENAI_API_KEY", "").strip())


def twilio_auth_token() -> str | None:
    """The token that signs this account's webhooks, unless the owner turned checking off."""
    token = os.environ.get("TWILIO_AUTH_TOKEN", "").strip()
    if not token or os.environ.get("TWILIO_VALIDATE_SIGNATURE", "").strip().lower() in ("0", "false", "no"):
        return None
    return token


def public_base(request: Request) -> str:
    """The address Twilio used to reach us, e.g. `https://owner-space.hf.space` (no trailing slash).

    `PUBLIC_URL` wins; otherwise the proxy's `X-Forwarded-Host`/`-Proto` or the `Host` header. Twilio only
    talks HTTPS/WSS, so plain HTTP is kept only for a loopback host (local tests).
    """
    configured = os.environ.get("PUBLIC_URL", "").strip().rstrip("/")
    if configured.startswith(("https://", "http://")) and HOST.match(configured.split("://", 1)[1]):
        return configured
    host = (request.headers.get("x-forwarded-host") or request.headers.get("host") or "").split(",")[0].strip()
    if not HOST.match(host):
        host = request.url.netloc if HOST.match(request.url.netloc) else "localhost"
    proto = (request.headers.get("x-forwarded-proto") or request.url.scheme).split(",")[0].strip().lower()
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if proto != "https" and hostname not in LOCAL_HOSTS:
        proto = "https"
    return f"{'https' if proto == 'https' else 'http'}://{host}"


def route_prefix(request: Request, route: str) -> str:
    """Where our routes are mounted (fastrtc's `Stream.mount(app, path)`), from the request's own path."""
    prefix = request.scope.get("root_path", "") + request.scope["path"].removesuffix(route)
    return prefix if PREFIX.match(prefix) else ""


def say(response: VoiceResponse, key: str, language: str, **values: str) -> None:
    """Add one `<Say>` in the restaurant's language (the twilio library escapes the text for XML)."""
    locale, voice = SAY_VOICES[language]
    voice = os.environ.get("TWILIO_SAY_VOICE", "").strip() or voice
    response.say(PHONE_TEXTS[language][key].format(**values), language=locale, voice=voice)


def twiml(response: VoiceResponse) -> Response:
    return Response(content=str(response), media_type="application/xml")


def refusal_twiml(key: str, language: str) -> Response:
    """A polite message, then hang up."""
    response = VoiceResponse()
    say(response, key, language)
    response.hangup()
    return twiml(response)


class PhoneLine:
    """The Twilio side of the server: webhooks, admission of media streams, and how each call ended."""

    def __init__(
        self,
        handler: AsyncStreamHandler,
        *,
        config: RestaurantConfig,
        settings: AgentSettings,
        feed: Feed,
        limiter: Limiter,
        connections: dict[str, list[Any]],
        verify_twilio: bool = True,
    ) -> None:
        self.handler = handler
        self.config = config
        self.settings = settings
        self.feed = feed
        self.limiter = limiter
        self.connections = connections  # fastrtc's Stream.connections: phone calls are registered there too
        self.verify_twilio = verify_twilio
        self.calls: dict[str, PhoneCall] = {}
        self._endings: OrderedDict[str, str] = OrderedDict()  # CallSid -> why its media stream ended
        self._lock = threading.Lock()

    @property
    def language(self) -> str:
        return self.config.default_language

    @property
    def auth_token(self) -> str | None:
        return twilio_auth_token() if self.verify_twilio else None

    # ---- webhooks ----------------------------------------------------------------------------------

    async def _signed_form(self, request: Request) -> dict[str, str] | None:
        """The webhook's form fields, or None if signatures are checked and this one is not Twilio's."""
        form = await request.form()
        fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
        token = self.auth_token
        if token is None:
            return fields
        query = request.scope.get("query_string", b"").decode("latin-1")
        url = public_base(request) + request.scope["path"] + (f"?{query}" if query else "")
        signature = request.headers.get("x-twilio-signature", "")
        algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
        if signature and RequestValidator(token).validate(url, fields, signature, algorithm):
            return fields
        log.warning(
            "Rejected a webhook to %s without a valid Twilio signature. If this was Twilio, set PUBLIC_URL to the "
            "exact address configured in Twilio (or TWILIO_VALIDATE_SIGNATURE=false).",
            request.url.path,
        )
        return None

    async def incoming(self, request: Request) -> Response:
        """`POST /telephone/incoming`: greet, hold a slot, and connect the call's audio to the agent."""
        fields = await self._signed_form(request)
        if fields is None:
            return Response("Invalid Twilio signature", status_code=403, media_type="text/plain")
        call_sid = fields.get("CallSid") if valid_sid(fields.get("CallSid")) else None
        if not has_openai_key():
            log.warning("A phone call came in but OPENAI_API_KEY is not set: the caller hears that the line is off.")
            return refusal_twiml("not_configured", self.language)
        token = self.limiter.reserve(call_sid)
        if token is None:
            log.info("A phone call came in while all %d lines were busy.", self.settings.max_concurrent_calls)
            return refusal_twiml("busy", self.language)
        base = public_base(request)
        prefix = route_prefix(request, "/telephone/incoming")
        ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        response = VoiceResponse()
        say(response, "connecting", self.language, name=self.config.name(self.language))
        connect = Connect(action=f"{base}{prefix}/telephone/ended", method="POST")
        stream = connect.stream(url=f"{ws_base}{prefix}/telephone/handler")
        stream.parameter(name="token", value=token)
        response.append(connect)
        return twiml(response)

    async def ended(self, request: Request) -> Response:
        """`POST /telephone/ended` (the `<Connect action>`): the media stream is over; apologise if it failed."""
        fields = await self._signed_form(request)
        if fields is None:
            return Response("Invalid Twilio signature", status_code=403, media_type="text/plain")
        call_sid = fields.get("CallSid")
        with self._lock:
            ending = self._endings.pop(call_sid, None) if valid_sid(call_sid) else None
        if ending in ("busy", "not_configured", "trouble"):
            return refusal_twiml(ending, self.language)
        response = VoiceResponse()
        response.hangup()
        return twiml(response)

    def record_ending(self, call_sid: str | None, ending: str) -> None:
        if not call_sid:
            return
        with self._lock:
            self._endings[call_sid] = ending
            while len(self._endings) > 1000:
                self._endings.popitem(last=False)

    # ---- the media stream --------------------------------------------------------------------------

    async def handle(self, websocket: WebSocket) -> None:
        """`/telephone/handler`: one Twilio Media Stream, run by fastrtc's WebSocketHandler (extended)."""
        handler = self.handler.copy()
        handler.phone_mode = True
        call = PhoneCall(handler, self)
        await call.handle_websocket(TwilioSocket(websocket, call))

    def admit(self, call: PhoneCall, message: dict[str, Any]) -> str | None:
        """Decide on a stream's `start`: None to take the call, else why not (an ending for `/telephone/ended`)."""
        start = message.get("start") if isinstance(message.get("start"), dict) else {}
        stream_sid = message.get("streamSid") or start.get("streamSid")
        call.call_sid = start.get("callSid") if valid_sid(start.get("callSid")) else None
        fmt = start.get("mediaFormat") if isinstance(start.get("mediaFormat"), dict) else {}
        if not valid_sid(stream_sid) or stream_sid in self.calls:
            return "invalid"
        if fmt and (fmt.get("encoding"), str(fmt.get("sampleRate")), str(fmt.get("channels"))) != (
            "audio/x-mulaw",
            "8000",
            "1",
        ):
            log.warning("Refused a media stream in an unexpected format: %s", fmt)
            return "invalid"
        params = start.get("customParameters") if isinstance(start.get("customParameters"), dict) else {}
        token = params.get("token")
        held = isinstance(token, str) and self.limiter.redeem(token, call.call_sid)  # the webhook's slot
        if not held and self.auth_token is not None:
            log.warning("Refused a media stream without a valid token from /telephone/incoming.")
            return "unauthorized"
        if not has_openai_key():
            return "not_configured"
        if not held and self.limiter.full():
            return "busy"
        self.limiter.add_phone(stream_sid)
        self.calls[stream_sid] = call
        self.feed.open(stream_sid)
        log.info("Phone call started; follow it at /outputs?stream_id=%s", stream_sid)
        return None

    def finish(self, call: PhoneCall) -> None:
        stream_sid = call.admitted
        if stream_sid is not None:
            self.calls.pop(stream_sid, None)
            self.connections.pop(stream_sid, None)
            self.limiter.release_phone(stream_sid)
            self.feed.close(stream_sid)
            log.info("Phone call %s ended: %s", stream_sid, call.ending)
        if call.ending not in ("invalid", "unauthorized"):  # a stranger's `start` must not speak for a real call
            self.record_ending(call.call_sid, call.ending)


class PhoneCall(WebSocketHandler):
    """fastrtc's Twilio WebSocket handler, plus what a real phone call needs (see the module docstring)."""

    def __init__(self, handler: AsyncStreamHandler, line: PhoneLine) -> None:
        super().__init__(handler, self._register, self._clean_up, self._outputs)
        self.line = line
        self.start_up_task: asyncio.Task | None = None  # fastrtc sets it on `start`, but reads it in any case
        self._emit_to_queue_task: asyncio.Task | None = None
        self.socket: TwilioSocket | None = None
        self.call_sid: str | None = None
        self.admitted: str | None = None
        self.ending = "caller_hung_up"
        self.hangup_heard = asyncio.Event()
        self._supervisor: asyncio.Task | None = None

    # fastrtc's callbacks -----------------------------------------------------------------------------

    async def _register(self, stream_sid: str, _: WebSocketHandler) -> None:
        self.line.connections[stream_sid] = [self]

    def _outputs(self, stream_sid: str) -> Callable[[AdditionalOutputs], None]:
        return self.line.feed.publisher(stream_sid)

    def _clean_up(self, _: str | None) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
        self.line.finish(self)
        if self.admitted is not None:
            self._spawn(self.stream_handler.shutdown())

    def _clear_queue(self) -> None:
        """Barge-in: drop our queue (fastrtc) and what Twilio has buffered for the caller (the `clear` message)."""
        super()._clear_queue()
        self.playing_durations.clear()
        socket = self.socket
        if socket is not None and self.stream_id and socket.playing_s() > 0:
            socket.played_out()
            self._spawn(socket.send_json({"event": "clear", "streamSid": self.stream_id}))

    async def _wait_for_audio_completion(self) -> None:
        """The agent closed the call: hang up once Twilio reports the last audio played (our `mark`)."""
        try:
            if self.ending == "caller_hung_up":
                self.ending = "ended"
            socket = self.socket
            if socket is not None and self.stream_id and socket.playing_s() > 0:
                wait = min(HANGUP_WAIT_MAX_S, socket.playing_s() + HANGUP_GRACE_S)
                await socket.send_json({"event": "mark", "streamSid": self.stream_id, "mark": {"name": HANGUP_MARK}})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.hangup_heard.wait(), wait)
        finally:
            self.quit.set()

    # ours ------------------------------------------------------------------------------------------

    def on_start(self, message: dict[str, Any]) -> bool:
        """Admit the call (or not) before fastrtc starts the handler; True to go on."""
        refusal = self.line.admit(self, message)
        if refusal is not None:
            self.ending = refusal
            return False
        self.admitted = message.get("streamSid") or message["start"]["streamSid"]
        self._supervisor = asyncio.create_task(self._supervise())
        return True

    def on_handler_message(self, text: str) -> None:
        """What the handler would show on screen (fastrtc's data channel): on the phone, only why it ended."""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            if json.loads(text).get("type") == "error":
                self.ending = "trouble"

    def hang_up(self, ending: str) -> None:
        self.ending = ending
        self.quit.set()

    async def _supervise(self) -> None:
        """End the call if the handler crashes, and at the hard time limit if the handler did not end it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.line.settings.hard_time_limit_s
        while self.start_up_task is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        task = self.start_up_task
        if task is not None:
            await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("The voice handler failed on a phone call", exc_info=task.exception())
                self.hang_up("trouble")
                return
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        log.warning("Phone call %s hit the hard time limit.", self.stream_id)
        self.hang_up("time_limit")

    @staticmethod
    def _spawn(coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        _BACKGROUND.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(_BACKGROUND.discard)


class TwilioSocket:
    """The WebSocket as fastrtc's handler sees it: Twilio's messages checked, our hang-up and hooks added.

    * `receive_json` admits the call on `start`, drops malformed messages, notes echoed marks, and returns a
      `stop` when we hang up (fastrtc only looks at its quit flag between messages);
    * `send_text` is fastrtc's data channel (messages meant for a screen): never sent to Twilio;
    * `send_json` keeps track of how much audio Twilio still has to play (so barge-in knows whether there is
      anything to `clear`), and a closed socket makes it a no-op instead of an error in fastrtc's emit loop.
    """

    def __init__(self, websocket: WebSocket, call: PhoneCall) -> None:
        self.websocket = websocket
        self.call = call
        self.closed = False
        self._buffered_until = 0.0  # when the audio sent so far will have played, on our clock
        self._pending: asyncio.Task | None = None
        call.socket = self

    @property
    def application_state(self) -> WebSocketState:
        return WebSocketState.DISCONNECTED if self.closed else self.websocket.application_state

    async def accept(self) -> None:
        await self.websocket.accept()

    async def close(self, code: int = 1000) -> None:
        if self._pending is not None:
            self._pending.cancel()
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self.websocket.close(code)

    async def send_json(self, data: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            await self.websocket.send_json(data)
        except Exception:  # the caller hung up: the receive loop sees it and ends the call
            self.closed = True
            return
        if data.get("event") == "media":
            seconds = len(data["media"]["payload"]) * 3 / 4 / 8000  # base64 of 8 kHz mu-law, one byte a sample
            self._buffered_until = max(time.monotonic(), self._buffered_until) + seconds

    def playing_s(self) -> float:
        """Seconds of our audio Twilio has yet to play (with a margin for the network), 0 if none."""
        left = self._buffered_until + PLAYOUT_MARGIN_S - time.monotonic()
        return left if left > 0 else 0.0

    def played_out(self) -> None:
        """Twilio dropped what it had buffered (`clear`)."""
        self._buffered_until = 0.0

    async def send_text(self, text: str) -> None:
        self.call.on_handler_message(text)

    async def receive_json(self) -> dict[str, Any]:
        while True:
            text = await self._receive_text()
            if text is None:
                return {"event": "stop"}
            try:
                message = json.loads(text)
            except ValueError:
                continue
            if not isinstance(message, dict) or not isinstance(message.get("event"), str):
                continue
            event = message["event"]
            if event == "start":
                if self.call.admitted is not None:
                    continue  # one call per stream
                if not self.call.on_start(message):
                    return {"event": "stop"}
                message["streamSid"] = self.call.admitted
            elif event == "media":
                if self.call.admitted is None or not _valid_media(message.get("media")):
                    continue
            elif event == "mark":
                mark = message.get("mark") if isinstance(message.get("mark"), dict) else {}
                if mark.get("name") == HANGUP_MARK:
                    self.call.hangup_heard.set()
                continue
            elif event != "stop":
                continue  # connected, dtmf, and anything else: nothing for fastrtc to do
            return message

    async def _receive_text(self) -> str | None:
        """The next text message, or None once we hang up (raises WebSocketDisconnect if Twilio did)."""
        if self.call.quit.is_set():
            return None
        if self._pending is None:
            self._pending = asyncio.ensure_future(self.websocket.receive())
        quitting = asyncio.ensure_future(self.call.quit.wait())
        try:
            await asyncio.wait({self._pending, quitting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            quitting.cancel()
        if not self._pending.done():
            return None
        received, self._pending = self._pending.result(), None
        if received["type"] == "websocket.disconnect":
            self.closed = True
            raise WebSocketDisconnect(received.get("code", 1000))
        return received.get("text") or ""


def _valid_media(media: Any) -> bool:
    if not isinstance(media, dict) or media.get("track", "inbound") != "inbound":
        return False
    payload = media.get("payload")
    if not isinstance(payload, str) or not payload or len(payload) > MAX_MEDIA_PAYLOAD:
        return False
    try:
        base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
