"""One FastAPI server for every way in: the Gradio UI, the WebRTC offer route, a Twilio phone line, a live feed.

`build_server` mounts a fastrtc `Stream` for the voice handler and the app's Gradio UI on one FastAPI app:

    POST /telephone/incoming    Twilio's voice webhook: TwiML that greets and connects a Media Stream
    WS   /telephone/handler     the Media Stream (8 kHz mu-law both ways), see `components.phone.media`
    POST /telephone/ended       where Twilio goes when the stream ends (`<Connect action>`)
    POST /webrtc/offer          fastrtc's WebRTC offer, for a custom page (language/voice optional)
    WS   /websocket/offer       fastrtc's raw WebSocket audio route: closed (`not_supported`), see `websocket_offer`
    GET  /outputs?webrtc_id=…   server-sent events: the call's transcript and card (`CallState.view()`) as JSON;
         /outputs?stream_id=…   the same for a phone call (its streamSid is logged), with the owner's token
    /                           the Gradio UI

Every call, from the UI, the offer route or the phone, counts against one `max_concurrent_calls` limit.
`python app.py --server` runs it (`serve`; `VOICEBOT_SERVER=1` does the same where no arguments can be given,
as on a Space); `python app.py --phone` gets a temporary number from fastrtc's FastPhone (`run_phone`, needs
`HF_TOKEN`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import gradio as gr
from fastapi import APIRouter, FastAPI, Query, Request, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from fastrtc import AdditionalOutputs, AsyncStreamHandler, Stream, WebRTC
from fastrtc.stream import Body
from pydantic import Field

from components.console.access import OwnerAccess
from components.phone.feed import CallFeed
from components.phone.limits import CallLimiter, webrtc_components
from components.phone.twilio import SID, PhoneLine
from components.restaurant.config import RestaurantConfig
from components.settings import LANGUAGES, VOICES, AgentSettings
from components.web.visitor import page_visitor

log = logging.getLogger(__name__)

FEED_WAIT_S = 10.0  # how long `/outputs` waits for a call that has not started yet
MAX_SUBSCRIBERS = 20  # per call

NO_HF_TOKEN = """\
`python app.py --phone` needs a Hugging Face token: FastPhone (fastrtc's free temporary phone number) is
tied to your Hugging Face account.

  1. Create a token at https://huggingface.co/settings/tokens (the "read" role is enough).
  2. Run:  HF_TOKEN=hf_... python app.py --phone
     (or log in once with `hf auth login`).

To use your own Twilio number instead, run `python app.py --server` behind an HTTPS address and point the
number's voice webhook at https://<your-address>/telephone/incoming (see the README).
"""


class OfferBody(Body):
    """fastrtc's offer body; `language`, `voice` and the demo's access `code` are optional (the key is only ever
    the server's)."""

    webrtc_id: str = Field(pattern=SID.pattern)
    language: str | None = Field(default=None, max_length=8)
    voice: str | None = Field(default=None, max_length=32)
    code: str | None = Field(default=None, max_length=128)


class VoicebotStream(Stream):
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
        rtc_configuration: Any = None,
        server_rtc_configuration: dict[str, Any] | None = None,
        verify_twilio: bool = True,
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
            verify_twilio=verify_twilio,
        )

    def mount(self, app: FastAPI, path: str = "", tags: list[Any] | None = None) -> None:
        super().mount(app, path, tags)
        app.router.lifespan_context = _warming_up(app.router.lifespan_context)
        router = APIRouter(prefix=path)
        router.post("/telephone/ended", tags=tags)(self.phone.ended)
        router.get("/outputs", tags=tags)(self.outputs)
        app.include_router(router)

    def _check_colab_or_spaces(self) -> None:
        """fastrtc refuses to start on a Space without TURN; the phone needs none, and the UI warns itself."""
        if os.environ.get("SPACE_ID") and not self.rtc_configuration:
            log.warning("No TURN server configured: browser calls from some networks may fail (phone calls work).")

    # ---- fastrtc's routes, replaced ----

    async def handle_incoming_call(self, request: Request):
        return await self.phone.incoming(request)

    async def telephone_handler(self, websocket: WebSocket) -> None:
        await self.phone.handle(websocket)

    async def websocket_offer(self, websocket: WebSocket) -> None:
        """fastrtc's raw-PCM WebSocket route is not offered: it bypasses the call limit and has no UI inputs."""
        await websocket.accept()
        await websocket.send_json({"status": "failed", "meta": {"error": "not_supported"}})
        await websocket.close(code=1008)

    async def offer(self, body: OfferBody, request: Request):
        answer = await self.handle_offer(
            body.model_dump(exclude={"language", "voice", "code"}),
            set_outputs=self.set_additional_outputs(body.webrtc_id),
        )
        if body.type == "offer" and isinstance(answer, dict) and "sdp" in answer:
            language = body.language if body.language in LANGUAGES else self.config.default_language
            voice = body.voice if body.voice in VOICES else self.settings.voice
            visitor = page_visitor(request, self.settings.demo, code=body.code or "")  # the demo's allowances apply
            self.set_input(body.webrtc_id, language, voice, "", visitor)  # the handler's UI inputs
        return answer

    async def handle_offer(self, body: dict[str, Any], set_outputs: Callable) -> Any:
        return self.limiter.refusal(self, body) or await super().handle_offer(body, set_outputs)

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
        token: str | None = Query(default=None, max_length=128),
    ):
        """Follow one call as server-sent events. A browser call's id is its capability (only the page that made
        the call knows it); a phone call's id is logged, so its feed needs the owner's token, as a bearer header
        or `token=` in the link."""
        ids = [value for value in (webrtc_id, stream_id) if value]
        if len(ids) != 1:
            return JSONResponse({"error": "give exactly one of webrtc_id or stream_id"}, status_code=400)
        bearer = request.headers.get("authorization", "")
        presented = bearer[7:].strip() if bearer.lower().startswith("bearer ") else token
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

    def attach(self, component: WebRTC) -> None:
        """Give a UI's WebRTC component (which handles its own offers) the shared limit and the live feed."""
        self.ui_components.append(component)
        self.limiter.guard(component)
        feed = self.feed
        set_outputs_for, clean_up = component.set_additional_outputs, component.clean_up

        def outputs_to_ui_and_feed(webrtc_id: str) -> Callable[[AdditionalOutputs], None]:
            to_ui, to_feed = set_outputs_for(webrtc_id), feed.publisher(webrtc_id)

            def both(outputs: AdditionalOutputs) -> None:
                to_ui(outputs)
                to_feed(outputs)

            return both

        def clean_up_and_close(webrtc_id: str) -> Any:
            try:
                return clean_up(webrtc_id)
            finally:
                feed.close(webrtc_id)

        component.set_additional_outputs = outputs_to_ui_and_feed
        component.clean_up = clean_up_and_close


def warm_up_resampler() -> None:
    """Load librosa's resampler now: its first use takes seconds, and on a phone call it would block the loop."""
    import librosa
    import numpy as np

    for rates in ((8000, 24000), (24000, 8000)):
        librosa.resample(np.zeros(480, dtype=np.float32), orig_sr=rates[0], target_sr=rates[1])


def freeze_startup_heap() -> None:
    """Put what start-up built (gradio, fastrtc, numpy, the restaurant) out of the garbage collector's reach: a
    full collection otherwise walks all of it, pausing every call's audio for up to 150 ms."""
    gc.collect()
    gc.freeze()


def _warming_up(lifespan: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @contextlib.asynccontextmanager
    async def warm_lifespan(app: Any) -> AsyncIterator[Any]:
        async with lifespan(app) as state:
            await asyncio.to_thread(warm_up_resampler)
            freeze_startup_heap()
            yield state

    return warm_lifespan


def build_stream(
    handler: AsyncStreamHandler,
    *,
    config: RestaurantConfig,
    settings: AgentSettings,
    ui: gr.Blocks | None = None,
    **options: Any,
) -> VoicebotStream:
    """The Stream for `handler`; a UI's WebRTC components share its limit, feed and WebRTC configuration."""
    components = webrtc_components(ui)
    if components:
        options.setdefault("rtc_configuration", components[0].rtc_configuration)
    stream = VoicebotStream(handler, config=config, settings=settings, **options)
    if components:
        stream.server_rtc_configuration = components[0].server_rtc_configuration
    for component in components:
        stream.attach(component)
    return stream


def build_server(
    handler: AsyncStreamHandler,
    *,
    ui: gr.Blocks | None,
    config: RestaurantConfig,
    settings: AgentSettings,
    **options: Any,
) -> FastAPI:
    """A FastAPI app with the fastrtc Stream's routes (phone, WebRTC offer), the live feed and `ui` at `/`.

    `options` go to `VoicebotStream` (e.g. `verify_twilio=False`). The stream is `app.state.stream`.
    """
    stream = build_stream(handler, config=config, settings=settings, ui=ui, **options)
    app = FastAPI(title=f"{config.name('en')} voicebot", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.stream = stream
    stream.mount(app)
    if ui is not None:
        gr.mount_gradio_app(app, ui, path="/")  # last: the UI takes every path the routes above do not
    return app


def server_address() -> tuple[str, int]:
    """Where to listen: `GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT` (or `PORT`), like `demo.launch()`."""
    host = os.environ.get("GRADIO_SERVER_NAME", "").strip() or "127.0.0.1"
    port = os.environ.get("GRADIO_SERVER_PORT", "").strip() or os.environ.get("PORT", "").strip() or "7860"
    return host, int(port)


def serve(app: FastAPI) -> None:
    """Run the server (blocking) with uvicorn."""
    import uvicorn

    host, port = server_address()
    _log_calls()
    print(
        f"* Voicebot UI on http://{host}:{port}/\n"
        "* Phone: point your Twilio number's voice webhook (HTTP POST) at https://<your-public-address>/telephone/incoming",
        flush=True,
    )
    uvicorn.run(app, host=host, port=port)


def _log_calls() -> None:
    """Show our INFO lines (phone calls starting, with the id to follow them at /outputs) next to uvicorn's."""
    ours = logging.getLogger("components")
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False


def hf_token() -> str | None:
    from huggingface_hub import get_token

    return os.environ.get("HF_TOKEN", "").strip() or get_token()


def run_phone(handler: AsyncStreamHandler, *, config: RestaurantConfig, settings: AgentSettings) -> None:
    """fastrtc's FastPhone: a temporary phone number for this handler (our phone routes, no UI). Blocking."""
    token = hf_token()
    if not token:
        raise SystemExit(NO_HF_TOKEN)
    if not os.environ.get("OPENAI_API_KEY", "").strip():
        print("Warning: OPENAI_API_KEY is not set, so callers will hear that the line is not available.", flush=True)
    # FastPhone's own Twilio account places the calls: our TWILIO_AUTH_TOKEN cannot check its signatures.
    stream = build_stream(handler, config=config, settings=settings, verify_twilio=False)
    _log_calls()
    host, port = server_address()
    stream.fastphone(token=token, host=host, port=port)
