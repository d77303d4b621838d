"""AI-SHIFT reservation voicebot: talk to a voice agent that books a table, and watch the booking take shape.

The whole flow on one screen: load the restaurant, build the page (the visitor's call and the owner's console),
wire the voice handlers, launch. The restaurant lives in `assets/restaurant.toml`; everything else in
`components/` (README, "How it is built").
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from components.console.access import OwnerAccess
from components.console.page import Console
from components.engines.pipeline.handler import PipelineHandler
from components.engines.realtime import RealtimeHandler
from components.engines.uplink import hear_callers_sooner
from components.phone.limits import share_call_limit
from components.phone.server import build_server, freeze_startup_heap, run_phone, serve
from components.restaurant.config import load_config
from components.settings import AgentSettings
from components.store.reservations import ReservationStore
from components.web.head import PageHead
from components.web.page import VisitorPage, header

ASSETS = Path(__file__).parent / "assets"

config = load_config()
settings = AgentSettings.from_env()
store = ReservationStore()
if store_warning := store.db.warning():  # a Space without persistent storage or DATABASE_URL
    print(store_warning, flush=True)
access = OwnerAccess.from_env()
hear_callers_sooner()  # WebRTC: the caller's audio reaches the engines without aiortc's 80 ms playout buffer
# Two voice engines behind the same rules, transcript and card; each call uses the one picked in Settings.
handlers = {"realtime": RealtimeHandler(config, store, settings), "pipeline": PipelineHandler(config, store, settings)}

with gr.Blocks(title=f"{config.name('en')} reservation voicebot") as demo:
    gr.HTML(f"<style>{(ASSETS / 'style.css').read_text(encoding='utf-8')}</style>", padding=False)
    gr.HTML(header(config), padding=False)
    if os.environ.get("SPACE_ID"):
        gr.DuplicateButton("このSpaceを複製 / Duplicate this Space", size="sm")
    with gr.Tabs():
        with gr.Tab("ご予約 / Book a table", id="book", elem_id="book-tab"):
            VisitorPage(config, settings, store, handlers).build(demo)
        with gr.Tab("管理 / Owner", id="owner", elem_id="owner-tab"):
            Console(config, store, access).build(demo)

if __name__ == "__main__":
    phone_handler = handlers[settings.engine]  # a caller has no Settings: the phone uses VOICE_ENGINE
    if "--phone" in sys.argv:  # a temporary phone number from fastrtc's FastPhone (needs HF_TOKEN)
        run_phone(phone_handler, config=config, settings=settings)
    elif "--server" in sys.argv or os.environ.get("VOICEBOT_SERVER") == "1":  # + Twilio line, offer route, /outputs
        server = build_server(phone_handler, ui=demo, config=config, settings=settings, access=access)
        server.add_middleware(PageHead, config=config, assets=ASSETS)  # link previews see the page's <head>
        serve(server)
    else:
        share_call_limit(demo, settings.max_concurrent_calls)
        freeze_startup_heap()
        demo.launch(app_kwargs={"middleware": [Middleware(PageHead, config=config, assets=ASSETS)]})
