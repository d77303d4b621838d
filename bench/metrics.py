"""From one call's log to its figures: added latency, barge-in, false interruptions, voice to voice, underruns.

Everything is a difference of `time.monotonic()` stamps taken on one machine: the caller's (packets
arriving, its speech starting and ending, a phone's `clear`s), and the server side's (the fake's first
audio of each answer for the app, the floor handler's first emitted frame for the floor; the moment either
detected the caller's speech). Pure functions, so the rules are easy to check.

What the caller heard is a list of spans of audio. On WebRTC a packet plays as it arrives (it arrives in
real time). On the phone, `media` arrives ahead of real time, so it plays on a play-out clock that starts
with the audio, as Twilio's does: each message after the one before it, and a `clear` drops whatever had
arrived but not yet played.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from bench import conversation as talk
from bench.caller import RATE, Heard
from bench.stamps import HeardTurn, SpokenReply

PLAYOUT_BUFFER_S = 0.06
"""The caller's playout (jitter) buffer: a browser's WebRTC stack (or Twilio's) holds a few tens of ms."""
FULL_ANSWER_SLACK_S = 0.2
"""An answer heard to within this of its whole length was not cut (codec edges, a lost packet)."""
KEPT_GAP_S = 0.12
"""A gap in an answer up to this long is packet timing, not a pause."""
PAUSE_WITHIN_S = 1.0
"""A bot that pauses for a burst falls silent within this of its end; a later gap is something else (an underrun)."""


@dataclass(frozen=True)
class Spoken:
    """One caller turn: "question", "interruption" (spoken over the long answer), or "burst" (a short sound
    in the middle of the short answer)."""

    kind: str
    started: float
    ended: float


@dataclass
class CallLog:
    """What one call recorded: the packets it heard, what it said, and the server side's stamps of when it
    handed over each answer's first audio (`answer_starts`) and detected the caller speaking (`detections`).
    A phone call also has the `clear`s it got (None on WebRTC), a pipeline call the fake's turns and replies."""

    webrtc_id: str
    heard: list[Heard] = field(default_factory=list)
    spoken: list[Spoken] = field(default_factory=list)
    answer_starts: list[float] = field(default_factory=list)
    detections: list[float] = field(default_factory=list)
    clears: list[float] | None = None
    stops: list[float] = field(default_factory=list)  # GPT-Live's model stopped for the caller
    cost_usd: float | None = None  # what the call's card showed at its end
    card_turns: list[dict] | None = None  # the card's turns at its end (the pipeline's own figures per turn)
    card_s: float | None = None  # how long the call talked, for the card's cost per minute
    turns: list[HeardTurn] = field(default_factory=list)
    replies: list[SpokenReply] = field(default_factory=list)
    failure: str | None = None


@dataclass
class CallFigures:
    """One call's measurements (ms), pooled per level by `report`."""

    added_ms: list[float] = field(default_factory=list)
    voice_to_voice_ms: list[float] = field(default_factory=list)
    barge_in_ms: list[float] = field(default_factory=list)
    barge_in_detect_ms: list[float] = field(default_factory=list)
    barge_in_clear_ms: list[float] = field(default_factory=list)
    after_stop_ms: list[float] = field(default_factory=list)  # GPT-Live: audible after its model had stopped
    burst_pause_ms: list[float] = field(default_factory=list)
    bursts_kept: int = 0
    bursts_resumed: int = 0
    bursts_cut: int = 0
    interruptions_cut: int = 0
    interruptions_not_cut: int = 0
    unheard_answers: int = 0
    missed_barge_ins: int = 0
    underruns: int = 0
    starved_ms: float = 0.0
    lost_frames: int = 0


class Span(NamedTuple):
    """A stretch of the bot's audio as the caller heard it."""

    start: float
    end: float
    audible: bool


def playout_underruns(
    packets: list[Heard], buffer_s: float = PLAYOUT_BUFFER_S, pauses: list[tuple[float, float]] = ()
) -> tuple[int, float]:
    """Times a playout buffer ran dry during one answer, and for how long in all (s).

    The buffer starts playing `buffer_s` after the first packet and plays in RTP time; a packet that
    arrives after its play time starves it, and playback resumes from that packet (as NetEQ stretches).
    A gap that overlaps one of `pauses` (a burst, up to `PAUSE_WITHIN_S` after it) is the bot pausing on
    purpose, not the network starving the buffer: the buffer starts afresh from the packet after it. (Its last
    packet may arrive just before the burst: a phone's audio is sent ahead of its play-out.)
    """
    if not packets:
        return 0, 0.0
    first = packets[0]
    shift, count, starved = 0.0, 0, 0.0
    for previous, packet in zip([None, *packets], packets, strict=False):
        if previous is not None and packet.arrival - previous.arrival > KEPT_GAP_S:
            if any(previous.arrival <= end and packet.arrival >= start for start, end in pauses):
                first, shift = packet, 0.0
        due = first.arrival + buffer_s + ((packet.rtp_ts - first.rtp_ts) % 2**32) / RATE + shift
        if packet.arrival > due + 1e-9:  # (a packet exactly on time after a shift is on time)
            count, starved, shift = count + 1, starved + packet.arrival - due, shift + packet.arrival - due
    return count, starved


def lost_frames(packets: list[Heard]) -> int:
    """RTP sequence numbers missing between the first and last packet of one answer."""
    if not packets:
        return 0
    first = packets[0].seq
    offsets = {(packet.seq - first) % 2**16 for packet in packets}
    return max(offsets) + 1 - len(offsets)


def played(packets: list[Heard], clears: list[float] | None) -> list[Span]:
    """What the caller heard of `packets`: as they arrive (WebRTC, `clears` None), or on the phone's play-out
    clock, where each `clear` drops what had arrived but not played and restarts the clock."""
    if clears is None:
        return [Span(p.arrival, p.arrival + p.duration_s, p.audible) for p in packets]
    spans: list[Span] = []
    end = -math.inf
    pending = sorted(clears)
    for packet in packets:
        while pending and pending[0] <= packet.arrival:
            cleared = pending.pop(0)
            spans = [s._replace(end=min(s.end, cleared)) for s in spans if s.start < cleared]
            end = min(end, cleared)
        start = max(packet.arrival, end)
        end = start + packet.duration_s
        spans.append(Span(start, end, packet.audible))
    for cleared in pending:
        spans = [s._replace(end=min(s.end, cleared)) for s in spans if s.start < cleared]
    return spans


def _answer_windows(log: CallLog, since: float) -> list[tuple[float, list[Heard]]]:
    """Each answer started at or after `since`, with the packets that arrived before the next one started."""
    starts = sorted(t for t in log.answer_starts if t >= since)
    windows = []
    ends = [*starts[1:], math.inf] if starts else []  # a call with no answer stamps has no windows
    for start, end in zip(starts, ends, strict=True):
        windows.append((start, [h for h in log.heard if start <= h.arrival < end]))
    return windows


def _talked_over(turn: Spoken, windows: list[tuple[float, list[Heard]]]) -> list[Heard]:
    """The packets of the answer that had started when the caller spoke `turn`."""
    before = [packets for start, packets in windows if start < turn.started]
    return before[-1] if before else []


def measure(log: CallLog, burst_answer_ms: int = talk.SHORT_ANSWER_MS) -> CallFigures:
    """The figures of one call's conversation rounds (its greeting, heard before the load began, is left out).

    `burst_answer_ms` is the length of the answer the burst is sounded in."""
    figures = CallFigures()
    if not log.spoken:
        return figures
    windows = _answer_windows(log, since=log.spoken[0].started)
    pauses = [(t.started, t.ended + PAUSE_WITHIN_S) for t in log.spoken if t.kind == "burst"]
    for start, packets in windows:
        audible = [h for h in packets if h.audible]
        if not audible:
            figures.unheard_answers += 1
            continue
        figures.added_ms.append(1000 * (audible[0].arrival - start))
        count, starved = playout_underruns(audible, pauses=pauses)
        figures.underruns += count
        figures.starved_ms += 1000 * starved
        figures.lost_frames += lost_frames(packets)
    for turn in log.spoken:
        if turn.kind == "burst":
            _false_interruption(figures, turn, played(_talked_over(turn, windows), log.clears), burst_answer_ms)
            continue
        answer = next(((s, p) for s, p in windows if s > turn.ended), None)
        first = next((h for h in answer[1] if h.audible), None) if answer else None
        if first is not None:
            figures.voice_to_voice_ms.append(1000 * (first.arrival - turn.ended))
        if turn.kind == "interruption":
            _barge_in(figures, turn, _talked_over(turn, windows), log)
    return figures


def _barge_in(figures: CallFigures, turn: Spoken, packets: list[Heard], log: CallLog) -> None:
    """How long the interrupted answer stayed audible after the caller started talking over it, and whether it
    was cut before the caller had finished."""
    after = [s for s in played(packets, log.clears) if s.audible and s.end > turn.started]
    if not after:
        figures.missed_barge_ins += 1  # the answer was over before the caller spoke: nothing to measure
        return
    figures.barge_in_ms.append(1000 * (after[-1].end - turn.started))
    if after[-1].end <= turn.ended:
        figures.interruptions_cut += 1
    else:
        figures.interruptions_not_cut += 1
    detected = next((t for t in sorted(log.detections) if t >= turn.started), None)
    if detected is not None:
        figures.barge_in_detect_ms.append(1000 * (detected - turn.started))
    stopped = next((t for t in sorted(log.stops) if t >= turn.started), None)
    if stopped is not None and stopped <= turn.ended:
        figures.after_stop_ms.append(max(0.0, 1000 * (after[-1].end - stopped)))
    cleared = next((t for t in sorted(log.clears or []) if t >= turn.started), None)
    if cleared is not None and cleared <= turn.ended:
        figures.barge_in_clear_ms.append(1000 * (cleared - turn.started))


def _false_interruption(figures: CallFigures, burst: Spoken, spans: list[Span], answer_ms: int) -> None:
    """Did the answer go on after the burst (kept, or resumed after a pause), or was it cut? It went on if the
    caller heard all of it; the pause is the longest gap in it that began by `PAUSE_WITHIN_S` after the burst."""
    audible = [s for s in spans if s.audible]
    if not any(s.start < burst.started for s in audible):
        return  # the answer had not started: not a try
    heard_s = sum(s.end - s.start for s in audible)
    if heard_s < answer_ms / 1000 - FULL_ANSWER_SLACK_S:
        figures.bursts_cut += 1
        return
    soon = burst.ended + PAUSE_WITHIN_S  # a gap starting later is not the bot pausing for the burst
    pairs = zip(audible, audible[1:], strict=False)
    gaps = [b.start - a.end for a, b in pairs if b.start > burst.started and a.end <= soon]
    pause = max(gaps, default=0.0)
    if pause <= KEPT_GAP_S:
        figures.bursts_kept += 1
    else:
        figures.bursts_resumed += 1
        figures.burst_pause_ms.append(1000 * pause)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None
