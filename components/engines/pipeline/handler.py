"""The pipeline engine: the caller's turns heard locally → speech-to-text → a chat model with tools → text-to-speech.

The second voice engine behind the same page, phone line and rules as the Realtime engine: instead of one
speech-to-speech session, each caller turn goes through three ordinary OpenAI HTTP APIs (`conversation`).
The call itself (options, draft, screen, clock, ending) is the shared `Call`. This module is the fastrtc side,
an `AsyncStreamHandler` like the other engines: everything runs on the call's event loop, with no thread hops.

* **turns** come from our own ears (`listening`): a VAD on 32 ms windows and an end-of-turn model, fed
  each frame as it arrives; a finished sentence is answered after a short silence, an unfinished one waits;
  each turn runs as one task: transcribe, answer, speak;
* **barge-in**: the local detector (`call.barge_in`) pauses the agent at the first syllable over it; the ears
  then tell an interruption (the answer is cut, the unfinished work cancelled, the transcript and the model's
  history keep what was heard) from a backchannel (はい, uh-huh: the agent goes on, and it is not a turn);
* **figures** per turn (`PipelineTurn`): silence the ears waited, time to transcript, to first token, to first
  audio byte, to the first audio played (`latency_ms`, as the Realtime engine reports it) and voice to voice,
  all in ms from the end of the caller's turn;
* failures: a refused key ends the call, a service error is shown and the call goes on (a few times), anything
  unexpected ends the call through `Call.end` with a notice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
import openai
from openai import AsyncOpenAI

from components.adapters.fastrtc import EngineHandler, clear_transport, serve_phone_line, to_fastrtc
from components.call.call import Call, CallEnded, page_request
from components.call.notices import notice, service_error
from components.call.state import CloseReason
from components.engines.floor import VoiceFloor
from components.engines.pipeline.conversation import Conversation, Recognised, succeeded
from components.engines.pipeline.reply import PipelineTurn, Reply, ms_since
from components.engines.playout import SAMPLE_RATE, Playout
from components.listening.turns import Backchannel, Ears, Heard, Interruption, Pausing, SpeechStarted, TurnEnded
from components.restaurant.config import RestaurantConfig
from components.settings import AgentSettings
from components.store.reservations import ReservationStore

log = logging.getLogger(__name__)

ENGINE = "pipeline"

INPUT_RATE = 16_000  # what the ears and speech-to-text want; fastrtc resamples the caller to it
MAX_FAILED_TURNS = 3  # turns in a row the service failed before the call gives up
RESUME_MARGIN_MS = 300  # a pause for speech over the agent lasts this much longer than the ears need to judge it


class PipelineHandler(EngineHandler):
    """One instance per call (fastrtc copies it per connection). Same UI inputs and outputs as `RealtimeHandler`:
    `[language, voice, api_key]` (the last three of the inputs; defaults and `OPENAI_API_KEY` on the phone),
    the call's view as `AdditionalOutputs`, bilingual notices, `CloseStream` at the end."""

    def __init__(self, config: RestaurantConfig, store: ReservationStore, settings: AgentSettings) -> None:
        super().__init__(expected_layout="mono", output_sample_rate=SAMPLE_RATE, input_sample_rate=INPUT_RATE)
        self.config = config
        self.store = store
        self.settings = settings
        self.call = Call(config, store, self.settings, voice=self, notify=self.send_message, engine=ENGINE)
        self.playout = Playout()
        self.ears: Ears | None = None  # made when the call starts (the template fastrtc copies needs none)
        self._client: AsyncOpenAI | None = None
        self._conversation: Conversation | None = None
        self._greeted = False
        self._turns = 0
        self._turn_task: asyncio.Task | None = None
        self._reply_now: Reply | None = None
        self._figures: PipelineTurn | None = None
        self._turn_started = 0.0
        self._queued_instruction: str | None = None
        self._failures = 0
        self._shutting_down = False
        self._utterance = 0  # the caller's utterance in progress, numbered for the echo check
        self._early: tuple[int, asyncio.Task[Recognised]] | None = None  # (the `Pausing`, its transcription)
        self.floor: VoiceFloor | None = None  # barge-in and the echo check, made when the call starts

    def copy(self) -> PipelineHandler:
        return PipelineHandler(self.config, self.store, self.settings)

    def use_phone_line(self) -> None:
        """A phone call: fastrtc converts the line's 8 kHz μ-law to and from the engine's rates."""
        serve_phone_line(self)

    # ---- fastrtc interface (all on the event loop) -------------------------------------------------

    async def start_up(self) -> None:
        try:
            if await self.call.begin(await page_request(self)):
                self._set_up()
                self._begin_turn(None)  # the agent speaks first
        except CallEnded as ended:
            await self.call.end(ended.reason, ended.message)
        except Exception:  # whatever went wrong, the call ends with a notice instead of hanging in silence
            log.exception("the pipeline engine failed to start a call")
            await self.call.end(CloseReason.ERROR, notice("internal_error"))

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        ears, floor = self.ears, self.floor
        if ears is None or floor is None or self.call.close_message is not None:
            return
        try:
            pcm = np.asarray(frame[1]).reshape(-1)
            floor.hear(pcm)  # pauses the agent within tens of ms
            for heard in ears.hear(pcm, agent_speaking=self._agent_active()):
                self._on_heard(heard)
        except Exception:
            await self._failed("the pipeline engine failed on the caller's audio")

    async def emit(self) -> Any:
        if self.call.closed or self._shutting_down:
            await asyncio.sleep(0.05)
            return None
        if (out := self.call.output()) is not None:
            return to_fastrtc(out)
        chunk = await self.playout.next_chunk()
        if chunk is not None:
            self._on_played()
            return (SAMPLE_RATE, chunk)
        if self._queued_instruction is not None and not self._agent_active() and not self._caller_talking():
            self._begin_turn(None)  # the agent was asked to say something once it had finished
        return None

    async def shutdown(self) -> None:
        self._shutting_down = True
        self._drop_early()
        if self._turn_task is not None:
            self._turn_task.cancel()
        self.playout.clear()
        if self._client is not None:
            await self._client.close()
        await self.call.end(CloseReason.HUNG_UP)

    # ---- the call's hooks (`Voice`) ----------------------------------------------------------------

    async def say_now(self, instructions: str) -> bool:
        """Have the agent say something now, or right after the reply in progress (`emit` starts it)."""
        self._queued_instruction = instructions
        return True

    def busy(self) -> bool:
        return self._agent_active() or self._queued_instruction is not None

    async def hang_up(self) -> None:
        self._queued_instruction = None
        if self.floor is not None:
            self.floor.let_go()

    def _agent_active(self) -> bool:
        """The agent is thinking or speaking."""
        task = self._turn_task
        return (task is not None and not task.done()) or self.playout.speaking

    def _caller_talking(self) -> bool:
        return self.ears is not None and self.ears.in_utterance

    # ---- call set-up -------------------------------------------------------------------------------

    def _set_up(self) -> None:
        self.ears = Ears()
        self.floor = VoiceFloor(
            self.call,
            self.playout,
            rate=INPUT_RATE,
            clear_transport=lambda: clear_transport(self),  # fastrtc's queue; on the phone, Twilio's buffer too
            speaking=self._agent_active,
            cut=self._barge_in,
            echo_guard=self.phone_mode,  # a phone's handset may not cancel the agent's echo
            confirms_itself=False,  # the ears tell an interruption from a backchannel, which loudness cannot
            hold_ms=self.ears.options.interrupt_speech_ms + RESUME_MARGIN_MS,
        )
        assert self.call.options is not None
        self._client = AsyncOpenAI(
            api_key=self.call.options.api_key,
            max_retries=1,
            timeout=openai.Timeout(float(self.settings.response_timeout_s), connect=5.0),  # the SDK's own type
        )
        self._conversation = Conversation(
            self._client, self.call, self.settings.pipeline, self.playout, self._service_failed
        )

    # ---- what the ears heard -----------------------------------------------------------------------

    def _on_heard(self, heard: Heard) -> None:
        assert self.floor is not None
        barge, echo = self.floor.barge, self.floor.echo
        if isinstance(heard, SpeechStarted):
            self._utterance += 1
            self._drop_early()
            if barge.echo_guard and self.playout.speaking and not barge.paused:
                echo.suspect(self._utterance)  # the VAD heard a voice the local detector did not: maybe echo
        elif isinstance(heard, Interruption):
            if not echo.holds(self._utterance):
                barge.confirm()  # cuts through `_barge_in`
        elif isinstance(heard, Backchannel):
            echo.is_echo(self._utterance)  # either way it is over: no suspect left
            if barge.paused:
                barge.reset()  # はい, uh-huh: the agent goes on at once
        elif isinstance(heard, Pausing) and not echo.holds(self._utterance):
            self._transcribe_early(heard)
        elif isinstance(heard, TurnEnded):
            if echo.is_echo(self._utterance):
                self._drop_early()
            else:
                self._begin_turn(heard, self._take_early(heard.pause))

    def _transcribe_early(self, pausing: Pausing) -> None:
        """The caller paused and the end-of-turn model is asked: transcribe what they said meanwhile, so that a turn
        that ends here is already in words when it does (a turn that goes on makes this request useless)."""
        assert self._conversation is not None
        self._drop_early()
        task = asyncio.create_task(self._conversation.recognise(pausing.audio, INPUT_RATE))
        task.add_done_callback(succeeded)  # a failure is the turn's to report (it asks again), or nobody's
        self._early = (pausing.number, task)

    def _take_early(self, pause: int | None) -> asyncio.Task[Recognised] | None:
        """The early transcription of the turn that just ended, if its audio holds all the turn's words."""
        early = self._early
        if early is not None and early[0] == pause:
            self._early = None
            return early[1]
        self._drop_early()
        return None

    def _drop_early(self) -> None:
        """Forget an early transcription no turn will use: cancelled if it is still on its way, or what it cost
        counted on the call."""
        early, self._early = self._early, None
        if early is None:
            return
        task = early[1]
        if not task.done():
            task.cancel()
        elif succeeded(task):
            self._spent(task.result().cost_usd)

    def _spent(self, cost_usd: float) -> None:
        """Money spent on work no answer shows (the allowance on the owner's key counts it all the same)."""
        if cost_usd:
            self.call.state.other_cost_usd += cost_usd
            self.call.changed()

    # ---- one turn: transcribe, answer, speak -------------------------------------------------------

    def _begin_turn(self, heard: TurnEnded | None, early: asyncio.Task[Recognised] | None = None) -> None:
        """Start the work of a turn (the greeting, an instruction, or the caller's turn), if there is any."""
        instruction, self._queued_instruction = self._queued_instruction, None
        if heard is None and instruction is None and self._greeted:
            return
        self._stop_turn()
        self._reply_now, self._figures = None, None
        self._turns += 1
        self._turn_started = time.monotonic()
        self._turn_task = asyncio.create_task(self._run_turn(self._turns, heard, instruction, early))

    def _stop_turn(self) -> None:
        """A new turn replaces one still going (the caller went on after a pause)."""
        if self.floor is not None:
            self.floor.barge.reset()
        if self._turn_task is not None and not self._turn_task.done():
            self._cut()
            self._turn_task.cancel()

    async def _run_turn(
        self, number: int, heard: TurnEnded | None, instruction: str | None, early: asyncio.Task[Recognised] | None
    ) -> None:
        conversation = self._conversation
        assert conversation is not None
        started = self._turn_started
        figures = PipelineTurn(vad_ms=heard.waited_ms if heard is not None else None)
        reply = Reply(f"agent-{number}")
        speaker: asyncio.Task | None = None
        transcript: asyncio.Task[str] | None = None
        try:
            if heard is not None:
                transcript = asyncio.create_task(
                    conversation.transcribe(number, heard.audio, INPUT_RATE, started, figures, early)
                )
                conversation.commit(transcript)
                if not await asyncio.shield(transcript):
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
            await self._failed("a pipeline turn failed")
        finally:
            if speaker is not None and not speaker.done():
                speaker.cancel()
            if reply.heard is None and reply.reveal(self.playout, self.call.state, final=True):
                self.call.changed()
            if self._reply_now is reply:
                self._reply_now = None
            if figures.vad_ms is not None and figures.latency_ms is not None:
                figures.voice_to_voice_ms = figures.vad_ms + figures.latency_ms
            if not any(turn is figures for turn in self.call.state.turns):
                self._count_unanswered(figures, transcript)  # noise, a failed transcription, or a turn replaced
            self.call.changed()

    def _count_unanswered(self, figures: PipelineTurn, transcript: asyncio.Task[str] | None) -> None:
        """A caller turn that got no answer still cost its transcription (which may still be on its way)."""
        if transcript is not None and not transcript.done():
            transcript.add_done_callback(lambda _: self._spent(figures.cost_usd))
        else:
            self._spent(figures.cost_usd)

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
        if self.floor is not None:
            self.floor.silence()
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

    async def _failed(self, what: str) -> None:
        """Something we did not expect: the call ends with a notice, never in silence."""
        log.exception(what)
        await self.call.end(CloseReason.ERROR, notice("internal_error"))
