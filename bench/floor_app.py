"""The floor: the least a fastrtc voice bot can do, served like the app, to measure fastrtc's own cost.

A fastrtc `Stream` (WebRTC offer route, stock Gradio UI at `/`, and fastrtc's own Twilio routes,
`/telephone/incoming` and `/telephone/handler`) whose handler plays the benchmark's conversation by itself:
no OpenAI client, no tools, no transcript. It detects the caller's turns with the fake's VAD rule (a turn
with less than `NOISE_MAX_MS` of loud audio is a noise, left unanswered), waits the same think time, then
emits the answer (the same synthetic voice the fake sends) and, when the caller talks over it, drops it and
clears fastrtc's queue; on the phone it also tells Twilio to drop what it has buffered (`{"event": "clear"}`,
sent through the handler's channel, which on the phone is the Media Stream). It emits the way the app's
handler does, 40 ms chunks at most `LEAD_S` ahead of real time, waiting for each to be due rather than
returning nothing (fastrtc's phone loop sleeps 20 ms after every empty `emit`): dumping a whole answer at
once would make fastrtc resample seconds of audio in one burst and delay the first frame, so the floor
would measure that burst rather than the transport. What is left between its first audible frame and the caller's ear is
fastrtc and WebRTC (or fastrtc and the Media Stream).

It stamps, with `time.monotonic()`, the moment `emit` returns the first audio of each answer ("emit") and
the moment its VAD hears the caller start ("speech_started"), and sends both over the call's data channel
(WebRTC), or keeps them for `GET /bench/stamps` (phone: the Media Stream carries Twilio's messages only):
the caller measures from those as it measures the app from the fake's stamps of its first audio delta and
of its `input_audio_buffer.speech_started`.

Run (as the benchmark does): `PYTHONPATH=. python bench/floor_app.py`; `GRADIO_SERVER_NAME`/`PORT` choose
where it listens, `MAX_CONCURRENT_CALLS` how many calls it takes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import time
from collections import deque

import gradio as gr
import numpy as np
import uvicorn
from fastapi import FastAPI
from fastrtc import AsyncStreamHandler, Stream
from fastrtc.utils import get_current_context

from bench import conversation as talk
from tests.fake_realtime import synth_voice

RATE = 24_000
CHUNK = RATE * 40 // 1000  # 40 ms, the chunk the app's handler emits too
LEAD_S = 0.12  # how far ahead of real time audio is handed to fastrtc, as the app's handler does
IDLE_S = 0.05  # how long `emit` waits before returning nothing (fastrtc calls it in a loop)
WINDOW = RATE * 20 // 1000
ANSWERS = {
    ms: np.frombuffer(synth_voice(ms), dtype=np.int16)
    for ms in (talk.GREETING_MS, talk.LONG_ANSWER_MS, talk.SHORT_ANSWER_MS)
}
"""The fake's synthetic voice, made once rather than on the event loop at every answer."""
PHONE_STAMPS: dict[str, dict[str, list[float]]] = {}
"""Each phone call's stamps, by its streamSid, served at `GET /bench/stamps`."""


class EnergyVad:
    """The fake Realtime server's turn detection: loud 20 ms windows start speech, quiet ones end it."""

    def __init__(self) -> None:
        self.speaking = False
        self.turn_loud_ms = 0  # loud audio in the turn going on (or just ended)
        self._loud_ms = self._quiet_ms = 0
        self._rest = np.zeros(0, dtype=np.int16)

    def feed(self, pcm: np.ndarray) -> list[str]:
        """Events ("start", "stop") found in this audio (24 kHz int16 mono)."""
        events = []
        samples = np.concatenate([self._rest, pcm])
        whole = samples.size // WINDOW * WINDOW
        self._rest = samples[whole:]
        for window in samples[:whole].reshape(-1, WINDOW).astype(np.float64):
            rms = math.sqrt(float(np.mean(window * window)))
            loud = rms > 0 and 20 * math.log10(rms / 32768) >= talk.VAD_THRESHOLD_DBFS
            if not self.speaking:
                self._loud_ms = self._loud_ms + 20 if loud else 0
                if self._loud_ms >= talk.SPEECH_START_MS:
                    self.speaking, self._quiet_ms, self.turn_loud_ms = True, 0, self._loud_ms
                    events.append("start")
            else:
                self.turn_loud_ms += 20 if loud else 0
                self._quiet_ms = 0 if loud else self._quiet_ms + 20
                if self._quiet_ms >= talk.SILENCE_MS:
                    self.speaking, self._loud_ms = False, 0
                    events.append("stop")
        return events


class FloorHandler(AsyncStreamHandler):
    """Greets, answers each caller turn after the think time, stops at once when talked over."""

    def __init__(self) -> None:
        super().__init__(expected_layout="mono", output_sample_rate=RATE, input_sample_rate=RATE)
        self._vad = EnergyVad()
        self._answers = itertools.cycle(talk.answer_lengths_ms(1))
        self._pending: deque[np.ndarray] = deque()
        self._play_end = 0.0  # when the audio handed over so far has played out
        self._first_of_answer = False
        self._arrived = asyncio.Event()
        self._thinking: asyncio.Task | None = None
        self._stream_sid: str | None = None  # on the phone

    def copy(self) -> FloorHandler:
        return FloorHandler()

    async def start_up(self) -> None:
        if self.phone_mode:
            self._stream_sid = get_current_context().webrtc_id
            PHONE_STAMPS[self._stream_sid] = {"emit": [], "speech_started": []}
        self._answer_later(talk.GREETING_MS)

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        for event in self._vad.feed(frame[1].ravel()):
            if event == "start":
                await self._barge_in()
            elif self._vad.turn_loud_ms >= talk.NOISE_MAX_MS:
                self._answer_later(next(self._answers))

    async def emit(self) -> tuple[int, np.ndarray] | None:
        if not self._pending:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), IDLE_S)
            except TimeoutError:
                return None
        wait = self._play_end - LEAD_S - time.monotonic()
        if wait > 0:  # wait for the chunk to be due, as the app's playout does (a `None` costs the phone 20 ms)
            await asyncio.sleep(min(wait, IDLE_S))
            if wait > IDLE_S or not self._pending:
                return None
        if not self._pending:
            return None
        now = time.monotonic()
        chunk = self._pending.popleft()
        self._play_end = max(now, self._play_end) + chunk.size / RATE
        if self._first_of_answer:
            self._first_of_answer = False
            await self._stamp("emit")
        return RATE, chunk

    def _answer_later(self, audio_ms: int) -> None:
        async def answer() -> None:
            await asyncio.sleep(talk.THINK_S)
            pcm = ANSWERS[audio_ms]
            self._pending.extend(pcm[i : i + CHUNK] for i in range(0, pcm.size, CHUNK))
            self._first_of_answer = True
            self._arrived.set()

        self._thinking = asyncio.create_task(answer())

    async def _barge_in(self) -> None:
        await self._stamp("speech_started")
        if self._thinking is not None:
            self._thinking.cancel()
        self._pending.clear()
        self._play_end = time.monotonic()
        self.clear_queue()
        if self._stream_sid is not None:
            await self.send_message(json.dumps({"event": "clear", "streamSid": self._stream_sid}))

    async def _stamp(self, what: str) -> None:
        if self._stream_sid is not None:
            PHONE_STAMPS[self._stream_sid][what].append(time.monotonic())
        else:
            await self.send_message(json.dumps({"bench": what, "t": time.monotonic()}))


def build_app(max_calls: int) -> FastAPI:
    """The floor's server: fastrtc's routes (the phone's too), its stock UI at `/`, like `python app.py --server`;
    and the phone calls' stamps at `GET /bench/stamps`."""
    stream = Stream(
        FloorHandler(),
        modality="audio",
        mode="send-receive",
        concurrency_limit=max_calls,
        server_rtc_configuration={"iceServers": []},  # as the app's, off a Space
        verbose=False,
    )
    app = FastAPI()
    stream.mount(app)
    app.get("/bench/stamps")(lambda: PHONE_STAMPS)
    return gr.mount_gradio_app(app, stream.ui, path="/")


if __name__ == "__main__":
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    uvicorn.run(build_app(int(os.environ.get("MAX_CONCURRENT_CALLS", "10"))), host=host, port=port)
