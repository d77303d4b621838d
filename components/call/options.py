"""What a call is asked for and what it will use, as types: the visitor, the request, the resolved options.

The page hands its choices to the call widget's handler as fastrtc's positional inputs. `CALL_INPUTS` names their
order once: the page builds its input list from these names, the offer route its values (`CallRequest.inputs`), and
`CallRequest.from_inputs` is the one place that reads positions. Everything past it passes these objects by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from components.settings import LANGUAGES, VOICES, AgentSettings

CALL_INPUTS = ("language", "voice", "api_key", "visitor")  # after the call widget's own value


class Visitor(BaseModel):
    """Who the page says is calling (see `web.visitor`): `hf:<user>` or `ip:<address>`, and whether they came with
    the demo's access code. Kept in a `gr.State`, so it crosses Gradio's session as a plain model."""

    model_config = ConfigDict(frozen=True)

    id: str
    code_ok: bool

    @classmethod
    def unknown(cls, code_ok: bool) -> Visitor:
        """A caller that did not come through the page (an API client), counted as one unknown visitor."""
        return cls(id="ip:unknown", code_ok=code_ok)


@dataclass(frozen=True)
class CallRequest:
    """What the page (or an API client) asked for. Any field may be missing or odd: `CallOptions` decides."""

    language: str | None = None
    voice: str | None = None
    api_key: str | None = field(default=None, repr=False)
    visitor: Visitor | None = None

    def inputs(self) -> list[Any]:
        """The values in `CALL_INPUTS` order, as fastrtc passes a widget's inputs to its handler."""
        return [self.language, self.voice, self.api_key or "", self.visitor]

    @classmethod
    def from_inputs(cls, args: Sequence[Any]) -> CallRequest:
        """The request in a handler's `latest_args` (fastrtc puts the widget's value, or a marker, first)."""
        values = dict(zip(CALL_INPUTS, list(args)[-len(CALL_INPUTS) :], strict=False))
        text = {name: value for name, value in values.items() if isinstance(value, str)}
        visitor = values.get("visitor")
        return cls(
            language=text.get("language"),
            voice=text.get("voice"),
            api_key=text.get("api_key"),
            visitor=visitor if isinstance(visitor, Visitor) else None,
        )


@dataclass(frozen=True)
class CallOptions:
    """One call's choices: from the page's Settings on the web, the defaults on the phone. The key is never shown
    or logged. `own_key` says the visitor typed one (their own money); `visitor` is None on the phone."""

    language: str
    voice: str
    api_key: str | None = field(default=None, repr=False)
    own_key: bool = False
    visitor: Visitor | None = None

    @classmethod
    def resolve(cls, request: CallRequest | None, default_language: str, settings: AgentSettings) -> CallOptions:
        """A key typed in the page wins over the owner's `OPENAI_API_KEY`; an unknown language or voice falls back
        to the default rather than failing the call. `request` is None on the phone."""
        request = request or CallRequest()
        typed = (request.api_key or "").strip()
        return cls(
            language=request.language if request.language in LANGUAGES else default_language,
            voice=request.voice if request.voice in VOICES else settings.voice,
            api_key=typed or settings.api_key,
            own_key=bool(typed),
            visitor=request.visitor,
        )
