"""Whisper's log-mel features in numpy: the input of the Smart Turn model, without `transformers`.

Smart Turn v3 is a Whisper-tiny encoder with a classifier on top, trained on the features of
`transformers.WhisperFeatureExtractor(chunk_length=8)`. Importing `transformers` for one function would add
hundreds of megabytes to the Space, so the same computation is written here against its definition:

1. the waveform is normalised to zero mean and unit variance (`do_normalize=True`);
2. a centred short-time Fourier transform: reflect padding of n_fft/2 each side, a periodic Hann window of
   400 samples (25 ms), a hop of 160 (10 ms), power spectrum;
3. 80 triangular mel filters on the Slaney scale from 0 to 8 kHz, each scaled to unit area ("slaney" norm);
4. log10 (floored at 1e-10), the last frame dropped (so 8 s give 800 frames), values clamped to 8 below the
   maximum, then mapped by (x + 4) / 4 to about [-1, 1].

`tests/test_listening.py` holds the reference's output for a fixed signal, so a change here that drifts from it
fails (the figures were compared against `transformers` 5.25.0: see that test).
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

RATE = 16_000
N_FFT = 400
HOP = 160
N_MELS = 80
SECONDS = 8
SAMPLES = SECONDS * RATE


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(hz < 1000.0, hz * 3.0 / 200.0, 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / log_step)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(mel < 15.0, mel * 200.0 / 3.0, 1000.0 * np.exp(log_step * (mel - 15.0)))


@functools.cache
def mel_filters() -> np.ndarray:
    """(N_FFT // 2 + 1, N_MELS) matrix from a power spectrum to Slaney-normalised mel bands."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(RATE / 2), N_MELS + 2))
    bins = np.linspace(0.0, RATE / 2, N_FFT // 2 + 1)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return triangles * (2.0 / (upper - lower))


@functools.cache
def _hann() -> np.ndarray:
    """Periodic Hann window (as torch's and transformers' STFT use), not numpy's symmetric one."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(N_MELS, 800) float32 features of exactly `SAMPLES` float samples at 16 kHz (pad or cut before)."""
    if audio.shape != (SAMPLES,):
        raise ValueError(f"expected {SAMPLES} samples (8 s at 16 kHz), got shape {audio.shape}")
    wave = audio.astype(np.float32)
    wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
    padded = np.pad(wave.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _hann(), axis=1)) ** 2
    mel = np.log10(np.maximum(power @ mel_filters(), 1e-10)).T[:, :-1]
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)
