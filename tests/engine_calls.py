"""One conversation, on either engine: a script in the words both fakes share, and a call run as fastrtc runs it.

The Realtime fake (`fake_realtime`) and the HTTP fake (`fake_openai_http`) script a model the same way: a
greeting, then per caller turn what the caller is heard saying, the tools the model calls and what it says.
`Exchange` is one such turn; `fake_model` builds the engine's fake from them, and `run_call` starts the
engine's handler the way fastrtc does for a browser call (UI inputs) or a phone call (phone mode, caller), with
the matching driver, then plays `conversation` against it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from components.call.options import CallRequest
from components.engines.live import LiveHandler
from components.engines.pipeline.handler import PipelineHandler
from components.engines.realtime import RealtimeHandler
from components.restaurant.config import RestaurantConfig
from components.restaurant.lookup import Caller
from components.settings import AgentSettings
from components.store.reservations import ReservationStore
from tests import fake_live as live
from tests import fake_openai_http as http
from tests import fake_realtime as realtime
from tests.call_driver import CallDriver
from tests.speech import Echo

KEY = "sk-test-engine-calls"
Reply = str | Callable[[Any], str]


@dataclass
class Exchange:
    """One caller turn: what the caller is heard saying, the tools the model then calls (in order), its reply.

    A tool's arguments and the reply may be callables of the last tool output, to use what the code returned."""

    said: str
    reply: Reply
    tools: Sequence[tuple[str, Any]] = field(default_factory=tuple)


FAKES = {"live": live, "realtime": realtime, "pipeline": http}
HANDLERS = {"live": LiveHandler, "realtime": RealtimeHandler, "pipeline": PipelineHandler}


def fake_model(engine: str, greeting: str, exchanges: Sequence[Exchange]) -> Any:
    """The engine's scripted fake (a context manager serving `OPENAI_BASE_URL`)."""
    fake = FAKES[engine]
    turns = [
        fake.on_caller_speech(
            fake.user_said(exchange.said),
            *[fake.call_tool(name, arguments) for name, arguments in exchange.tools],
            fake.say(exchange.reply),
        )
        for exchange in exchanges
    ]
    script = fake.Script(fake.greet(greeting), *turns)
    if engine == "live":
        return live.FakeLiveServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300)
    if engine == "realtime":
        return realtime.FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300)
    return http.FakeOpenAIServer(script, api_key=KEY, ms_per_char=15)


def run_call(
    engine: str,
    server: Any,
    config: RestaurantConfig,
    store: ReservationStore,
    conversation: Callable[[CallDriver], Awaitable[None]],
    *,
    env: pytest.MonkeyPatch,
    language: str = "en",
    caller: Caller | None = None,
    echo_db: float | None = None,
) -> CallDriver:
    """Run one call on `engine`: a browser call in `language`, or a phone call from `caller` when one is given;
    with `echo_db`, the caller's handset plays the agent back into its microphone that much quieter."""
    env.setenv("OPENAI_BASE_URL", server.base_url)
    env.setenv("HF_HUB_OFFLINE", "1")
    env.delenv("OPENAI_API_KEY", raising=False)
    settings = AgentSettings(response_timeout_s=5, api_key=KEY if caller is not None else None)  # the owner's key
    handler: Any = HANDLERS[engine](config, store, settings).copy()
    if caller is not None:
        handler.use_phone_line()
        handler.call.caller = caller
    else:
        handler.set_args(["webrtc-id", *CallRequest(language, "cedar", KEY).inputs()])  # the page's inputs
    phone_line = engine == "pipeline" and caller is not None  # its 16 kHz input is what `telephone` makes
    driver = CallDriver(handler, phone_line=phone_line)
    if echo_db is not None:
        driver.echo = Echo(echo_db, handler.input_sample_rate)

    async def main() -> CallDriver:
        async with driver as call:
            await conversation(call)
        return call

    return asyncio.run(main())


def outputs(server: Any) -> list[tuple[str, dict]]:
    """Every tool the model called, with what the code answered, in order."""
    return [(output.name, output.output) for output in server.tool_outputs()]


def codes(result: dict) -> list[str]:
    return [problem["code"] for problem in result["problems"]]
