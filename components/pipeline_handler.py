"""The pipeline engine: voice activity detection → speech-to-text → a chat model with tools → text-to-speech.

The second voice engine behind the same page, phone line and rules as `realtime_handler`: instead of one
speech-to-speech session, each caller turn goes through three ordinary OpenAI HTTP APIs, all through the
official SDK, so `OPENAI_BASE_URL` can point it at any OpenAI-compatible server (a local vLLM or Ollama for
the text model, say). Built on fastrtc's `ReplyOnPause`:

* **turns** come from `ReplyOnPause`'s pause detection with a packaged Silero VAD tuned for telephone
  speech (`components.vad`; nothing is downloaded at run time), plus the chunk before speech started, so
  the first syllable is never clipped;
* **speech-to-text**: the turn's audio as a WAV to `audio.transcriptions` (`OPENAI_TRANSCRIBE_MODEL`, with the
  call's language as a hint and the agent's last words as context);
* **the model**: `chat.completions` streamed with the three booking tools (`OPENAI_CHAT_MODEL`); streamed
  tool-call deltas are put together, run with `run_tool` in a thread, answered, and the model is asked again
  until it speaks. Every tool round is committed to the history even if the caller interrupts it, so the
  model always knows what the code did;
* **text-to-speech**: each finished sentence is synthesised while the model is still writing the next one
  (`audio.speech`, `OPENAI_TTS_MODEL`, streamed as 24 kHz PCM), and paced out in real time (`playout`);
* **barge-in**: once the caller has said a quarter of a second over the agent, playback stops (our queue and
  fastrtc's), the unfinished work is cancelled, the transcript keeps what was heard, marked as cut, and so
  does the model's history;
* **figures** per turn (`PipelineTurn`): silence waited by the VAD, time to transcript, to first token, to
  first audio byte, to the first audio played (`latency_ms`, as the Realtime engine reports it) and voice to
  voice, all in ms from the end of the caller's turn;
* the same UI inputs, outputs, notices (no key, refused key, service errors, time limit) and `CloseStream`
  ending as the Realtime engine.

Threads: fastrtc runs a `ReplyOnPause` handler's `start_up`, `receive` and `emit` in worker threads; all the
call's state lives on the event loop (`self.loop`) and the threads only hand work to it.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import time
import wave
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import openai
from fastrtc import AdditionalOutputs, CloseStream, ReplyOnPause
from fastrtc.reply_on_pause import AppState
from openai import AsyncOpenAI

from components.call_state import CallState, Turn
from components.config import RestaurantConfig
from components.messages import notice
from components.playout import SAMPLE_RATE, Playout
from components.prompt import goodbye_instruction, render_instructions, wrap_up_instruction
from components.realtime_handler import GOODBYE_WAIT_S, TIME_WARNING_S, UI_PUSH_INTERVAL_S, CallEnded
from components.session import ReservationSession
from components.settings import AgentSettings, CallOptions
from components.store import ReservationStore
from components.tools import chat_tools, run_tool
from components.vad import BARGE_IN_SPEECH_S, TELEPHONE_ALGO, TELEPHONE_VAD, SileroVAD

log = logging.getLogger(__name__)

INPUT_RATE = 16_000  # what the VAD and speech-to-text want; fastrtc resamples the caller to it
IDLE_WAIT_S = 0.05  # how long `emit` waits for a turn before returning (fastrtc calls it in a loop)
MAX_FAILED_TURNS = 3  # turns in a row the service failed before the call gives up
TAIL_S = 1.5  # how much of a turn's end is searched for the last speech (the VAD's silence figure)
PROMPT_CHARS = 200  # of the agent's last words, given to speech-to-text as context
SPEECH_STYLE = {
    "ja": "丁寧で温かい、落ち着いたレストランの電話受付の声で、自然な速さで話してください。",
    "en": "Speak as a warm, polite restaurant host on the phone, at a natural pace.",
}
_STRONG_END = "。！？!?…\n"
_WEAK_BREAK = re.compile(r"[、，,;；:：]\s*")
_LONG_SENTENCE = 160  # characters: past this a sentence is spoken up to its last comma


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
class _Sentence:
    text: str
    item: str  # its id in the playout
    received: int = 0  # samples synthesised so far
    done: bool = False  # synthesis finished (or failed)


@dataclass
class _Voice:
    """One spoken reply: the model's text cut into sentences, synthesised one after another."""

    key: str  # the transcript line
    sentences: list[_Sentence] = field(default_factory=list)
    pending: str = ""
    shown: int = 0  # sentences already on screen (their audio started playing)
    text: str = ""  # what is on screen
    queue: asyncio.Queue[_Sentence | None] = field(default_factory=asyncio.Queue)
    history: dict[str, Any] | None = None  # the assistant message of this reply in the model's history
    heard: str | None = None  # set by barge-in: the part of the reply the caller heard

    def feed(self, text: str) -> None:
        self.pending += text
        while (cut := _sentence_end(self.pending)) is not None:
            self._add(self.pending[:cut])
            self.pending = self.pending[cut:]

    def flush(self) -> None:
        self._add(self.pending)
        self.pending = ""

    def _add(self, text: str) -> None:
        text = text.strip()
        if text:
            sentence = _Sentence(text, f"{self.key}.{len(self.sentences)}")
            self.sentences.append(sentence)
            self.queue.put_nowait(sentence)


def _sentence_end(text: str) -> int | None:
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


def _joined(before: str, sentence: str) -> str:
    if not before or before[-1] in "。！？、」』）" or sentence[:1] in "。！？、":
        return sentence
    return " " + sentence


def _wav(pcm: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.asarray(pcm, dtype=np.int16).tobytes())
    return out.getvalue()


def _ms(since: float) -> int:
    return round((time.monotonic() - since) * 1000)


class PipelineHandler(ReplyOnPause):
    """One instance per call (fastrtc copies it per connection). Same UI inputs and outputs as `RealtimeHandler`:
    `[language, voice, api_key]` (the last three of the inputs; defaults and `OPENAI_API_KEY` on the phone),
    `AdditionalOutputs(CallState.view())`, bilingual notices, `CloseStream` at the end."""

    def __init__(
        self,
        config: RestaurantConfig,
        store: ReservationStore,
        settings: AgentSettings | None = None,
        pipeline: PipelineSettings | None = None,
    ) -> None:
        super().__init__(
            self._reply,
            algo_options=TELEPHONE_ALGO,
            model_options=TELEPHONE_VAD,
            can_interrupt=True,
            expected_layout="mono",
            output_sample_rate=SAMPLE_RATE,
            input_sample_rate=INPUT_RATE,
            model=SileroVAD(),  # one per call: it keeps the stream's state
        )
        self.config = config
        self.store = store
        self.settings = settings or AgentSettings.from_env()
        self.pipeline = pipeline or PipelineSettings.from_env()
        self.call_state = CallState(language=config.default_language)
        self.session: ReservationSession | None = None
        self.playout = Playout()
        self._client: AsyncOpenAI | None = None
        self._options: CallOptions | None = None
        self._instructions = ""
        self._messages: list[dict[str, Any]] = []  # the conversation after the system prompt
        self._ready = asyncio.Event()
        self._greeted = False
        self._turns = 0
        self._turn_task: asyncio.Task | None = None
        self._voice: _Voice | None = None
        self._figures: PipelineTurn | None = None
        self._turn_started = 0.0
        self._commits: set[asyncio.Task] = set()  # work that must reach the history even if its turn is cut
        self._last_transcript: asyncio.Task | None = None
        self._queued_instruction: str | None = None
        self._failures = 0
        self._clock_task: asyncio.Task | None = None
        self._close_message: str | None = None
        self._closed = False
        self._shutting_down = False
        self._dirty = False
        self._last_push = 0.0
        self._preroll: np.ndarray | None = None
        self._talk_speech = 0.0  # seconds of speech in the caller's current utterance
        self._barged: AppState | None = None  # the utterance that already interrupted the agent
        self._tail_vad: SileroVAD | None = None

    def copy(self) -> PipelineHandler:
        return PipelineHandler(self.config, self.store, self.settings, self.pipeline)

    # ---- fastrtc interface (worker threads) --------------------------------------------------------

    def start_up(self) -> None:
        self.model.warmup()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result()

    def receive(self, frame: tuple[int, np.ndarray]) -> None:
        if self._close_message is not None or self._shutting_down:
            return
        super().receive(frame)
        state = self.state
        if (
            state.started_talking
            and self._barged is not state
            and self._talk_speech >= BARGE_IN_SPEECH_S
            and self._agent_active()
        ):
            self._barged = state
            self.loop.call_soon_threadsafe(self._barge_in)

    def determine_pause(self, audio: np.ndarray, sampling_rate: int, state: AppState) -> bool:
        """fastrtc's rule, plus the chunk before speech started (the first syllable) and a speech count."""
        analysed = len(audio) / sampling_rate >= self.algo_options.audio_chunk_duration
        was_talking = state.started_talking
        paused = super().determine_pause(audio, sampling_rate, state)
        if analysed:
            speech = float(getattr(self.model, "last_speech_s", BARGE_IN_SPEECH_S))
            if state.started_talking and not was_talking:
                if self._preroll is not None and state.stream is not None:
                    state.stream = np.concatenate((self._preroll, state.stream))
                self._talk_speech = speech
            elif state.started_talking:
                self._talk_speech += speech
            self._preroll = None if state.started_talking else audio
        return paused

    def emit(self) -> Any:
        if self._closed or self._shutting_down:
            time.sleep(IDLE_WAIT_S)
            return None
        now = time.monotonic()
        if self._dirty and (now - self._last_push >= UI_PUSH_INTERVAL_S or self._close_message is not None):
            self._dirty, self._last_push = False, now
            return AdditionalOutputs(self._on_loop(self._view()))
        if self._close_message is not None and not self._agent_active():
            self._closed = True
            return CloseStream(self._close_message)
        if not self.event.is_set() and not self.event.wait(IDLE_WAIT_S):
            return None
        return super().emit()

    def reset(self) -> None:
        """After a reply: start listening afresh, but keep an utterance the caller is in the middle of."""
        talking = self.state if self.state.started_talking else None
        super().reset()
        if talking is not None:
            talking.responding = False
            self.state = talking
            if talking.pause_detected:
                self.event.set()

    async def shutdown(self) -> None:
        self._shutting_down = True
        for task in (self._clock_task, self._turn_task):
            if task is not None:
                task.cancel()
        self.playout.clear()
        if self._client is not None:
            await self._client.close()

    def _on_loop(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def _view(self) -> dict[str, Any]:
        return self.call_state.view()

    def _agent_active(self) -> bool:
        """The agent is thinking or speaking."""
        task = self._turn_task
        return (task is not None and not task.done()) or self.playout.speaking

    def _agent_busy(self) -> bool:
        """The agent is thinking, speaking or about to answer an instruction."""
        return self._agent_active() or self._queued_instruction is not None

    # ---- call set-up (event loop) ------------------------------------------------------------------

    async def _start(self) -> None:
        try:
            self._options = await self._call_options()
            language = self._options.language
            self.call_state.language = language
            if not self._options.api_key:
                raise CallEnded(notice("no_key"))
            self.session = ReservationSession(self.config, self.store, language=language)
            self.call_state.reservation = self.session.snapshot()
            self.call_state.deadline = time.time() + self.settings.call_time_limit_s
            self._instructions = render_instructions(self.config, language)
            self._client = AsyncOpenAI(
                api_key=self._options.api_key,
                max_retries=1,
                timeout=httpx.Timeout(float(self.settings.response_timeout_s), connect=5.0),
            )
            self._changed()
            self._clock_task = asyncio.create_task(self._watch_clock())
            self._ready.set()
            # The agent speaks first: a reply with no caller audio, played like any other.
            self.generator = self._reply((INPUT_RATE, np.zeros((1, 0), dtype=np.int16)))
            self.event.set()
        except CallEnded as ended:
            await self._end(ended.message, error=True)

    async def _call_options(self) -> CallOptions:
        """Language, voice and key: from the UI inputs on the web, from settings on the phone."""
        if not self.phone_mode:
            await self.wait_for_args()
        inputs = None if self.phone_mode else self.latest_args
        return CallOptions.from_inputs(inputs, self.config.default_language, self.settings)

    # ---- one reply: what `ReplyOnPause` plays (event loop) -----------------------------------------

    async def _reply(self, audio: tuple[int, np.ndarray]) -> AsyncGenerator[Any, None]:
        """The agent's answer to one caller turn (or the greeting): start the work, play what it says."""
        rate, samples = audio
        pcm = np.asarray(samples).reshape(-1)
        await self._ready.wait()
        if self._close_message is not None or not self._begin_turn(pcm if pcm.size else None, rate):
            return
        while True:
            chunk = await self.playout.next_chunk()
            if chunk is not None:
                self._on_played()
                yield (SAMPLE_RATE, chunk)
                continue
            if self._agent_active():
                yield None  # let fastrtc push the screen's updates meanwhile
                continue
            if self._queued_instruction is not None and self._close_message is None and not self.state.started_talking:
                self._begin_turn(None, rate)
                continue
            return

    def _begin_turn(self, pcm: np.ndarray | None, rate: int) -> bool:
        """Start the work of a turn; False if there is nothing to answer."""
        instruction, self._queued_instruction = self._queued_instruction, None
        if pcm is None and instruction is None and self._greeted:
            return False
        self._stop_turn()
        self._voice, self._figures = None, None
        self._turns += 1
        self._turn_started = time.monotonic()
        self._turn_task = asyncio.create_task(self._run_turn(self._turns, pcm, rate, instruction))
        return True

    def _stop_turn(self) -> None:
        """A new turn replaces one still going (fastrtc restarted us on a new pause)."""
        if self._turn_task is not None and not self._turn_task.done():
            self._cut()
            self._turn_task.cancel()

    async def _run_turn(self, number: int, pcm: np.ndarray | None, rate: int, instruction: str | None) -> None:
        started = self._turn_started
        figures = PipelineTurn()
        voice = _Voice(f"agent-{number}")
        speaker: asyncio.Task | None = None
        try:
            if pcm is not None:
                transcript = asyncio.create_task(self._transcribe(number, pcm, rate, started, figures))
                self._commit(transcript)
                silence = asyncio.create_task(asyncio.to_thread(self._trailing_silence_ms, pcm, rate))
                text = await asyncio.shield(transcript)
                figures.vad_ms = await silence
                if not text:
                    return  # noise, a cough, or a failed transcription (already reported): nothing to answer
            self._greeted = True
            self._figures, self._voice = figures, voice
            self.call_state.turns.append(figures)
            speaker = asyncio.create_task(self._speak(voice, figures, started))
            await self._respond(voice, figures, started, instruction)
            voice.flush()
            voice.queue.put_nowait(None)
            await speaker
            while self.playout.speaking:
                await asyncio.sleep(0.02)
            self._failures = 0
        except asyncio.CancelledError:
            self._keep_heard(voice)
            raise
        except CallEnded as ended:
            await self._end(ended.message, error=True)
        except openai.OpenAIError as error:
            await self._service_failed(error)
        except Exception:
            log.exception("pipeline turn failed")
            self._system(notice("service_error", detail="internal error"))
        finally:
            if speaker is not None and not speaker.done():
                speaker.cancel()
            if voice.heard is None:
                self._reveal(voice, final=True)
            if self._voice is voice:
                self._voice = None
            if figures.vad_ms is not None and figures.latency_ms is not None:
                figures.voice_to_voice_ms = figures.vad_ms + figures.latency_ms
            self._changed()

    # ---- speech-to-text ----------------------------------------------------------------------------

    async def _transcribe(
        self, number: int, pcm: np.ndarray, rate: int, started: float, figures: PipelineTurn
    ) -> str | None:
        """The caller's words, added to the transcript and the history in turn order; never raises."""
        key = f"caller-{number}"
        previous, self._last_transcript = self._last_transcript, asyncio.current_task()
        self.call_state.user_pending(key)
        self._changed()
        text: str | None = None
        failure: Exception | None = None
        try:
            assert self._client is not None and self._options is not None
            prompt = next((m["content"] for m in reversed(self._messages) if m["role"] == "assistant"), None)
            options: dict[str, Any] = {"prompt": prompt[-PROMPT_CHARS:]} if isinstance(prompt, str) and prompt else {}
            result = await self._client.audio.transcriptions.create(
                model=self.settings.transcription_model,
                file=("speech.wav", _wav(pcm, rate), "audio/wav"),
                language=self._options.language,
                **options,
            )
            text = (getattr(result, "text", None) or "").strip()
            figures.transcript_ms = _ms(started)
        except Exception as error:  # reported below, once the order of the transcript allows
            failure = error
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        if text:
            self.call_state.user_said(key, text)
            self._messages.append({"role": "user", "content": text})
        else:
            self.call_state.user_inaudible(key)
        self._changed()
        if failure is not None:
            await self._service_failed(failure)
        return text

    def _trailing_silence_ms(self, pcm: np.ndarray, rate: int) -> int | None:
        """How long the caller had been silent when the pause was detected (thread)."""
        if self._tail_vad is None:
            self._tail_vad = SileroVAD(streaming=False)
        tail = pcm[-int(TAIL_S * rate) :]
        _, chunks = self._tail_vad.vad((rate, tail), TELEPHONE_VAD)
        if not chunks:
            return None
        return round((tail.size - chunks[-1]["end"]) * 1000 / rate)

    # ---- the model ---------------------------------------------------------------------------------

    async def _respond(self, voice: _Voice, figures: PipelineTurn, started: float, instruction: str | None) -> None:
        """Stream the model's answer into `voice`, running its tool calls, until it has spoken."""
        assert self._client is not None and self.session is not None and self._options is not None
        for round_number in range(1, self.pipeline.max_tool_rounds + 2):
            await self._settle()
            messages = [{"role": "system", "content": self._instructions}, *self._messages]
            if instruction:
                messages.append({"role": "system", "content": instruction})
            stream = await self._client.chat.completions.create(
                model=self.pipeline.chat_model,
                messages=messages,  # type: ignore[arg-type]
                tools=chat_tools(),  # type: ignore[arg-type]
                tool_choice="auto" if round_number <= self.pipeline.max_tool_rounds else "none",
                stream=True,
                stream_options={"include_usage": True},
                **self.pipeline.chat_options(),
            )
            text: list[str] = []
            calls: dict[int, dict[str, str]] = {}
            async for chunk in stream:
                if chunk.usage is not None:
                    self._count_tokens(figures, chunk.usage)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        if figures.first_token_ms is None:
                            figures.first_token_ms = _ms(started)
                        text.append(delta.content)
                        voice.feed(delta.content)
                    for call in delta.tool_calls or []:
                        slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = call.id or slot["id"]
                        if call.function is not None:
                            slot["name"] += call.function.name or ""
                            slot["arguments"] += call.function.arguments or ""
            voice.flush()
            spoken = "".join(text)
            if not calls:
                voice.history = {"role": "assistant", "content": spoken}
                self._messages.append(voice.history)
                return
            tools = asyncio.create_task(self._run_tools(spoken, [calls[index] for index in sorted(calls)]))
            self._commit(tools)
            await asyncio.shield(tools)

    async def _run_tools(self, spoken: str, calls: list[dict[str, str]]) -> None:
        """Run one round of tool calls and add it, with the results, to the history (even if the turn is cut)."""
        assert self.session is not None
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
            name, arguments = call["function"]["name"], call["function"]["arguments"]
            result = await asyncio.to_thread(run_tool, self.session, name, arguments)  # problems, never raises
            results.append(
                {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result, ensure_ascii=False)}
            )
        self._messages.append(assistant)
        self._messages.extend(results)
        self.call_state.reservation = self.session.snapshot()
        self._changed()

    @staticmethod
    def _count_tokens(figures: PipelineTurn, usage: Any) -> None:
        prompt = getattr(usage, "prompt_tokens", None) or 0
        completion = getattr(usage, "completion_tokens", None) or 0
        figures.input_tokens = (figures.input_tokens or 0) + prompt
        figures.output_tokens = (figures.output_tokens or 0) + completion
        figures.total_tokens = (figures.total_tokens or 0) + (
            getattr(usage, "total_tokens", None) or prompt + completion
        )

    def _commit(self, task: asyncio.Task) -> None:
        self._commits.add(task)
        task.add_done_callback(self._commits.discard)

    async def _settle(self) -> None:
        """Wait for earlier work (transcripts, tool rounds) to reach the history, so the model sees it in order."""
        pending = [task for task in self._commits if task is not asyncio.current_task() and not task.done()]
        if pending:
            await asyncio.wait(pending)

    # ---- text-to-speech ----------------------------------------------------------------------------

    async def _speak(self, voice: _Voice, figures: PipelineTurn, started: float) -> None:
        """Synthesise the reply's sentences in order into the playout, as the model writes them."""
        assert self._client is not None and self._options is not None
        while (sentence := await voice.queue.get()) is not None:
            try:
                async with self._client.audio.speech.with_streaming_response.create(
                    model=self.pipeline.tts_model,
                    voice=self._options.voice,
                    input=sentence.text,
                    response_format="pcm",
                    **self.pipeline.speech_options(self._options.language),
                ) as response:
                    carry = b""
                    async for data in response.iter_bytes():
                        if figures.first_audio_ms is None:
                            figures.first_audio_ms = _ms(started)
                        data = carry + data
                        usable = len(data) - len(data) % 2
                        carry = data[usable:]
                        pcm = np.frombuffer(data[:usable], dtype=np.int16)
                        sentence.received += pcm.size
                        self.playout.push(sentence.item, pcm)
            except openai.OpenAIError as error:
                await self._service_failed(error)  # this sentence is shown, not spoken; the reply goes on
            finally:
                sentence.done = True
            if self._close_message is not None:
                return

    # ---- what the caller hears and sees ------------------------------------------------------------

    def _on_played(self) -> None:
        """A piece of the current reply went to the caller: figures, and its sentence on screen."""
        figures = self._figures
        if figures is not None and figures.latency_ms is None:
            figures.latency_ms = _ms(self._turn_started)
            if figures.vad_ms is not None:
                figures.voice_to_voice_ms = figures.vad_ms + figures.latency_ms
            self._changed()
        if self._voice is not None:
            self._reveal(self._voice)

    def _reveal(self, voice: _Voice, final: bool = False) -> None:
        """Show the reply's sentences whose audio has started playing (all of them when it is over)."""
        for sentence in voice.sentences[voice.shown :]:
            playing = sentence.received and self.playout.played_ms(sentence.item) > 0
            unspoken = sentence.done and not sentence.received  # its synthesis failed
            if not (final or playing or unspoken):
                break
            piece = _joined(voice.text, sentence.text)
            voice.text += piece
            self.call_state.agent_delta(voice.key, piece)
            voice.shown += 1
            self._changed()
        if final and voice.sentences:
            self.call_state.agent_done(voice.key, None)
            self._changed()

    def _barge_in(self) -> None:
        """The caller talks over the agent: silence it now, drop the unfinished work, keep what was heard."""
        task = self._turn_task
        if not (task is not None and not task.done()) and not self.playout.speaking:
            return
        self._cut()
        if task is not None and not task.done():
            task.cancel()
        self._changed()

    def _cut(self) -> None:
        """Stop playback and mark the reply's line where the caller stopped hearing it."""
        voice = self._voice
        heard = self._heard_text(voice) if voice is not None else ""
        self.playout.clear()
        if self._clear_queue is not None:
            self.clear_queue()
        if voice is None or voice.heard is not None:
            return
        voice.heard = heard
        if voice.shown:
            self.call_state.agent_cut(voice.key, len(heard) / max(1, len(voice.text)))
        self._changed()

    def _heard_text(self, voice: _Voice) -> str:
        """The part of the reply's shown text the caller has heard, by the audio played of each sentence."""
        heard = ""
        for sentence in voice.sentences[: voice.shown]:
            received_ms = sentence.received * 1000 // SAMPLE_RATE
            played = self.playout.played_ms(sentence.item)
            if sentence.done and played >= received_ms:
                heard += _joined(heard, sentence.text)
                continue
            share = played / max(1, received_ms)
            heard += _joined(heard, sentence.text[: round(len(sentence.text) * share)])
            break
        return heard.strip()

    def _keep_heard(self, voice: _Voice) -> None:
        """After a cut, the model's history holds what the caller heard of the reply, like Realtime's truncate."""
        heard = voice.heard or ""
        if voice.history is not None and voice.history in self._messages:
            if heard:
                voice.history["content"] = f"{heard}…"
            else:
                self._messages.remove(voice.history)
        elif heard:
            self._messages.append({"role": "assistant", "content": f"{heard}…"})

    # ---- failures, time limit and ending -----------------------------------------------------------

    async def _service_failed(self, error: Exception) -> None:
        """A refused key ends the call; anything else is shown, and the call goes on (a few times)."""
        if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
            await self._end(notice("key_refused"), error=True)
            return
        if isinstance(error, openai.APITimeoutError):
            message = notice("stalled")
        elif isinstance(error, openai.APIConnectionError):
            message = notice("unreachable")
        elif isinstance(error, openai.APIStatusError):
            detail = getattr(error, "message", None) or str(error)
            message = notice("service_error", detail=f"HTTP {error.status_code}: {detail}")
        else:
            message = notice("service_error", detail=str(error) or type(error).__name__)
        log.warning("pipeline service failure: %s", type(error).__name__)
        self._system(message)
        self._failures += 1
        if self._failures >= MAX_FAILED_TURNS:
            await self._end(notice("connection_lost"), error=True)

    async def _watch_clock(self) -> None:
        """Warn, let the agent wrap up, then say goodbye and end when the call's time is up."""
        limit = self.settings.call_time_limit_s
        warn_after = max(limit - TIME_WARNING_S, limit * 2 / 3)  # a short call is not warned at its start
        await asyncio.sleep(warn_after)
        language = self.call_state.language
        self._system(notice("time_warning", seconds=round(limit - warn_after)))
        self._ask(wrap_up_instruction(language))
        await asyncio.sleep(limit - warn_after)
        self._ask(goodbye_instruction(language))
        deadline = time.monotonic() + GOODBYE_WAIT_S
        await asyncio.sleep(0.1)
        while self._agent_busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await self._end(notice("time_up"))

    def _ask(self, instruction: str) -> None:
        """Have the agent say something now, or right after the reply in progress."""
        self._queued_instruction = instruction
        task = self._turn_task
        idle = (task is None or task.done()) and not self.playout.speaking
        if idle and self.state.stream is None and not self.event.is_set():
            self.trigger_response()

    async def _end(self, message: str, error: bool = False) -> None:
        """Tell the person why the call ends, let the last words play, then close the stream."""
        if self._close_message is not None:
            return
        self._system(message)
        self.call_state.ended = True
        self._changed()
        await self.send_message(json.dumps({"type": "error" if error else "warning", "message": message}))
        self._queued_instruction = None
        self._close_message = message
        if self._clock_task is not None and self._clock_task is not asyncio.current_task():
            self._clock_task.cancel()

    def _system(self, text: str) -> None:
        self.call_state.system(text)
        self._changed()

    def _changed(self) -> None:
        self._dirty = True
