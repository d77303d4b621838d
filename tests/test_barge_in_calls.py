"""Local barge-in in a whole call, on the engines that have it (Realtime and pipeline; GPT-Live's barge-in is the
model's own, see `test_live_handler.py`): a noise over the agent pauses it and it goes on with nothing lost and
nothing cut, and on the Realtime engine the server's turn for that noise is dropped, never answered; on a phone
whose handset echoes the agent, the echo neither cuts the agent off nor becomes a turn."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from components.restaurant.config import load_config
from components.restaurant.lookup import Caller
from components.settings import ENGINES
from components.store.reservations import ReservationStore
from tests.call_driver import CallDriver
from tests.engine_calls import Exchange, fake_model, run_call

LOCAL_BARGE_IN = [engine for engine in ENGINES if engine != "live"]
pytestmark = [pytest.mark.timeout(120), pytest.mark.parametrize("engine", LOCAL_BARGE_IN)]
QUESTION = "What is on the menu tonight?"
ANSWER = (
    "Tonight we have two seasonal courses, one with fish from Sagami Bay and one with vegetables from "
    "the farms of Kanagawa, and the a la carte menu has grilled dishes, salads and a few desserts as well."
)
NOT_TO_ANSWER = "Sorry, could you say that again?"


@pytest.mark.parametrize("voiced", [False, True], ids=["noise", "a short ah"])
def test_a_noise_over_the_agent_pauses_it_and_it_goes_on_with_nothing_lost_or_cut(
    engine, voiced: bool, tmp_path: Path, monkeypatch
) -> None:
    model = fake_model(
        engine,
        "Hello, this is AI-SHIFT.",
        [Exchange(QUESTION, ANSWER), Exchange("(a noise)", NOT_TO_ANSWER)],  # the second is for the noise
    )
    marks: dict[str, float] = {}

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        marks["asked"] = time.monotonic()
        await call.say(QUESTION)
        await call.until(lambda: call.audible_ms(since=marks["asked"]) > 1200, what="the answer under way")
        marks["noise"] = time.monotonic()
        await call.noise(150, dbfs=-18.0, voiced=voiced)
        await call.until_quiet(quiet_s=1.5, timeout=30)
        await asyncio.sleep(1.0)  # the server's turn for the noise, if any, has come and gone

    with model as server:
        call = run_call(
            engine, server, load_config(), ReservationStore(tmp_path / "r.db"), conversation, env=monkeypatch
        )
        if engine == "realtime":
            answer_ms = server.sent_audio_ms(server.last_audio_item_id)
            deleted = server.client_events("conversation.item.delete")
            truncations = server.truncations()
            responses = len(server.client_events("response.create"))
        else:
            spoken = [request["input"] for request in server.speech_requests() if request["input"] in ANSWER]
            answer_ms = sum(
                min(server.max_audio_ms, max(server.min_audio_ms, server.ms_per_char * len(text))) for text in spoken
            )

    answer = [heard for heard in call.heard if heard.at > marks["asked"] and heard.rms > 100]
    gaps = [
        later.at - earlier.at
        for earlier, later in zip(answer, answer[1:], strict=False)
        if earlier.at > marks["noise"] - 0.2
    ]
    # a pause, not the 20-40 ms between chunks (the pipeline's ears end it once the sound has stopped for 0.2 s)
    assert max(gaps) > 0.15, "the agent did not pause for the noise"
    heard_ms = sum(heard.samples for heard in answer) * 1000 / 24_000
    # All of it, once: nothing lost, and at most what was in flight to the caller when it paused (the playout's
    # 120 ms lead and a 40 ms chunk, which fastrtc may already hold on the pipeline) heard twice.
    assert answer_ms - 80 <= heard_ms <= answer_ms + 160, (heard_ms, answer_ms)
    lines = [line for line in call.lines("assistant")]
    assert lines[-1]["status"] == "final" and "interrupted" not in lines[-1]["text"]
    assert NOT_TO_ANSWER not in str(call.lines())
    assert [line["text"] for line in call.lines("user")] == [QUESTION]
    if engine == "realtime":
        assert truncations == [] and len(deleted) == 1  # the noise's turn, dropped from the conversation
        assert responses == 2  # the greeting and the answer: nothing for the noise


def test_on_a_handset_that_echoes_the_agent_it_talks_on_and_the_echo_is_never_a_turn(
    engine, tmp_path: Path, monkeypatch
) -> None:
    second = "Then seven o'clock, please."
    exchanges = [Exchange(QUESTION, ANSWER), Exchange(second, "Seven it is.")]
    if engine == "realtime":  # the server's VAD hears the echo of the greeting and of the answer as turns
        echo = Exchange("(the agent's echo)", NOT_TO_ANSWER)
        exchanges = [echo, exchanges[0], echo, exchanges[1]]
    model = fake_model(engine, "Hello, this is AI-SHIFT, how may I help you?", exchanges)
    marks: dict[str, float] = {}

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.until_quiet(quiet_s=1.0)
        marks["asked"] = time.monotonic()
        await call.say(QUESTION)
        await call.until(lambda: call.audible_ms(since=marks["asked"]) > 1000, what="the answer under way")
        await call.until_quiet(quiet_s=1.5, timeout=30)
        marks["answered"] = time.monotonic()
        await call.say(second)
        await call.until(lambda: "Seven it is." in call.agent_lines(final=True), what="the second answer")
        await call.until_quiet()

    with model as server:
        call = run_call(
            engine,
            server,
            load_config(),
            ReservationStore(tmp_path / "r.db"),
            conversation,
            env=monkeypatch,
            caller=Caller("+819012345678", True),
            echo_db=-18.0,
        )
        pieces = (
            [ANSWER] if engine == "realtime" else [r["input"] for r in server.speech_requests() if r["input"] in ANSWER]
        )
        full_ms = sum(min(server.max_audio_ms, max(server.min_audio_ms, server.ms_per_char * len(p))) for p in pieces)
        if engine == "realtime":
            cut = server.truncations() + server.client_events("response.cancel")
        else:
            cut = [request for request in server.requests() if request.cancelled]

    heard_ms = call.audible_ms(since=marks["asked"]) - call.audible_ms(since=marks["answered"])
    assert heard_ms >= full_ms - 100, (heard_ms, full_ms)  # the whole answer, though the line echoed it back
    assert call.dropped_ms == 0 and not cut
    assert [line["text"] for line in call.lines("user")] == [QUESTION, second]
    assert NOT_TO_ANSWER not in str(call.lines())
    assert "interrupted" not in str(call.agent_lines())


def test_when_the_transport_fails_under_the_agent_the_call_ends_with_a_notice_not_in_silence(
    engine, tmp_path: Path, monkeypatch
) -> None:
    """An unexpected exception inside the engine (here fastrtc's `clear_queue` raising when the caller talks over
    the agent) ends the call through `Call.end`: the notice on screen and on the data channel, the transcript kept,
    the transport closed, instead of a call that goes on half-working."""
    model = fake_model(engine, "Hello, this is AI-SHIFT.", [Exchange(QUESTION, ANSWER)])

    def broken_transport() -> None:
        raise RuntimeError("the transport's queue is gone")

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        asked = time.monotonic()
        await call.say(QUESTION)
        await call.until(lambda: call.audible_ms(since=asked) > 1000, what="the answer under way")
        call.handler._clear_queue = broken_transport  # what fastrtc hands the handler, failing
        await call.say("Wait, wait, I have another question about the menu.")
        await call.until(lambda: call.closed, what="the call to end")

    with model as server:
        call = run_call(
            engine, server, load_config(), ReservationStore(tmp_path / "r.db"), conversation, env=monkeypatch
        )

    assert call.view["ended"] is True
    assert "internal error" in call.closed and "内部のエラー" in call.closed, call.closed
    assert [line["text"] for line in call.lines("user")][:1] == [QUESTION]
    assert any(json.loads(m)["type"] == "error" for m in call.channel.messages)
