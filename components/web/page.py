"""The visitor's side of the page: a call widget per voice engine, the reservation card, Settings and the live
transcript, wired to the engines' handlers.

Only the chosen engine's call widget shows. Its box is hidden by CSS, not `visible=False`: fastrtc sends every
call widget's value along when Settings change, and a widget that was never rendered has none. The widget
itself is never updated either: Gradio would keep a per-session copy of it, without its stream handler.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import gradio as gr
from fastrtc import WebRTC

from components.adapters.fastrtc import follow_outputs
from components.call.allowance import Allowance
from components.call.notices import notice
from components.call.options import CALL_INPUTS, Visitor
from components.call.state import CallView
from components.restaurant.book import StoreUnavailable
from components.restaurant.config import RestaurantConfig
from components.settings import ENGINES, VOICES, Settings
from components.store.reservations import ReservationStore
from components.web.render import card_html, chat_messages
from components.web.takeaway import booking_ics, conversation_files
from components.web.turn import missing_turn_warning, rtc_configuration
from components.web.visitor import PageSessions, page_visitor

ENGINE_LABELS = {
    "live": "通話 / Call",
    "realtime": "通話（リアルタイム）/ Call (Realtime)",
    "pipeline": "通話（パイプライン）/ Call (pipeline)",
}
ENGINE_CHOICES = {
    "live": "GPT-Live（全二重）/ GPT-Live (full duplex)",
    "realtime": "リアルタイム音声 / Realtime (speech to speech)",
    "pipeline": "パイプライン / Pipeline (speech-to-text → chat model → text-to-speech)",
}
KEY_HELP = """
**OpenAI APIキーが必要です / An OpenAI API key is needed.**
Spaceを複製して Settings → Secrets に `OPENAI_API_KEY` を追加するか、下の「設定」欄にキーを貼り付けてください。
Duplicate this Space and add `OPENAI_API_KEY` under Settings → Secrets, or paste a key in **Settings** below
(it is used for your calls only and never stored).
"""


EXAMPLES = {
    "ja": (
        "**こんなふうに話しかけてみてください**\n\n"
        "- 「来週の金曜日の19時に4名で予約したいです。山田です。」\n"
        "- 「予約を変更したいです。予約番号は AS-…です。」\n"
        "- 「ベジタリアンのコースはありますか？」"
    ),
    "en": (
        "**Try saying**\n\n"
        "- “A table for four next Friday at 7 pm, my name is Yamada.”\n"
        "- “I'd like to change my booking, the number is AS-…”\n"
        "- “Do you have a vegetarian course?”"
    ),
}


def header(config: RestaurantConfig) -> str:
    return f"""
<div class="app-header">
  <h1>🍽️ {config.name("ja")} ご予約ボイスボット / Reservation voicebot</h1>
  <p>録音ボタンを押して話しかけてください。お名前・日時・人数・ご要望をうかがい、内容を確認してから予約します。</p>
  <p>Press record and talk: the agent takes your name, date and time, party size and requests,
  reads the booking back, and books it once you agree.</p>
</div>
"""


def engine_classes(engine: str, chosen: str) -> list[str]:
    return [] if engine == chosen else ["engine-hidden"]


class VisitorPage:
    """The call, the card and the transcript, for whoever opens the link."""

    def __init__(
        self, config: RestaurantConfig, settings: Settings, store: ReservationStore, handlers: dict[str, Any]
    ) -> None:
        self.config = config
        self.deployment = settings
        self.settings = settings.agent
        self.store = store
        self.handlers = handlers
        self.has_env_key = bool(self.settings.api_key)
        self.sessions = PageSessions()  # offers are answered only for pages that were loaded (`server.limits`)

    def show_call(self, view: CallView) -> tuple[Any, ...]:
        """The handler's view of the call as the transcript, the card, the booking's calendar file and, once the
        call is over, the conversation to take away."""
        language = view.language
        ics = booking_ics(view, self.config)
        card = card_html(view, self.config.name(language), language)
        record = conversation_files(view, self.config) if view.ended else None
        markdown, data = record or (None, None)
        keep = gr.skip()  # until the call is over, leave the take-away buttons as the last call left them
        return (
            chat_messages(view),
            card,
            gr.update(value=ics, visible=bool(ics)),
            gr.update(value=markdown, visible=True) if record else keep,
            gr.update(value=data, visible=True) if record else keep,
            view,
        )

    def after_call(self, view: CallView | None, visitor: Visitor | None) -> tuple[dict, ...]:
        """The visitor hung up: the conversation as it last stood, to take away, and what is left of their
        allowance now that the call counted (once it is used up, Settings open for their own key)."""
        record = conversation_files(view, self.config)
        markdown, data = record or (None, None)
        banner, refused = self.allowance_banner(visitor)
        return (
            gr.update(value=markdown, visible=bool(record)),
            gr.update(value=data, visible=bool(record)),
            gr.update(value=banner, visible=bool(banner)),
            gr.update(visible=True) if refused else gr.skip(),
            gr.update(open=True) if refused else gr.skip(),
        )

    def welcome(self, language: str, request: gr.Request) -> tuple[Any, ...]:
        """On page load: who the visitor is, and whether (and how much) they may call on the restaurant's key."""
        visitor = page_visitor(request, self.settings.demo)
        self.sessions.loaded(request.session_hash)
        banner, refused = self.allowance_banner(visitor)
        return (
            visitor,
            gr.update(value=banner, visible=bool(banner)),
            gr.update(visible=not self.has_env_key or refused),
            gr.update(open=not self.has_env_key or refused),
            gr.update(placeholder=EXAMPLES["en" if language == "en" else "ja"]),
        )

    def allowance_banner(self, visitor: Visitor | None) -> tuple[str, bool]:
        """What the visitor is told about calls on the restaurant's key (both languages), and whether they are
        refused (then Settings open for their own key)."""
        if not self.has_env_key or visitor is None:
            return "", False
        allowance = Allowance(self.settings.demo, self.store.usage, self.config)
        now = dt.datetime.now(dt.UTC)
        left = None
        try:
            refusal = allowance.refusal(visitor, now)
            if refusal is None and self.settings.demo.calls_per_visitor is not None:
                used = self.store.usage.visitor_calls(allowance.day(now), visitor.id)
                left = max(0, self.settings.demo.calls_per_visitor - used)
        except StoreUnavailable:
            refusal = notice("allowance_unavailable", "own_key") if self.settings.demo.active else None
        if refusal:
            return refusal, True
        return (notice("allowance_left", calls=left) if left is not None else ""), False

    def examples(self, language: str) -> dict:
        return gr.update(placeholder=EXAMPLES["en" if language == "en" else "ja"])

    def idle_card(self, language: str) -> str:
        return card_html(None, self.config.name(language), language)

    def build(self, page: gr.Blocks) -> None:
        if not self.has_env_key:
            gr.Markdown(KEY_HELP, elem_id="key-help")
        visitor = gr.State(None)
        last_view = gr.State(None)  # the call's latest view, for what the visitor takes away after hanging up
        banner = gr.Markdown(visible=False, elem_id="allowance")
        if turn_help := missing_turn_warning(self.deployment):
            gr.Markdown(turn_help, elem_id="turn-help")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=320):
                boxes, calls = self._call_widgets()
                card = gr.HTML(self.idle_card(self.config.default_language), elem_id="reservation-card", padding=False)
                ics = gr.DownloadButton(
                    "📅 カレンダーに追加 / Add to calendar (.ics)", visible=False, size="sm", elem_id="booking-ics"
                )
                with gr.Row():
                    markdown = gr.DownloadButton(
                        "会話を保存 / Save the conversation (.md)", visible=False, size="sm", elem_id="conversation-md"
                    )
                    data = gr.DownloadButton(
                        "会話を保存 / Save the conversation (.json)",
                        visible=False,
                        size="sm",
                        elem_id="conversation-json",
                    )
                with gr.Accordion("設定 / Settings", open=not self.has_env_key) as settings_box:
                    language = gr.Radio(
                        [("日本語", "ja"), ("English", "en")],
                        value=self.config.default_language,
                        label="言語 / Language",
                    )
                    voice = gr.Dropdown(list(VOICES), value=self.settings.voice, label="声 / Voice")
                    engine_choice = gr.Radio(
                        [(ENGINE_CHOICES[engine], engine) for engine in ENGINES],
                        value=self.settings.engine,
                        label="エンジン / Voice engine",
                        elem_id="engine",
                    )
                    api_key = gr.Textbox(
                        label="OpenAI APIキー / API key",
                        type="password",
                        placeholder="sk-…",
                        visible=not self.has_env_key,
                        elem_id="api-key",
                    )
            with gr.Column(scale=1, min_width=320):
                transcript = gr.Chatbot(
                    type="messages",
                    label="会話 / Transcript",
                    elem_id="transcript",
                    height=520,
                    allow_tags=True,  # custom tags are kept as text; sanitising still strips what could run
                    placeholder=EXAMPLES["en" if self.config.default_language == "en" else "ja"],
                )
        page.load(
            self.welcome, inputs=[language], outputs=[visitor, banner, api_key, settings_box, transcript], queue=False
        )
        for engine, call in calls.items():
            chosen = {"language": language, "voice": voice, "api_key": api_key, "visitor": visitor}
            call.stream(
                self.handlers[engine],
                inputs=[call, *(chosen[name] for name in CALL_INPUTS)],
                outputs=[call],
                concurrency_limit=self.settings.max_concurrent_calls,
                time_limit=self.settings.hard_time_limit_s,
            )
            # Each call streams its updates for as long as it lasts, and only a call this process took: a made-up
            # call id ends at once, so a flood of them neither holds a slot nor delays a real call's views (no
            # shared limit to fill; `web.guard` bounds how many any one address may start).
            follow_outputs(
                call, self.show_call, [transcript, card, ics, markdown, data, last_view], concurrency_limit=None
            )
            call.start_recording(lambda: (gr.update(visible=False),) * 2, outputs=[markdown, data], queue=False)
            call.stop_recording(
                self.after_call,
                inputs=[last_view, visitor],
                outputs=[markdown, data, banner, api_key, settings_box],
                queue=False,
            )
        language.change(self.idle_card, inputs=[language], outputs=[card], queue=False)
        language.change(self.examples, inputs=[language], outputs=[transcript], queue=False)
        engine_choice.change(
            lambda chosen: [gr.update(elem_classes=engine_classes(engine, chosen)) for engine in boxes],
            inputs=[engine_choice],
            outputs=list(boxes.values()),
            queue=False,
        )

    def _call_widgets(self) -> tuple[dict[str, gr.Column], dict[str, WebRTC]]:
        """One call widget per voice engine; Settings pick which one shows."""
        boxes, calls = {}, {}
        for engine in ENGINES:
            with gr.Column(elem_classes=engine_classes(engine, self.settings.engine)) as boxes[engine]:
                calls[engine] = WebRTC(
                    label=ENGINE_LABELS[engine],
                    modality="audio",
                    mode="send-receive",
                    rtc_configuration=rtc_configuration(self.deployment),
                    server_rtc_configuration=None if self.deployment.on_space else {"iceServers": []},
                    full_screen=False,
                    elem_id=f"call-{engine}",
                    button_labels={"start": "録音して話す / Record", "stop": "通話を終了 / Hang up"},
                )
        return boxes, calls
