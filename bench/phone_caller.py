"""A benchmark phone caller: plays Twilio's side of a call (Media Streams) and logs what reaches its ear.

What `tests/twilio_caller.py` does for the phone tests, made lean enough for 40 callers in one process with
a server under test on the same two cores:

- the voice webhook, `POST /telephone/incoming` (form-encoded, unsigned: the app runs with an empty
  `TWILIO_AUTH_TOKEN`), whose TwiML names the Media Stream's path and its `<Parameter>`s (our app's one-time
  token). The stream is opened on the server's own address: fastrtc's stock TwiML names a `wss://` URL without
  the port, as behind a proxy;
- the Media Stream: `connected`, `start` (`audio/x-mulaw` 8000 Hz mono, the parameters as
  `customParameters`), then one `media` message every 20 ms of the call, speech or silence, from payloads
  encoded once for all callers (`PhoneVoice`), and `stop` on hang-up;
- from the server: `media` (stamped as it arrives and decoded for its level), `clear` (stamped), and `mark`
  (echoed once the audio sent before it would have played, or at once on `clear`, as Twilio does).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from bench.caller import (
    FRAME_S,
    HANG_UP_TIMEOUT_S,
    RATE,
    SEND_SLACK_S,
    Ear,
    Heard,
    Mouth,
    OfferRefused,
    Utterance,
    from_address,
)
from bench.caller import dbfs as level_dbfs
from tests.twilio_caller import mulaw_decode, mulaw_encode, new_sid

PHONE_RATE = 8000
PHONE_FRAME = PHONE_RATE // 50  # 160 mu-law bytes: 20 ms, as Twilio sends
ACCOUNT_SID = "AC" + "0" * 32


class PhoneVoice:
    """The caller's speech as base64 mu-law `media` payloads, 20 ms each, encoded once for every caller."""

    def __init__(self) -> None:
        self.silence = self._payload(np.zeros(PHONE_FRAME, dtype=np.int16))

    @staticmethod
    def _payload(pcm: np.ndarray) -> str:
        return base64.b64encode(mulaw_encode(pcm)).decode("ascii")

    def encode(self, samples: np.ndarray) -> list[str]:
        """One payload per 20 ms of `samples` (8 kHz int16 mono), the last one padded with silence."""
        padded = np.zeros(-(-samples.size // PHONE_FRAME) * PHONE_FRAME, dtype=np.int16)
        padded[: samples.size] = samples
        return [self._payload(frame) for frame in padded.reshape(-1, PHONE_FRAME)]


class PhoneEar(Ear):
    """Logs the bot's `media` messages as they arrive, and the `clear`s that drop what is buffered."""

    def __init__(self) -> None:
        super().__init__()
        self.clears: list[float] = []
        self.play_end = 0.0  # when what arrived so far has played, on a play-out clock started by the audio
        self._samples = 0

    def on_media(self, payload: str, arrival: float) -> None:
        pcm = mulaw_decode(base64.b64decode(payload))
        seconds = pcm.size / PHONE_RATE
        position = self._samples * (RATE // PHONE_RATE)  # in 48 kHz units, like an RTP timestamp
        self.hear(Heard(arrival, len(self.heard), position, level_dbfs(pcm), seconds))
        self._samples += pcm.size
        self.play_end = max(arrival, self.play_end) + seconds

    def on_clear(self, arrival: float) -> None:
        self.clears.append(arrival)
        self.play_end = arrival


class PhoneCaller:
    """One phone call to a fastrtc server's Twilio routes: the webhook, then the Media Stream both ways."""

    def __init__(self, name: str, voice: PhoneVoice) -> None:
        self.webrtc_id = name  # the call's name in the logs, as for a WebRTC caller
        self.stream_sid = new_sid("MZ")
        self.call_sid = new_sid("CA")
        self.earpiece = PhoneEar()
        self.messages: list[tuple[float, dict[str, Any]]] = []  # nothing but Twilio's own events comes back
        self._mouth = Mouth(voice.silence)
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task] = []
        self._marks: list[tuple[float, str]] = []
        self._seq = 0

    async def connect(self, base_url: str, client: httpx.AsyncClient, **_: Any) -> None:
        """Twilio's webhook, then the Media Stream its TwiML connects (refused: `OfferRefused`)."""
        fields = {"CallSid": self.call_sid, "AccountSid": ACCOUNT_SID, "From": "+819000000001"}
        fields |= {"To": "+815000000002", "CallStatus": "ringing", "Direction": "inbound"}
        answer = await client.post(f"{base_url}/telephone/incoming", data=fields, headers=from_address(self.call_sid))
        stream = ET.fromstring(answer.text).find("Connect/Stream") if answer.status_code == 200 else None
        if stream is None:
            raise OfferRefused(f"HTTP {answer.status_code}: {answer.text[:200]}")
        parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        where = urlsplit(stream.get("url", ""))
        try:
            self._ws = await connect(base_url.replace("http", "ws", 1) + where.path, max_size=2**20)
        except WebSocketException as refused:
            raise OfferRefused(f"the Media Stream was refused: {refused}") from None
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        start = {"accountSid": ACCOUNT_SID, "streamSid": self.stream_sid, "callSid": self.call_sid}
        start |= {"tracks": ["inbound"], "customParameters": parameters}
        start["mediaFormat"] = {"encoding": "audio/x-mulaw", "sampleRate": PHONE_RATE, "channels": 1}
        await self._send({"event": "start", "start": start, "streamSid": self.stream_sid})
        self._tasks = [asyncio.create_task(self._microphone()), asyncio.create_task(self._listen())]

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        self._seq += 1
        message["sequenceNumber"] = str(self._seq)
        await self._ws.send(json.dumps(message))

    async def _microphone(self) -> None:
        """A `media` message every 20 ms in real time; marks echoed once their audio has played."""
        started, chunk = time.monotonic(), 0
        with contextlib.suppress(ConnectionClosed):
            while True:
                payload = self._mouth.next_frame(time.monotonic())
                chunk += 1
                media = {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20), "payload": payload}
                await self._send({"event": "media", "streamSid": self.stream_sid, "media": media})
                await self._echo_marks(due_by=time.monotonic())
                await asyncio.sleep(max(0.0, started + chunk * FRAME_S - time.monotonic()))

    async def _echo_marks(self, due_by: float) -> None:
        due = [name for at, name in self._marks if at <= due_by]
        self._marks = [(at, name) for at, name in self._marks if at > due_by]
        for name in due:
            await self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def _listen(self) -> None:
        assert self._ws is not None
        ear = self.earpiece
        with contextlib.suppress(ConnectionClosed):
            async for raw in self._ws:
                now = time.monotonic()
                message = json.loads(raw)
                event = message.get("event")
                if event == "media":
                    ear.on_media(message["media"]["payload"], now)
                elif event == "clear":
                    ear.on_clear(now)
                    await self._echo_marks(due_by=float("inf"))
                elif event == "mark":
                    self._marks.append((max(now, ear.play_end), message["mark"]["name"]))

    async def say(self, frames: list[str]) -> Utterance:
        """Speak `frames` (`PhoneVoice.encode`) in real time; returns once the last one has been sent."""
        utterance = self._mouth.say(frames)
        try:
            await asyncio.wait_for(utterance.done, len(frames) * FRAME_S + SEND_SLACK_S)
        except TimeoutError:
            raise TimeoutError("the microphone stopped: the call was closed") from None
        return utterance

    async def hang_up(self) -> None:
        """`stop`, then close, as Twilio does when the caller hangs up; never raises."""
        with contextlib.suppress(Exception):
            if self._ws is not None:
                await asyncio.wait_for(self._send({"event": "stop", "stop": {"callSid": self.call_sid}}), 2)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            if self._ws is not None:
                await asyncio.wait_for(self._ws.close(), HANG_UP_TIMEOUT_S)
