"""The pipeline engine's models, read from the environment (speech-to-text reuses `AgentSettings`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

SPEECH_STYLE = {
    "ja": "丁寧で温かい、落ち着いたレストランの電話受付の声で、自然な速さで話してください。",
    "en": "Speak as a warm, polite restaurant host on the phone, at a natural pace.",
}


@dataclass(frozen=True)
class PipelineSettings:
    """Models of the pipeline engine (speech-to-text reuses `AgentSettings.transcription_model`).

    `OPENAI_CHAT_MODEL` (default `gpt-5.4-mini`, the small current model with tool calling),
    `OPENAI_TTS_MODEL` (default `gpt-4o-mini-tts`, which streams PCM and takes a speaking style),
    `OPENAI_CHAT_REASONING_EFFORT`: sent to the chat model as `reasoning_effort`; by default `none` for the
    GPT-5 family (a phone turn cannot wait for deliberation) and not sent to other models (a local model on
    an OpenAI-compatible server may not know the parameter); `off` never sends it.
    """

    chat_model: str = "gpt-5.4-mini"
    tts_model: str = "gpt-4o-mini-tts"
    reasoning_effort: str | None = None
    max_tool_rounds: int = 6

    @classmethod
    def from_env(cls) -> PipelineSettings:
        return cls(
            chat_model=os.environ.get("OPENAI_CHAT_MODEL", "").strip() or cls.chat_model,
            tts_model=os.environ.get("OPENAI_TTS_MODEL", "").strip() or cls.tts_model,
            reasoning_effort=os.environ.get("OPENAI_CHAT_REASONING_EFFORT", "").strip().lower() or None,
        )

    def chat_options(self) -> dict[str, Any]:
        effort = self.reasoning_effort
        if effort is None and self.chat_model.startswith("gpt-5"):
            effort = "none"
        return {} if effort in (None, "off") else {"reasoning_effort": effort}

    def speech_options(self, language: str) -> dict[str, Any]:
        if self.tts_model.startswith("tts-1"):  # the older models take no instructions
            return {}
        return {"instructions": SPEECH_STYLE.get(language, SPEECH_STYLE["en"])}
