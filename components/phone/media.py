"""A Twilio Media Stream (8 kHz mu-law both ways over a WebSocket), run by fastrtc's `WebSocketHandler`.

fastrtc converts the caller's mu-law to the handler's PCM and back. What fastrtc 0.0.34 leaves out, this
module adds around it, through the hooks of `adapters.fastrtc.MediaStream` (never by patching fastrtc):

* barge-in tells Twilio to drop the audio it has buffered (`{"event": "clear"}`), not only fastrtc's queue;
* the call's transcript and card reach the live feed (`/outputs`), which fastrtc drops for phone calls;
* when the agent ends the call (`CloseStream`: time limit, error), the line hangs up once the caller has
  heard the last words (a Twilio `mark` echoed back);
* Twilio's messages are checked before fastrtc sees them, and a handler that crashes or overruns the hard
  time limit hangs up instead of leaving the caller in silence.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from fastapi import WebSocket
from fastapi.websockets import WebSocketDisconnect, WebSocketState

from components.adapters.fastrtc import MediaStream

if TYPE_CHECKING:
    from fastrtc import AdditionalOutputs, AsyncStreamHandler

    from components.phone.twilio import PhoneLine

log = logging.getLogger(__name__)

HANGUP_MARK = "hangup"
PLAYOUT_MARGIN_S = 0.3  # network and jitter-buffer delay between our send and the caller's ear
HANGUP_GRACE_S = 2.0  # beyond the audio still playing, how long to wait for Twilio to echo the hang-up mark
HANGUP_WAIT_MAX_S = 10.0
MAX_MEDIA_PAYLOAD = 16_000  # base64 characters: Twilio sends 20 ms (160 bytes) per message
_BACKGROUND: set[asyncio.Task] = set()


class PhoneCall(MediaStream):
    """fastrtc's Twilio WebSocket handler, plus what a real phone call needs (see the module docstring)."""

    def __init__(self, handler: AsyncStreamHandler, line: PhoneLine) -> None:
        super().__init__(handler, self._register, self._clean_up, self._outputs)
        self.line = line
        self.socket: TwilioSocket | None = None
        self.call_sid: str | None = None
        self.started_at: dt.datetime | None = None  # when the line admitted it (what the call wrote came after)
        self.admitted: str | None = None
        self.ending = "caller_hung_up"
        self.hangup_heard = asyncio.Event()
        self._supervisor: asyncio.Task | None = None

    # fastrtc's callbacks -----------------------------------------------------------------------------

    async def _register(self, stream_sid: str, _: MediaStream) -> None:
        self.line.connections[stream_sid] = [self]

    def _outputs(self, stream_sid: str) -> Callable[[AdditionalOutputs], None]:
        return self.line.feed.publisher(stream_sid)

    def _clean_up(self, _: str | None) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
        self.line.finish(self)
        if self.admitted is not None:
            self._spawn(self.stream_handler.shutdown())

    # fastrtc's hooks (adapters.fastrtc.MediaStream) -------------------------------------------------

    def on_barge_in(self) -> None:
        """Barge-in: fastrtc dropped its queue; drop what Twilio has buffered for the caller (the `clear` message)."""
        socket = self.socket
        if socket is not None and self.stream_id and socket.playing_s() > 0:
            socket.played_out()
            self._spawn(socket.send_json({"event": "clear", "streamSid": self.stream_id}))

    async def before_stopping(self) -> None:
        """The agent closed the call: hang up once Twilio reports the last audio played (our `mark`)."""
        if self.ending == "caller_hung_up":
            self.ending = "ended"
        socket = self.socket
        if socket is not None and self.stream_id and socket.playing_s() > 0:
            wait = min(HANGUP_WAIT_MAX_S, socket.playing_s() + HANGUP_GRACE_S)
            await socket.send_json({"event": "mark", "streamSid": self.stream_id, "mark": {"name": HANGUP_MARK}})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.hangup_heard.wait(), wait)

    # ours ------------------------------------------------------------------------------------------

    def on_start(self, message: dict[str, Any]) -> bool:
        """Admit the call (or not) before fastrtc starts the handler; True to go on."""
        refusal = self.line.admit(self, message)
        if refusal is not None:
            self.ending = refusal
            return False
        self.admitted = message.get("streamSid") or message["start"]["streamSid"]
        self._supervisor = asyncio.create_task(self._supervise())
        return True

    def on_handler_message(self, text: str) -> None:
        """What the handler would show on screen (fastrtc's data channel): on the phone, only why it ended."""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            if json.loads(text).get("type") == "error":
                self.ending = "trouble"

    def hang_up(self, ending: str) -> None:
        self.ending = ending
        self.stop()

    async def _supervise(self) -> None:
        """End the call if the handler crashes, and at the hard time limit if the handler did not end it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.line.settings.hard_time_limit_s
        while self.engine_task is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        task = self.engine_task
        if task is not None:
            await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("The voice handler failed on a phone call", exc_info=task.exception())
                self.hang_up("trouble")
                return
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        log.warning("Phone call %s hit the hard time limit.", self.stream_id)
        self.hang_up("time_limit")

    @staticmethod
    def _spawn(coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        _BACKGROUND.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(_BACKGROUND.discard)


class TwilioSocket:
    """The WebSocket as fastrtc's handler sees it: Twilio's messages checked, our hang-up and hooks added.

    * `receive_json` admits the call on `start`, drops malformed messages, notes echoed marks, and returns a
      `stop` when we hang up (fastrtc only looks at its quit flag between messages);
    * `send_text` is fastrtc's data channel (messages meant for a screen): never sent to Twilio;
    * `send_json` keeps track of how much audio Twilio still has to play (so barge-in knows whether there is
      anything to `clear`), and a closed socket makes it a no-op instead of an error in fastrtc's emit loop.
    """

    def __init__(self, websocket: WebSocket, call: PhoneCall) -> None:
        self.websocket = websocket
        self.call = call
        self.closed = False
        self._buffered_until = 0.0  # when the audio sent so far will have played, on our clock
        self._pending: asyncio.Task | None = None
        call.socket = self

    @property
    def application_state(self) -> WebSocketState:
        return WebSocketState.DISCONNECTED if self.closed else self.websocket.application_state

    async def accept(self) -> None:
        await self.websocket.accept()

    async def close(self, code: int = 1000) -> None:
        if self._pending is not None:
            self._pending.cancel()
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self.websocket.close(code)

    async def send_json(self, data: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            await self.websocket.send_json(data)
        except Exception:  # the caller hung up: the receive loop sees it and ends the call
            self.closed = True
            return
        if data.get("event") == "media":
            seconds = len(data["media"]["payload"]) * 3 / 4 / 8000  # base64 of 8 kHz mu-law, one byte a sample
            self._buffered_until = max(time.monotonic(), self._buffered_until) + seconds

    def playing_s(self) -> float:
        """Seconds of our audio Twilio has yet to play (with a margin for the network), 0 if none."""
        left = self._buffered_until + PLAYOUT_MARGIN_S - time.monotonic()
        return left if left > 0 else 0.0

    def played_out(self) -> None:
        """Twilio dropped what it had buffered (`clear`)."""
        self._buffered_until = 0.0

    async def send_text(self, text: str) -> None:
        self.call.on_handler_message(text)

    async def receive_json(self) -> dict[str, Any]:
        while True:
            text = await self._receive_text()
            if text is None:
                return {"event": "stop"}
            try:
                message = json.loads(text)
            except ValueError:
                continue
            if not isinstance(message, dict) or not isinstance(message.get("event"), str):
                continue
            event = message["event"]
            if event == "start":
                if self.call.admitted is not None:
                    continue  # one call per stream
                if not self.call.on_start(message):
                    return {"event": "stop"}
                message["streamSid"] = self.call.admitted
            elif event == "media":
                if self.call.admitted is None or not _valid_media(message.get("media")):
                    continue
            elif event == "mark":
                mark = message.get("mark") if isinstance(message.get("mark"), dict) else {}
                if mark.get("name") == HANGUP_MARK:
                    self.call.hangup_heard.set()
                continue
            elif event != "stop":
                continue  # connected, dtmf, and anything else: nothing for fastrtc to do
            return message

    async def _receive_text(self) -> str | None:
        """The next text message, or None once we hang up (raises WebSocketDisconnect if Twilio did)."""
        if self.call.stopped():
            return None
        if self._pending is None:
            self._pending = asyncio.ensure_future(self.websocket.receive())
        quitting = asyncio.ensure_future(self.call.wait_stopped())
        try:
            await asyncio.wait({self._pending, quitting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            quitting.cancel()
        if not self._pending.done():
            return None
        received, self._pending = self._pending.result(), None
        if received["type"] == "websocket.disconnect":
            self.closed = True
            raise WebSocketDisconnect(received.get("code", 1000))
        return received.get("text") or ""


def _valid_media(media: Any) -> bool:
    if not isinstance(media, dict) or media.get("track", "inbound") != "inbound":
        return False
    payload = media.get("payload")
    if not isinstance(payload, str) or not payload or len(payload) > MAX_MEDIA_PAYLOAD:
        return False
    try:
        base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
