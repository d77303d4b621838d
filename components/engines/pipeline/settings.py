"""How the pipeline engine calls its models (`settings.PipelineModels` names them; speech-to-text reuses
`AgentSettings.transcription_model`)."""

from __future__ import annotations

from typing import Any

from components.settings import PipelineModels

SPEECH_STYLE = {
    "ja": "丁寧で温かい、落ち着いたレストランの電話受付の声で、自然な速さで話してください。",
    "en": "Speak as a warm, polite restaurant host on the phone, at a natural pace.",
}


def chat_options(models: PipelineModels) -> dict[str, Any]:
    """`reasoning_effort`: `none` for the GPT-5 family unless set (a phone turn cannot wait for deliberation), not
    sent to other models (a local model on an OpenAI-compatible server may not know it), never when `off`."""
    effort = models.reasoning_effort
    if effort is None and models.chat_model.startswith("gpt-5"):
        effort = "none"
    return {} if effort in (None, "off") else {"reasoning_effort": effort}


def speech_options(models: PipelineModels, language: str) -> dict[str, Any]:
    if models.tts_model.startswith("tts-1"):  # the older models take no instructions
        return {}
    return {"instructions": SPEECH_STYLE.get(language, SPEECH_STYLE["en"])}
