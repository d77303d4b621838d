"""Everything we rely on from aiortc 1.16.0 beyond its documented surface, in one place: the caller's audio over
WebRTC reaches the engines 80 ms sooner, because aiortc's receive buffer holds one frame instead of five.

Review this module when aiortc changes (`AIORTC_VERSION`; `tests/test_adapters.py` fails on any other version).
What it relies on:

* `aiortc.jitterbuffer.JitterBuffer(capacity, prefetch=0, is_video=False)`: the receive buffer and its arguments;
* `aiortc.rtcrtpreceiver` looking up its module global `JitterBuffer` each time an `RTCRtpReceiver` is made, and
  making it `JitterBuffer(capacity=16, prefetch=4)` for audio and `JitterBuffer(capacity=512, is_video=True)` for
  video (in `RTCRtpReceiver.__init__`).

What aiortc cannot do, and this module does instead: it has no setting for a receiver's buffer (neither on
`RTCPeerConnection` nor on `RTCRtpReceiver`, and fastrtc makes the peer connections), so `hear_callers_sooner`
replaces the class that module global names, for the whole process.

Why: aiortc's buffer releases a 20 ms frame only once four more are queued behind it (`prefetch=4`), which smooths
a playout. We never play the caller's audio: it goes to speech detection and the model, where 80 ms more of delay is
80 ms later barge-in and a later answer (the benchmark measured both). With no prefetch, a frame is released as soon
as the next packet shows it is complete, so 20 ms remain; a packet arriving out of order after that is dropped,
which a speech detector and a speech model do not notice.

Only audio receivers change (video keeps aiortc's buffer), for every peer connection this process makes: every
engine over the page's widget and over `/webrtc/offer`. The phone line (Twilio's WebSocket) has no such buffer.
"""

from __future__ import annotations

from aiortc import rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer

AIORTC_VERSION = "1.16.0"
AUDIO_PREFETCH = 0


class _PromptJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, with no prefetch for audio."""

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        super().__init__(capacity, prefetch if is_video else AUDIO_PREFETCH, is_video)


def hear_callers_sooner() -> None:
    """Make every audio receiver aiortc creates from now on release frames without prefetch (idempotent)."""
    rtcrtpreceiver.JitterBuffer = _PromptJitterBuffer
