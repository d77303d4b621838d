"""AI-SHIFT reservation voicebot: talk to a voice agent that books a table, and watch the booking take shape.

The whole flow on one screen: load the restaurant, build the page, wire the voice handler, launch.
The restaurant lives in `assets/restaurant.toml`; rules, tools and prompt in `components/`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import gradio as gr
from fastrtc import WebRTC

from components.engines.pipeline.handler import PipelineHandler
from components.engines.realtime import RealtimeHandler
from components.phone.limits import share_call_limit
from components.phone.server import build_server, freeze_startup_heap, run_phone, serve
from components.restaurant.config import load_config
from components.settings import ENGINES, VOICES, AgentSettings
from components.store.reservations import ReservationStore
from components.web.render import card_html, chat_messages
from components.web.takeaway import booking_ics
from components.web.turn import missing_turn_warning, rtc_configuration

ASSETS = Path(__file__).parent / "assets"

config = load_config()
settings = AgentSettings.from_env()
store = ReservationStore()
if store_warning := store.db.warning():  # a Space without persistent storage or DATABASE_URL
    print(store_warning, flush=True)
has_env_key = bool(os.environ.get("OPENAI_API_KEY", "").strip())
# Two voice engines behind the same rules, transcript and card; each call uses the one picked in Settings.
handlers = {"realtime": RealtimeHandler(config, store, settings), "pipeline": PipelineHandler(config, store, settings)}


def show_call(view: dict) -> tuple[list[dict], str, dict]:
    """Turn the handler's view of the call into the transcript, the card and the booking's calendar file."""
    language = view.get("language", config.default_language)
    ics = booking_ics(view, config)
    return (
        chat_messages(view),
        card_html(view, config.name(language), language),
        gr.update(value=ics, visible=bool(ics)),
    )


def engine_classes(engine: str, chosen: str) -> list[str]:
    """Only the chosen engine's call widget shows. Its box is hidden by CSS, not `visible=False`: fastrtc sends
    every call widget's value along when Settings change, and a widget that was never rendered has none. The
    widget itself is never updated: gradio would keep a per-session copy of it, without its stream handler."""
    return [] if engine == chosen else ["engine-hidden"]


def idle_card(language: str) -> str:
    return card_html(None, config.name(language), language)


HEADER = f"""
<div class="app-header">
  <h1>🍽️ {config.name("ja")} ご予約ボイスボット / Reservation voicebot</h1>
  <p>録音ボタンを押して話しかけてください。お名前・日時・人数・ご要望をうかがい、内容を確認してから予約します。</p>
  <p>Press record and talk: the agent takes your name, date and time, party size and requests,
  reads the booking back, and books it once you agree.</p>
</div>
"""

ENGINE_LABELS = {"realtime": "通話 / Call", "pipeline": "通話（パイプライン）/ Call (pipeline)"}
ENGINE_CHOICES = {
    "realtime": "リアルタイム音声 / Realtime (speech to speech)",
    "pipeline": "パイプライン / Pipeline (speech-to-text → chat model → text-to-speech)",
}

KEY_HELP = """
**OpenAI APIキーが必要です / An OpenAI API key is needed.**
Spaceを複製して Settings → Secrets に `OPENAI_API_KEY` を追加するか、下の「設定」欄にキーを貼り付けてください。
Duplicate this Space and add `OPENAI_API_KEY` under Settings → Secrets, or paste a key in **Settings** below
(it is used for your calls only and never stored).
"""

with gr.Blocks(
    title=f"{config.name('en')} reservation voicebot",
    css_paths=[ASSETS / "style.css"],
    head_paths=[ASSETS / "head.html"],
    theme=gr.themes.Soft(primary_hue="orange"),
) as demo:
    gr.HTML(HEADER)
    if os.environ.get("SPACE_ID"):
        gr.DuplicateButton("このSpaceを複製 / Duplicate this Space", size="sm")
    if not has_env_key:
        gr.Markdown(KEY_HELP, elem_id="key-help")
    if turn_help := missing_turn_warning():
        gr.Markdown(turn_help, elem_id="turn-help")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            boxes, calls = {}, {}
            for engine in ENGINES:  # one call widget per voice engine; Settings pick which one shows
                with gr.Column(elem_classes=engine_classes(engine, settings.engine)) as boxes[engine]:
                    calls[engine] = WebRTC(
                        label=ENGINE_LABELS[engine],
                        modality="audio",
                        mode="send-receive",
                        rtc_configuration=rtc_configuration(),
                        server_rtc_configuration=None if os.environ.get("SPACE_ID") else {"iceServers": []},
                        full_screen=False,
                        elem_id=f"call-{engine}",
                        button_labels={"start": "録音して話す / Record", "stop": "通話を終了 / Hang up"},
                    )
            card = gr.HTML(idle_card(config.default_language), elem_id="reservation-card")
            ics = gr.DownloadButton(
                "📅 カレンダーに追加 / Add to calendar (.ics)", visible=False, size="sm", elem_id="booking-ics"
            )
            with gr.Accordion("設定 / Settings", open=not has_env_key):
                language = gr.Radio(
                    [("日本語", "ja"), ("English", "en")], value=config.default_language, label="言語 / Language"
                )
                voice = gr.Dropdown(list(VOICES), value=settings.voice, label="声 / Voice")
                engine_choice = gr.Radio(
                    [(ENGINE_CHOICES[engine], engine) for engine in ENGINES],
                    value=settings.engine,
                    label="エンジン / Voice engine",
                    elem_id="engine",
                )
                api_key = gr.Textbox(
                    label="OpenAI APIキー / API key",
                    type="password",
                    placeholder="sk-…",
                    visible=not has_env_key,
                    elem_id="api-key",
                )
        with gr.Column(scale=1, min_width=320):
            transcript = gr.Chatbot(
                type="messages",
                label="会話 / Transcript",
                elem_id="transcript",
                height=520,
                show_copy_all_button=True,
                allow_tags=False,
            )

    for engine, call in calls.items():
        call.stream(
            handlers[engine],
            inputs=[call, language, voice, api_key],
            outputs=[call],
            concurrency_limit=settings.max_concurrent_calls,
            time_limit=settings.hard_time_limit_s,
        )
        # Each call streams its updates for as long as it lasts, so this event must not share one queue slot.
        call.on_additional_outputs(
            show_call, outputs=[transcript, card, ics], concurrency_limit=None, show_progress="hidden"
        )
    language.change(idle_card, inputs=[language], outputs=[card], queue=False)
    engine_choice.change(
        lambda chosen: [gr.update(elem_classes=engine_classes(engine, chosen)) for engine in boxes],
        inputs=[engine_choice],
        outputs=list(boxes.values()),
        queue=False,
    )

if __name__ == "__main__":
    phone_handler = handlers[settings.engine]  # a caller has no Settings: the phone uses VOICE_ENGINE
    if "--phone" in sys.argv:  # a temporary phone number from fastrtc's FastPhone (needs HF_TOKEN)
        run_phone(phone_handler, config=config, settings=settings)
    elif "--server" in sys.argv or os.environ.get("VOICEBOT_SERVER") == "1":  # + Twilio line, offer route, /outputs
        serve(build_server(phone_handler, ui=demo, config=config, settings=settings))
    else:
        share_call_limit(demo, settings.max_concurrent_calls)
        freeze_startup_heap()
        demo.launch()
