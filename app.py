"""AI-SHIFT reservation voicebot: talk to a voice agent that books a table, and watch the booking take shape.

The whole flow on one screen: read the settings and the restaurant, build the page (the visitor's call and the
owner's console), wire the voice handlers, launch. The restaurant lives in `assets/restaurant.toml`; everything
else in `components/` (README, "How it is built").
"""

from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from components.adapters.aiortc import hear_callers_sooner
from components.console.access import OwnerAccess
from components.console.page import Console
from components.engines.live import LiveHandler
from components.engines.pipeline.handler import PipelineHandler
from components.engines.realtime import RealtimeHandler
from components.restaurant.config import load_config
from components.server.limits import share_call_limit
from components.server.run import build_server, run_phone, serve
from components.server.startup import freeze_startup_heap
from components.settings import Settings
from components.store.reservations import ReservationStore
from components.web.downloads import CACHE_CLEANING
from components.web.guard import QUEUE_MAX_SIZE, SESSIONS_MAX, Guard
from components.web.head import PageHead
from components.web.page import VisitorPage, header

ASSETS = Path(__file__).parent / "assets"

try:  # every variable and the restaurant are checked before anything starts: a bad value stops the app, named
    settings = Settings.load()
    config = load_config(settings.restaurant_config)
except (ValueError, OSError) as bad:
    sys.exit(f"The app cannot start:\n{bad}")

agent = settings.agent
store = ReservationStore.from_settings(settings)
if store_warning := store.db.warning():  # a Space without persistent storage or DATABASE_URL
    print(store_warning, flush=True)
access = OwnerAccess.from_settings(settings)
hear_callers_sooner()  # WebRTC: the caller's audio reaches the engines without aiortc's 80 ms playout buffer
# Three voice engines behind the same rules, transcript and card; each call uses the one picked in Settings.
engines = {"live": LiveHandler, "realtime": RealtimeHandler, "pipeline": PipelineHandler}
handlers = {name: engine(config, store, agent) for name, engine in engines.items()}
head = {"config": config, "assets": ASSETS, "public_url": settings.line.public_url}

with gr.Blocks(title=f"{config.name('en')} reservation voicebot", delete_cache=CACHE_CLEANING) as demo:
    gr.HTML(f"<style>{(ASSETS / 'style.css').read_text(encoding='utf-8')}</style>", padding=False)
    gr.HTML(header(config), padding=False)
    if settings.on_space:
        gr.DuplicateButton("このSpaceを複製 / Duplicate this Space", size="sm")
    with gr.Tabs():
        with gr.Tab("ご予約 / Book a table", id="book", elem_id="book-tab"):
            page = VisitorPage(config, settings, store, handlers)
            page.build(demo)
        with gr.Tab("管理 / Owner", id="owner", elem_id="owner-tab"):
            Console(config, store, access).build(demo)
    demo.queue(max_size=QUEUE_MAX_SIZE)  # events waiting at once, from everyone together

if __name__ == "__main__":
    phone_handler = handlers[agent.engine]  # a caller has no Settings: the phone uses VOICE_ENGINE
    if "--phone" in sys.argv:  # a temporary phone number from fastrtc's FastPhone (needs HF_TOKEN)
        run_phone(phone_handler, config=config, settings=settings)
    elif "--server" in sys.argv or settings.voicebot_server:  # + Twilio line, offer route, /outputs
        gate = page.sessions.offer_refusal  # the page's offers come only from page loads that may call
        options = {"line": settings.line, "access": access, "gate": gate}
        server = build_server(phone_handler, ui=demo, config=config, settings=agent, **options)
        server.add_middleware(PageHead, **head)  # link previews see the page's <head>
        server.add_middleware(Guard, **Guard.options(settings))  # outermost: who asks, and how much they may start
        serve(server, settings)
    else:
        share_call_limit(demo, agent.max_concurrent_calls, gate=page.sessions.offer_refusal)
        freeze_startup_heap()
        guard = Middleware(Guard, **Guard.options(settings))
        middleware = [guard, Middleware(PageHead, **head)]
        demo.launch(state_session_capacity=SESSIONS_MAX, app_kwargs={"middleware": middleware})
