"""The routes of the one server (fastrtc's `Stream`, extended): the phone line, the WebRTC offer route, the feed.

    POST /telephone/incoming    Twilio's voice webhook: TwiML that greets and connects a Media Stream
    WS   /telephone/handler     the Media Stream (8 kHz mu-law both ways), see `components.phone.media`
    POST /telephone/ended       where Twilio goes when the stream ends (`<Connect action>`)
    POST /telephone/transferred how putting a caller through to the staff went (`<Dial action>`)
    POST /telephone/sms         texts from callers: STOP and START
    POST /webrtc/offer          fastrtc's WebRTC offer, for a custom page (language/voice optional)
    WS   /websocket/offer       fastrtc's raw WebSocket audio route: closed (`not_supported`), see `websocket_offer`
    GET  /outputs?webrtc_id=…   server-sent events: the call's transcript and card (`CallView`) as JSON;
         /outputs?stream_id=…   the same for a phone call (its streamSid is logged), with the owner's token

Every call, from the page, the offer route or the phone, counts against one `max_concurrent_calls` limit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from fastrtc import AdditionalOutputs, AsyncStreamHandler, WebRTC
from fastrtc.stream import Body
from pydantic import Field

from components.adapters.fastrtc import ServerStream, tap_outputs
from components.call.allowance import Allowance
from components.call.notices import notice
from components.call.options import CallRequest
from components.console.access import OwnerAccess
from components.phone.texts import TextMessages
from components.phone.twilio import SID, PhoneLine
from components.restaurant.book import StoreUnavailable
from components.restaurant.config import RestaurantConfig
from components.server.feed import CallFeed
from components.server.limits import CallLimiter, OfferGate
from components.server.startup import warming_up
from components.settings import LANGUAGES, VOICES, AgentSettings, LineSettings
from components.web.visitor import page_visitor

log = logging.getLogger(__name__)

FEED_WAIT_S = 10.0  # how long `/outputs` waits for a call that has not started yet
MAX_SUBSCRIBERS = 20  # per call


class OfferBody(Body):
    """fastrtc's offer body; `language`, `voice` and the demo's access `code` are optional (the key is only ever
    the server's)."""

    webrtc_id: str = Field(pattern=SID.pattern)
    language: str | None = Field(default=None, max_length=8)
    voice: str | None = Field(default=None, max_length=32)
    code: str | None = Field(default=None, max_length=128)


class VoicebotStream(ServerStream):
    """fastrtc's `Stream` for the voice handler, with the phone and the live feed done properly.

    Overrides (fastrtc's routes call these methods, so `mount`, and `fastphone`, serve ours):
    `handle_incoming_call` / `telephone_handler` (see `components.phone.twilio`), `websocket_offer` (closed),
    `offer` (default language and voice, since an API client has no UI inputs), `handle_offer` (the shared
    limit), `set_additional_outputs` and `clean_up` (the live feed). `attach` gives a Gradio UI's WebRTC
    component the same limit and feed.
    """

    def __init__(
        self,
        handler: AsyncStreamHandler,
        *,
        config: RestaurantConfig,
        settings: AgentSettings,
        line: LineSettings,
        rtc_configuration: Any = None,
        server_rtc_configuration: dict[str, Any] | None = None,
        feed_wait_s: float = FEED_WAIT_S,
        access: OwnerAccess | None = None,
    ) -> None:
        super().__init__(
            handler,
            modality="audio",
            mode="send-receive",
            concurrency_limit=settings.max_concurrent_calls,
            time_limit=settings.hard_time_limit_s,
            rtc_configuration=rtc_configuration,
            server_rtc_configuration=server_rtc_configuration,
            verbose=False,
        )
        self.config = config
        self.settings = settings
        self.line = line
        self.feed = CallFeed()
        self.feed_wait_s = feed_wait_s
        self.access = access  # who may follow phone calls on `/outputs`
        self.limiter = CallLimiter(settings.max_concurrent_calls)
        self.limiter.watch(self)
        self.ui_components: list[WebRTC] = []
        self.phone = PhoneLine(
            handler,
            config=config,
            settings=settings,
            feed=self.feed,
            limiter=self.limiter,
            connections=self.connections,
            line=line,
            first_answer=handler.store.tally.first_answer,
            texts=TextMessages(line.texts, handler.store, config) if line.texts and line.served else None,
        )
        # the offer route's callers spend the owner's key within the demo's allowances, checked before answering
        self.allowance = Allowance(settings.demo, handler.store.usage, config) if settings.api_key else None

    def mount(self, app: FastAPI, path: str = "", tags: list[Any] | None = None) -> None:
        super().mount(app, path, tags)
        app.router.lifespan_context = warming_up(app.router.lifespan_context, self._background())
        router = APIRouter(prefix=path)
        router.post("/telephone/ended", tags=tags)(self.phone_ended)
        router.post("/telephone/sms", tags=tags)(self.text_received)
        router.post("/telephone/transferred", tags=tags)(self.phone_transferred)
        router.get("/outputs", tags=tags)(self.outputs)
        app.include_router(router)

    def _background(self) -> list[Callable[[], Any]]:
        """What runs beside the server for as long as it does: the texts' round, when texts are set up."""
        return [self.phone.send_rounds] if self.phone.texts is not None else []

    def check_at_start(self) -> None:
        """fastrtc refuses to start on a Space without TURN; the phone needs none, and the UI warns itself."""
        if self.line.on_space and not self.rtc_configuration:
            log.warning("No TURN server configured: browser calls from some networks may fail (phone calls work).")

    # ---- fastrtc's routes, replaced ----

    async def handle_incoming_call(self, request: Request):
        if not self.line.served:
            return JSONResponse({"error": "no phone line here"}, status_code=404)
        return await self.phone.incoming(request)

    async def telephone_handler(self, websocket: WebSocket) -> None:
        if not self.line.served:
            await websocket.close(code=1008)
            return
        await self.phone.handle(websocket)

    async def phone_ended(self, request: Request):
        if not self.line.served:
            return JSONResponse({"error": "no phone line here"}, status_code=404)
        return await self.phone.ended(request)

    async def phone_transferred(self, request: Request):
        if not self.line.served:
            return JSONResponse({"error": "no phone line here"}, status_code=404)
        return await self.phone.transferred(request)

    async def text_received(self, request: Request):
        if not self.line.served or self.phone.texts is None:
            return JSONResponse({"error": "no text messages here"}, status_code=404)
        return await self.phone.text_received(request)

    async def websocket_offer(self, websocket: WebSocket) -> None:
        """fastrtc's raw-PCM WebSocket route is not offered: it bypasses the call limit and has no UI inputs."""
        await websocket.accept()
        await websocket.send_json({"status": "failed", "meta": {"error": "not_supported"}})
        await websocket.close(code=1008)

    async def offer(self, body: OfferBody, request: Request):
        # the demo's allowances apply to the visitor this request comes from, before any peer connection is made
        visitor = page_visitor(request, self.settings.demo, code=body.code or "")
        if body.type == "offer" and body.webrtc_id not in self.pcs and self.allowance is not None:
            try:
                refusal = await asyncio.to_thread(self.allowance.refusal, visitor, dt.datetime.now(dt.UTC))
            except StoreUnavailable:
                refusal = notice("allowance_unavailable") if self.settings.demo.active else None
            if refusal is not None:
                return JSONResponse({"status": "failed", "meta": {"error": "not_admitted", "message": refusal}})
        answer = await self.handle_offer(
            body.model_dump(exclude={"language", "voice", "code"}),
            set_outputs=self.set_additional_outputs(body.webrtc_id),
        )
        if body.type == "offer" and isinstance(answer, dict) and "sdp" in answer:
            language = body.language if body.language in LANGUAGES else self.config.default_language
            voice = body.voice if body.voice in VOICES else self.settings.voice
            self.set_input(body.webrtc_id, *CallRequest(language, voice, None, visitor).inputs())
        return answer

    async def handle_offer(self, body: dict[str, Any], set_outputs: Callable) -> Any:
        return await self.limiter.offer(self, body, lambda: super(VoicebotStream, self).handle_offer(body, set_outputs))

    def set_additional_outputs(self, webrtc_id: str) -> Callable[[AdditionalOutputs], None]:
        return self.feed.publisher(webrtc_id)  # nobody drains fastrtc's queue for the offer route: no copy there

    def clean_up(self, webrtc_id: str) -> Any:
        try:
            return super().clean_up(webrtc_id)
        finally:
            self.feed.close(webrtc_id)

    # ---- ours ----

    async def outputs(
        self,
        request: Request,
        webrtc_id: str | None = Query(default=None, max_length=64, pattern=SID.pattern),
        stream_id: str | None = Query(default=None, max_length=64, pattern=SID.pattern),
    ):
        """Follow one call as server-sent events. A browser call's id is its capability (only the page that made
        the call knows it); a phone call's id is logged, so its feed needs the owner's token, in the
        `Authorization: Bearer` header only (a token in a link would end up in logs and histories)."""
        ids = [value for value in (webrtc_id, stream_id) if value]
        if len(ids) != 1:
            return JSONResponse({"error": "give exactly one of webrtc_id or stream_id"}, status_code=400)
        bearer = request.headers.get("authorization", "")
        presented = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
        owner = self.access is not None and self.access.opens_feed(presented)
        refused = JSONResponse(
            {"error": "a phone call's feed needs the owner's token (see the owner's console)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        if stream_id is not None and not owner:
            return refused
        call_id = ids[0]
        if not await self.feed.wait_known(call_id, self.feed_wait_s):
            return JSONResponse({"error": "no such call"}, status_code=404)
        if self.feed.restricted(call_id) and not owner:  # a phone call asked for by the other name
            return refused
        if self.feed.subscribers(call_id) >= MAX_SUBSCRIBERS:
            return JSONResponse({"error": "too many followers for this call"}, status_code=429)
        return StreamingResponse(
            self.feed.events(call_id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def attach(self, component: WebRTC, gate: OfferGate | None = None) -> None:
        """Give a UI's WebRTC component (which handles its own offers) the shared limit, its page's gate on offers
        and the live feed."""
        self.ui_components.append(component)
        self.limiter.guard(component, gate)
        tap_outputs(component, self.feed.publisher, self.feed.close)
