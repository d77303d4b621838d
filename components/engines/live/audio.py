"""The Live session's audio, as the wire carries it: raw PCM16 at the page's 24 kHz, or G.711 μ-law at 8 kHz on the
phone. A phone call's audio stays at 8 kHz both ways (no resampling): the caller's μ-law, decoded by the transport,
is encoded back losslessly for the session, and the session's μ-law is decoded for the playout.
"""

from __future__ import annotations

import base64

import numpy as np

_BIAS, _CLIP = 0x84, 8159  # the bias on 16-bit values; the clip on the 14-bit values G.711 encodes
_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def _mulaw_table() -> np.ndarray:
    """Every μ-law byte's linear value (G.711)."""
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent, mantissa = (code >> 4) & 0x07, code & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


_DECODE = _mulaw_table()


def mulaw_encode(pcm: np.ndarray) -> bytes:
    """PCM16 to μ-law bytes (G.711 on the 14-bit value, exactly as fastrtc's `audioop` encodes for Twilio)."""
    value = pcm.astype(np.int32).reshape(-1) >> 2
    negative = value < 0
    value = np.minimum(np.where(negative, -value, value), _CLIP) + (_BIAS >> 2)
    segment = np.searchsorted(_SEGMENT_ENDS, value)
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((value >> (np.minimum(segment, 7) + 1)) & 0x0F))
    return (code ^ np.where(negative, 0x7F, 0xFF)).astype(np.uint8).tobytes()


def mulaw_decode(data: bytes) -> np.ndarray:
    return _DECODE[np.frombuffer(data, dtype=np.uint8)]


def to_wire(pcm: np.ndarray, mulaw: bool) -> str:
    """One frame of the caller's audio as `session.input_audio.append` carries it (base64)."""
    data = mulaw_encode(pcm) if mulaw else np.asarray(pcm, dtype=np.int16).reshape(-1).tobytes()
    return base64.b64encode(data).decode("ascii")


def from_wire(audio: str, mulaw: bool) -> np.ndarray:
    """One `session.output_audio.delta` as int16 samples."""
    data = base64.b64decode(audio)
    return mulaw_decode(data) if mulaw else np.frombuffer(data[: len(data) // 2 * 2], dtype=np.int16)
