"""What a call costs, estimated from the usage each OpenAI API reports and the price table in `settings`.

* Realtime: every `response.done` carries `usage`, with audio, text and cached tokens apart on both sides;
  each is priced at its own rate (cached input is a small fraction of fresh input).
* GPT-Live: the session's billable seconds (`session.usage.updated`, cumulative) at the per-minute prices, plus
  the backend Responses model's tokens for each delegated task;
* Pipeline: the chat model's usage (prompt, cached and completion tokens) per request; speech-to-text by its
  token usage, or by the minutes of audio for a model that reports only a duration; text-to-speech by the
  characters sent and the minutes of audio it returned (its API reports no usage).

`prices` is the table the settings parsed at start (`OPENAI_PRICES` merged over the list prices). Estimates, not
invoices: they are what the card shows and what the demo's daily budget counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.settings import PRICES, Prices

MILLION = 1_000_000


def _get(usage: Any, name: str) -> Any:
    """A field of a usage object or dict (the SDK gives objects, raw events give dicts)."""
    if usage is None:
        return None
    if isinstance(usage, Mapping):
        return usage.get(name)
    return getattr(usage, name, None)


def _tokens(usage: Any, *path: str) -> int:
    value: Any = usage
    for name in path:
        value = _get(value, name)
    return int(value or 0)


def _price(model: str, table: Prices) -> Mapping[str, float]:
    """A model's rates; a dated snapshot (`gpt-realtime-2025-08-28`) is priced as the longest model name it starts
    with."""
    if model in table:
        return table[model]
    names = sorted((name for name in table if model.startswith(name)), key=len, reverse=True)
    return table[names[0]] if names else {}


def realtime_cost(usage: Any, model: str, prices: Prices = PRICES) -> float:
    """One Realtime response: fresh and cached audio and text input, audio and text output."""
    rates = _price(model, prices)
    audio_in = _tokens(usage, "input_token_details", "audio_tokens")
    text_in = _tokens(usage, "input_token_details", "text_tokens")
    cached_audio = _tokens(usage, "input_token_details", "cached_tokens_details", "audio_tokens")
    cached_text = _tokens(usage, "input_token_details", "cached_tokens_details", "text_tokens")
    audio_out = _tokens(usage, "output_token_details", "audio_tokens")
    text_out = _tokens(usage, "output_token_details", "text_tokens")
    cost = (
        (audio_in - cached_audio) * rates.get("audio_in", 0.0)
        + cached_audio * rates.get("audio_in_cached", rates.get("audio_in", 0.0))
        + (text_in - cached_text) * rates.get("text_in", 0.0)
        + cached_text * rates.get("text_in_cached", rates.get("text_in", 0.0))
        + audio_out * rates.get("audio_out", 0.0)
        + text_out * rates.get("text_out", 0.0)
    )
    return cost / MILLION


def chat_cost(usage: Any, model: str, prices: Prices = PRICES) -> float:
    """One chat completion: prompt tokens (the cached share at its own rate) and completion tokens."""
    rates = _price(model, prices)
    prompt = _tokens(usage, "prompt_tokens")
    cached = _tokens(usage, "prompt_tokens_details", "cached_tokens")
    completion = _tokens(usage, "completion_tokens")
    cost = (
        (prompt - cached) * rates.get("text_in", 0.0)
        + cached * rates.get("text_in_cached", rates.get("text_in", 0.0))
        + completion * rates.get("text_out", 0.0)
    )
    return cost / MILLION


def responses_cost(usage: Any, model: str, prices: Prices = PRICES) -> float:
    """One Responses call (GPT-Live's backend model): input tokens (the cached share at its own rate) and output."""
    rates = _price(model, prices)
    fresh, cached = _tokens(usage, "input_tokens"), _tokens(usage, "input_tokens_details", "cached_tokens")
    cost = (
        (fresh - cached) * rates.get("text_in", 0.0)
        + cached * rates.get("text_in_cached", rates.get("text_in", 0.0))
        + _tokens(usage, "output_tokens") * rates.get("text_out", 0.0)
    )
    return cost / MILLION


def live_cost(usage: Any, model: str, prices: Prices = PRICES) -> float:
    """A GPT-Live session so far, from its cumulative `usage` (seconds; the active and standby split where given):
    billed per second at the active minute's price, standby at its own."""
    rates = _price(model, prices)
    seconds = float(_get(usage, "seconds") or 0.0)
    paused = float(_get(usage, "paused_seconds") or 0.0)
    active = float(_get(usage, "active_seconds") if _get(usage, "active_seconds") is not None else seconds - paused)
    return active / 60 * rates.get("active_minute", 0.0) + paused / 60 * rates.get("standby_minute", 0.0)


def transcription_cost(usage: Any, model: str, audio_s: float, prices: Prices = PRICES) -> float:
    """One transcription: by tokens when the API reports them, else by the minutes of audio sent."""
    rates = _price(model, prices)
    if _get(usage, "type") == "tokens" or _get(usage, "input_tokens") is not None:
        audio_in = _tokens(usage, "input_token_details", "audio_tokens") or _tokens(usage, "input_tokens")
        text_in = _tokens(usage, "input_token_details", "text_tokens")
        cost = audio_in * rates.get("audio_in", 0.0) + text_in * rates.get("text_in", 0.0)
        return (cost + _tokens(usage, "output_tokens") * rates.get("text_out", 0.0)) / MILLION
    seconds = float(_get(usage, "seconds") or audio_s)
    return seconds / 60 * rates.get("audio_minute", 0.0)


def speech_cost(characters: int, audio_s: float, model: str, prices: Prices = PRICES) -> float:
    """One synthesised sentence: its text (about four characters a token) and the minutes of audio returned."""
    rates = _price(model, prices)
    return characters / 4 * rates.get("text_in", 0.0) / MILLION + audio_s / 60 * rates.get("audio_minute", 0.0)
