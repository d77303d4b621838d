"""One FastAPI server for every way in: the Gradio page, the WebRTC offer route, a Twilio phone line, a live feed.

`build_server` mounts the fastrtc `Stream` of `routes` for the voice handler and the app's Gradio page on one
FastAPI app. `python app.py --server` runs it (`serve`; `VOICEBOT_SERVER=1` does the same where no arguments can be
given, as on a Space); `python app.py --phone` gets a temporary number from fastrtc's FastPhone (`run_phone`, needs
`HF_TOKEN`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import gradio as gr
from fastapi import FastAPI
from fastrtc import AsyncStreamHandler

from components.adapters.fastrtc import use_server_ice_of
from components.restaurant.config import RestaurantConfig
from components.server.limits import OfferGate, webrtc_components
from components.server.routes import VoicebotStream
from components.settings import AgentSettings, LineSettings, Settings
from components.web.guard import SESSIONS_MAX

NO_HF_TOKEN = """\
`python app.py --phone` needs a Hugging Face token: FastPhone (fastrtc's free temporary phone number) is
tied to your Hugging Face account.

  1. Create a token at https://huggingface.co/settings/tokens (the "read" role is enough).
  2. Run:  HF_TOKEN=hf_... python app.py --phone
     (or log in once with `hf auth login`).

To use your own Twilio number instead, run `python app.py --server` behind an HTTPS address and point the
number's voice webhook at https://<your-address>/telephone/incoming (see the README).
"""


def build_stream(
    handler: AsyncStreamHandler,
    *,
    config: RestaurantConfig,
    settings: AgentSettings,
    line: LineSettings,
    ui: gr.Blocks | None = None,
    gate: OfferGate | None = None,
    **options: Any,
) -> VoicebotStream:
    """The Stream for `handler`; a UI's WebRTC components share its limit, feed and WebRTC configuration, and
    their offers pass the page's `gate`."""
    components = webrtc_components(ui)
    if components:
        options.setdefault("rtc_configuration", components[0].rtc_configuration)
    stream = VoicebotStream(handler, config=config, settings=settings, line=line, **options)
    if components:
        use_server_ice_of(stream, components[0])
    for component in components:
        stream.attach(component, gate)
    return stream


def build_server(
    handler: AsyncStreamHandler,
    *,
    ui: gr.Blocks | None,
    config: RestaurantConfig,
    settings: AgentSettings,
    line: LineSettings,
    **options: Any,
) -> FastAPI:
    """A FastAPI app with the fastrtc Stream's routes (phone, WebRTC offer), the live feed and `ui` at `/`.

    `options` go to `VoicebotStream` (e.g. `feed_wait_s`). The stream is `app.state.stream`.
    """
    stream = build_stream(handler, config=config, settings=settings, line=line, ui=ui, **options)
    app = FastAPI(title=f"{config.name('en')} voicebot", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.stream = stream
    stream.mount(app)
    if ui is not None:
        ui.state_session_capacity = SESSIONS_MAX  # as `launch(state_session_capacity=)` sets it; mounting reads it
        gr.mount_gradio_app(app, ui, path="/")  # last: the UI takes every path the routes above do not
    return app


def serve(app: FastAPI, settings: Settings) -> None:
    """Run the server (blocking) with uvicorn, where `GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT` (or `PORT`) say,
    like `demo.launch()`."""
    import uvicorn

    host, port = settings.server_name, settings.server_port
    _log_calls()
    phone = (
        "* Phone: point your Twilio number's voice webhook (HTTP POST) at https://<your-public-address>/telephone/incoming"
        if settings.line.served
        else "* Phone line off: set the secret TWILIO_AUTH_TOKEN, so that only Twilio's signed calls are answered"
    )
    print(f"* Voicebot UI on http://{host}:{port}/\n{phone}", flush=True)
    uvicorn.run(app, host=host, port=port, access_log=False)  # access logs would keep `?code=…` and call ids


def _log_calls() -> None:
    """Show our INFO lines (phone calls starting, with the id to follow them at /outputs) next to uvicorn's."""
    ours = logging.getLogger("components")
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False


def run_phone(handler: AsyncStreamHandler, *, config: RestaurantConfig, settings: Settings) -> None:
    """fastrtc's FastPhone: a temporary phone number for this handler (our phone routes, no UI). Blocking."""
    from huggingface_hub import get_token

    token = (settings.secret("hf_token") or "").strip() or get_token()
    if not token:
        raise SystemExit(NO_HF_TOKEN)
    agent = settings.agent
    if not agent.api_key:
        print("Warning: OPENAI_API_KEY is not set, so callers will hear that the line is not available.", flush=True)
    # FastPhone's own Twilio account places the calls: our TWILIO_AUTH_TOKEN cannot check its signatures.
    line = dataclasses.replace(settings.line, signing_token=None, unsigned_allowed=True)
    stream = build_stream(handler, config=config, settings=agent, line=line)
    _log_calls()
    stream.fastphone(token=token, host=settings.server_name, port=settings.server_port)
