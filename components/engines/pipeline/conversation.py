"""The pipeline engine's side of the conversation: the model's history and its three OpenAI HTTP services.

All through the official SDK, so `OPENAI_BASE_URL` can point at any OpenAI-compatible server:

* **speech-to-text**: a caller turn as a WAV to `audio.transcriptions` (the call's language as a hint and the
  agent's last words as context), added to the transcript and the history in turn order. The handler may ask
  early (`recognise`, at the pause the end-of-turn model is asked about) and hand that request to the turn; if it
  failed, the turn's own upload is the fallback;
* **the model**: `chat.completions` streamed with the booking tools; streamed tool-call deltas are put
  together, run against the call's draft, answered, and the model is asked again until it speaks. Every tool
  round is committed to the history even if the caller interrupts it, so the model always knows what the code
  did;
* **text-to-speech**: each finished sentence of a reply is synthesised while the model is still writing the
  next one (`audio.speech`, streamed as 24 kHz PCM) into the playout.

What the caller hears and when turns start or are cut is the handler's business, not this module's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import openai
from openai import AsyncOpenAI

from components.call.call import Call
from components.call.costs import chat_cost, speech_cost, transcription_cost
from components.engines.pipeline.reply import PipelineTurn, Reply, ms_since, wav
from components.engines.pipeline.settings import chat_options, speech_options
from components.engines.playout import SAMPLE_RATE, Playout
from components.restaurant.tools import chat_tools
from components.settings import PipelineModels

PROMPT_CHARS = 200  # of the agent's last words, given to speech-to-text as context


@dataclass(frozen=True)
class Recognised:
    """What speech-to-text made of some audio, and what it cost."""

    text: str
    cost_usd: float


class Conversation:
    """The model's history for one call, and the services that listen, think and speak."""

    def __init__(
        self,
        client: AsyncOpenAI,
        call: Call,
        pipeline: PipelineModels,
        playout: Playout,
        on_failure: Callable[[Exception], Awaitable[None]],
    ) -> None:
        assert call.options is not None
        self.client = client
        self.call = call
        self.options = call.options
        self.pipeline = pipeline
        self.prices = call.settings.prices
        self.playout = playout
        self.on_failure = on_failure  # a service failed: the handler decides whether the call goes on
        self.instructions = call.instructions()
        self.messages: list[dict[str, Any]] = []  # the conversation after the system prompt
        self._commits: set[asyncio.Task] = set()  # work that must reach the history even if its turn is cut
        self._last_transcript: asyncio.Task | None = None

    # ---- speech-to-text ----------------------------------------------------------------------------

    async def recognise(self, pcm: np.ndarray, rate: int) -> Recognised:
        """One speech-to-text request (raises what the service raises)."""
        prompt = next((m["content"] for m in reversed(self.messages) if m["role"] == "assistant"), None)
        options: dict[str, Any] = {"prompt": prompt[-PROMPT_CHARS:]} if isinstance(prompt, str) and prompt else {}
        model = self.call.settings.transcription_model
        result = await self.client.audio.transcriptions.create(
            model=model,
            file=("speech.wav", wav(pcm, rate), "audio/wav"),
            language=self.options.language,
            **options,
        )
        cost = transcription_cost(getattr(result, "usage", None), model, pcm.size / rate, self.prices)
        return Recognised((getattr(result, "text", None) or "").strip(), cost)

    async def transcribe(
        self,
        number: int,
        pcm: np.ndarray,
        rate: int,
        started: float,
        figures: PipelineTurn,
        early: asyncio.Task[Recognised] | None = None,
    ) -> str:
        """The caller's words, added to the transcript and the history in turn order; never raises. `early`: a
        request for the same words already on its way (its answer is used unless it failed)."""
        key = f"caller-{number}"
        previous, self._last_transcript = self._last_transcript, asyncio.current_task()
        self.call.state.user_pending(key)
        self.call.changed()
        text = ""
        failure: Exception | None = None
        try:
            recognised = await _answer_of(early) if early is not None else None
            if recognised is None:
                recognised = await self.recognise(pcm, rate)
            text = recognised.text
            figures.transcript_ms = ms_since(started)
            figures.cost_usd += recognised.cost_usd
        except Exception as error:  # reported below, once the order of the transcript allows
            failure = error
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        if text:
            self.call.state.user_said(key, text)
            self.messages.append({"role": "user", "content": text})
        else:
            self.call.state.user_inaudible(key)
        self.call.changed()
        if failure is not None:
            await self.on_failure(failure)
        return text

    # ---- the model ---------------------------------------------------------------------------------

    async def respond(self, reply: Reply, figures: PipelineTurn, started: float, instruction: str | None) -> None:
        """Stream the model's answer into `reply`, running its tool calls, until it has spoken."""
        for round_number in range(1, self.pipeline.max_tool_rounds + 2):
            await self._settle()
            messages = [{"role": "system", "content": self.instructions}, *self.messages]
            if instruction:
                messages.append({"role": "system", "content": instruction})
            stream = await self.client.chat.completions.create(
                model=self.pipeline.chat_model,
                messages=messages,  # type: ignore[arg-type]
                tools=chat_tools(transfer=self.call.transfer_offered),  # type: ignore[arg-type]
                tool_choice="auto" if round_number <= self.pipeline.max_tool_rounds else "none",
                stream=True,
                stream_options={"include_usage": True},
                **chat_options(self.pipeline),
            )
            text: list[str] = []
            calls: dict[int, dict[str, str]] = {}
            async for chunk in stream:
                if chunk.usage is not None:
                    _count_tokens(figures, chunk.usage)
                    figures.cost_usd += chat_cost(chunk.usage, self.pipeline.chat_model, self.prices)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        if figures.first_token_ms is None:
                            figures.first_token_ms = ms_since(started)
                        text.append(delta.content)
                        reply.feed(delta.content)
                    for call in delta.tool_calls or []:
                        slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = call.id or slot["id"]
                        if call.function is not None:
                            slot["name"] += call.function.name or ""
                            slot["arguments"] += call.function.arguments or ""
            reply.flush()
            spoken = "".join(text)
            if not calls:
                reply.history = {"role": "assistant", "content": spoken}
                self.messages.append(reply.history)
                return
            tools = asyncio.create_task(self._run_tools(spoken, [calls[index] for index in sorted(calls)]))
            self.commit(tools)
            await asyncio.shield(tools)

    async def _run_tools(self, spoken: str, calls: list[dict[str, str]]) -> None:
        """Run one round of tool calls and add it, with the results, to the history (even if the turn is cut)."""
        assistant: dict[str, Any] = {
            "role": "assistant",
            "content": spoken or None,
            "tool_calls": [
                {
                    "id": call["id"] or f"call_{index}",
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"] or "{}"},
                }
                for index, call in enumerate(calls)
            ],
        }
        results = []
        for call in assistant["tool_calls"]:
            result = await self.call.run_tool(call["function"]["name"], call["function"]["arguments"])
            results.append(
                {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result, ensure_ascii=False)}
            )
        self.messages.append(assistant)
        self.messages.extend(results)

    def keep_heard(self, reply: Reply) -> None:
        """After a cut, the history holds what the caller heard of the reply, like Realtime's truncate."""
        heard = reply.heard or ""
        if reply.history is not None and reply.history in self.messages:
            if heard:
                reply.history["content"] = f"{heard}…"
            else:
                self.messages.remove(reply.history)
        elif heard:
            self.messages.append({"role": "assistant", "content": f"{heard}…"})

    def commit(self, task: asyncio.Task) -> None:
        """`task` must reach the history whatever happens to the turn that started it."""
        self._commits.add(task)
        task.add_done_callback(self._commits.discard)

    async def _settle(self) -> None:
        """Wait for earlier work (transcripts, tool rounds) to reach the history, so the model sees it in order."""
        pending = [task for task in self._commits if task is not asyncio.current_task() and not task.done()]
        if pending:
            await asyncio.wait(pending)

    # ---- text-to-speech ----------------------------------------------------------------------------

    async def speak(self, reply: Reply, figures: PipelineTurn, started: float) -> None:
        """Synthesise the reply's sentences in order into the playout, as the model writes them."""
        while (sentence := await reply.queue.get()) is not None:
            try:
                async with self.client.audio.speech.with_streaming_response.create(
                    model=self.pipeline.tts_model,
                    voice=self.options.voice,
                    input=sentence.text,
                    response_format="pcm",
                    **speech_options(self.pipeline, self.options.language),
                ) as response:
                    carry = b""
                    async for data in response.iter_bytes():
                        if figures.first_audio_ms is None:
                            figures.first_audio_ms = ms_since(started)
                        data = carry + data
                        usable = len(data) - len(data) % 2
                        carry = data[usable:]
                        pcm = np.frombuffer(data[:usable], dtype=np.int16)
                        sentence.received += pcm.size
                        self.playout.push(sentence.item, pcm)
            except openai.OpenAIError as error:
                await self.on_failure(error)  # this sentence is shown, not spoken; the reply goes on
            finally:
                sentence.done = True
                audio_s = sentence.received / SAMPLE_RATE
                figures.cost_usd += speech_cost(len(sentence.text), audio_s, self.pipeline.tts_model, self.prices)
            if self.call.close_message is not None:
                return


def _count_tokens(figures: PipelineTurn, usage: Any) -> None:
    prompt = getattr(usage, "prompt_tokens", None) or 0
    completion = getattr(usage, "completion_tokens", None) or 0
    figures.input_tokens = (figures.input_tokens or 0) + prompt
    figures.output_tokens = (figures.output_tokens or 0) + completion
    figures.total_tokens = (figures.total_tokens or 0) + (getattr(usage, "total_tokens", None) or prompt + completion)


def succeeded(task: asyncio.Future[Any]) -> bool:
    """Whether a finished task returned. Reading its failure marks it as seen, so a failure nobody waited for is not
    logged as never retrieved: also a done-callback for that."""
    return not task.cancelled() and task.exception() is None


async def _answer_of(early: asyncio.Task[Recognised]) -> Recognised | None:
    """The early request's answer, or None if it failed or was cancelled (the turn then asks again itself)."""
    await asyncio.wait([early])  # raises only if the turn itself is cancelled
    return early.result() if succeeded(early) else None
