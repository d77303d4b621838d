"""The GPT-Live engine: a fastrtc stream handler on OpenAI's full-duplex Live API (`/v1/live/sessions`).

One Live session per call. The voice model listens while it speaks, decides itself when to stop for the caller, and
hands every task to a backend Responses model (*Responses delegation*) that calls our tools. The call itself
(options, draft, screen, clock, ending) is the shared `Call`; this module holds only what the Live protocol needs:

* **the timeline**: the session's clock advances only with input audio, so the caller's audio (silence included)
  is streamed for the whole call, also while a tool runs (tools run as tasks, never in the receive loop);
* **audio**: PCM16 at 24 kHz in the browser, μ-law at 8 kHz on the phone, with no resampling either way; the output
  is one continuous track, of which only what is audible is played (`Playout` paces it), so the moment the model
  stops for the caller, nothing more plays: barge-in is the model's, and we add nothing to its stop;
* **delegation**: each function call in a `response.event` runs through the same `run_tool` as on the other engines;
  once every open call has its `function_call_output`, one `response.create` lets the backend go on;
* **transcripts** arrive as deltas with no turn boundaries: the SDK's `AsyncTranscriptGrouper` makes lines of them;
* **the clock**: the wrap-up and the goodbye are `session.instructions.append`, the end is `session.close`;
* **cost**: the session's billable seconds (`session.usage.updated`) at the per-minute prices, plus the backend's
  tokens;
* **failures**: a refused key (HTTP 401 on the upgrade, or an `error` event right after it) and an exhausted quota
  end the call with a clear notice; any other `error` event is logged and the call goes on; a dropped socket is a
  new session, reseeded with the conversation so far and the draft.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import numpy as np
from openai import AsyncOpenAI
from openai.lib.live import AsyncTranscriptGrouper, TranscriptSegment, TranscriptSegmentClosedEvent
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from components.adapters.fastrtc import EngineHandler, clear_transport, serve_phone_line, to_fastrtc
from components.call.barge_in import level_dbfs
from components.call.call import Call, CallEnded, page_request
from components.call.costs import live_cost, responses_cost
from components.call.notices import notice
from components.call.state import CloseReason, Turn
from components.engines.live.audio import from_wire, to_wire
from components.engines.playout import Playout
from components.restaurant.config import RestaurantConfig
from components.restaurant.prompt import greeting_instruction, resume_note, voice_instructions
from components.restaurant.tools import realtime_tools
from components.settings import AgentSettings
from components.store.reservations import ReservationStore

log = logging.getLogger(__name__)

ENGINE = "live"
WEB_RATE, PHONE_RATE = 24_000, 8_000
MAX_RECONNECTS = 2
START_TIMEOUT_S = 10.0  # for `session.started`
AUDIBLE_DBFS = -60.0  # quieter output deltas are the track's digital silence between replies
SPEECH_WAIT_S = 6.0  # after asking the model to speak, how long it counts as busy before its voice is heard
CLOSE_WAIT_S = 3.0  # after `session.close`, how long to wait for `session.closed`
MAX_HISTORY = 100  # transcript lines a reconnect reseeds (the API takes at most 128 messages)
KEY_ERRORS = {"invalid_api_key", "missing_authorization", "unauthorized", "permission_denied"}
QUOTA_ERRORS = {"insufficient_quota", "credit_balance_exhausted", "billing_hard_limit_reached", "account_deactivated"}


class ConnectionLost(Exception):
    """The Live socket dropped or went silent; a new session may carry the call on."""


class LiveHandler(EngineHandler):
    """One instance per call (fastrtc copies it per connection); `start_up` runs the whole conversation."""

    def __init__(self, config: RestaurantConfig, store: ReservationStore, settings: AgentSettings) -> None:
        super().__init__(expected_layout="mono", output_sample_rate=WEB_RATE, input_sample_rate=WEB_RATE)
        self.config = config
        self.store = store
        self.settings = settings
        self.call = Call(config, store, settings, voice=self, notify=self.send_message, engine=ENGINE)
        self.playout = Playout(sample_rate=WEB_RATE)
        self._conn: Any = None
        self._started = asyncio.Event()
        self._shutting_down = False
        self._open_calls: dict[str, asyncio.Task] = {}  # call_id -> the tool running for it
        self._answering: asyncio.Task | None = None  # handing the tools' results back to the backend
        self._delegations: set[str] = set()  # delegated tasks the backend is still working on
        self._waiting_for_voice = 0.0  # until when the model counts as about to speak (after an instruction)
        self._utterance = 0
        self._speaking_item: str | None = None  # the agent's current utterance in the playout
        self._caller_voice_at = 0.0  # when the caller's audio was last loud (for the response time)
        self._agent_quiet_at = 0.0  # when the agent's last utterance ended
        self._session = Turn()  # the session's minutes and the backend's tokens, priced as they are reported
        self._earlier_sessions_usd = 0.0  # what sessions before a reconnect cost
        self._backend_usd = 0.0
        self._minutes_usd = 0.0
        self._streamed_s = 0.0  # the session's timeline: the caller's audio sent (what it bills, to the second)
        self._reported_s = 0.0  # the billable seconds the session last reported
        self._grouper: AsyncTranscriptGrouper | None = None

    def copy(self) -> LiveHandler:
        return LiveHandler(self.config, self.store, self.settings)

    def use_phone_line(self) -> None:
        """A phone call: μ-law at 8 kHz straight through, both ways."""
        serve_phone_line(self, rate=PHONE_RATE)
        self.playout = Playout(sample_rate=PHONE_RATE)

    # ---- fastrtc interface -------------------------------------------------------------------------

    async def start_up(self) -> None:
        try:
            if await self.call.begin(await page_request(self)):
                self.call.state.turns.append(self._session)
                await self._converse()
        except CallEnded as ended:
            await self.call.end(ended.reason, ended.message)
        except Exception:
            log.exception("the Live engine failed")
            await self.call.end(CloseReason.ERROR, notice("internal_error"))

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        pcm = frame[1].reshape(-1)
        if level_dbfs(pcm) >= self.settings.barge_in.threshold_dbfs:
            self._caller_voice_at = time.monotonic()
        conn = self._conn
        if conn is None or not self._started.is_set() or self.call.close_message is not None:
            return
        try:  # 50 times a second: raw JSON, as the SDK's typed helper costs more than the audio
            audio = to_wire(pcm, mulaw=self.phone_mode)
            await conn.send_raw(json.dumps({"type": "session.input_audio.append", "audio": audio}))
        except ConnectionClosed:
            return  # the conversation loop sees the drop
        whole_second = int(self._streamed_s)
        self._streamed_s += pcm.size / self.input_sample_rate
        if int(self._streamed_s) > whole_second:  # between the session's usage reports, the card counts on
            self._add_usage({"seconds": max(self._reported_s, self._streamed_s)})

    async def emit(self) -> Any:
        if self.call.closed:
            await asyncio.sleep(0.05)
            return None
        if (out := self.call.output()) is not None:
            return to_fastrtc(out)
        chunk = await self.playout.next_chunk()
        return None if chunk is None else (self.output_sample_rate, chunk)

    async def shutdown(self) -> None:
        self._shutting_down = True
        if self._conn is not None:
            await self._conn.close()
        await self.call.end(CloseReason.HUNG_UP)

    # ---- the call's hooks (`Voice`) ----------------------------------------------------------------

    async def say_now(self, instructions: str) -> bool:
        """A standing instruction the model acts on at once (the wrap-up, the goodbye)."""
        conn = self._conn
        if conn is None or not self._started.is_set():
            return False
        try:
            await conn.session.instructions.append(content=instructions, delegation_id=None)
        except ConnectionClosed:
            return False
        self._waiting_for_voice = time.monotonic() + SPEECH_WAIT_S
        return True

    def busy(self) -> bool:
        waiting = time.monotonic() < self._waiting_for_voice
        return self.playout.speaking or bool(self._delegations) or bool(self._open_calls) or waiting

    async def hang_up(self) -> None:
        """`session.close`, then the socket once the server has said `session.closed` (or soon after)."""
        conn = self._conn
        self._waiting_for_voice = 0.0
        if conn is None or self._shutting_down:
            return
        self._shutting_down = True
        try:
            await conn.session.close()
        except ConnectionClosed:
            return
        asyncio.get_running_loop().call_later(CLOSE_WAIT_S, lambda: asyncio.ensure_future(conn.close()))

    # ---- the session -------------------------------------------------------------------------------

    def _session_config(self, resume_draft: dict[str, Any] | None) -> dict[str, Any]:
        options = self.call.options
        assert options is not None
        audio_format = {"type": "audio/pcmu", "rate": PHONE_RATE} if self.phone_mode else {"type": "audio/pcm"}
        if not self.phone_mode:
            audio_format["rate"] = WEB_RATE
        config: dict[str, Any] = {
            "model": self.settings.live_model,
            "instructions": voice_instructions(self.config, options.language),
            "audio": {"format": audio_format, "output": {"voice": options.voice}},
            "delegation": {
                "type": "responses",
                "responses": {
                    "model": self.settings.live_backend_model,
                    "instructions": self.call.instructions(),
                    "tools": realtime_tools(transfer=self.call.transfer_offered),
                    "tool_choice": "auto",
                },
            },
        }
        if resume_draft is not None:
            config["input"] = self._history(resume_draft)
        return config

    def _history(self, draft: dict[str, Any]) -> list[dict[str, Any]]:
        """What a new session needs to carry the call on: the conversation so far, and the draft as a note."""
        assert self.call.options is not None
        items = []
        for line in self.call.state.lines[-MAX_HISTORY:]:
            if line.role == "user" and line.status == "final" and line.text:
                items.append(_message("user", "input_text", line.text))
            elif line.role == "assistant" and line.text:
                items.append(_message("assistant", "output_text", line.text))
        note = resume_note(self.call.options.language, json.dumps(draft["reservation"], ensure_ascii=False))
        return [*items, _message("developer", "input_text", note)]

    async def _converse(self) -> None:
        """Run the call over one session, starting a new one (with the conversation so far) when it drops."""
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
                self._forget_session()
                self.call.system(notice("reconnecting"))
                await asyncio.sleep(0.5 * reconnects)

    async def _connection(self, client: AsyncOpenAI, resume: bool) -> None:
        try:
            conn = await client.live.connect().enter()
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
        self._grouper = self._new_grouper()
        try:
            session = self.call.session
            assert session is not None
            draft = await self.call.store_io(session.snapshot) if resume else None  # a store read: off the loop
            await conn.session.start(session=self._session_config(draft))
            await self._receive_events(conn, resume)
        except ConnectionClosed as closed:
            if not self._shutting_down:
                raise ConnectionLost(str(closed)) from None
        finally:
            self._conn = None
            self._started.clear()
            await self._grouper.close()
            if not self._shutting_down:
                await conn.close()

    async def _receive_events(self, conn: Any, resume: bool) -> None:
        while True:
            started = self._started.is_set()
            timeout = self.settings.response_timeout_s if started else START_TIMEOUT_S
            try:
                async with asyncio.timeout(timeout):
                    raw = await conn.recv_bytes()
            except TimeoutError:
                if not started:
                    raise CallEnded(notice("stalled")) from None
                self.call.system(notice("stalled"))
                raise ConnectionLost("stalled") from None
            event = json.loads(raw)
            kind = event.get("type", "")
            if kind == "session.started":
                self._started.set()
                if resume:
                    self.call.system(notice("reconnected"))
                else:
                    await self.say_now(greeting_instruction(self.call.language))
            elif kind == "session.closed":
                await self._grouper_push(conn, raw)
                self._add_usage(event.get("usage") or {}, reported=True)
                if not self._shutting_down:  # the server ended the session (its time ran out)
                    raise ConnectionLost(f"closed: {event.get('reason')}")
                return
            elif kind == "error":
                await self._on_error(event.get("error") or {}, started)
            elif kind == "session.output_audio.delta":
                self._on_audio(event.get("delta", ""))
            elif kind in ("session.input_transcript.delta", "session.output_transcript.delta"):
                await self._grouper_push(conn, raw)
            elif kind == "session.delegation.created":
                self._delegations.add((event.get("delegation") or {}).get("id", ""))
            elif kind == "response.event":
                await self._on_backend(conn, event.get("delegation_id") or "", event.get("event") or {})
            elif kind == "session.usage.updated":
                self._add_usage(event.get("usage") or {}, reported=True)

    def _forget_session(self) -> None:
        """The socket dropped: its session's open work is gone, and what is queued will not be heard."""
        for task in [*self._open_calls.values(), self._answering]:
            if task is not None:
                task.cancel()
        self._open_calls.clear()
        self._delegations.clear()
        self._earlier_sessions_usd += self._minutes_usd
        self._minutes_usd = self._streamed_s = self._reported_s = 0.0
        self._streamed_s = 0.0  # the session's timeline: the caller's audio sent (what it bills, to the second)
        self._reported_s = 0.0  # the billable seconds the session last reported
        self._end_utterance()
        self.playout.clear()
        clear_transport(self)

    # ---- what the caller hears ---------------------------------------------------------------------

    def _on_audio(self, delta: str) -> None:
        pcm = from_wire(delta, mulaw=self.phone_mode)
        if level_dbfs(pcm) < AUDIBLE_DBFS:  # the track's silence: the model is not speaking (or has stopped)
            self._end_utterance()
            return
        if self._speaking_item is None:
            self._utterance += 1
            self._speaking_item = f"live-{self._utterance}"
            self._waiting_for_voice = 0.0
            turn = Turn()  # its response time: from the caller's last loud audio to the first audible reply
            if self._caller_voice_at > self._agent_quiet_at:  # an answer to the caller, not a greeting or a wrap-up
                turn.latency_ms = round((time.monotonic() - self._caller_voice_at) * 1000)
            self.call.state.turns.append(turn)
            self.call.changed()
        self.playout.push(self._speaking_item, pcm)

    def _end_utterance(self) -> None:
        if self._speaking_item is not None:
            self._speaking_item = None
            self._agent_quiet_at = time.monotonic()

    # ---- transcripts -------------------------------------------------------------------------------

    def _new_grouper(self) -> AsyncTranscriptGrouper:
        grouper = AsyncTranscriptGrouper()
        grouper.on("segment.updated", self._on_segment)
        grouper.on("segment.closed", self._on_segment_closed)
        return grouper

    async def _grouper_push(self, conn: Any, raw: bytes) -> None:
        if self._grouper is not None:
            await self._grouper.push(conn.parse_event(raw))

    def _on_segment(self, segment: TranscriptSegment) -> None:
        state = self.call.state
        if segment.speaker == "user":
            state.user_said(segment.id, segment.text)
        else:
            state.agent_text(segment.id, segment.text)
        self.call.changed()

    def _on_segment_closed(self, closed: TranscriptSegmentClosedEvent) -> None:
        segment = closed.segment
        if segment.speaker == "assistant":
            self.call.state.agent_done(segment.id, segment.text)
            self.call.changed()

    # ---- delegation: the backend and our tools -----------------------------------------------------

    async def _on_backend(self, conn: Any, delegation_id: str, event: dict[str, Any]) -> None:
        kind = event.get("type", "")
        if kind == "response.output_item.done":
            item = event.get("item") or {}
            if item.get("type") == "function_call" and item.get("call_id"):
                self._open_calls[item["call_id"]] = asyncio.create_task(
                    self.call.run_tool(item.get("name", ""), item.get("arguments"))
                )
        elif kind in ("response.completed", "response.failed", "response.incomplete"):
            response = event.get("response") or {}
            self._add_backend_usage(response.get("usage"))
            if kind == "response.failed":
                log.warning("a delegated task failed: %s", (response.get("error") or {}).get("code"))
            if self._open_calls:  # answered off the receive loop, which must go on reading the track
                self._answering = asyncio.create_task(self._answer_calls(conn, delegation_id))
            else:
                self._delegations.discard(delegation_id)

    async def _answer_calls(self, conn: Any, delegation_id: str) -> None:
        """Every open call's result, then one `response.create`: the backend goes on with all of them."""
        calls = dict(self._open_calls)
        try:
            for call_id, task in calls.items():
                output = json.dumps(await task, ensure_ascii=False)  # `run_tool` never raises
                item = {"type": "function_call_output", "call_id": call_id, "output": output}
                await conn.response.item.create(item=item)
                self._open_calls.pop(call_id, None)
            await conn.response.create()
        except ConnectionClosed:
            pass  # the receive loop sees the drop; a new session starts from the draft

    def _add_backend_usage(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        self._backend_usd += responses_cost(usage, self.settings.live_backend_model, self.settings.prices)
        tokens = int(usage.get("total_tokens") or 0)
        self._session.total_tokens = (self._session.total_tokens or 0) + tokens
        self._price()

    def _add_usage(self, usage: dict[str, Any], reported: bool = False) -> None:
        """The session's cumulative billable seconds, priced (they replace, never add to, the last report). Between
        reports, the seconds streamed so far stand in for them (the timeline is the audio sent)."""
        if reported:
            self._reported_s = float(usage.get("seconds") or 0.0)
        self._minutes_usd = live_cost(usage, self.settings.live_model, self.settings.prices)
        self._price()

    def _price(self) -> None:
        self._session.cost_usd = self._earlier_sessions_usd + self._minutes_usd + self._backend_usd
        self.call.changed()

    # ---- errors ------------------------------------------------------------------------------------

    async def _on_error(self, error: dict[str, Any], started: bool) -> None:
        """A refused key or a spent quota ends the call; anything else concerns one client event, and is logged."""
        code = str(error.get("code") or "")
        log.warning("Live error event: %s (%s)", code, error.get("type"))
        if code in KEY_ERRORS or (not started and error.get("type") == "authentication_error"):
            raise CallEnded(notice("key_refused"), CloseReason.KEY_REFUSED)
        if code in QUOTA_ERRORS:
            raise CallEnded(notice("quota"), CloseReason.SERVICE)


def _message(role: str, kind: str, text: str) -> dict[str, Any]:
    """One text message of a session's starting history (`session.start`'s `input`)."""
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}
