"""Plays Twilio's part of a phone call, so tests can call the server the way a real phone number does.

Twilio's side of a call, as far as the server can tell (https://www.twilio.com/docs/voice/media-streams):

* the voice webhook: `POST /telephone/incoming` with form fields (`CallSid`, `From`, ...), signed with the
  account's auth token in `X-Twilio-Signature` (`incoming`, `signed_post`);
* the Media Stream, a WebSocket to the `<Stream url>` of the TwiML: `connected`, then `start` (streamSid,
  callSid, `audio/x-mulaw` 8000 Hz mono, the `<Parameter>`s as `customParameters`), then a `media` message
  every 20 ms for as long as the call lasts (silence included, 160 mu-law bytes each), and `stop` on hang-up;
* from the server it takes `media` (played in order, in real time), `mark` (echoed back once the audio sent
  before it has played, or at once on `clear`), and `clear` (drops everything buffered).

`TwilioCaller` does all of that with a simulated play-out clock and records what the caller heard.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.speech import Echo, speech_pcm

RATE = 8000
FRAME = RATE // 50  # 20 ms, as Twilio sends it
SILENCE = b"\xff" * FRAME  # mu-law of 0

# ---- G.711 mu-law -----------------------------------------------------------------------------------

_BIAS, _CLIP = 0x84, 32635
_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def mulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 PCM to G.711 mu-law bytes, exactly as `audioop.lin2ulaw(pcm, 2)` (14-bit, as the standard has it)."""
    x = np.asarray(pcm, dtype=np.int32).ravel() >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), 8159) + (_BIAS >> 2)
    segment = np.searchsorted(_SEGMENT_ENDS, magnitude)
    code = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    return (np.where(segment >= 8, 0x7F, code) ^ mask).astype(np.uint8).tobytes()


def mulaw_decode(data: bytes) -> np.ndarray:
    """G.711 mu-law bytes to int16 PCM."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def new_sid(prefix: str) -> str:
    """A Twilio-style id: two letters and 32 hex digits (`CA...` call, `MZ...` stream, `AC...` account)."""
    return prefix + secrets.token_hex(16)


# ---- the webhook --------------------------------------------------------------------------------------


@dataclass
class TwiML:
    """A TwiML answer: its raw text and the parsed document."""

    text: str
    root: ET.Element

    @property
    def verbs(self) -> list[str]:
        return [child.tag for child in self.root]

    def says(self) -> list[ET.Element]:
        return self.root.findall("Say")

    @property
    def stream(self) -> ET.Element | None:
        return self.root.find("Connect/Stream")

    @property
    def stream_url(self) -> str | None:
        return None if self.stream is None else self.stream.get("url")

    @property
    def parameters(self) -> dict[str, str]:
        if self.stream is None:
            return {}
        return {p.get("name", ""): p.get("value", "") for p in self.stream.findall("Parameter")}

    @property
    def action(self) -> str | None:
        connect = self.root.find("Connect")
        return None if connect is None else connect.get("action")


def signed_post(
    url: str,
    fields: dict[str, str],
    auth_token: str | None = None,
    *,
    sign_url: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a webhook as Twilio does: form-encoded, signed over `sign_url` (default `url`) if a token is given."""
    headers = dict(headers or {})
    if auth_token is not None:
        headers["X-Twilio-Signature"] = RequestValidator(auth_token).compute_signature(sign_url or url, fields)
    return httpx.post(url, data=fields, headers=headers, timeout=10)


def parse_twiml(response: httpx.Response) -> TwiML:
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(("application/xml", "text/xml")), response.headers
    return TwiML(response.text, ET.fromstring(response.text))


def incoming(
    base_url: str,
    call_sid: str,
    auth_token: str | None = None,
    *,
    sign_url: str | None = None,
    headers: dict[str, str] | None = None,
    caller: str = "+819000000001",
) -> httpx.Response:
    """Twilio's voice webhook for a new inbound call from `caller`."""
    fields = {
        "CallSid": call_sid,
        "AccountSid": "AC" + "0" * 32,
        "From": caller,
        "To": "+815000000002",
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    url = base_url.rstrip("/") + "/telephone/incoming"
    return signed_post(url, fields, auth_token, sign_url=sign_url, headers=headers)


# ---- the media stream ---------------------------------------------------------------------------------


@dataclass
class Heard:
    """One `media` message from the server, as the caller's phone played it."""

    at: float  # when it starts playing (monotonic)
    samples: int
    rms: float


@dataclass
class TwilioCaller:
    """One Media Stream: a caller who talks (espeak-ng audio as mu-law) and listens in real time.

    Use as `async with TwilioCaller(ws_url, parameters=twiml.parameters) as call: ...`; leaving the block
    hangs up (`stop`) unless the server already did.
    """

    ws_url: str
    parameters: dict[str, str] = field(default_factory=dict)
    stream_sid: str = field(default_factory=lambda: new_sid("MZ"))
    call_sid: str = field(default_factory=lambda: new_sid("CA"))
    media_format: dict[str, Any] = field(
        default_factory=lambda: {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    )
    received: list[dict[str, Any]] = field(default_factory=list)  # every message from the server, in order
    heard: list[Heard] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    closed_at: float | None = None
    close_code: int | None = None
    _ws: ClientConnection | None = None
    _mic: deque = field(default_factory=deque)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _play_end: float = 0.0
    _pending_marks: list[tuple[float, str]] = field(default_factory=list)
    _seq: int = 0
    _stopped: bool = False
    echo: Echo | None = None  # a handset that plays what the caller hears back into its microphone

    async def __aenter__(self) -> TwilioCaller:
        self._ws = await connect(self.ws_url, max_size=2**20)
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send(
            {
                "event": "start",
                "start": {
                    "accountSid": "AC" + "0" * 32,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": self.media_format,
                    "customParameters": self.parameters,
                },
                "streamSid": self.stream_sid,
            }
        )
        self._tasks = [asyncio.create_task(self._microphone()), asyncio.create_task(self._listen())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.hang_up()

    async def hang_up(self) -> None:
        """The caller hangs up: `stop`, then close (as Twilio does)."""
        if not self._stopped and self.closed_at is None:
            self._stopped = True
            try:
                await self._send({"event": "stop", "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid}})
            except ConnectionClosed:
                pass
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
            if self.closed_at is None:
                self.closed_at = time.monotonic()

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        self._seq += 1
        await self._ws.send(json.dumps({**message, "sequenceNumber": str(self._seq)}))

    async def _microphone(self) -> None:
        """A `media` message every 20 ms, in real time: speech when the caller talks, silence otherwise."""
        chunk, next_at = 0, time.monotonic()
        try:
            while True:
                payload = self._with_echo(self._mic.popleft() if self._mic else SILENCE)
                chunk += 1
                media = {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20), "payload": ""}
                media["payload"] = base64.b64encode(payload).decode("ascii")
                await self._send({"event": "media", "streamSid": self.stream_sid, "media": media})
                self._echo_due_marks()
                next_at += FRAME / RATE
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        except ConnectionClosed:
            pass

    def _with_echo(self, payload: bytes) -> bytes:
        """The microphone's frame, with the echo of what the speaker is playing right now mixed in."""
        if self.echo is None:
            return payload
        return mulaw_encode(self.echo.into(mulaw_decode(payload), time.monotonic()))

    def _echo_due_marks(self) -> None:
        now = time.monotonic()
        due = [name for at, name in self._pending_marks if at <= now]
        self._pending_marks = [(at, name) for at, name in self._pending_marks if at > now]
        for name in due:
            self._spawn_mark(name)

    def _spawn_mark(self, name: str) -> None:
        self.marks_echoed.append(name)
        task = asyncio.create_task(self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}}))
        self._tasks.append(task)

    async def _listen(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                self.received.append(message)
                event, now = message.get("event"), time.monotonic()
                if event == "media":
                    pcm = mulaw_decode(base64.b64decode(message["media"]["payload"]))
                    start = max(now, self._play_end)
                    self._play_end = start + pcm.size / RATE
                    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0
                    self.heard.append(Heard(start, pcm.size, rms))
                    if self.echo is not None:
                        self.echo.played(start, pcm, RATE)
                elif event == "clear":
                    self.clears.append(now)
                    self.heard = [h for h in self.heard if h.at <= now]  # what was buffered is never played
                    if self.echo is not None:
                        self.echo.clear(now)
                    self._play_end = now
                    for _, name in self._pending_marks:
                        self._spawn_mark(name)
                    self._pending_marks = []
                elif event == "mark":
                    self._pending_marks.append((max(now, self._play_end), message["mark"]["name"]))
        except ConnectionClosed:
            pass
        finally:
            self.closed_at = self.closed_at or time.monotonic()
            self.close_code = self._ws.close_code

    # ---- what the caller does and hears ---------------------------------------------------------------

    async def say(self, text: str) -> None:
        """Speak `text` (espeak-ng, 8 kHz, mu-law) and return once it has all been sent."""
        audio = mulaw_encode(speech_pcm(text, RATE))
        audio += SILENCE[: (-len(audio)) % FRAME]
        self._mic.extend(audio[i : i + FRAME] for i in range(0, len(audio), FRAME))
        while self._mic:
            await asyncio.sleep(0.02)

    @property
    def hung_up_by_server(self) -> bool:
        return self.closed_at is not None and not self._stopped

    def media_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("event") == "media"]

    def events(self) -> list[str]:
        return [m.get("event", "?") for m in self.received]

    def audible_ms(self, since: float = 0.0, until: float | None = None, threshold: float = 200.0) -> float:
        """Milliseconds of clearly audible audio the caller heard (or will hear from its buffer) in the window."""
        end = float("inf") if until is None else until
        return sum(h.samples for h in self.heard if since <= h.at < end and h.rms > threshold) * 1000 / RATE

    async def until(self, predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; events so far: {self.events()[-12:]}")

    async def until_quiet(self, quiet_s: float = 0.5, timeout: float = 20.0) -> None:
        """Wait until the caller has heard nothing new for `quiet_s` (the agent's answer finished playing)."""

        def quiet() -> bool:
            now = time.monotonic()
            return now >= self._play_end + quiet_s if self.heard else True

        await self.until(quiet, timeout, "the agent to finish speaking")
