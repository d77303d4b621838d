"""The server side's time stamps of one call, as the fakes (or the floor) took them: plain data that crosses
the pipe from a fake's process and goes into the call's log (`bench.metrics.CallLog`).

Every stamp is `time.monotonic()` (CLOCK_MONOTONIC), one clock for every process on the machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class HeardTurn:
    """One speech-to-text request of the pipeline engine, as the fake HTTP API saw it.

    `loud_ms` and `trailing_silence_ms` are read from the uploaded audio itself: how much of it is at or
    above the VAD threshold, and how much silence follows its last loud 20 ms (what the app's VAD waited
    for before it sent the turn)."""

    asked_at: float
    transcript: str
    audio_ms: float
    loud_ms: float
    trailing_silence_ms: float
    answered_at: float | None = None  # the transcript's response was sent


@dataclass
class SpokenReply:
    """One chat completion of the pipeline engine and the speech of its first sentence, as the fake saw them."""

    kind: str  # "greeting", "long" or "short"
    sentences: list[str]
    asked_at: float  # the chat request arrived
    first_byte_at: float | None = None  # its first SSE chunk was sent
    sentence_at: float | None = None  # the chunk that completes its first sentence was sent
    speech_asked_at: float | None = None  # the speech request of its first sentence arrived
    speech_at: float | None = None  # that speech's first audio bytes were sent: the answer starts


@dataclass
class ConnectionStamps:
    """What the server side did on one call: when it handed over the first audio of each answer, and when it
    saw the caller start speaking; for the pipeline engine, each turn and reply too; for GPT-Live, when its model
    stopped talking for the caller."""

    conn: int
    answer_starts: list[float]
    speech_started: list[float]
    turns: list[HeardTurn] = field(default_factory=list)
    replies: list[SpokenReply] = field(default_factory=list)
    model_stops: list[float] = field(default_factory=list)  # GPT-Live: the model stopped for the caller
