"""Everything the screen (or a dashboard following a call) shows about one call, in conversation order.

The Realtime API reports a call out of order: the caller's words are transcribed after the agent has
already started answering, the agent's words stream in pieces, and barge-in cuts a line short. This
module keeps one ordered transcript and the per-turn figures, and turns them into a plain JSON-able
view that leaves the handler as fastrtc `AdditionalOutputs`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from components.call.notices import label

Role = Literal["user", "assistant", "system"]
LineStatus = Literal["pending", "streaming", "final", "interrupted", "inaudible"]


@dataclass
class Line:
    """One transcript line; `key` ties it to the Realtime item it shows, if any."""

    role: Role
    text: str
    status: LineStatus
    key: str | None = None


@dataclass
class Turn:
    """Figures of one agent response: voice-to-voice latency, tokens used and their estimated cost."""

    latency_ms: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float = 0.0


@dataclass
class CallState:
    """The transcript, the reservation card, the figures and the clock of one call."""

    language: str = "ja"
    lines: list[Line] = field(default_factory=list)
    reservation: dict[str, Any] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)
    deadline: float | None = None
    ended: bool = False
    _by_key: dict[str, Line] = field(default_factory=dict, repr=False)

    def _line(self, key: str, role: Role) -> Line:
        line = self._by_key.get(key)
        if line is None:
            line = Line(role, "", "pending" if role == "user" else "streaming", key)
            self._by_key[key] = line
            self.lines.append(line)
        return line

    def user_pending(self, item_id: str) -> None:
        """The caller finished a turn; keep its place in the transcript while it is transcribed."""
        line = self._line(item_id, "user")
        if line.status == "pending":
            line.text = label("transcribing", self.language)

    def user_said(self, item_id: str, text: str) -> None:
        line = self._line(item_id, "user")
        text = text.strip()
        if text:
            line.text, line.status = text, "final"
        else:
            self.user_inaudible(item_id)

    def user_inaudible(self, item_id: str) -> None:
        line = self._line(item_id, "user")
        line.text, line.status = label("inaudible", self.language), "inaudible"

    def agent_delta(self, item_id: str, delta: str) -> None:
        line = self._line(item_id, "assistant")
        if line.status == "streaming":
            line.text += delta

    def agent_done(self, item_id: str, transcript: str | None) -> None:
        line = self._line(item_id, "assistant")
        if line.status == "streaming":
            if transcript:
                line.text = transcript
            line.status = "final"

    def agent_cut(self, item_id: str, heard: float) -> None:
        """Barge-in: keep the share of the line the caller heard (`heard` in 0..1) and mark the cut."""
        line = self._line(item_id, "assistant")
        if line.status == "interrupted":
            return
        kept = line.text[: round(len(line.text) * max(0.0, min(1.0, heard)))].rstrip()
        line.text = f"{kept}… {label('interrupted', self.language)}".lstrip()
        line.status = "interrupted"

    def system(self, text: str) -> None:
        """A notice from the product itself (errors, reconnects, time left)."""
        self.lines.append(Line("system", text, "final"))

    def seconds_left(self, now: float | None = None) -> int | None:
        if self.deadline is None:
            return None
        return max(0, round(self.deadline - (time.time() if now is None else now)))

    def cost_usd(self) -> float:
        """What the call has cost so far, by the estimates of its responses."""
        return sum(turn.cost_usd for turn in self.turns)

    def view(self) -> dict[str, Any]:
        """A fresh JSON-able snapshot: safe to hand to another task while this state keeps changing."""
        return {
            "language": self.language,
            "transcript": [{"role": line.role, "text": line.text, "status": line.status} for line in self.lines],
            "reservation": self.reservation,
            "turns": [vars(turn).copy() for turn in self.turns],
            "deadline": self.deadline,
            "ended": self.ended,
        }
