"""The pipeline engine: voice activity detection → speech-to-text → a chat model with tools → text-to-speech.

The second voice engine behind the same page, phone line and rules as the Realtime engine: instead of one
speech-to-speech session, each caller turn goes through three ordinary OpenAI HTTP APIs (`conversation`).
The call itself (options, draft, screen, clock, ending) is the shared `Call`. This module is the fastrtc side,
built on `ReplyOnPause`:

* **turns** come from `ReplyOnPause`'s pause detection with a packaged Silero VAD tuned for telephone
  speech (`vad`; nothing is downloaded at run time), plus the chunk before speech started, so the first
  syllable is never clipped; each turn runs as one task: transcribe, answer, speak;
* **barge-in**: once the caller has said a quarter of a second over the agent, playback stops (our queue and
  fastrtc's), the unfinished work is cancelled, the transcript keeps what was heard, marked as cut, and so
  does the model's history;
* **figures** per turn (`PipelineTurn`): silence waited by the VAD, time to transcript, to first token, to
  first audio byte, to the first audio played (`latency_ms`, as the Realtime engine reports it) and voice to
  voice, all in ms from the end of the caller's turn;
* service failures: a refused key ends the call, anything else is shown and the call goes on (a few times).

Threads: fastrtc runs a `ReplyOnPause` handler's `start_up`, `receive` and `emit` in worker threads; all the
call's state lives on the event loop (`self.loop`) and the threads only hand work to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np
import openai
from fastrtc import ReplyOnPause
from fastrtc.reply_on_pause import AppState
from openai import AsyncOpenAI

from components.adapters.fastrtc import to_fastrtc
from components.call.barge_in import BargeIn
from components.call.call import Call, CallEnded, page_request
from components.call.echo import EchoCheck
from components.call.notices import notice, service_error
from components.call.state import CallView, CloseReason
from components.engines.pipeline.conversation import Conversation
from components.engines.pipeline.reply import PipelineTurn, Reply, ms_since
from components.engines.pipeline.threads import make_room
from components.engines.pipeline.vad import BARGE_IN_SPEECH_S, TELEPHONE_ALGO, TELEPHONE_VAD, SileroVAD
from components.engines.playout import SAMPLE_RATE, Playout
from components.restaurant.config import RestaurantConfig
from components.settings import AgentSettings
from components.store.reservations import ReservationStore

log = logging.getLogger(__name__)

ENGINE = "pipeline"

INPUT_RATE = 16_000  # what the VAD and speech-to-text want; fastrtc resamples the caller to it
IDLE_WAIT_S = 0.05  # how long `emit` waits for a turn before returning (fastrtc calls it in a loop)
MAX_FAILED_TURNS = 3  # turns in a row the service failed before the call gives up
TAIL_S = 1.5  # how much of a turn's end is searched for the last speech (the VAD's silence figure)


class PipelineHandler(ReplyOnPause):
    """One instance per call (fastrtc copies it per connection). Same UI inputs and outputs as `RealtimeHandler`:
    `[language, voice, api_key]` (the last three of the inputs; defaults and `OPENAI_API_KEY` on the phone),
    the call's view as `AdditionalOutputs`, bilingual notices, `CloseStream` at the end."""

    def __init__(
        self,
        config: RestaurantConfig,
        store: ReservationStore,
        settings: AgentSettings,
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
        self.settings = settings
        self.call = Call(config, store, self.settings, voice=self, notify=self.send_message, engine=ENGINE)
        self.playout = Playout()
        self._client: AsyncOpenAI | None = None
        self._conversation: Conversation | None = None
        self._ready = asyncio.Event()
        self._greeted = False
        self._turns = 0
        self._turn_task: asyncio.Task | None = None
        self._reply_now: Reply | None = None
        self._figures: PipelineTurn | None = None
        self._turn_started = 0.0
        self._queued_instruction: str | None = None
        self._failures = 0
        self._shutting_down = False
        self._preroll: np.ndarray | None = None
        self._talk_speech = 0.0  # seconds of speech in the caller's current utterance
        self._barged: AppState | None = None  # the utterance that already interrupted the agent
        self._tail_vad: SileroVAD | None = None
        self._barge: BargeIn | None = None  # the local barge-in, made once the call's loop runs
        self._echo: EchoCheck | None = None  # with it: the VAD's turns that may be the agent's echo

    def copy(self) -> PipelineHandler:
        return PipelineHandler(self.config, self.store, self.settings)

    def use_phone_line(self) -> None:
        """A phone call: fastrtc converts the line's 8 kHz μ-law to and from the engine's rates."""
        self.phone_mode = True

    # ---- fastrtc interface (worker threads) --------------------------------------------------------

    def start_up(self) -> None:
        self.model.warmup()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result()

    def receive(self, frame: tuple[int, np.ndarray]) -> None:
        if self.call.close_message is not None or self._shutting_down:
            return
        barge, echo = self._barge, self._echo
        if barge is not None and echo is not None:  # before fastrtc's VAD, which may now analyse a whole chunk
            pcm = np.asarray(frame[1]).reshape(-1)
            barge.hear(pcm, frame[0])  # pauses the agent within tens of ms
            echo.hear(pcm, frame[0], agent_speaking=self.playout.speaking)
        super().receive(frame)
        state = self.state
        if (
            state.started_talking
            and self._barged is not state
            and self._talk_speech >= BARGE_IN_SPEECH_S
            and self._agent_active()
            and not (echo is not None and echo.holds(state))
        ):  # the VAD's turn confirms the caller's speech
            self._barged = state
            self.loop.call_soon_threadsafe(self._confirm_barge_in)

    def determine_pause(self, audio: np.ndarray, sampling_rate: int, state: AppState) -> bool:
        """fastrtc's rule, plus the chunk before speech started (the first syllable) and a speech count; a turn
        over the agent with less speech than a barge-in needs is dropped, and so on the phone is its own echo."""
        analysed = len(audio) / sampling_rate >= self.algo_options.audio_chunk_duration
        was_talking = state.started_talking
        paused = super().determine_pause(audio, sampling_rate, state)
        if paused and self._echo is not None and self._echo.is_echo(state):
            state.stream, state.started_talking, self._talk_speech = None, False, 0.0
            return False
        if analysed:
            speech = float(getattr(self.model, "last_speech_s", BARGE_IN_SPEECH_S))
            if state.started_talking and not was_talking:
                if self._preroll is not None and state.stream is not None:
                    state.stream = np.concatenate((self._preroll, state.stream))
                self._talk_speech = speech
                barge = self._barge
                if barge is not None and barge.echo_guard and self.playout.speaking and not barge.paused:
                    self._echo.suspect(state)
            elif state.started_talking:
                self._talk_speech += speech
            self._preroll = None if state.started_talking else audio
        if paused and self._talk_speech < BARGE_IN_SPEECH_S and self._agent_active():
            # a cough or an "uh" over the agent: no turn, or fastrtc would close the answer it interrupts
            state.stream, state.started_talking, self._talk_speech = None, False, 0.0
            return False
        return paused

    def emit(self) -> Any:
        if self.call.closed or self._shutting_down:
            time.sleep(IDLE_WAIT_S)
            return None
        if (out := self.call.output(view=lambda: self._on_loop(self._view()))) is not None:
            return to_fastrtc(out)
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
        if self._turn_task is not None:
            self._turn_task.cancel()
        self.playout.clear()
        if self._client is not None:
            await self._client.close()
        await self.call.end(CloseReason.HUNG_UP)

    def _on_loop(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def _view(self) -> CallView:
        return self.call.state.view()

    # ---- the call's hooks (`Voice`) ----------------------------------------------------------------

    async def say_now(self, instructions: str) -> bool:
        """Have the agent say something now, or right after the reply in progress."""
        self._queued_instruction = instructions
        task = self._turn_task
        idle = (task is None or task.done()) and not self.playout.speaking
        if idle and self.state.stream is None and not self.event.is_set():
            self.trigger_response()
        return True

    def busy(self) -> bool:
        return self._agent_active() or self._queued_instruction is not None

    async def hang_up(self) -> None:
        self._queued_instruction = None

    def _agent_active(self) -> bool:
        """The agent is thinking or speaking."""
        task = self._turn_task
        return (task is not None and not task.done()) or self.playout.speaking

    # ---- call set-up (event loop) ------------------------------------------------------------------

    async def _start(self) -> None:
        make_room(self.loop, self.settings.max_concurrent_calls)
        try:
            await self._set_up()
        except Exception:  # whatever went wrong, the call ends with a notice instead of hanging in silence
            log.exception("the pipeline engine failed to start a call")
            await self.call.end(CloseReason.ERROR, notice("internal_error"))

    async def _set_up(self) -> None:
        if not await self.call.begin(await page_request(self)):
            return
        self._barge = BargeIn(
            self.loop,
            speaking=self._agent_active,
            pause=self._pause,
            resume=self.playout.resume,
            cut=self._barge_in,
            played_dbfs=self.playout.level_dbfs,
            echo_guard=self.phone_mode,  # a phone's handset may not cancel the agent's echo
            settings=self.settings.barge_in,
            clock=self.call.clock,
        )
        self._echo = EchoCheck(self._barge.settings.threshold_dbfs)
        assert self.call.options is not None
        self._client = AsyncOpenAI(
            api_key=self.call.options.api_key,
            max_retries=1,
            timeout=openai.Timeout(float(self.settings.response_timeout_s), connect=5.0),  # the SDK's own type
        )
        self._conversation = Conversation(
            self._client, self.call, self.settings.pipeline, self.playout, self._service_failed
        )
        self._ready.set()
        # The agent speaks first: a reply with no caller audio, played like any other.
        self.generator = self._reply((INPUT_RATE, np.zeros((1, 0), dtype=np.int16)))
        self.event.set()

    # ---- one reply: what `ReplyOnPause` plays (event loop) -----------------------------------------

    async def _reply(self, audio: tuple[int, np.ndarray]) -> AsyncGenerator[Any, None]:
        """The agent's answer to one caller turn (or the greeting): start the work, play what it says."""
        rate, samples = audio
        pcm = np.asarray(samples).reshape(-1)
        await self._ready.wait()
        if self.call.close_message is not None or not self._begin_turn(pcm if pcm.size else None, rate):
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
            closing = self.call.close_message is not None
            if self._queued_instruction is not None and not closing and not self.state.started_talking:
                self._begin_turn(None, rate)
                continue
            return

    def _begin_turn(self, pcm: np.ndarray | None, rate: int) -> bool:
        """Start the work of a turn; False if there is nothing to answer."""
        instruction, self._queued_instruction = self._queued_instruction, None
        if pcm is None and instruction is None and self._greeted:
            return False
        self._stop_turn()
        self._reply_now, self._figures = None, None
        self._turns += 1
        self._turn_started = time.monotonic()
        self._turn_task = asyncio.create_task(self._run_turn(self._turns, pcm, rate, instruction))
        return True

    def _stop_turn(self) -> None:
        """A new turn replaces one still going (fastrtc restarted us on a new pause)."""
        if self._barge is not None:
            self._barge.reset()
        if self._turn_task is not None and not self._turn_task.done():
            self._cut()
            self._turn_task.cancel()

    async def _run_turn(self, number: int, pcm: np.ndarray | None, rate: int, instruction: str | None) -> None:
        conversation = self._conversation
        assert conversation is not None
        started = self._turn_started
        figures = PipelineTurn()
        reply = Reply(f"agent-{number}")
        speaker: asyncio.Task | None = None
        try:
            if pcm is not None:
                transcript = asyncio.create_task(conversation.transcribe(number, pcm, rate, started, figures))
                conversation.commit(transcript)
                silence = asyncio.create_task(asyncio.to_thread(self._trailing_silence_ms, pcm, rate))
                text = await asyncio.shield(transcript)
                figures.vad_ms = await silence
                if not text:
                    return  # noise, a cough, or a failed transcription (already reported): nothing to answer
            self._greeted = True
            self._figures, self._reply_now = figures, reply
            self.call.state.turns.append(figures)
            speaker = asyncio.create_task(conversation.speak(reply, figures, started))
            await conversation.respond(reply, figures, started, instruction)
            reply.flush()
            reply.queue.put_nowait(None)
            await speaker
            while self.playout.speaking:
                await asyncio.sleep(0.02)
            self._failures = 0
        except asyncio.CancelledError:
            conversation.keep_heard(reply)
            raise
        except CallEnded as ended:
            await self.call.end(ended.reason, ended.message)
        except openai.OpenAIError as error:
            await self._service_failed(error)
        except Exception:
            log.exception("pipeline turn failed")
            self.call.system(service_error())
        finally:
            if speaker is not None and not speaker.done():
                speaker.cancel()
            if reply.heard is None and reply.reveal(self.playout, self.call.state, final=True):
                self.call.changed()
            if self._reply_now is reply:
                self._reply_now = None
            if figures.vad_ms is not None and figures.latency_ms is not None:
                figures.voice_to_voice_ms = figures.vad_ms + figures.latency_ms
            self.call.changed()

    def _trailing_silence_ms(self, pcm: np.ndarray, rate: int) -> int | None:
        """How long the caller had been silent when the pause was detected (thread)."""
        if self._tail_vad is None:
            self._tail_vad = SileroVAD(streaming=False)
        tail = pcm[-int(TAIL_S * rate) :]
        _, chunks = self._tail_vad.vad((rate, tail), TELEPHONE_VAD)
        if not chunks:
            return None
        return round((tail.size - chunks[-1]["end"]) * 1000 / rate)

    # ---- what the caller hears and sees ------------------------------------------------------------

    def _on_played(self) -> None:
        """A piece of the current reply went to the caller: figures, and its sentence on screen."""
        figures = self._figures
        if figures is not None and figures.latency_ms is None:
            figures.latency_ms = ms_since(self._turn_started)
            if figures.vad_ms is not None:
                figures.voice_to_voice_ms = figures.vad_ms + figures.latency_ms
            self.call.changed()
        if self._reply_now is not None and self._reply_now.reveal(self.playout, self.call.state):
            self.call.changed()

    def _confirm_barge_in(self) -> None:
        if self._barge is not None:
            self._barge.confirm()  # cuts through `_barge_in`
        else:
            self._barge_in()

    def _pause(self) -> None:
        """The caller may be talking over the agent: hold its voice (what was not yet heard comes back)."""
        if self._echo is not None:
            self._echo.claim()  # a turn the VAD began first is the local detector's to judge now
        self.playout.pause()
        if self._clear_queue is not None:
            self.clear_queue()

    def _barge_in(self) -> None:
        """The caller talks over the agent: silence it now, drop the unfinished work, keep what was heard."""
        task = self._turn_task
        if not (task is not None and not task.done()) and not self.playout.speaking:
            return
        self._cut()
        if task is not None and not task.done():
            task.cancel()
        self.call.changed()

    def _cut(self) -> None:
        """Stop playback and mark the reply's line where the caller stopped hearing it."""
        reply = self._reply_now
        heard = reply.heard_text(self.playout) if reply is not None else ""
        self.playout.clear()
        if self._clear_queue is not None:
            self.clear_queue()
        if reply is not None:
            reply.cut(heard, self.call.state)
            self.call.changed()

    # ---- failures ----------------------------------------------------------------------------------

    async def _service_failed(self, error: Exception) -> None:
        """A refused key ends the call; anything else is shown, and the call goes on (a few times)."""
        if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
            await self.call.end(CloseReason.KEY_REFUSED, notice("key_refused"))
            return
        if isinstance(error, openai.APITimeoutError):
            message = notice("stalled")
        elif isinstance(error, openai.APIConnectionError):
            message = notice("unreachable")
        elif isinstance(error, openai.APIStatusError):
            message = service_error(getattr(error, "code", None), error.status_code)
        else:
            message = service_error()
        log.warning("pipeline service failure: %s: %s", type(error).__name__, error)
        self.call.system(message)
        self._failures += 1
        if self._failures >= MAX_FAILED_TURNS:
            await self.call.end(CloseReason.SERVICE, notice("connection_lost"))
