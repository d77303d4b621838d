"""The phone line: a Twilio number's calls, answered by the same voice agent as the browser.

Twilio asks `/telephone/incoming` what to do with a call; the TwiML answer greets the caller in the
restaurant's language and connects a bidirectional Media Stream to `/telephone/handler`, run by `media`.
This module holds the line's side of it:

* a phone call counts against the same concurrency limit as browser calls: the webhook holds a slot for
  the call, and a full line or a missing OpenAI key is a polite `<Say>` instead of silence;
* a media stream is admitted on its `start` (the format, the slot, the caller) and followed on the live feed;
* `/telephone/ended` apologises when the agent ended the call because something failed;
* with `TWILIO_AUTH_TOKEN` set, webhooks must carry a valid Twilio signature; the media WebSocket must always
  present the one-time token handed out in the TwiML, so nobody else can spend the owner's OpenAI budget;
* each `CallSid` is answered once (`first_answer`, kept in the store): a captured webhook replayed later, though
  validly signed, gets no line and no "verified" caller. Twilio signs no timestamp into a voice webhook, so
  remembering the CallSid is what refuses a replay;
* with `TWILIO_SMS_FROM` set, the caller's line gets a text about each booking the call wrote once the call is
  over, STOP and START replies come to `/telephone/sms`, and the texts' round (reminders, a freed table for a
  waitlisted guest) runs each minute (`texts`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Request, WebSocket
from fastapi.responses import Response
from twilio.request_validator import SIGNATURE_SETTINGS_HEADER, RequestValidator, get_signature_algorithm
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import Connect, VoiceResponse

from components.call.store_io import in_store_thread
from components.phone.media import PhoneCall, TwilioSocket
from components.phone.texts import TextMessages
from components.phone.transfer import MISSED, StaffHandover
from components.restaurant.book import StoreUnavailable
from components.restaurant.config import RestaurantConfig
from components.restaurant.lookup import Caller
from components.settings import AgentSettings, LineSettings
from components.web.address import public_base

if TYPE_CHECKING:
    from fastrtc import AdditionalOutputs, AsyncStreamHandler

log = logging.getLogger(__name__)

SID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PHONE = re.compile(r"\+?[0-9]{6,15}")  # Twilio's `From`, E.164
PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")

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


class Feed(Protocol):
    def open(self, call_id: str, *, restricted: bool = False) -> None: ...
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


def route_prefix(request: Request, route: str) -> str:
    """Where our routes are mounted (fastrtc's `Stream.mount(app, path)`), from the request's own path."""
    prefix = request.scope.get("root_path", "") + request.scope["path"].removesuffix(route)
    return prefix if PREFIX.match(prefix) else ""


def say(response: VoiceResponse, key: str, language: str, voice: str | None = None, **values: str) -> None:
    """Add one `<Say>` in the restaurant's language (the twilio library escapes the text for XML); `voice`
    (`TWILIO_SAY_VOICE`) replaces the default voice for that language."""
    locale, default_voice = SAY_VOICES[language]
    response.say(PHONE_TEXTS[language][key].format(**values), language=locale, voice=voice or default_voice)


def twiml(response: VoiceResponse) -> Response:
    return Response(content=str(response), media_type="application/xml")


def refusal_twiml(key: str, language: str, voice: str | None = None) -> Response:
    """A polite message, then hang up."""
    response = VoiceResponse()
    say(response, key, language, voice)
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
        line: LineSettings,
        first_answer: Callable[[str, dt.datetime], bool],
        texts: TextMessages | None = None,
    ) -> None:
        self.handler = handler
        self.texts = texts  # texts to callers, when the owner set up a number for them
        self.first_answer = first_answer  # remembers a CallSid; False if it was answered before (a replay)
        self.config = config
        self.settings = settings
        self.feed = feed
        self.limiter = limiter
        self.connections = connections  # fastrtc's Stream.connections: phone calls are registered there too
        self.line = line
        self.calls: dict[str, PhoneCall] = {}
        self._endings: OrderedDict[str, str] = OrderedDict()  # CallSid -> why its media stream ended
        # slot token -> who the webhook said is calling, and the address (with route prefix) Twilio reached us on
        self._callers: OrderedDict[str, tuple[Caller | None, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._sending: set[asyncio.Task] = set()

    @property
    def language(self) -> str:
        return self.config.default_language

    @property
    def auth_token(self) -> str | None:
        return self.line.signing_token

    @property
    def has_key(self) -> bool:
        return bool(self.settings.api_key)

    def refusal(self, key: str) -> Response:
        return refusal_twiml(key, self.language, self.line.say_voice)

    # ---- webhooks ----------------------------------------------------------------------------------

    async def _signed_form(self, request: Request) -> dict[str, str] | None:
        """The webhook's form fields, or None if signatures are checked and this one is not Twilio's."""
        form = await request.form()
        fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
        token = self.auth_token
        if token is None:
            return fields
        query = request.scope.get("query_string", b"").decode("latin-1")
        url = public_base(request, self.line.public_url) + request.scope["path"] + (f"?{query}" if query else "")
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
        if not self.has_key:
            log.warning("A phone call came in but OPENAI_API_KEY is not set: the caller hears that the line is off.")
            return self.refusal("not_configured")
        try:
            first = call_sid is not None and await in_store_thread(self.first_answer, call_sid, dt.datetime.now(dt.UTC))
        except StoreUnavailable:
            log.warning("A phone call came in while the booking database is unavailable.")
            return self.refusal("trouble")
        if not first:
            log.warning("Refused a webhook for a call that was already answered (a replay) or has no CallSid.")
            return Response("This call was already answered", status_code=409, media_type="text/plain")
        token = self.limiter.reserve(call_sid)
        if token is None:
            log.info("A phone call came in while all %d lines were busy.", self.settings.max_concurrent_calls)
            return self.refusal("busy")
        base = public_base(request, self.line.public_url)
        prefix = route_prefix(request, "/telephone/incoming")
        response = VoiceResponse()
        say(response, "connecting", self.language, self.line.say_voice, name=self.config.name(self.language))
        self._connect(response, token, base, prefix)
        self._remember_caller(token, fields.get("From"), f"{base}{prefix}")
        return twiml(response)

    def _connect(self, response: VoiceResponse, token: str, base: str, prefix: str, after: str | None = None) -> None:
        """Connect the call's audio to the agent: a stream with the slot's one-time token (and why it comes)."""
        ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        connect = Connect(action=f"{base}{prefix}/telephone/ended", method="POST")
        stream = connect.stream(url=f"{ws_base}{prefix}/telephone/handler")
        stream.parameter(name="token", value=token)
        if after:
            stream.parameter(name="after", value=after)
        response.append(connect)

    async def transferred(self, request: Request) -> Response:
        """`POST /telephone/transferred` (the `<Dial action>`): how putting the caller through went. Answered, the
        call ends there; otherwise the console is told and the caller comes back to the agent."""
        fields = await self._signed_form(request)
        if fields is None:
            return Response("Invalid Twilio signature", status_code=403, media_type="text/plain")
        response = VoiceResponse()
        status = fields.get("DialCallStatus", "")
        if status == "completed":
            response.hangup()
            return twiml(response)
        call_sid = fields.get("CallSid") if valid_sid(fields.get("CallSid")) else None
        try:
            detail = {"status": status or "unknown", "call": call_sid}
            await in_store_thread(
                self.handler.store.audit.add, dt.datetime.now(dt.UTC), "phone", "transfer_missed", detail
            )
        except StoreUnavailable:
            log.warning("A missed transfer could not be recorded: the store is unavailable.")
        token = self.limiter.reserve(call_sid) if call_sid else None
        if token is None:
            return self.refusal("busy")
        locale, words = MISSED[self.language]
        response.say(words, language=locale, **({"voice": self.line.say_voice} if self.line.say_voice else {}))
        base, prefix = public_base(request, self.line.public_url), route_prefix(request, "/telephone/transferred")
        self._connect(response, token, base, prefix, after="missed_transfer")
        self._remember_caller(token, fields.get("From"), f"{base}{prefix}")
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
            return self.refusal(ending)
        response = VoiceResponse()
        response.hangup()
        return twiml(response)

    def _remember_caller(self, token: str, number: str | None, route_base: str) -> None:
        """Keep the caller's number (Twilio's `From`) for the stream that will redeem `token` (it vouches for the
        caller only when the webhook's signature was checked), and where Twilio reached us."""
        caller = Caller(number, verified=self.auth_token is not None) if number and PHONE.fullmatch(number) else None
        with self._lock:
            self._callers[token] = (caller, route_base)
            while len(self._callers) > 1000:
                self._callers.popitem(last=False)

    def record_ending(self, call_sid: str | None, ending: str) -> None:
        if not call_sid:
            return
        with self._lock:
            self._endings[call_sid] = ending
            while len(self._endings) > 1000:
                self._endings.popitem(last=False)

    async def text_received(self, request: Request) -> Response:
        """`POST /telephone/sms` (the number's messaging webhook): STOP and START replies are honoured."""
        fields = await self._signed_form(request)
        if fields is None:
            return Response("Invalid Twilio signature", status_code=403, media_type="text/plain")
        response = MessagingResponse()
        number = fields.get("From")
        if self.texts is not None and number and PHONE.fullmatch(number):
            try:
                answer = await in_store_thread(
                    self.texts.reply, number, fields.get("Body", ""), dt.datetime.now(dt.UTC)
                )
            except StoreUnavailable:
                answer = None
                log.warning("A text reply could not be recorded: the store is unavailable.")
            if answer:
                response.message(answer)
        return Response(str(response), media_type="application/xml")

    async def send_rounds(self, every_s: float = 60.0) -> None:
        """The texts' round (reminders, the waitlist's freed tables), each `every_s` seconds for as long as the
        server runs: every replica runs it, and the store lets one of them send each text."""
        while self.texts is not None:
            try:
                await asyncio.to_thread(self.texts.rounds, dt.datetime.now(dt.UTC))
            except StoreUnavailable:
                log.warning("The texts' round was skipped: the store is unavailable.")
            await asyncio.sleep(every_s)

    # ---- the media stream --------------------------------------------------------------------------

    async def handle(self, websocket: WebSocket) -> None:
        """`/telephone/handler`: one Twilio Media Stream, run by fastrtc's WebSocketHandler (extended)."""
        handler = self.handler.copy()
        handler.use_phone_line()
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
        if not self.has_key:
            return "not_configured"
        params = start.get("customParameters") if isinstance(start.get("customParameters"), dict) else {}
        token = params.get("token")
        held = isinstance(token, str) and self.limiter.redeem(token, call.call_sid)  # the webhook's slot
        if not held:  # every stream comes from our TwiML, which carries a one-time token: anything else is a stranger
            log.warning("Refused a media stream without a valid token from /telephone/incoming.")
            return "unauthorized"
        self.limiter.add_phone(stream_sid)
        with self._lock:
            caller, route_base = self._callers.pop(token, (None, "")) if held else (None, "")
        agent = call.stream_handler.call
        agent.caller = caller
        if self.line.staff is not None and call.call_sid and route_base:
            action = f"{route_base}/telephone/transferred"
            agent.handover = StaffHandover(self.line.staff, self.config, call.call_sid, action, self.line.say_voice)
        agent.opening = "missed_transfer" if params.get("after") == "missed_transfer" else None
        call.started_at = dt.datetime.now(dt.UTC)
        self.calls[stream_sid] = call
        self.feed.open(stream_sid, restricted=True)
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
        self._text_the_caller(call)

    def _text_the_caller(self, call: PhoneCall) -> None:
        """After the call: a text to the caller's line about each booking it wrote (in the background)."""
        agent = call.stream_handler.call
        session, caller = agent.session, agent.caller
        if self.texts is None or call.started_at is None or session is None or not session.touched:
            return
        if caller is None or not caller.phone:
            return
        work = asyncio.to_thread(
            self.texts.after_call, set(session.touched), caller.phone, agent.language, call.started_at
        )
        task = asyncio.get_running_loop().create_task(work)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
