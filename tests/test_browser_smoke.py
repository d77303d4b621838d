"""Smoke test of the browser test infrastructure (tests/browser.py), independent of the product.

A throwaway fastrtc echo app (written into tmp_path) runs as a subprocess; headless Chromium calls it with an
espeak-ng WAV as its microphone. The test checks the whole path the real browser tests rely on: the WebRTC call
connects on localhost without STUN/TURN, the server hears the caller (it reports received frames through
AdditionalOutputs into the page's HTML and Chatbot), and the page plays the echoed audio (the output meter).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from playwright import sync_api

from tests.browser import (
    AppProcess,
    call_state,
    chromium_session,
    end_call,
    have_browser_tools,
    open_app,
    output_rms,
    page_time_ms,
    snap,
    speech_wav,
    start_call,
    start_output_meter,
    visible_messages,
    wait_for_output,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def browser_tools() -> None:
    """A missing browser is a broken test machine, not a reason to pass: `.ci/run` installs these."""
    assert have_browser_tools(), "needs Debian chromium (/usr/bin/chromium), espeak-ng and sox: see .ci/run"


ECHO_APP = textwrap.dedent(
    '''
    """Throwaway echo app: hears the caller, reports what it heard, and plays it back at 24 kHz."""
    import asyncio
    import itertools
    import time

    import gradio as gr
    import numpy as np
    from fastrtc import AdditionalOutputs, AsyncStreamHandler, WebRTC, wait_for_item

    LOUD_RMS = 0.01
    CALLS = itertools.count(1)


    class Echo(AsyncStreamHandler):
        def __init__(self):
            super().__init__(output_sample_rate=24000, input_sample_rate=48000)
            self.queue = asyncio.Queue()
            self.frames = 0
            self.loud = 0
            self.peak = 0.0
            self.reported = 0.0
            self.call = 0

        def copy(self):
            return Echo()

        async def start_up(self):
            self.call = next(CALLS)

        async def receive(self, frame):
            rate, samples = frame  # 48 kHz mono int16, 20 ms per frame
            x = samples.reshape(-1).astype(np.float32) / 32768.0
            rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
            self.frames += 1
            self.loud += rms > LOUD_RMS
            self.peak = max(self.peak, rms)
            self.queue.put_nowait((24000, samples.reshape(1, -1)[:, ::2].copy()))  # echo, decimated to 24 kHz
            now = time.monotonic()
            if now - self.reported >= 0.5:
                self.reported = now
                self.queue.put_nowait(AdditionalOutputs(self.call, self.frames, self.loud, round(self.peak, 4)))

        async def emit(self):
            return await wait_for_item(self.queue, 0.1)  # never return None in a busy loop


    def show(call, frames, loud, peak):
        card = f"<div id='echo-stats' data-call='{call}' data-loud='{loud}' data-peak='{peak}'>{frames} frames</div>"
        return [{"role": "assistant", "content": f"call {call}: heard {loud} loud frames"}], card


    with gr.Blocks() as demo:
        call = WebRTC(modality="audio", mode="send-receive", label="Call", elem_id="call", full_screen=False,
                      server_rtc_configuration={"iceServers": []})
        transcript = gr.Chatbot(type="messages", elem_id="transcript")
        card = gr.HTML(elem_id="card")
        call.stream(Echo(), inputs=[call], outputs=[call], time_limit=90)
        # queue=True (the default): with queue=False, gradio 5.50 sometimes sends a diff as a full value (its
        # stream-diff cache is keyed by id() of short-lived generators), the page throws, and the call UI freezes.
        # concurrency_limit=None: each call's output stream holds its queue slot for the whole call.
        call.on_additional_outputs(show, outputs=[transcript, card], concurrency_limit=None)

    if __name__ == "__main__":
        demo.launch()
    '''
)


HEARD_CALLER_JS = """(call) => {
  const e = document.querySelector('#echo-stats');
  return !!e && Number(e.dataset.call) === call && Number(e.dataset.loud) >= 10;
}"""


def test_echo_call_round_trip(tmp_path: Path) -> None:
    app = tmp_path / "echo_app.py"
    app.write_text(ECHO_APP, encoding="utf-8")
    wav = speech_wav("Hello, I would like to book a table for two people tomorrow evening.", tmp_path / "caller.wav")

    with (
        AppProcess(app, tmp_path) as server,
        sync_api.sync_playwright() as playwright,
        chromium_session(playwright, wav, tmp_path) as page,
    ):
        open_app(page, server.url)
        start_output_meter(page)
        for call in (1, 2):  # the second call checks hang-up, the server freeing its slot, and a fresh stream
            call_started = page_time_ms(page)
            connect_s = start_call(page, root="#call")
            assert connect_s < 10, f"call {call}: connecting took {connect_s:.1f} s"

            # The server hears the caller: its frame counts reach the page through AdditionalOutputs.
            page.wait_for_function(HEARD_CALLER_JS, arg=call, timeout=20_000)
            assert float(page.locator("#echo-stats").get_attribute("data-peak") or 0) > 0.05
            assert f"call {call}: heard" in page.locator("#transcript").inner_text()

            # The page plays the echo back.
            wait_for_output(page, threshold=0.02, timeout_s=20, since_ms=call_started)
            assert output_rms(page, window_s=3.0) > 0.02

            snap(page, tmp_path, f"echo-call-{call}")
            assert not visible_messages(page, kinds=("error",)), visible_messages(page)
            end_call(page, root="#call")
            assert call_state(page, "#call") == "closed"

    assert "Traceback" not in server.log_text(), server.log_tail()
