"""The server as `python app.py --server` builds it, in a thread of the test process: for phone and text tests.

`running_server` builds it from the environment the test set (`Settings.load()`), with a scripted fake as the
model, a small page of the same shape as app.py's, and `OWNER` for the live feed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pytest
import uvicorn
from fastapi import FastAPI
from fastrtc import WebRTC

from components.console.access import OwnerAccess
from components.engines.realtime import RealtimeHandler
from components.restaurant.config import RestaurantConfig
from components.server.run import build_server
from components.settings import VOICES, AgentSettings, Settings
from components.store.reservations import ReservationStore
from tests import fake_live as live
from tests.fake_realtime import FakeRealtimeServer

KEY = "sk-test-phone"
OWNER_PASSWORD = "owner-password-for-phone-tests"
OWNER = OwnerAccess(password=OWNER_PASSWORD)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving `app` on a free localhost port, in a background thread (with its own event loop)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stream(self) -> Any:
        return self.app.state.stream

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def small_ui(handler: RealtimeHandler, settings: AgentSettings) -> gr.Blocks:
    """The shape of app.py's page: a WebRTC call with language, voice and key inputs, and a transcript."""
    with gr.Blocks() as ui:
        call = WebRTC(modality="audio", mode="send-receive", server_rtc_configuration={"iceServers": []})
        language = gr.Radio(["ja", "en"], value="en")
        voice = gr.Dropdown(list(VOICES), value=settings.voice)
        key = gr.Textbox(type="password")
        visitor = gr.State(None)
        transcript = gr.JSON()
        call.stream(
            handler,
            inputs=[call, language, voice, key, visitor],
            outputs=[call],
            concurrency_limit=settings.max_concurrent_calls,
            time_limit=settings.call_time_limit_s + 15,
        )
        call.on_additional_outputs(lambda view: view, outputs=[transcript], concurrency_limit=None)
    return ui


@contextlib.contextmanager
def running_server(
    config: RestaurantConfig,
    store: ReservationStore,
    fake: FakeRealtimeServer | live.FakeLiveServer | None,
    monkeypatch: pytest.MonkeyPatch,
    engine: type = RealtimeHandler,
    **settings: Any,
) -> Iterator[ServerThread]:
    if fake is not None:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    deployment = Settings.load()  # the environment as the server starts: `phone_env`, and a test's own changes
    agent = dataclasses.replace(deployment.agent, **{"response_timeout_s": 5, **settings})
    handler = engine(config, store, agent)
    ui = small_ui(handler, agent)
    app = build_server(
        handler, ui=ui, config=config, settings=agent, line=deployment.line, feed_wait_s=2.0, access=OWNER
    )
    with ServerThread(app) as server:
        yield server
