"""The pipeline engine's voice to voice, split by stage, and the share of it that is ours rather than the fakes'.

For each caller turn (question, interruption) the fake HTTP API stamped when each request arrived and when it
sent its first bytes (`bench.stamps`), and read from the uploaded audio how much silence the app's VAD waited
for. With the caller's stamps (its speech ended; the answer's first audible packet arrived), voice to voice
is cut into four consecutive stages:

    VAD wait  the caller's speech ended           → the speech-to-text request arrives
    STT       the speech-to-text request arrives  → the chat request arrives
    LLM       the chat request arrives            → the speech request of the first sentence arrives
    TTS       the speech request arrives          → the answer's first audible packet reaches the caller

Each stage holds a fixed part that is the fakes' (or the caller's silence) and a part that is ours:

    VAD wait  the silence after the last loud 20 ms of the upload (what the VAD needed to hear)  | uplink, VAD
    STT       the fake's transcription time (request → response sent), or the ears' wait after  | hand-over
              the request if longer (see below)
    LLM       the fake's time to first token and generation of the first sentence               | sentence cut, request
    TTS       the fake's time to first audio byte                                                | playout, WebRTC

Our overhead is voice to voice minus the fixed parts: everything the app (and fastrtc, and WebRTC) adds.

The app transcribes early: the upload is sent at the pause where the end-of-turn model is asked (`Pausing`,
`ASKED_AT_MS` of the ears' silence), and the turn may end later, when the model says so or the silence limit is
reached. That later wait is the ears' policy, not overhead, and the fake cannot see it: the card's `vad_ms` (the
silence the ears heard until they decided, in audio, so loop lag is not in it) minus `ASKED_AT_MS` is that wait,
and the STT stage's fixed part is the longer of it and the fake's transcription time. The card's caller turns
are matched to the spoken turns in order; if their counts differ, the fake's time alone is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.metrics import CallLog
from components.listening import TurnOptions
from components.listening.turns import WINDOW_MS

STAGES = ("vad_wait", "stt", "llm", "tts")
ASKED_AT_MS = round(TurnOptions().floor_ms / WINDOW_MS) * WINDOW_MS  # the ears' silence in an early upload


@dataclass
class PipelineFigures:
    """One call's pipeline turns, in ms: each stage, the fakes' fixed part of it, our part, and our total."""

    stages: dict[str, list[float]] = field(default_factory=lambda: {stage: [] for stage in STAGES})
    fixed: dict[str, list[float]] = field(default_factory=lambda: {stage: [] for stage in STAGES})
    ours: dict[str, list[float]] = field(default_factory=lambda: {stage: [] for stage in STAGES})
    overhead_ms: list[float] = field(default_factory=list)
    unmatched_turns: int = 0


def pipeline_figures(log: CallLog) -> PipelineFigures:
    """Split every answered caller turn of one call (see the module docstring)."""
    figures = PipelineFigures()
    caller_turns = [turn for turn in log.spoken if turn.kind != "burst"]
    waits = [turn["vad_ms"] for turn in log.card_turns or [] if turn.get("vad_ms") is not None]
    if len(waits) != len(caller_turns):
        waits = []
    for index, turn in enumerate(caller_turns):
        heard = next((t for t in log.turns if t.asked_at > turn.ended and t.transcript), None)
        reply = next((r for r in log.replies if heard and r.asked_at > heard.asked_at), None)
        stamped = heard and heard.answered_at and reply and reply.sentence_at and reply.speech_asked_at
        if not (stamped and reply.speech_at):
            figures.unmatched_turns += 1
            continue
        first = next((h for h in log.heard if h.audible and h.arrival >= reply.speech_at), None)
        if first is None:
            figures.unmatched_turns += 1
            continue
        bounds = (turn.ended, heard.asked_at, reply.asked_at, reply.speech_asked_at, first.arrival)
        ears_after_upload = (waits[index] - ASKED_AT_MS) / 1000 if waits else 0.0
        fixed = (
            heard.trailing_silence_ms / 1000,
            max(heard.answered_at - heard.asked_at, ears_after_upload),
            reply.sentence_at - reply.asked_at,
            reply.speech_at - reply.speech_asked_at,
        )
        for stage, begin, end, share in zip(STAGES, bounds[:-1], bounds[1:], fixed, strict=True):
            figures.stages[stage].append(1000 * (end - begin))
            figures.fixed[stage].append(1000 * share)
            figures.ours[stage].append(1000 * (end - begin - share))
        figures.overhead_ms.append(1000 * (first.arrival - turn.ended - sum(fixed)))
    return figures
