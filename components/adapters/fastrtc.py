"""Everything we rely on from fastrtc 0.0.34 beyond its documented surface, in one place.

Review this module when fastrtc changes (`FASTRTC_VERSION`; `tests/test_adapters.py` fails on any other version).
What it relies on:

* `AdditionalOutputs` and `CloseStream` (public): a call's view for the page and the feed, and its end;
* the connection registry of a WebRTC component (or `Stream`), from `WebRTCConnectionMixin`: `pcs` (webrtc id →
  the aiortc peer connection, from the offer on), `handlers` (webrtc id → that call's handler copy) and
  `additional_outputs` (a `defaultdict` of output queues with `queue` and `quit`; `.get` creates no entry);
* `clean_up(webrtc_id)` (used by fastrtc itself when a peer goes away): forgets the call and shuts its handler;
* the component's `state_change` event (public), the one its own `on_additional_outputs` listens to.

What fastrtc cannot do, and this module does instead: its `on_additional_outputs` follows any webrtc id a client
names, creating an output queue for it and polling it until a call that never exists ends (so made-up ids fill the
page's queue and memory); `follow_outputs` follows only a call this process has an offer for, and ends with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastrtc import AdditionalOutputs, CloseStream

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
