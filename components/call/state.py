"""Everything the screen (or a dashboard following a call) shows about one call, in conversation order.

The Realtime API reports a call out of order: the caller's words are transcribed after the agent has
already started answering, the agent's words stream in pieces, and barge-in cuts a line short. This
module keeps one ordered transcript and the per-turn figures, and turns them into a `CallView`: the typed
snapshot that goes to the page, the live feed, the booking's record (as JSON) and the owner's console.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

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


class CloseReason(StrEnum):
    """Why a call ended, whatever ended it: recorded in its view (so in the booking's record) and in its meter."""

    HUNG_UP = "hung_up"  # the caller hung up, or closed the page
    TIME_UP = "time_up"  # the call's time limit, after a goodbye
    BUDGET = "budget"  # the day's minutes or budget on the owner's key ran out mid-call
    NO_KEY = "no_key"  # no OpenAI key to call with
    NOT_ALLOWED = "not_allowed"  # the demo's allowances refused a call on the owner's key
    KEY_REFUSED = "key_refused"  # the service refused the key
    SERVICE = "service"  # the service failed, could not be reached, or the connection was lost for good
    ERROR = "error"  # an unexpected failure in our own code
    TRANSFERRED = "transferred"  # the phone caller was put through to the staff

    @property
    def is_error(self) -> bool:
        """Shown as an error (a red toast; the phone line apologises), not as a plain notice."""
        return self not in (CloseReason.HUNG_UP, CloseReason.TIME_UP, CloseReason.BUDGET, CloseReason.TRANSFERRED)


class LineView(BaseModel):
    role: Role
    text: str
    status: LineStatus


class TurnView(BaseModel):
    """One agent response's figures (the pipeline's stage times are ms from the end of the caller's turn)."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float = 0.0
    vad_ms: int | None = None
    transcript_ms: int | None = None
    first_token_ms: int | None = None
    first_audio_ms: int | None = None
    voice_to_voice_ms: int | None = None


class CallView(BaseModel):
    """A snapshot of one call, safe to hand to another task or thread while the call goes on. `reservation` is the
    draft's snapshot (the tools' result, see `restaurant.tools`); `deadline` is in seconds since the epoch."""

    language: str = "ja"
    transcript: list[LineView] = []
    reservation: dict[str, Any] = {}
    turns: list[TurnView] = []
    deadline: float | None = None
    ended: bool = False
    end_reason: CloseReason | None = None
    other_cost_usd: float = 0.0

    def cost_usd(self) -> float:
        return sum(turn.cost_usd for turn in self.turns) + self.other_cost_usd


@dataclass
class CallState:
    """The transcript, the reservation card, the figures and the clock of one call."""

    language: str = "ja"
    lines: list[Line] = field(default_factory=list)
    reservation: dict[str, Any] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)
    deadline: float | None = None
    end_reason: CloseReason | None = None
    other_cost_usd: float = 0.0  # spent outside any response: e.g. transcribing a turn that came to nothing
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

    def agent_text(self, item_id: str, text: str) -> None:
        """The agent's line so far, whole (an engine that groups its transcript itself, like GPT-Live's)."""
        line = self._line(item_id, "assistant")
        if line.status == "streaming":
            line.text = text

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

    def cost_usd(self) -> float:
        """What the call has cost so far, by the estimates of its responses and of the work that led to none."""
        return sum(turn.cost_usd for turn in self.turns) + self.other_cost_usd

    def view(self) -> CallView:
        """A fresh snapshot: safe to hand to another task while this state keeps changing."""
        return CallView(
            language=self.language,
            transcript=[LineView(role=line.role, text=line.text, status=line.status) for line in self.lines],
            reservation=self.reservation,
            turns=[TurnView(**vars(turn)) for turn in self.turns],
            deadline=self.deadline,
            ended=self.end_reason is not None,
            end_reason=self.end_reason,
            other_cost_usd=self.other_cost_usd,
        )
