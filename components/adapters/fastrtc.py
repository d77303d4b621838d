"""Everything we rely on from fastrtc 0.0.34 beyond its documented surface, in one place.

Review this module when fastrtc changes (`FASTRTC_VERSION`; `tests/test_adapters.py` fails on any other version).
What it relies on:

* `AdditionalOutputs` and `CloseStream` (public): a call's view for the page and the feed, and its end;
* the connection registry of a WebRTC component (or `Stream`), from `WebRTCConnectionMixin`: `pcs` (webrtc id →
  the aiortc peer connection, from the offer on), `handlers` (webrtc id → that call's handler copy) and
  `additional_outputs` (a `defaultdict` of output queues with `queue` and `quit`; `.get` creates no entry);
* the component's `state_change` event (public), the one its own `on_additional_outputs` listens to;
* a component (and `Stream`) answering offers with its `handle_offer(body, set_outputs)`, taking a call's output
  sink from `set_additional_outputs(webrtc_id)`, and forgetting a call and shutting its handler with
  `clean_up(webrtc_id)` (also when a peer goes away), each looked up on the instance when used; a `Stream`
  subclass overrides them (and the routes `offer`, `handle_incoming_call`, `telephone_handler`,
  `websocket_offer`), since `Stream.mount` routes to those methods;
* `server_rtc_configuration`: the converted (aiortc `RTCConfiguration`) form of the constructor's dict;
* a stream handler's `phone_mode` (a property with a setter: on a phone line fastrtc converts its rates from and to
  8 kHz μ-law), its `input_sample_rate` / `output_sample_rate`, and its `clear_queue`, a property that returns the
  callback its transport sets in `_clear_queue` (None until one does);
* a stream handler's `resample(frame)`, through which fastrtc passes each decoded WebRTC frame of the caller
  (`AudioCallback.process_input_frames`), handing the handler every frame it yields as `(rate, samples)`;
* `WebSocketHandler` (`fastrtc.websocket`), which runs a Twilio Media Stream: its constructor, `handle_websocket`,
  `stream_id` and `stream_handler`, its `quit` event (its loops check it between messages), the `start_up_task` it
  makes on `start`, `playing_durations` (its estimate of the audio still playing, emptied on barge-in), and the
  two private methods `MediaStream` maps onto hooks (below).

What fastrtc cannot do, and this module does instead:

* its `on_additional_outputs` follows any webrtc id a client names, creating an output queue for it and polling it
  until a call that never exists ends (so made-up ids fill the page's queue and memory); `follow_outputs` follows
  only a call this process has an offer for, and ends with it;
* it has no hook before a component answers an offer (to refuse one against a limit shared by several components)
  nor beside its outputs and clean-up (to feed a second reader): `screen_offers` and `tap_outputs` wrap those
  methods on the one component instance;
* its `resample` builds PyAV's resampler with `frame_size` set to the incoming frame's sample count (960 at 48 kHz),
  so it yields frames of 960 samples *at the handler's rate*: 60 ms at 16 kHz, 40 ms at 24 kHz. The caller's audio
  then reaches an engine up to 40 ms late, and the barge-in, the VAD and the end of a turn with it. `EngineHandler`
  (every engine's base) resamples each 20 ms frame as it comes;
* it refuses to start on a Space without TURN (`Stream._check_colab_or_spaces`, from the lifespan `mount` adds),
  though a phone line needs none: `ServerStream` turns that check into the hook `check_at_start`;
* on a Twilio line its `WebSocketHandler` clears only its own queue on barge-in (`_clear_queue`), not the audio
  Twilio has buffered, and on `CloseStream` it stops after its own estimate of the audio still playing
  (`_wait_for_audio_completion`); `MediaStream` makes those two the hooks `on_barge_in` and `before_stopping`. It
  also reads `start_up_task` when the stream ends even if no `start` came (an `AttributeError`): `MediaStream` sets
  it to None first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import av
from fastrtc import AdditionalOutputs, AsyncStreamHandler, CloseStream, Stream, WebRTC
from fastrtc.websocket import WebSocketHandler

from components.call.call import CallOutput, ViewUpdate

FASTRTC_VERSION = "0.0.34"
POLL_S = 0.25


def to_fastrtc(output: CallOutput) -> AdditionalOutputs | CloseStream:
    """The call's own output as fastrtc takes it from an engine's `emit`."""
    if isinstance(output, ViewUpdate):
        return AdditionalOutputs(output.view)
    return CloseStream(output.message)


async def _outputs(component: Any, webrtc_id: str) -> AsyncIterator[AdditionalOutputs]:
    """The additional outputs of one call this process took an offer for, until it ends; nothing for another id.

    The page starts following its call once the call has connected, so its offer was answered (and is in `pcs`)
    before: an id that is not there is made up, and the job ends at once. It must: every job holds one of Gradio's
    40 queue workers, shared by every event of the page."""
    if webrtc_id not in component.pcs:
        return
    while True:
        outputs = component.additional_outputs.get(webrtc_id)  # `.get`: never creates a queue for the id
        if outputs is None:
            if webrtc_id not in component.pcs:
                return  # the call ended before it showed anything
            await asyncio.sleep(POLL_S)
            continue
        if outputs.quit.is_set() and outputs.queue.empty():
            return
        try:
            yield await asyncio.wait_for(outputs.queue.get(), POLL_S)
        except TimeoutError:
            if webrtc_id not in component.pcs and outputs.queue.empty():
                return


def follow_outputs(component: Any, fn: Callable[..., Any], outputs: Sequence[Any], **event: Any) -> Any:
    """Show each view of the component's call with `fn`, like fastrtc's `on_additional_outputs`, but bounded: only
    a call this process has an offer for is followed, and the event ends with it."""

    async def follow(value: Any) -> AsyncIterator[Any]:
        webrtc_id = getattr(value, "webrtc_id", value)
        if not isinstance(webrtc_id, str) or not webrtc_id:
            return
        async for next_outputs in _outputs(component, webrtc_id):
            yield fn(*next_outputs.args)

    return component.state_change(
        fn=follow, inputs=[component], outputs=list(outputs), trigger_mode="once", show_progress="hidden", **event
    )


def calls(component: Any) -> dict[str, Any]:
    """The component's calls that have an offer, by webrtc id (their peer connections)."""
    return component.pcs


def started(component: Any, webrtc_id: str) -> bool:
    """Whether the call's handler has started its call (our handlers set `call.options` when it begins)."""
    handler = component.handlers.get(webrtc_id)
    call = getattr(handler, "call", None)
    return call is not None and call.options is not None


async def hang_up(component: Any, webrtc_id: str) -> None:
    """End a call fastrtc holds: close its peer connection and forget it, as fastrtc does when a peer leaves."""
    pc = component.pcs.get(webrtc_id)
    component.clean_up(webrtc_id)
    if pc is not None:
        await pc.close()


# ---- offers and outputs of a page's component ----

Answer = Callable[[], Awaitable[Any]]  # fastrtc answering the offer being screened


def screen_offers(component: WebRTC, screen: Callable[[dict[str, Any], Answer], Awaitable[Any]]) -> None:
    """Put `screen` before every offer the component answers itself: it gets the offer's body and fastrtc's answer
    (to await, or not), and returns what the page gets."""
    answer = component.handle_offer

    async def screened(body: dict[str, Any], set_outputs: Callable) -> Any:
        return await screen(body, lambda: answer(body, set_outputs))

    component.handle_offer = screened


def tap_outputs(
    component: WebRTC,
    publisher: Callable[[str], Callable[[AdditionalOutputs], None]],
    ended: Callable[[str], None],
) -> None:
    """Hand each output of the component's calls to `publisher(webrtc_id)` too, and tell `ended(webrtc_id)` once
    fastrtc has forgotten the call (even if its clean-up failed)."""
    outputs_for, clean_up = component.set_additional_outputs, component.clean_up

    def outputs_to_both(webrtc_id: str) -> Callable[[AdditionalOutputs], None]:
        to_component, to_publisher = outputs_for(webrtc_id), publisher(webrtc_id)

        def both(outputs: AdditionalOutputs) -> None:
            to_component(outputs)
            to_publisher(outputs)

        return both

    def clean_up_and_tell(webrtc_id: str) -> Any:
        try:
            return clean_up(webrtc_id)
        finally:
            ended(webrtc_id)

    component.set_additional_outputs = outputs_to_both
    component.clean_up = clean_up_and_tell


def use_server_ice_of(stream: Stream, component: WebRTC) -> None:
    """Give the stream the component's server-side ICE configuration (its TURN relay). `Stream` takes it only as a
    dict, which it converts, and a component keeps only the converted form: it is shared as is."""
    stream.server_rtc_configuration = component.server_rtc_configuration


class ServerStream(Stream):
    """fastrtc's `Stream`, with its start-up check as a hook."""

    def check_at_start(self) -> None:
        """Runs as the server starts. fastrtc's own check (kept unless overridden) refuses to start on a Space or
        in Colab without `rtc_configuration`."""
        super()._check_colab_or_spaces()

    def _check_colab_or_spaces(self) -> None:
        self.check_at_start()


# ---- a handler on a call ----


class EngineHandler(AsyncStreamHandler):
    """fastrtc's `AsyncStreamHandler`, hearing the caller over WebRTC in the 20 ms frames the line carries: each
    frame is resampled to the handler's rate and handed on at once (see the module docstring)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._caller_resampler: av.AudioResampler | None = None

    def resample(self, frame: av.AudioFrame) -> Iterator[av.AudioFrame]:
        if self._caller_resampler is None:  # no `frame_size`: what a frame brings comes out now, ~0.3 ms delayed
            self._caller_resampler = av.AudioResampler(
                format="s16", layout=self.expected_layout, rate=self.input_sample_rate
            )
        yield from self._caller_resampler.resample(frame)


def serve_phone_line(handler: AsyncStreamHandler, rate: int | None = None) -> None:
    """Make the handler a phone line's: fastrtc then converts the line's 8 kHz μ-law from and to the handler's
    rates, or, with `rate`, the handler takes and gives audio at that rate."""
    handler.phone_mode = True
    if rate is not None:
        handler.input_sample_rate = handler.output_sample_rate = rate


def clear_transport(handler: AsyncStreamHandler) -> None:
    """Drop the audio the handler's transport holds for the caller (barge-in); nothing before one is attached.
    (fastrtc's `clear_queue` property returns None until then, and calling it would raise.)"""
    if handler._clear_queue is not None:
        handler.clear_queue()


class MediaStream(WebSocketHandler):
    """fastrtc's runner of a Twilio Media Stream, with hooks where it has private methods (see the module's
    docstring). A subclass overrides `on_barge_in` and `before_stopping`, and uses `engine_task`, `stop`,
    `stopped` and `wait_stopped` instead of fastrtc's attributes."""

    def __init__(
        self,
        handler: AsyncStreamHandler,
        set_handler: Callable[[str, WebSocketHandler], Awaitable[None]],
        clean_up: Callable[[str], None],
        outputs_for: Callable[[str], Callable[[AdditionalOutputs], None]],
    ) -> None:
        super().__init__(handler, set_handler, clean_up, outputs_for)
        self.start_up_task: asyncio.Task | None = None  # fastrtc sets it on `start`, but reads it in any case

    def on_barge_in(self) -> None:
        """The engine cleared its audio (barge-in), and fastrtc's queue of it is empty."""

    async def before_stopping(self) -> None:
        """The engine ended the call (`CloseStream`): return once the line may hang up."""

    @property
    def engine_task(self) -> asyncio.Task | None:
        """The engine's `start_up`, running since the stream's `start` (None before)."""
        return self.start_up_task

    def stop(self) -> None:
        """End the stream: fastrtc's loop stops before its next message (a socket waiting for one can wait on
        `wait_stopped` too)."""
        self.quit.set()

    def stopped(self) -> bool:
        return self.quit.is_set()

    async def wait_stopped(self) -> None:
        await self.quit.wait()

    def _clear_queue(self) -> None:
        super()._clear_queue()
        self.playing_durations.clear()
        self.on_barge_in()

    async def _wait_for_audio_completion(self) -> None:
        try:
            await self.before_stopping()
        finally:
            self.quit.set()
