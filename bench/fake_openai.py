"""The fake OpenAI HTTP API of the pipeline benchmark: N conversations at once, told apart, every stage stamped.

`tests.fake_openai_http.FakeOpenAIServer` plays one scripted conversation, its turns taken in order by
whoever asks. The benchmark's N calls talk at once, so `BenchOpenAIServer` answers each request by the
conversation it belongs to, and keeps the parent's server, wire format (SSE chunks), key check and log:

- a chat request with only the system prompt opens a conversation, numbered in order; the number is
  written into every sentence the fake says (`"[7] Hello, ..."`), so the model's own words carry it back
  in every later request, as a real conversation's content would: the history of a chat request, the
  agent's last words the app gives speech-to-text as its `prompt`, the sentence a speech request reads;
- speech-to-text: an upload with less than `NOISE_MAX_MS` of loud audio is a noise and reads as nothing;
  any other is the conversation's next caller line, the question and the interruption in turn;
- chat: the answer to that line (`REPLIES`); speech: the sentence's synthetic voice, of its planned length.

Its timings are fixed and realistic, and constants: speech-to-text answers `STT_LATENCY_S` after the
request; a completion's first chunk comes `CHAT_TTFT_S` after the request, then a 6-character piece every
`CHAT_PIECE_S`; speech's first bytes come `TTS_TTFB_S` after the request, then 100 ms of audio every
`PACE` × 100 ms. Each request's arrival and first bytes are stamped (`bench.stamps`), so that the
benchmark can tell the fake's share of a turn from the app's.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import re
import time
import wave
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from bench import conversation as talk
from bench.stamps import ConnectionStamps, HeardTurn, SpokenReply
from tests.fake_openai_http import FakeOpenAIServer, Recorded, _Reply
from tests.fake_realtime import SAMPLE_RATE, synth_voice

STT_LATENCY_S = 0.25
CHAT_TTFT_S = 0.30
CHAT_PIECE_S = 0.02
"""One 6-character piece of text every 20 ms: about 300 characters (75 tokens) a second, a small current model."""
TTS_TTFB_S = 0.20
WINDOW_MS = 20

REPLIES: dict[str, tuple[tuple[str, int], ...]] = {
    "greeting": (("Hello, this is AI-SHIFT.", 800), ("How can I help?", 700)),
    "long": (
        ("On Friday evening we have a table for two at six.", 2600),
        ("There is also a table for four at seven, by the window.", 2800),
        ("And the counter has seats free all evening.", 2600),
    ),
    "short": (("Of course.", 1000), ("Shall I book seven o'clock for you?", 2000)),
}
"""Each answer's sentences and the milliseconds of voice each is spoken in (they add up to the conversation's)."""
AUDIO_MS = {sentence: ms for reply in REPLIES.values() for sentence, ms in reply}
ANSWERS = {talk.QUESTION: "long", talk.INTERRUPTION: "short"}
TOKEN = re.compile(r"\[(\d+)\] ")


def loudness(wav_bytes: bytes) -> tuple[float, float, float]:
    """An upload's length, its loud audio (20 ms windows at or above the VAD threshold) and the silence after
    its last loud window, all in ms."""
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    window = rate * WINDOW_MS // 1000
    windows = pcm[: pcm.size // window * window].reshape(-1, window).astype(np.float64)
    rms = np.sqrt(np.mean(windows * windows, axis=1)) if windows.size else np.zeros(0)
    loud = np.flatnonzero(rms >= 32768 * 10 ** (talk.VAD_THRESHOLD_DBFS / 20))
    audio_ms = pcm.size * 1000 / rate
    last_loud_ms = (loud[-1] + 1) * WINDOW_MS if loud.size else 0.0
    return audio_ms, loud.size * WINDOW_MS, audio_ms - last_loud_ms


@dataclass
class _Conversation:
    number: int
    next_line: int = 0  # 0: the question is next, 1: the interruption
    turns: list[HeardTurn] = field(default_factory=list)
    replies: list[SpokenReply] = field(default_factory=list)


class BenchOpenAIServer(FakeOpenAIServer):
    """The fake HTTP API for N concurrent benchmark calls (see the module docstring)."""

    def __init__(self) -> None:
        latency = {"transcriptions": STT_LATENCY_S, "chat": CHAT_TTFT_S, "speech": TTS_TTFB_S}
        super().__init__(api_key=talk.KEY, latency=latency, delta_delay_s=CHAT_PIECE_S, speech_pace=talk.PACE)
        self._conversations: dict[int, _Conversation] = {}
        self._voices = {ms: synth_voice(ms, seed=ms) for ms in set(AUDIO_MS.values())}

    # ---- what the benchmark asks ---------------------------------------------------------------------

    def connections(self) -> list[int]:
        """The conversations opened so far (one per call that asked for its greeting)."""
        with self._lock:
            return list(self._conversations)

    def stamps(self) -> list[ConnectionStamps]:
        with self._lock:
            conversations = copy.deepcopy(list(self._conversations.values()))
        return [
            ConnectionStamps(c.number, [r.speech_at for r in c.replies if r.speech_at], [], c.turns, c.replies)
            for c in conversations
        ]

    # ---- telling conversations apart -----------------------------------------------------------------

    def _find(self, text: str) -> _Conversation | None:
        match = TOKEN.search(text)
        with self._lock:
            found = self._conversations.get(int(match.group(1))) if match else None
        if found is None:
            self._problem(f"a request of no known conversation: {text[:80]!r}")
        return found

    def _reply_to(self, messages: list[dict[str, Any]]) -> tuple[_Conversation | None, str]:
        """The conversation a completion belongs to, and which answer it gets."""
        if [m.get("role") for m in messages] == ["system"]:
            with self._lock:
                conversation = _Conversation(len(self._conversations) + 1)
                self._conversations[conversation.number] = conversation
            return conversation, "greeting"
        said = " ".join(str(m.get("content") or "") for m in messages if m.get("role") == "assistant")
        last = messages[-1] if messages else {}
        kind = ANSWERS.get(str(last.get("content")), "") if last.get("role") == "user" else ""
        if not kind:
            self._problem(f"a completion the benchmark does not script: last message {str(last)[:120]}")
        return self._find(said), kind or "short"

    # ---- the endpoints -------------------------------------------------------------------------------

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        asked = time.monotonic()  # the whole request has arrived
        upload = next((value for value in form.values() if isinstance(value, web.FileField)), None)
        data = upload.file.read() if upload is not None else b""
        fields = {name: str(value) for name, value in form.items() if not isinstance(value, web.FileField)}
        record = self._record(Recorded("transcriptions", fields | {"bytes": len(data)}, asked))
        if (refused := self._gate(request, record)) is not None:
            return refused
        try:
            audio_ms, loud_ms, silence_ms = loudness(data)
        except (wave.Error, EOFError):
            self._problem("speech-to-text got no WAV")
            audio_ms = loud_ms = silence_ms = 0.0
        conversation = self._find(fields.get("prompt", ""))
        text = ""
        if conversation is not None and loud_ms >= talk.NOISE_MAX_MS:
            with self._lock:
                text = (talk.QUESTION, talk.INTERRUPTION)[conversation.next_line]
                conversation.next_line = 1 - conversation.next_line
        turn = HeardTurn(asked, text, audio_ms, loud_ms, silence_ms)
        if conversation is not None:
            with self._lock:
                conversation.turns.append(turn)
        await asyncio.sleep(self.latency["transcriptions"])
        response = web.json_response({"text": text, "usage": {"type": "duration", "seconds": round(audio_ms / 1000)}})
        await response.prepare(request)
        await response.write_eof()
        turn.answered_at = time.monotonic()
        return response

    async def _json_request(self, request: web.Request, kind: str) -> tuple[dict, float, Recorded, Any]:
        """A JSON request's body, when it had all arrived, its record, and the key check's refusal if any."""
        try:
            body = await request.json()
        except ValueError:
            body = {}
        asked = time.monotonic()  # the whole request has arrived
        record = self._record(Recorded(kind, body, asked))
        return body, asked, record, self._gate(request, record)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, asked, record, refused = await self._json_request(request, "chat")
        if refused is not None:
            return refused
        conversation, kind = self._reply_to(body.get("messages") or [])
        number = conversation.number if conversation is not None else 0
        reply = SpokenReply(kind, [f"[{number}] {sentence}" for sentence, _ in REPLIES[kind]], asked)
        if conversation is not None:
            with self._lock:
                conversation.replies.append(reply)
        text = " ".join(reply.sentences)
        usage = {"prompt_tokens": 1000, "completion_tokens": len(text) // 4, "total_tokens": 1000 + len(text) // 4}
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await asyncio.sleep(self.latency["chat"])
        written = 0
        try:
            for chunk in self._chunks(body, _Reply(text=text), usage):
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
                now = time.monotonic()
                reply.first_byte_at = reply.first_byte_at or now
                written += sum(len(choice["delta"].get("content") or "") for choice in chunk.get("choices", []))
                if reply.sentence_at is None and written >= len(reply.sentences[0]):
                    reply.sentence_at = now
                await asyncio.sleep(self.delta_delay_s)
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:  # the app hung up on it (a barge-in): nothing left to send
            record.cancelled = True
        except asyncio.CancelledError:
            record.cancelled = True
            raise
        return response

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body, asked, record, refused = await self._json_request(request, "speech")
        if refused is not None:
            return refused
        if body.get("response_format") != "pcm":
            self._problem(f"speech asked for {body.get('response_format')!r}, not pcm")
        text = str(body.get("input", ""))
        conversation = self._find(text)
        reply = next((r for r in reversed(conversation.replies) if text in r.sentences), None) if conversation else None
        first = reply is not None and reply.sentences[0] == text and reply.speech_asked_at is None
        if first:
            reply.speech_asked_at = asked
        ms = AUDIO_MS.get(TOKEN.sub("", text, count=1))
        if ms is None:
            self._problem(f"speech of a sentence the fake never said: {text[:80]!r}")
        pcm = self._voices.get(ms) or synth_voice(500)
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        await asyncio.sleep(self.latency["speech"])
        piece = SAMPLE_RATE * 2 // 10  # 100 ms
        try:
            for offset in range(0, len(pcm), piece):
                await response.write(pcm[offset : offset + piece])
                if first and reply.speech_at is None:
                    reply.speech_at = time.monotonic()
                await asyncio.sleep(0.1 * (self.speech_pace or 0))
            await response.write_eof()
        except ConnectionResetError:  # the app hung up on it (a barge-in): nothing left to send
            record.cancelled = True
        except asyncio.CancelledError:
            record.cancelled = True
            raise
        return response
