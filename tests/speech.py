"""Test speech: real spoken audio from espeak-ng, resampled with sox, cached per text and rate."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

from tests.browser import _speak


@functools.cache
def speech_pcm(text: str, rate: int = 24_000, voice: str = "en") -> np.ndarray:
    """`text` spoken by espeak-ng as int16 mono at `rate` Hz, with its leading and trailing silence trimmed."""
    with tempfile.TemporaryDirectory(prefix="speech-") as tmp:
        pcm = _speak(text, voice, 160, rate, -3.0, Path(tmp))
    pcm.setflags(write=False)
    return pcm
