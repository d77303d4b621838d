"""The pipeline's speech detector: a quiet line is silence, and speech after it is heard from its first word."""

from __future__ import annotations

import numpy as np

from components.engines.pipeline.vad import TELEPHONE_ALGO, SileroVAD
from tests.speech import speech_pcm

RATE = 16_000
CHUNK = int(TELEPHONE_ALGO.audio_chunk_duration * RATE)


def hiss(seconds: float, dbfs: float) -> np.ndarray:
    samples = np.random.default_rng(7).standard_normal(int(seconds * RATE)) * 32768 * 10 ** (dbfs / 20)
    return samples.astype(np.int16)


def speech_per_chunk(vad: SileroVAD, audio: np.ndarray) -> list[float]:
    return [vad.vad((RATE, audio[i : i + CHUNK]), None)[0] for i in range(0, audio.size, CHUNK)]


def test_a_quiet_line_is_silence_and_the_words_after_it_are_heard_in_full() -> None:
    words = speech_pcm("Hello, I would like to book a table for four people tomorrow.", RATE)
    quiet, silent = hiss(2.0, -70.0), np.zeros(2 * RATE, dtype=np.int16)
    for before in (quiet, silent):
        vad = SileroVAD()
        heard = speech_per_chunk(vad, np.concatenate([before, words, before]))
        lead = before.size // CHUNK
        assert sum(heard[:lead]) == 0.0 and sum(heard[-lead + 1 :]) == 0.0
        assert heard[lead] > 0.05  # the first word, not a chunk later
        assert sum(heard) >= 0.7 * words.size / RATE
