"""One spoken reply of the pipeline engine: the model's text cut into sentences, what the caller has heard of
it, and its figures.

The chat model streams text; speaking it sentence by sentence lets the first sentence play while the rest is
still being written. Each sentence is its own item in the playout, so once audio is playing we know, per
sentence, how much of it the caller heard: that is what the transcript shows, and what the model's history
keeps after a barge-in (like the Realtime API's `conversation.item.truncate`).
"""

from __future__ import annotations

import asyncio
import io
import re
import time
import wave
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from components.call.state import CallState, Turn
from components.engines.playout import SAMPLE_RATE, Playout

_STRONG_END = "。！？!?…\n"
_WEAK_BREAK = re.compile(r"[、，,;；:：]\s*")
_LONG_SENTENCE = 160  # characters: past this a sentence is spoken up to its last comma


@dataclass
class PipelineTurn(Turn):
    """One agent response's figures; the stage times are ms from the end of the caller's turn (the pause).

    `vad_ms`: silence the VAD waited for after the last speech; `transcript_ms`: the transcript is back;
    `first_token_ms`: the model's first spoken word (after any tool rounds); `first_audio_ms`: the first
    synthesised audio byte; `latency_ms`: the first audio handed to the caller (what the Realtime engine
    reports); `voice_to_voice_ms`: from the caller's last word to the agent's first, `vad_ms + latency_ms`.
    A greeting or an instruction has no caller turn: its times count from when it was asked for.
    """

    vad_ms: int | None = None
    transcript_ms: int | None = None
    first_token_ms: int | None = None
    first_audio_ms: int | None = None
    voice_to_voice_ms: int | None = None


@dataclass
class Sentence:
    text: str
    item: str  # its id in the playout
    received: int = 0  # samples synthesised so far
    done: bool = False  # synthesis finished (or failed)


@dataclass
class Reply:
    """One spoken reply, fed with the model's text as it streams, synthesised one sentence after another."""

    key: str  # the transcript line
    sentences: list[Sentence] = field(default_factory=list)
    pending: str = ""
    shown: int = 0  # sentences already on screen (their audio started playing)
    text: str = ""  # what is on screen
    queue: asyncio.Queue[Sentence | None] = field(default_factory=asyncio.Queue)
    history: dict[str, Any] | None = None  # the assistant message of this reply in the model's history
    heard: str | None = None  # set by barge-in: the part of the reply the caller heard

    def feed(self, text: str) -> None:
        self.pending += text
        while (cut := sentence_end(self.pending)) is not None:
            self._add(self.pending[:cut])
            self.pending = self.pending[cut:]

    def flush(self) -> None:
        self._add(self.pending)
        self.pending = ""

    def _add(self, text: str) -> None:
        text = text.strip()
        if text:
            sentence = Sentence(text, f"{self.key}.{len(self.sentences)}")
            self.sentences.append(sentence)
            self.queue.put_nowait(sentence)

    def reveal(self, playout: Playout, state: CallState, final: bool = False) -> bool:
        """Show the sentences whose audio has started playing (all of them when the reply is over).

        True if the transcript changed."""
        changed = False
        for sentence in self.sentences[self.shown :]:
            playing = sentence.received and playout.played_ms(sentence.item) > 0
            unspoken = sentence.done and not sentence.received  # its synthesis failed
            if not (final or playing or unspoken):
                break
            piece = joined(self.text, sentence.text)
            self.text += piece
            state.agent_delta(self.key, piece)
            self.shown += 1
            changed = True
        if final and self.sentences:
            state.agent_done(self.key, None)
            changed = True
        return changed

    def heard_text(self, playout: Playout) -> str:
        """The part of the shown text the caller has heard, by the audio played of each sentence."""
        heard = ""
        for sentence in self.sentences[: self.shown]:
            received_ms = sentence.received * 1000 // SAMPLE_RATE
            played = playout.played_ms(sentence.item)
            if sentence.done and played >= received_ms:
                heard += joined(heard, sentence.text)
                continue
            share = played / max(1, received_ms)
            heard += joined(heard, sentence.text[: round(len(sentence.text) * share)])
            break
        return heard.strip()

    def cut(self, heard: str, state: CallState) -> None:
        """The caller talked over this reply: keep what was heard, marked as cut."""
        if self.heard is not None:
            return
        self.heard = heard
        if self.shown:
            state.agent_cut(self.key, len(heard) / max(1, len(self.text)))


def sentence_end(text: str) -> int | None:
    """Where the first complete sentence of `text` ends, if one has."""
    for index, char in enumerate(text):
        if char in _STRONG_END:
            end = index + 1
            while end < len(text) and text[end] in _STRONG_END + "」』)）\"'":
                end += 1
            return end
        if char == "." and index + 1 < len(text) and text[index + 1].isspace() and index > 0:
            return index + 1
    if len(text) > _LONG_SENTENCE:
        breaks = [match.end() for match in _WEAK_BREAK.finditer(text)]
        if breaks:
            return breaks[-1]
    return None


def joined(before: str, sentence: str) -> str:
    """`sentence` as it continues `before`: a space between English sentences, none after Japanese ones."""
    if not before or before[-1] in "。！？、」』）" or sentence[:1] in "。！？、":
        return sentence
    return " " + sentence


def wav(pcm: np.ndarray, rate: int) -> bytes:
    """Mono int16 audio as a WAV file, for the speech-to-text upload."""
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(np.asarray(pcm, dtype=np.int16).tobytes())
    return out.getvalue()


def ms_since(since: float) -> int:
    return round((time.monotonic() - since) * 1000)
