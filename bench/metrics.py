"""From one call's log to its figures: added latency, barge-in, voice to voice, underruns, lost frames.

Everything is a difference of `time.monotonic()` stamps taken on one machine: the caller's (packets
arriving, its speech starting and ending), and the server side's (the fake's first audio delta of each
answer for the app, the floor handler's first emitted frame for the floor; the moment either detected the
caller's speech). Pure functions, so the rules are easy to check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bench.caller import FRAME_S, RATE, Heard

PLAYOUT_BUFFER_S = 0.06
"""The caller's playout (jitter) buffer: a browser's WebRTC stack holds a few tens of ms before playing."""


@dataclass(frozen=True)
class Spoken:
    """One caller turn: `kind` is "question" or "interruption" (spoken over the long answer)."""

    kind: str
    started: float
    ended: float


@dataclass
class CallLog:
    """What one call recorded: the packets it heard, what it said, and the server side's stamps of when it
    handed over each answer's first audio (`answer_starts`) and detected the caller speaking (`detections`)."""

    webrtc_id: str
    heard: list[Heard] = field(default_factory=list)
    spoken: list[Spoken] = field(default_factory=list)
    answer_starts: list[float] = field(default_factory=list)
    detections: list[float] = field(default_factory=list)
    failure: str | None = None


@dataclass
class CallFigures:
    """One call's measurements (ms), pooled per level by `report`."""

    added_ms: list[float] = field(default_factory=list)
    voice_to_voice_ms: list[float] = field(default_factory=list)
    barge_in_ms: list[float] = field(default_factory=list)
    barge_in_detect_ms: list[float] = field(default_factory=list)
    unheard_answers: int = 0
    missed_barge_ins: int = 0
    underruns: int = 0
    starved_ms: float = 0.0
    lost_frames: int = 0


def playout_underruns(packets: list[Heard], buffer_s: float = PLAYOUT_BUFFER_S) -> tuple[int, float]:
    """Times a playout buffer ran dry during one answer, and for how long in all (s).

    The buffer starts playing `buffer_s` after the first packet and plays in RTP time; a packet that
    arrives after its play time starves it, and playback resumes from that packet (as NetEQ stretches).
    """
    if not packets:
        return 0, 0.0
    first = packets[0]
    shift, count, starved = 0.0, 0, 0.0
    for packet in packets:
        due = first.arrival + buffer_s + ((packet.rtp_ts - first.rtp_ts) % 2**32) / RATE + shift
        if packet.arrival > due:
            count, starved, shift = count + 1, starved + packet.arrival - due, shift + packet.arrival - due
    return count, starved


def lost_frames(packets: list[Heard]) -> int:
    """RTP sequence numbers missing between the first and last packet of one answer."""
    if not packets:
        return 0
    first = packets[0].seq
    offsets = {(packet.seq - first) % 2**16 for packet in packets}
    return max(offsets) + 1 - len(offsets)


def _answer_windows(log: CallLog, since: float) -> list[tuple[float, list[Heard]]]:
    """Each answer started at or after `since`, with the packets that arrived before the next one started."""
    starts = sorted(t for t in log.answer_starts if t >= since)
    windows = []
    for start, end in zip(starts, [*starts[1:], math.inf], strict=True):
        windows.append((start, [h for h in log.heard if start <= h.arrival < end]))
    return windows


def measure(log: CallLog) -> CallFigures:
    """The figures of one call's conversation rounds (its greeting, heard before the load began, is left out)."""
    figures = CallFigures()
    if not log.spoken:
        return figures
    windows = _answer_windows(log, since=log.spoken[0].started)
    for start, packets in windows:
        audible = [h for h in packets if h.audible]
        if not audible:
            figures.unheard_answers += 1
            continue
        figures.added_ms.append(1000 * (audible[0].arrival - start))
        count, starved = playout_underruns(audible)
        figures.underruns += count
        figures.starved_ms += 1000 * starved
        figures.lost_frames += lost_frames(packets)
    for turn in log.spoken:
        answer = next(((s, p) for s, p in windows if s > turn.ended), None)
        first = next((h for h in answer[1] if h.audible), None) if answer else None
        if first is not None:
            figures.voice_to_voice_ms.append(1000 * (first.arrival - turn.ended))
        if turn.kind == "interruption":
            _barge_in(figures, turn, windows, log.detections)
    return figures


def _barge_in(
    figures: CallFigures, turn: Spoken, windows: list[tuple[float, list[Heard]]], detections: list[float]
) -> None:
    """How long the interrupted answer stayed audible after the caller started talking over it."""
    talked_over = [packets for start, packets in windows if start < turn.started]
    after = [h for h in (talked_over[-1] if talked_over else []) if h.audible and h.arrival >= turn.started]
    if not after:
        figures.missed_barge_ins += 1  # the answer was over before the caller spoke: nothing to measure
        return
    figures.barge_in_ms.append(1000 * (after[-1].arrival + FRAME_S - turn.started))
    detected = next((t for t in sorted(detections) if t >= turn.started), None)
    if detected is not None:
        figures.barge_in_detect_ms.append(1000 * (detected - turn.started))


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None
