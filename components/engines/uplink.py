"""The caller's audio over WebRTC reaches the engines 80 ms sooner: aiortc's receive buffer holds one frame.

aiortc's `RTCRtpReceiver` puts incoming audio through a jitter buffer that releases a 20 ms frame only once four
more are queued behind it (`JitterBuffer(prefetch=4)`), which smooths a playout. We never play the caller's
audio: it goes to speech detection and the model, where 80 ms more of delay is 80 ms later barge-in and a later
answer (the benchmark measured both). With no prefetch, a frame is released as soon as the next packet shows it
is complete, so 20 ms remain; a packet arriving out of order after that is dropped, which a speech detector and
a speech model do not notice.

Only audio receivers change (video keeps aiortc's buffer), for every peer connection this process makes: both
engines over the page's widget and over `/webrtc/offer`. The phone line (Twilio's WebSocket) has no such buffer.
"""

from __future__ import annotations

from aiortc import rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer

AUDIO_PREFETCH = 0


class _PromptJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, with no prefetch for audio."""

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        super().__init__(capacity, prefetch if is_video else AUDIO_PREFETCH, is_video)


def hear_callers_sooner() -> None:
    """Make every audio receiver aiortc creates from now on release frames without prefetch (idempotent)."""
    rtcrtpreceiver.JitterBuffer = _PromptJitterBuffer
