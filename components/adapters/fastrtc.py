"""Where the engines meet fastrtc: the call's own outputs turned into fastrtc's types.

`Call` speaks in our types (`ViewUpdate`, `Hangup`) so that it does not depend on the transport; an engine's `emit`
hands fastrtc what this module makes of them: `AdditionalOutputs` with the call's view (for the page and the live
feed), and `CloseStream` to end the call.
"""

from __future__ import annotations

from fastrtc import AdditionalOutputs, CloseStream

from components.call.call import CallOutput, ViewUpdate


def to_fastrtc(output: CallOutput) -> AdditionalOutputs | CloseStream:
    if isinstance(output, ViewUpdate):
        return AdditionalOutputs(output.view)
    return CloseStream(output.message)
