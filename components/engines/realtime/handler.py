"""The Realtime engine: a fastrtc stream handler that talks to the OpenAI Realtime API (GA interface).

One speech-to-speech session per call. The call itself (options, draft, screen, clock, ending) is the shared
`Call`; this module holds only what the Realtime protocol needs:

* audio both ways as mono int16 at 24 kHz, the agent's voice paced out in real time (see `playout`),
  so barge-in knows what the caller heard and tells the model (`conversation.item.truncate`);
* the Realtime events put in conversation order on the call's transcript, with per-response figures;
* tool calls answered with `function_call_output` + `response.create`, one response at a time;
* honest failures: a refused key, an `error` event, a dropped or silent connection each end in a bilingual
  notice, with reconnects that keep the booking draft.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any

import numpy as np
from openai import AsyncOpenAI
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from components.adapters.fastrtc import EngineHandler, clear_transport, serve_phone_line, to_fastrtc
from components.call.call import Call, CallEnded, page_request
from components.call.costs import realtime_cost
from components.call.notices import notice, service_error
from components.call.state import CloseReason, Turn
from components.engines.playout import SAMPLE_RATE, Playout
from components.engines.realtime.floor import Floor
from components.restaurant.config import RestaurantConfig
from components.restaurant.prompt import resume_note
from components.restaurant.tools import realtime_tools
from components.settings import AgentSettings
from components.store.reservations import ReservationStore

log = logging.getLogger(__name__)

ENGINE = "realtime"

# Old (beta) names some servers still send, mapped to their GA names.
LEGACY_EVENTS = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
}
MAX_RECONNECTS = 2


class ConnectionLost(Exception):
    """The Realtime connection dropped or went silent; a reconnect may help."""


class RealtimeHandler(EngineHandler):
    """One instance per call (fastrtc copies it per connection); `start_up` runs the whole conversation."""

    def __init__(
        self,
        config: RestaurantConfig,
        store: ReservationStore,
        settings: AgentSettings,
    ) -> None:
        super().__init__(expected_layout="mono", output_sample_rate=SAMPLE_RATE, input_sample_rate=SAMPLE_RATE)
        self.config = config
        self.store = store
        self.settings = settings
        self.call = Call(config, store, self.settings, voice=self, notify=self.send_message, engine=ENGINE)
        self.playout = Playout()
        self._conn: Any = None
        self._instructions = ""
        self._shutting_down = False
        self.floor: Floor | None = None  # who has the floor: made once the call's loop runs
        self._response_active = False
        self._tool_outputs_pending = False
        self._queued_instructions: str | None = None
        self._awaiting_server = False
        self._speech_stopped_at: float | None = None
        self._turn: Turn | None = None

    def copy(self) -> RealtimeHandler:
        return RealtimeHandler(self.config, self.store, self.settings)

    def use_phone_line(self) -> None:
        """A phone call: fastrtc converts the line's 8 kHz μ-law to and from the session's 24 kHz."""
        serve_phone_line(self)

    # ---- fastrtc interface -------------------------------------------------------------------------

    async def start_up(self) -> None:
        try:
            if await self.call.begin(await page_request(self)):
                self.floor = Floor(
                    self.call,
                    self.playout,
                    clear_transport=lambda: clear_transport(self),  # fastrtc's queue; on the phone, Twilio's too
                    send=self._send_event,
                    responding=lambda: self._response_active,
                    echo_guard=self.phone_mode,  # a phone's handset may not cancel the agent's echo
                )
                await self._converse()
        except CallEnded as ended:
            await self.call.end(ended.reason, ended.message)
        except Exception:
            log.exception("the Realtime engine failed")
            await self.call.end(CloseReason.ERROR, notice("internal_error"))

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        conn = self._conn
        if conn is None or self.call.close_message is not None:
            return
        try:
            if self.floor is not None:
                self.floor.hear(frame[1].reshape(-1))
            # 50 times a second per call: the SDK's typed `input_audio_buffer.append` costs more than the audio
            audio = base64.b64encode(frame[1].tobytes()).decode("ascii")
            await conn.send_raw(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
        except ConnectionClosed:
            pass  # the conversation loop sees the drop and handles it
        except Exception:  # never a call left half-working: it ends, with a notice
            log.exception("the Realtime engine failed on the caller's audio")
            await self.call.end(CloseReason.ERROR, notice("internal_error"))

    async def emit(self) -> Any:
        if self.call.closed:
            await asyncio.sleep(0.05)
            return None
        if (out := self.call.output()) is not None:
            return to_fastrtc(out)
        chunk = await self.playout.next_chunk()
        return None if chunk is None else (SAMPLE_RATE, chunk)

    async def shutdown(self) -> None:
        self._shutting_down = True
        if self._conn is not None:
            await self._conn.close()
        await self.call.end(CloseReason.HUNG_UP)

    # ---- the call's hooks (`Voice`) ----------------------------------------------------------------

    async def say_now(self, instructions: str) -> bool:
        """Ask the model to say something now, if connected; a drop is the conversation loop's to handle."""
        if self._conn is None:
            return False
        try:
            await self._create_response(instructions)
        except ConnectionClosed:
            return False
        return True

    def busy(self) -> bool:
        return self._response_active or self.playout.speaking

    async def hang_up(self) -> None:
        self._response_active = False  # nothing more will come: only what is playing keeps the call open
        if self.floor is not None:
            self.floor.voice.let_go()
        if self._conn is not None:
            self._shutting_down = True
            await self._conn.close()

    # ---- call set-up -------------------------------------------------------------------------------

    def _session_config(self, resume_draft: dict[str, Any] | None) -> dict[str, Any]:
        """The session, with the draft so far when it resumes after a drop (`resume_draft`)."""
        options = self.call.options
        assert options is not None
        instructions = self.call.instructions()
        if resume_draft is not None:
            draft = json.dumps(resume_draft["reservation"], ensure_ascii=False)
            instructions += "\n\n" + resume_note(options.language, draft)
        self._instructions = instructions
        pcm = {"type": "audio/pcm", "rate": SAMPLE_RATE}
        return {
            "type": "realtime",
            "instructions": instructions,
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": pcm,
                    "noise_reduction": {"type": "far_field" if self.phone_mode else "near_field"},
                    "transcription": {"model": self.settings.transcription_model, "language": options.language},
                    "turn_detection": {
                        "type": "server_vad",
                        "silence_duration_ms": 500,
                        "prefix_padding_ms": 300,
                        "create_response": False,  # `floor` answers a turn, or drops a noise
                        "interrupt_response": False,  # `floor` pauses, resumes or cuts the agent
                        "idle_timeout_ms": self.settings.idle_reprompt_ms,
                    },
                },
                "output": {"format": pcm, "voice": options.voice},
            },
            "tools": realtime_tools(transfer=self.call.transfer_offered),
            "tool_choice": "auto",
        }

    # ---- the conversation --------------------------------------------------------------------------

    async def _converse(self) -> None:
        """Run the call over one connection, reconnecting (with the draft kept) when it drops."""
        assert self.call.options is not None
        client = AsyncOpenAI(api_key=self.call.options.api_key, max_retries=0)
        reconnects = 0
        while not self._shutting_down:
            try:
                await self._connection(client, resume=reconnects > 0)
                return
            except ConnectionLost:
                if self._shutting_down or self.call.close_message is not None:
                    return
                if reconnects >= MAX_RECONNECTS:
                    raise CallEnded(notice("connection_lost")) from None
                reconnects += 1
                self._reset_turn_state()
                self.call.system(notice("reconnecting"))
                await asyncio.sleep(0.5 * reconnects)

    async def _connection(self, client: AsyncOpenAI, resume: bool) -> None:
        try:
            manager = client.realtime.connect(model=self.settings.model)
            conn = await manager.enter()
        except InvalidStatus as refused:
            status = refused.response.status_code
            if status in (401, 403):
                raise CallEnded(notice("key_refused"), CloseReason.KEY_REFUSED) from None
            if resume:
                raise ConnectionLost(f"HTTP {status}") from None
            raise CallEnded(notice("service_refused", status=status)) from None
        except (OSError, TimeoutError, InvalidHandshake):
            if resume:
                raise ConnectionLost("unreachable") from None
            raise CallEnded(notice("unreachable")) from None
        self._conn = conn
        try:
            session = self.call.session
            assert session is not None
            draft = await self.call.store_io(session.snapshot) if resume else None  # a store read: off the loop
            await conn.session.update(session=self._session_config(draft))
            if resume:
                self.call.system(notice("reconnected"))
            await self._create_response()
            while True:
                timeout = self.settings.response_timeout_s if self._awaiting_server else None
                try:  # `asyncio.timeout`, not `wait_for`: that makes a task per event, which lags under load
                    async with asyncio.timeout(timeout):
                        raw = await conn.recv_bytes()
                except TimeoutError:
                    self.call.system(notice("stalled"))
                    raise ConnectionLost("stalled") from None
                await self._on_event(json.loads(raw))
        except ConnectionClosed as closed:
            if self._shutting_down:
                return
            raise ConnectionLost(str(closed)) from None
        finally:
            self._conn = None
            if not self._shutting_down:
                await conn.close()

    def _reset_turn_state(self) -> None:
        if self.floor is not None:
            self.floor.forget_playback()
        self._response_active = self._tool_outputs_pending = self._awaiting_server = False
        self._queued_instructions = None

    async def _create_response(self, instructions: str | None = None) -> None:
        """Ask for a response now, or right after the one in progress (only one may be active)."""
        if self._response_active:
            self._queued_instructions = instructions or self._queued_instructions or ""
            return
        self._awaiting_server = True
        self._response_active = True
        if instructions:  # a response's instructions replace the session's, so keep the restaurant in them
            await self._conn.response.create(response={"instructions": f"{self._instructions}\n\n{instructions}"})
        else:
            await self._conn.response.create()

    async def _on_event(self, event: dict[str, Any]) -> None:
        kind = LEGACY_EVENTS.get(event.get("type", ""), event.get("type", ""))
        if kind == "response.output_audio.delta":
            self._on_audio(event)
        elif kind == "response.output_audio_transcript.delta":
            if event.get("item_id") not in self._cut():
                self.call.state.agent_delta(event["item_id"], event.get("delta", ""))
                self.call.changed()
        elif kind == "response.output_audio_transcript.done":
            if event.get("item_id") not in self._cut():
                self.call.state.agent_done(event["item_id"], event.get("transcript"))
                self.call.changed()
        elif kind == "input_audio_buffer.speech_started":
            if self.floor is not None:
                self.floor.speech_started(event.get("item_id", ""))
        elif kind == "input_audio_buffer.speech_stopped":
            if self._shown(event):
                self._speech_stopped_at = time.monotonic()
        elif kind == "input_audio_buffer.committed":
            if self.floor is None or self.floor.committed(event["item_id"]):
                self.call.state.user_pending(event["item_id"])
                self.call.changed()
                await self._create_response()
        elif kind == "conversation.item.input_audio_transcription.completed":
            if self._shown(event):
                self.call.state.user_said(event["item_id"], event.get("transcript", ""))
                self.call.changed()
        elif kind == "conversation.item.input_audio_transcription.failed":
            if self._shown(event):
                self.call.state.user_inaudible(event["item_id"])
                self.call.changed()
        elif kind == "response.created":
            self._response_active = True
            self._turn = Turn()
            self.call.state.turns.append(self._turn)
        elif kind == "response.output_item.done":
            item = event.get("item") or {}
            if item.get("type") == "function_call":
                await self._on_tool_call(item)
        elif kind == "response.done":
            await self._on_response_done(event.get("response") or {})
        elif kind == "error":
            self._on_error(event.get("error") or {})

    def _cut(self) -> set[str]:
        return self.floor.cut_items if self.floor is not None else set()

    def _shown(self, event: dict[str, Any]) -> bool:
        return self.floor is None or self.floor.shown(event.get("item_id", ""))

    async def _send_event(self, kind: str, fields: dict[str, Any]) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            await conn.send_raw(json.dumps({"type": kind, **fields}))
        except ConnectionClosed:
            pass  # the conversation loop sees the drop and handles it

    def _on_audio(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id", "")
        if item_id in self._cut():
            return
        pcm = np.frombuffer(base64.b64decode(event.get("delta", "")), dtype=np.int16)
        if self._speech_stopped_at is not None and self._turn is not None:
            self._turn.latency_ms = round((time.monotonic() - self._speech_stopped_at) * 1000)
            self._speech_stopped_at = None
            self.call.changed()
        self.playout.push(item_id, pcm)

    async def _on_tool_call(self, item: dict[str, Any]) -> None:
        result = await self.call.run_tool(item.get("name", ""), item.get("arguments"))
        await self._conn.conversation.item.create(
            item={
                "type": "function_call_output",
                "call_id": item.get("call_id", ""),
                "output": json.dumps(result, ensure_ascii=False),
            }
        )
        self._tool_outputs_pending = True

    async def _on_response_done(self, response: dict[str, Any]) -> None:
        self._response_active = False
        self._awaiting_server = False
        usage = response.get("usage") or {}
        if self._turn is not None:
            self._turn.input_tokens = usage.get("input_tokens")
            self._turn.output_tokens = usage.get("output_tokens")
            self._turn.total_tokens = usage.get("total_tokens")
            self._turn.cost_usd = realtime_cost(usage, self.settings.model, self.settings.prices)
            self.call.changed()
        if response.get("status") == "failed":
            error = (response.get("status_details") or {}).get("error") or {}
            log.warning("Realtime response failed: %s: %s", error.get("code"), error.get("message"))
            self.call.system(service_error(error.get("code")))
        if self._tool_outputs_pending:
            self._tool_outputs_pending = False
            await self._create_response()
        elif self._queued_instructions is not None:
            instructions, self._queued_instructions = self._queued_instructions, None
            await self._create_response(instructions or None)

    def _on_error(self, error: dict[str, Any]) -> None:
        """An `error` event concerns one client event; the session goes on, and the person is told."""
        log.warning("Realtime error event: %s (%s): %s", error.get("code"), error.get("type"), error.get("message"))
        if error.get("code") in ("response_cancel_not_active", "conversation_already_has_active_response"):
            return  # a harmless race between our requests and the server's own turn handling
        self.call.system(service_error(error.get("code") or error.get("type")))
