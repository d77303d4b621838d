"""A benchmark caller: a real WebRTC peer (aiortc) that speaks into the call and logs what reaches its ear.

- `Microphone` sends a 20 ms Opus packet at real-time pace, as a browser's microphone does: silence, or an
  utterance when told to `say` one (`Voice` encodes them once for all callers), stamping when its first
  and last packets left (`Mouth`, shared with the phone caller).
- `Earpiece` stamps every RTP packet of the bot's audio as it arrives (`time.monotonic()`), with its RTP
  sequence number and timestamp and the RMS of its decoded Opus audio. It listens at the RTP layer, not
  at `RemoteStreamTrack.recv()`: aiortc's audio jitter buffer releases a frame only once four more are
  queued behind it, so the last 80 ms of every answer would wait for the next answer, which is not when
  a browser (WebRTC's NetEQ) would play them. What it keeps and how callers wait on it is `Ear`, shared
  with the phone caller (`bench.phone_caller`).
- `Caller` offers the connection to a fastrtc server (`POST /webrtc/offer`, with a data channel as the
  page opens one) and keeps the data channel's messages (the floor app's stamps, the app's notices).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import hashlib
import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket


def from_address(call_id: str) -> dict[str, str]:
    """Headers that make one call come from an address of its own, as real callers do: the app trusts this machine
    as its proxy (its default off a Space), so it reads the address from `X-Forwarded-For`, and its per-address
    limits (two calls, a few offers and webhooks in ten seconds) apply to each caller rather than to the bench."""
    digest = hashlib.sha256(call_id.encode()).digest()
    return {"x-forwarded-for": f"10.{digest[0]}.{digest[1]}.{digest[2] or 1}"}


RATE = 48_000
FRAME = RATE // 50  # 20 ms, WebRTC's audio frame
FRAME_S = FRAME / RATE
TIME_BASE = fractions.Fraction(1, RATE)
SEND_SLACK_S = 10.0
HANG_UP_TIMEOUT_S = 10.0
AUDIBLE_DBFS = -50.0
"""A received frame at or above this RMS level is the bot talking (its voice is -18 dBFS, Opus silence ~-inf)."""


class Voice:
    """The caller's speech as Opus packets, encoded once with aiortc's encoder for every caller.

    A browser encodes its microphone itself; here 40 callers encoding 50 frames a second would take a core of
    this 2-core machine away from the server under test. The server receives and decodes the same packets.
    """

    def __init__(self) -> None:
        self._encoder = OpusEncoder()
        self._frames = 0
        for _ in range(10):  # past the encoder's start-up
            self._encode(np.zeros(FRAME, dtype=np.int16))
        self.silence = self._encode(np.zeros(FRAME, dtype=np.int16))

    def _encode(self, pcm: np.ndarray) -> bytes:
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(pcm.tobytes())
        frame.pts, frame.sample_rate, frame.time_base = self._frames * FRAME, RATE, TIME_BASE
        self._frames += 1
        payloads, _ = self._encoder.encode(frame)
        return payloads[0]

    def encode(self, samples: np.ndarray) -> list[bytes]:
        """One packet per 20 ms of `samples` (48 kHz int16 mono), the last one padded with silence."""
        padded = np.zeros(-(-samples.size // FRAME) * FRAME, dtype=np.int16)
        padded[: samples.size] = samples
        return [self._encode(frame) for frame in padded.reshape(-1, FRAME)]


@dataclass
class Utterance:
    """One thing the caller says: when its first packet left, and when its speech ended (last packet + 20 ms)."""

    packets: list[bytes]
    started: float | None = None
    ended: float | None = None
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Mouth:
    """What a microphone says next, one 20 ms frame at a time: silence, or the utterances queued by `say`."""

    def __init__(self, silence: Any) -> None:
        self.silence = silence
        self._queue: deque[Utterance] = deque()
        self._offset = 0  # frames of the current utterance already sent

    def say(self, frames: list[Any]) -> Utterance:
        """Queue speech (one payload per 20 ms frame); await `.done` for it to have been sent."""
        utterance = Utterance(frames)
        self._queue.append(utterance)
        return utterance

    def next_frame(self, now: float) -> Any:
        """The frame to send at `now`, stamping when an utterance starts and ends."""
        if not self._queue:
            return self.silence
        utterance = self._queue[0]
        frame = utterance.packets[self._offset]
        if utterance.started is None:
            utterance.started = now
        self._offset += 1
        if self._offset == len(utterance.packets):
            utterance.ended = now + FRAME_S
            self._queue.popleft()
            self._offset = 0
            if not utterance.done.done():
                utterance.done.set_result(None)
        return frame


class Microphone(MediaStreamTrack):
    """The caller's microphone: a 20 ms Opus packet in real time, of silence or of the utterance being said."""

    kind = "audio"

    def __init__(self, voice: Voice) -> None:
        super().__init__()
        self.mouth = Mouth(voice.silence)
        self._start: float | None = None
        self._sent = 0

    def say(self, packets: list[bytes]) -> Utterance:
        """Queue speech (`Voice.encode`); await `.done` for it to have been sent."""
        return self.mouth.say(packets)

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._sent * FRAME_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        packet = av.Packet(self.mouth.next_frame(time.monotonic()))
        packet.pts, packet.time_base = self._sent * FRAME, TIME_BASE
        self._sent += 1
        return packet


@dataclass(frozen=True)
class Heard:
    """One packet of the bot's audio at the caller: an RTP packet, or a Twilio `media` message (whose
    `rtp_ts` is its position in the stream in 48 kHz units, so both play out on the same clock)."""

    arrival: float
    seq: int
    rtp_ts: int
    dbfs: float
    duration_s: float = FRAME_S

    @property
    def audible(self) -> bool:
        return self.dbfs >= AUDIBLE_DBFS


def dbfs(pcm: np.ndarray) -> float:
    """RMS level of int16 samples in dB relative to full scale (-inf for digital silence)."""
    rms = math.sqrt(float(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0
    return 20 * math.log10(rms / 32768) if rms > 0 else -math.inf


class Ear:
    """What reached a caller's ear, packet by packet, and a cheap way for the caller to wait on it."""

    def __init__(self) -> None:
        self.heard: list[Heard] = []
        # Kept up to date so the callers' waits, woken at every packet of every call, cost O(1).
        self.audible_count = 0
        self.audible_s = 0.0
        self.last_audible = -math.inf
        self._news = asyncio.Event()

    def hear(self, heard: Heard) -> None:
        self.heard.append(heard)
        if heard.audible:
            self.audible_count += 1
            self.audible_s += heard.duration_s
            self.last_audible = heard.arrival
        self._news.set()

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait, woken by each packet or every 50 ms, until `condition()` holds; TimeoutError names `what`."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {what} within {timeout:.0f} s")
            self._news.clear()
            try:
                await asyncio.wait_for(self._news.wait(), min(remaining, 0.05))
            except TimeoutError:
                pass


class Earpiece(Ear):
    """Logs the bot's audio packet by packet, decoded with libopus as the browser would."""

    def __init__(self) -> None:
        super().__init__()
        self._decoder = av.CodecContext.create("libopus", "r")
        self._decoder.format, self._decoder.layout, self._decoder.sample_rate = "s16", "stereo", RATE

    async def on_packet(self, packet: RtpPacket, arrival_time_ms: int = 0) -> None:
        """Replaces the receiver's `_handle_rtp_packet` (see the module's docstring for why)."""
        arrival = time.monotonic()
        try:
            frames = self._decoder.decode(av.Packet(packet.payload))
        except av.error.FFmpegError:
            frames = []
        pcm = np.concatenate([f.to_ndarray().ravel() for f in frames]) if frames else np.zeros(0, np.int16)
        self.hear(Heard(arrival, packet.sequence_number, packet.timestamp, dbfs(pcm)))


class OfferRefused(RuntimeError):
    """The server answered the offer without an SDP (e.g. all lines busy)."""


class Caller:
    """One WebRTC call to a fastrtc server: microphone out, earpiece in, the data channel's messages kept."""

    def __init__(self, webrtc_id: str, voice: Voice) -> None:
        self.webrtc_id = webrtc_id
        self.microphone = Microphone(voice)
        self.earpiece = Earpiece()
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

    async def connect(self, base_url: str, client: httpx.AsyncClient, **body: Any) -> None:
        """Offer the call to `base_url`'s `/webrtc/offer`; extra `body` fields go along (language, voice)."""
        channel = self._pc.createDataChannel("text")
        channel.on("message", self._on_message)
        self._pc.addTrack(self.microphone)
        receiver = self._pc.getTransceivers()[0].receiver
        receiver._handle_rtp_packet = self.earpiece.on_packet  # the probe; see Earpiece
        await self._pc.setLocalDescription(await self._pc.createOffer())
        offer = {"sdp": self._pc.localDescription.sdp, "type": "offer", "webrtc_id": self.webrtc_id, **body}
        answered = await client.post(f"{base_url}/webrtc/offer", json=offer, headers=from_address(self.webrtc_id))
        answer = answered.json()
        if "sdp" not in answer:
            raise OfferRefused(json.dumps(answer))
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))

    def _on_message(self, message: str | bytes) -> None:
        try:
            data = json.loads(message)
        except ValueError:
            return
        if isinstance(data, dict):
            self.messages.append((time.monotonic(), data))

    async def say(self, packets: list[bytes]) -> Utterance:
        """Speak `packets` (`Voice.encode`) in real time; returns once the last one has been sent."""
        utterance = self.microphone.say(packets)
        try:
            await asyncio.wait_for(utterance.done, len(packets) * FRAME_S + SEND_SLACK_S)
        except TimeoutError:
            raise TimeoutError("the microphone stopped: the call was closed") from None
        return utterance

    async def hang_up(self) -> None:
        """Close the peer connection (the server frees the call when it sees it close); never raises."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._pc.close(), HANG_UP_TIMEOUT_S)
