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
    STT       the fake's transcription time (request → response sent)                           | hand-over
    LLM       the fake's time to first token and generation of the first sentence               | sentence cut, request
    TTS       the fake's time to first audio byte                                                | playout, WebRTC

Our overhead is voice to voice minus the fixed parts: everything the app (and fastrtc, and WebRTC) adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.metrics import CallLog

STAGES = ("vad_wait", "stt", "llm", "tts")


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
    for turn in log.spoken:
        if turn.kind == "burst":
            continue
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
        fixed = (
            heard.trailing_silence_ms / 1000,
            heard.answered_at - heard.asked_at,
            reply.sentence_at - reply.asked_at,
            reply.speech_at - reply.speech_asked_at,
        )
        for stage, begin, end, share in zip(STAGES, bounds[:-1], bounds[1:], fixed, strict=True):
            figures.stages[stage].append(1000 * (end - begin))
            figures.fixed[stage].append(1000 * share)
            figures.ours[stage].append(1000 * (end - begin - share))
        figures.overhead_ms.append(1000 * (first.arrival - turn.ended - sum(fixed)))
    return figures
