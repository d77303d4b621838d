"""The phone line and the server, called the way Twilio calls them: webhooks over HTTP, Media Streams over a
WebSocket, with the scripted Realtime fake playing the model.

Each test starts the real FastAPI app (`components.server.run.build_server`, the app `python app.py --server`
runs) with uvicorn on a free localhost port in a background thread, and acts as Twilio (`twilio_caller`):
POST `/telephone/incoming`, follow the TwiML's `<Stream url>`, send `connected`/`start`/`media` (espeak-ng
speech as 8 kHz mu-law, in real time)/`mark`/`stop`, and listen to the `media`, `clear` and `mark` that come
back. The live feed is read as a browser's EventSource would, over HTTP. The last tests run the real entry
points, `python app.py --server` and `--phone`, as subprocesses.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from components.call.options import CallRequest
from components.engines.live import LiveHandler
from components.restaurant.config import RestaurantConfig, load_config
from components.restaurant.fields import Reservation
from components.restaurant.prompt import goodbye_instruction
from components.store.reservations import ReservationStore
from tests import fake_live as live
from tests.domain_fixtures import bookable_day, write_config
from tests.fake_realtime import (
    FakeRealtimeServer,
    Script,
    call_tool,
    greet,
    on_caller_speech,
    on_response_create,
    say,
    user_said,
)
from tests.phone_server import KEY, OWNER, OWNER_PASSWORD, ServerThread, running_server
from tests.speech import Echo
from tests.twilio_caller import TwilioCaller, incoming, new_sid, parse_twiml, signed_post

FEED_TOKEN = OWNER.feed_token()
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def config() -> RestaurantConfig:
    return load_config()


@pytest.fixture
def store(tmp_path: Path) -> ReservationStore:
    return ReservationStore(tmp_path / "reservations.db")


@pytest.fixture
def phone_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The server's environment: the OpenAI key set, no public URL, and Twilio's signatures not checked, said
    explicitly (`TWILIO_VALIDATE_SIGNATURE=false`, the local-test opt-out: without it an unsigned line is not
    served)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("TWILIO_VALIDATE_SIGNATURE", "false")
    for name in ("TWILIO_AUTH_TOKEN", "PUBLIC_URL", "TWILIO_SAY_VOICE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


class FeedReader:
    """Follows `/outputs` like an EventSource: every `data:` view, with the time it arrived. A phone call's feed
    is the owner's: `token` goes in the `Authorization` header."""

    def __init__(self, url: str, token: str | None = FEED_TOKEN) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.views: list[tuple[float, dict]] = []
        self.ended = False
        self.status: int | None = None
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> FeedReader:
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self) -> None:
        async with (
            httpx.AsyncClient(timeout=None) as client,
            client.stream("GET", self.url, headers=self.headers) as response,
        ):
            self.status = response.status_code
            if response.status_code != 200:
                return
            assert response.headers["content-type"].startswith("text/event-stream")
            event = "message"
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "message":
                    self.views.append((time.monotonic(), json.loads(line[5:])))
                elif line.startswith("data:") and event == "end":
                    self.ended = True
                elif not line:
                    event = "message"

    @property
    def view(self) -> dict:
        return self.views[-1][1] if self.views else {}

    def lines(self, role: str | None = None) -> list[str]:
        return [line["text"] for line in self.view.get("transcript", []) if role in (None, line["role"])]


def start_call(server: ServerThread, call_sid: str | None = None) -> tuple[Any, TwilioCaller]:
    """Twilio's webhook, then a caller on the TwiML's stream."""
    call_sid = call_sid or new_sid("CA")
    twiml = parse_twiml(incoming(server.url, call_sid))
    assert twiml.stream_url is not None, twiml.text
    return twiml, TwilioCaller(twiml.stream_url, parameters=twiml.parameters, call_sid=call_sid)


# ---- the webhook ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "locale", "words"), [("ja", "ja-JP", "おつなぎします"), ("en", "en-US", "Connecting you")]
)
def test_incoming_call_greets_in_the_restaurants_language_and_connects_the_stream(
    store, phone_env, tmp_path, language, locale, words
) -> None:
    config = load_config(write_config(tmp_path, {'default_language = "ja"': f'default_language = "{language}"'}))
    with running_server(config, store, None, phone_env) as server:
        twiml = parse_twiml(incoming(server.url, new_sid("CA")))

    assert twiml.verbs == ["Say", "Connect"]
    greeting = twiml.says()[0]
    assert greeting.get("language") == locale and greeting.get("voice")
    assert words in greeting.text and config.name(language) in greeting.text and "AI" in greeting.text
    assert "Connecting to the AI assistant" not in twiml.text  # fastrtc's fixed English line is gone
    assert twiml.stream_url == f"ws://127.0.0.1:{server.port}/telephone/handler"
    assert twiml.action == f"http://127.0.0.1:{server.port}/telephone/ended"
    assert len(twiml.parameters["token"]) >= 32


def test_twiml_escapes_the_restaurant_name_and_follows_the_public_address(config, store, phone_env, tmp_path) -> None:
    odd = load_config(write_config(tmp_path, {'name.ja = "AI-SHIFT"': 'name.ja = "ビストロ <A&B> \\"X\\""'}))
    phone_env.setenv("SPACE_ID", "owner/voicebot")  # on a Space without TURN, fastrtc would refuse to start
    with running_server(odd, store, None, phone_env) as server:
        behind_proxy = parse_twiml(
            incoming(server.url, new_sid("CA"), headers={"Host": "voicebot.example.com", "X-Forwarded-Proto": "https"})
        )
        plain_http = parse_twiml(incoming(server.url, new_sid("CA"), headers={"Host": "voicebot.example.com"}))
    phone_env.setenv("PUBLIC_URL", "https://phone.example.org")  # read when the server starts
    with running_server(odd, store, None, phone_env) as server:
        configured = parse_twiml(incoming(server.url, new_sid("CA")))
        bad_host = parse_twiml(incoming(server.url, new_sid("CA"), headers={"Host": "evil.example/<x>"}))

    assert 'ビストロ <A&B> "X"' in behind_proxy.says()[0].text  # parsed back from well-formed XML
    assert "&amp;" in behind_proxy.text and "&lt;A" in behind_proxy.text
    assert behind_proxy.stream_url == "wss://voicebot.example.com/telephone/handler"
    assert behind_proxy.action == "https://voicebot.example.com/telephone/ended"
    assert plain_http.stream_url == "wss://voicebot.example.com/telephone/handler"  # Twilio only talks TLS
    assert configured.stream_url == "wss://phone.example.org/telephone/handler"
    assert bad_host.stream_url is not None and "<" not in bad_host.stream_url and "evil" not in bad_host.stream_url


# ---- a call ---------------------------------------------------------------------------------------------


def test_a_booking_made_over_the_phone_lands_in_the_store_and_the_feed_follows_it(config, store, phone_env) -> None:
    day = bookable_day(config)
    script = Script(
        greet("Hello, this is AI-SHIFT. May I have your name?"),
        on_caller_speech(
            user_said("My name is Yamada."),
            call_tool("update_reservation", {"guest_name": "Yamada"}),
            say("Thank you. Which day and time, and for how many?"),
        ),
        on_caller_speech(
            user_said(f"On {day} at seven p.m., four people."),
            call_tool("update_reservation", {"date": day, "time": "19:00", "party_size": 4}),
            say(f"Yamada, four guests, {day} at 19:00. Shall I book it?"),
        ),
        on_caller_speech(
            user_said("Yes, please."),
            call_tool("confirm_reservation", {}),
            say(lambda out: f"Booked. Your booking number is {' '.join(out['booking_id'])}."),
        ),
    )

    async def call(server: ServerThread) -> tuple[TwilioCaller, FeedReader]:
        twiml, caller = start_call(server)
        async with caller, FeedReader(f"{server.url}/outputs?stream_id={caller.stream_sid}") as feed:
            await caller.until(lambda: caller.audible_ms() > 300, what="the greeting")
            await caller.until(lambda: "May I have your name?" in str(feed.lines("assistant")), what="greeting in feed")
            await caller.until_quiet()
            await caller.say("My name is Yamada.")
            await caller.until(lambda: (feed.view.get("reservation") or {}).get("reservation", {}).get("guest_name"))
            await caller.until(lambda: len(feed.lines("assistant")) >= 2, what="the second answer")
            await caller.until_quiet()
            await caller.say("Next Friday at seven, four people.")
            await caller.until(lambda: feed.view.get("reservation", {}).get("status") == "ready", what="ready")
            await caller.until(lambda: len(feed.lines("assistant")) >= 3, what="the read-back")
            await caller.until_quiet()
            await caller.say("Yes, please.")
            await caller.until(lambda: feed.view.get("reservation", {}).get("status") == "confirmed")
            await caller.until(lambda: len(feed.lines("assistant")) >= 4, what="the booking id read aloud")
            await caller.until_quiet()
            await caller.hang_up()
            await caller.until(lambda: feed.ended, what="the feed to end with the call")
        return caller, feed

    with FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as fake:
        with running_server(config, store, fake, phone_env) as server:
            caller, feed = asyncio.run(call(server))
            ended = parse_twiml(signed_post(f"{server.url}/telephone/ended", {"CallSid": caller.call_sid}))
            assert server.stream.limiter.active() == 0
        session = fake.session()
        outputs = fake.tool_outputs()
        heard_by_model = fake.received_audio(1)

    # Audio came back as Twilio media for this stream, as 8 kHz mu-law (20-40 ms per message).
    media = caller.media_messages()
    assert media and all(m["streamSid"] == caller.stream_sid for m in media)
    sizes = [len(base64.b64decode(m["media"]["payload"])) for m in media]  # mu-law: one byte per 8 kHz sample
    assert max(sizes) == 320 and sizes.count(320) > len(sizes) / 2  # the handler's 40 ms chunks, at 8 kHz
    assert caller.audible_ms() > 2000
    # The model got the caller's speech (resampled to 24 kHz) and a phone-shaped session.
    assert len(heard_by_model) > 24_000 * 2 * 2  # more than two seconds of 24 kHz PCM16
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["noise_reduction"]["type"] == "far_field"
    assert session["audio"]["input"]["transcription"]["language"] == config.default_language
    # The booking is in the store, and the model was given its id to read aloud.
    booking_id = outputs[-1].output["booking_id"]
    assert outputs[-1].name == "confirm_reservation" and booking_id
    row = store.get(booking_id)
    assert (row["guest_name"], row["date"], row["time"], row["party_size"]) == ("Yamada", day, "19:00", 4)
    assert (row["source"], row["phone"]) == ("phone", "+819000000001")  # Twilio's `From` goes with the booking
    assert feed.view["reservation"]["reservation"]["phone"] == "••••••••0001"
    assert store.transcript(booking_id)["transcript"][1]["text"] == "My name is Yamada."
    assert " ".join(booking_id) in feed.lines("assistant")[-1]
    # The feed followed the call as it happened: the card went collecting -> ready -> confirmed, and the
    # transcript grew turn by turn (each view a complete snapshot, never another call's).
    statuses = [view["reservation"].get("status") for _, view in feed.views if view.get("reservation")]
    assert statuses.index("collecting") < statuses.index("ready") < statuses.index("confirmed")
    users = [line["text"] for line in feed.view["transcript"] if line["role"] == "user"]
    assert users == ["My name is Yamada.", f"On {day} at seven p.m., four people.", "Yes, please."]
    assert all(KEY not in json.dumps(view) for _, view in feed.views)
    assert feed.ended  # the stream said the call is over when the caller hung up
    assert ended.verbs == ["Hangup"]


def test_a_booking_on_the_live_engine_stays_8_khz_mu_law_from_the_caller_to_the_model_and_back(
    config, store, phone_env
) -> None:
    day = bookable_day(config)
    script = live.Script(
        live.greet("Hello, this is AI-SHIFT. May I have your name?"),
        live.on_caller_speech(
            live.user_said("My name is Yamada, four people on Friday at seven."),
            live.call_tool(
                "update_reservation", {"guest_name": "Yamada", "date": day, "time": "19:00", "party_size": 4}
            ),
            live.say("Yamada, four guests at seven. Shall I book it?"),
        ),
        live.on_caller_speech(
            live.user_said("Yes, please."),
            live.call_tool("confirm_reservation", {}),
            live.say(lambda out: f"Booked. Your booking number is {' '.join(out['booking_id'])}."),
        ),
    )

    async def call(server: ServerThread) -> TwilioCaller:
        _, caller = start_call(server)
        async with caller:
            await caller.until(lambda: caller.audible_ms() > 300, what="the greeting")
            await caller.until_quiet()
            for words in ("My name is Yamada, four people on Friday at seven.", "Yes, please."):
                heard = caller.audible_ms()
                await caller.say(words)
                answered = lambda heard=heard: caller.audible_ms() > heard + 400  # noqa: E731
                await caller.until(answered, what=f"an answer to {words!r}")
                await caller.until_quiet()
            await caller.hang_up()
        return caller

    with live.FakeLiveServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as fake:
        with running_server(config, store, fake, phone_env, engine=LiveHandler) as server:
            started = time.monotonic()
            caller = asyncio.run(call(server))
            call_s = time.monotonic() - started
        session, problems = fake.session(), fake.problems()
        outputs, heard_by_model = fake.tool_outputs(), fake.received_audio(1)

    assert problems == []
    assert session["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}  # Twilio's own format, both ways
    # 8 kHz all along: the model heard about as many samples as the call lasted at 8 kHz (never 24 kHz)...
    assert 0.5 * call_s * 8000 < heard_by_model.size <= call_s * 8000
    # ...and the caller got 8 kHz μ-law, as the model sent it (no resampling), in 20-40 ms chunks.
    sizes = [len(base64.b64decode(m["media"]["payload"])) for m in caller.media_messages()]
    assert set(sizes) <= {160, 320} and caller.audible_ms() > 1800  # 20 or 40 ms
    booking_id = outputs[-1].output["booking_id"]
    row = store.get(booking_id)
    assert (row["guest_name"], row["party_size"], row["source"]) == ("Yamada", 4, "phone")


def test_barge_in_on_the_phone_tells_twilio_to_clear_what_the_caller_would_hear(config, store, phone_env) -> None:
    long_answer = "We have many tables free on that evening, let me list every single one of them for you. " * 3
    script = Script(
        greet("Hello."),
        on_caller_speech(user_said("What is free on Friday?"), say(long_answer, audio_ms=8000)),
        on_caller_speech(user_said("Stop, seven is fine."), say("Seven it is.")),
    )

    async def call(server: ServerThread) -> dict[str, Any]:
        _, caller = start_call(server)
        async with caller:
            await caller.until(lambda: caller.audible_ms() > 200, what="the greeting")
            await caller.until_quiet()
            asked_at = time.monotonic()
            await caller.say("What is free on Friday?")
            await caller.until(lambda: caller.audible_ms(since=asked_at) > 1500, what="the long answer to play")
            await asyncio.sleep(1.0)
            assert not caller.clears
            interrupted_at = time.monotonic()
            await caller.say("Stop, seven is fine.")
            spoken_until = time.monotonic()
            await caller.until(lambda: caller.clears, what="Twilio's clear")
            await caller.until(lambda: caller.audible_ms(since=spoken_until) > 300, what="the next answer")
            await caller.until_quiet()
        clear = next(m for m in caller.received if m["event"] == "clear")
        return {
            "clear": clear,
            "cleared_at": caller.clears[0],
            "interrupted_at": interrupted_at,
            "spoken_until": spoken_until,
            "caller": caller,
        }

    with FakeRealtimeServer(script, api_key=KEY, min_audio_ms=300) as fake:
        with running_server(config, store, fake, phone_env) as server:
            result = asyncio.run(call(server))
        truncations = fake.truncations()
        sent_ms = fake.sent_audio_ms(truncations[0]["item_id"]) if truncations else 0

    caller = result["caller"]
    assert result["clear"] == {"event": "clear", "streamSid": caller.stream_sid}
    assert len(caller.clears) == 1  # one clear for one interruption, none for the turns before
    # The clear came as the caller started talking, and nothing of the long answer played after it: the
    # caller's line was quiet until the agent answered the interruption.
    assert result["cleared_at"] - result["interrupted_at"] < 1.0
    assert caller.audible_ms(since=result["cleared_at"] + 0.1, until=result["spoken_until"]) == 0
    # The model was told how much of its answer the caller heard.
    assert len(truncations) == 1
    assert 1500 <= truncations[0]["audio_end_ms"] <= sent_ms < 8000 + 1


def test_the_echo_of_the_agents_own_voice_on_a_handset_neither_cuts_it_off_nor_becomes_a_turn(
    config, store, phone_env
) -> None:
    long_answer = "We have many tables free on that evening, let me list every single one of them for you. " * 3
    script = Script(
        greet("Hello, AI-SHIFT speaking, how can I help?"),
        on_caller_speech(user_said("(the greeting's echo)")),
        on_caller_speech(user_said("What is free on Friday?"), say(long_answer, audio_ms=6000)),
        on_caller_speech(user_said("(the answer's echo)")),
        on_caller_speech(user_said("Seven, please."), say("Seven it is.")),
    )

    async def call(server: ServerThread, fake: FakeRealtimeServer) -> tuple[TwilioCaller, FeedReader, float]:
        def turns_closed() -> int:
            return sum(1 for event in fake.vad_log() if event["kind"] == "speech_stopped")

        _, caller = start_call(server)
        caller.echo = Echo(loss_db=18, mic_rate=8000)  # a handset that leaks its earpiece into its microphone
        async with caller, FeedReader(f"{server.url}/outputs?stream_id={caller.stream_sid}") as feed:
            await caller.until(lambda: caller.audible_ms() > 1000, what="the greeting")
            await caller.until_quiet()
            await caller.until(lambda: turns_closed() == 1, what="the server to close the greeting's echo")
            asked_at = time.monotonic()
            await caller.say("What is free on Friday?")
            await caller.until(lambda: caller.audible_ms(since=asked_at) > 1000, what="the long answer")
            await caller.until_quiet(timeout=30)
            answer_ms = caller.audible_ms(since=asked_at)
            await caller.until(lambda: turns_closed() == 3, what="the server to close the answer's echo")
            await caller.say("Seven, please.")
            await caller.until(lambda: "Seven it is." in feed.lines("assistant"), what="the next answer")
            await caller.until_quiet()
        return caller, feed, answer_ms

    with FakeRealtimeServer(script, api_key=KEY, min_audio_ms=300) as fake:
        with running_server(config, store, fake, phone_env) as server:
            caller, feed, answer_ms = asyncio.run(call(server, fake))
        turns = [e["item_id"] for e in fake.vad_log() if e["kind"] == "speech_started"]
        echo_turns = turns[0:4:2]  # the greeting's and the long answer's (the last answer's may still be open)
        deleted = [e["item_id"] for e in fake.client_events("conversation.item.delete")]
        cut = fake.client_events("conversation.item.truncate") + fake.client_events("response.cancel")

    # The server's VAD heard the echo of both answers, and each time the line kept playing: the whole answer
    # reached the caller, nothing was cleared or cut, and the echo turns were deleted, never answered.
    assert len(turns) >= 4 and deleted[:2] == echo_turns
    assert turns[1] not in deleted and turns[3] not in deleted
    assert not caller.clears and not cut
    assert answer_ms >= 5800
    # The transcript has what the caller said, and nothing of the echo.
    assert feed.lines("user") == ["What is free on Friday?", "Seven, please."]


def test_the_time_limit_ends_a_phone_call_politely_then_hangs_up(config, store, phone_env) -> None:
    script = Script(
        greet("Hello, AI-SHIFT speaking."),
        on_response_create("We only have a few seconds left, I am afraid."),
        on_response_create("Thank you for calling, goodbye."),
    )

    async def call(server: ServerThread) -> tuple[TwilioCaller, FeedReader, float]:
        _, caller = start_call(server)
        started = time.monotonic()
        async with caller, FeedReader(f"{server.url}/outputs?stream_id={caller.stream_sid}") as feed:
            await caller.until(lambda: caller.closed_at, timeout=30, what="the server to hang up")
            await caller.until(lambda: feed.ended, what="the feed to end")
        return caller, feed, started

    with FakeRealtimeServer(script, api_key=KEY, ms_per_char=30, min_audio_ms=300) as fake:
        with running_server(config, store, fake, phone_env, call_time_limit_s=4) as server:
            caller, feed, started = asyncio.run(call(server))
            ended = parse_twiml(signed_post(f"{server.url}/telephone/ended", {"CallSid": caller.call_sid}))
            assert server.stream.limiter.active() == 0
        asked = [json.dumps(e, ensure_ascii=False) for e in fake.client_events("response.create")]
    goodbye = [e for e in asked if goodbye_instruction(config.default_language) in e]

    assert len(goodbye) == 1, "the model was asked to say goodbye"
    assert caller.hung_up_by_server
    # The goodbye was heard in full: the server asked Twilio to report when its audio had played (a mark),
    # the caller's phone echoed it, and only then did the server close the stream.
    last_media = max(i for i, m in enumerate(caller.received) if m["event"] == "media")
    marks = [i for i, m in enumerate(caller.received) if m["event"] == "mark"]
    assert marks and marks[-1] > last_media
    assert caller.received[marks[-1]] == {"event": "mark", "streamSid": caller.stream_sid, "mark": {"name": "hangup"}}
    assert caller.marks_echoed == ["hangup"]
    last_heard = caller.heard[-1]
    assert caller.closed_at >= last_heard.at + last_heard.samples / 8000 - 0.1
    assert 4 <= caller.closed_at - started < 4 + 15
    # The screen's view of it, and the end of the call on Twilio's side: a plain hang-up, no error message.
    assert feed.view["ended"] is True
    assert "time limit" in feed.lines("system")[-1]
    assert ended.verbs == ["Hangup"]


# ---- who gets through ----------------------------------------------------------------------------------


def component_offer(server: ServerThread, webrtc_id: str) -> dict:
    """An offer to the UI's WebRTC component, the way its page sends one (Gradio's component server)."""
    component = next(block for block in server.stream.ui_components)
    body = {"sdp": "v=0", "type": "offer", "webrtc_id": webrtc_id}
    payload = {"session_hash": "test", "component_id": component._id, "fn_name": "offer", "data": body}
    return httpx.post(f"{server.url}/gradio_api/component_server/", json=payload, timeout=10).json()


def test_phone_calls_count_against_the_same_limit_as_browser_calls(config, store, phone_env) -> None:
    async def scenario(server: ServerThread) -> dict[str, Any]:
        _, first = start_call(server)
        async with first:
            await first.until(lambda: first.audible_ms() > 200, what="the first caller's greeting")
            busy = parse_twiml(incoming(server.url, new_sid("CA")))
            offer = httpx.post(
                f"{server.url}/webrtc/offer", json={"sdp": "v=0", "type": "offer", "webrtc_id": "browser1"}
            ).json()
            ui_offer = component_offer(server, "browser2")
            # A stream that skipped the webhook (no slot, no token) is turned away, and speaks for no call.
            async with TwilioCaller(f"ws://127.0.0.1:{server.port}/telephone/handler") as stray:
                await stray.until(lambda: stray.closed_at, what="the stray stream to be closed")
            stray_ended = parse_twiml(signed_post(f"{server.url}/telephone/ended", {"CallSid": stray.call_sid}))
        await asyncio.sleep(0.3)
        free_again = parse_twiml(incoming(server.url, new_sid("CA")))
        held = server.stream.limiter.active()  # the webhook holds the slot for its stream
        offer_while_held = httpx.post(
            f"{server.url}/webrtc/offer", json={"sdp": "v=0", "type": "offer", "webrtc_id": "browser3"}
        ).json()
        return locals()

    with FakeRealtimeServer(Script(greet("Hello, this is AI-SHIFT.")), api_key=KEY, min_audio_ms=300) as fake:
        with running_server(config, store, fake, phone_env, max_concurrent_calls=1) as server:
            seen = asyncio.run(scenario(server))
        connections = fake.connection_count

    busy = seen["busy"]
    assert busy.verbs == ["Say", "Hangup"] and busy.stream is None
    assert busy.says()[0].get("language") == "ja-JP" and "混み合って" in busy.says()[0].text
    for refused in (seen["offer"], seen["ui_offer"], seen["offer_while_held"]):
        assert refused == {"status": "failed", "meta": {"error": "concurrency_limit_reached", "limit": 1}}
    assert seen["stray"].hung_up_by_server and not seen["stray"].media_messages()
    assert seen["stray_ended"].verbs == ["Hangup"]  # a stream without the TwiML's token is a stranger: not a call
    assert seen["free_again"].stream_url is not None
    assert seen["held"] == 1
    assert connections == 1  # only the admitted call reached OpenAI


def test_without_an_openai_key_the_caller_hears_that_the_line_is_not_available(config, store, phone_env) -> None:
    phone_env.delenv("OPENAI_API_KEY")

    async def stray_call(server: ServerThread) -> TwilioCaller:
        async with TwilioCaller(f"ws://127.0.0.1:{server.port}/telephone/handler") as caller:
            await caller.until(lambda: caller.closed_at, what="the stream to be closed")
        return caller

    with running_server(config, store, None, phone_env) as server:
        answer = parse_twiml(incoming(server.url, new_sid("CA")))
        caller = asyncio.run(stray_call(server))
        ended = parse_twiml(signed_post(f"{server.url}/telephone/ended", {"CallSid": caller.call_sid}))
        assert server.stream.limiter.active() == 0

    assert answer.verbs == ["Say", "Hangup"] and answer.stream is None
    assert answer.says()[0].get("language") == "ja-JP" and "ご利用いただけません" in answer.says()[0].text
    assert caller.hung_up_by_server and not caller.media_messages()
    assert ended.verbs == ["Say", "Hangup"] and "ご利用いただけません" in ended.says()[0].text


def test_a_call_that_fails_ends_with_an_apology_not_silence(config, store, phone_env) -> None:
    """OpenAI refuses the key: the agent cannot speak, so Twilio's voice apologises once the stream closes."""

    async def call(server: ServerThread) -> tuple[TwilioCaller, FeedReader]:
        _, caller = start_call(server)
        async with caller, FeedReader(f"{server.url}/outputs?stream_id={caller.stream_sid}") as feed:
            await caller.until(lambda: caller.closed_at, what="the server to hang up")
            await caller.until(lambda: feed.ended, what="the feed to end")
        return caller, feed

    with FakeRealtimeServer(Script(greet("Hello.")), api_key="sk-another-key") as fake:
        with running_server(config, store, fake, phone_env) as server:
            caller, feed = asyncio.run(call(server))
            ended = parse_twiml(signed_post(f"{server.url}/telephone/ended", {"CallSid": caller.call_sid}))
        assert fake.connections[0].status == 401

    assert caller.hung_up_by_server and not caller.media_messages()
    assert not [m for m in caller.received if m.get("type") in ("error", "warning")]  # nothing for a screen
    assert "401" in feed.lines("system")[-1]
    assert ended.verbs == ["Say", "Hangup"] and "不具合" in ended.says()[0].text
    assert KEY not in ended.text + json.dumps(feed.view)


def test_with_a_twilio_auth_token_only_signed_webhooks_and_their_streams_get_through(config, store, phone_env) -> None:
    auth = "twilio-auth-token-for-tests"
    phone_env.setenv("TWILIO_AUTH_TOKEN", auth)
    phone_env.setenv("TWILIO_VALIDATE_SIGNATURE", "true")

    async def calls(server: ServerThread, token: str) -> tuple[TwilioCaller, TwilioCaller]:
        async with TwilioCaller(f"ws://127.0.0.1:{server.port}/telephone/handler") as stray:
            await stray.until(lambda: stray.closed_at, what="the unsigned stream to be closed")
        handler_url = f"ws://127.0.0.1:{server.port}/telephone/handler"
        async with TwilioCaller(handler_url, parameters={"token": "x" * 32}) as forged:
            await forged.until(lambda: forged.closed_at, what="the forged stream to be closed")
        twiml = parse_twiml(incoming(server.url, call_sid, auth))
        async with TwilioCaller(twiml.stream_url, parameters=twiml.parameters, call_sid=call_sid) as caller:
            await caller.until(lambda: caller.audible_ms() > 200, what="the greeting")
        replayed.append(incoming(server.url, call_sid, auth))  # the same signed webhook, captured and sent again
        return stray, forged, caller

    call_sid = new_sid("CA")
    replayed: list[httpx.Response] = []
    with FakeRealtimeServer(Script(greet("Hello, this is AI-SHIFT.")), api_key=KEY, min_audio_ms=300) as fake:
        with running_server(config, store, fake, phone_env) as server:
            unsigned = incoming(server.url, new_sid("CA"))
            wrong = incoming(server.url, new_sid("CA"), "not-the-token")
            other_url = incoming(
                server.url, new_sid("CA"), auth, sign_url="https://elsewhere.example/telephone/incoming"
            )
            unsigned_end = signed_post(f"{server.url}/telephone/ended", {"CallSid": call_sid})
            stray, forged, caller = asyncio.run(calls(server, auth))
        connections = fake.connection_count
    phone_env.setenv("PUBLIC_URL", "https://voicebot.example.com")  # read when the server starts
    with running_server(config, store, None, phone_env) as server:
        behind_proxy = incoming(
            server.url, new_sid("CA"), auth, sign_url="https://voicebot.example.com/telephone/incoming"
        )

    for refused in (unsigned, wrong, other_url, unsigned_end):
        assert refused.status_code == 403 and auth not in refused.text
    assert stray.hung_up_by_server and not stray.media_messages()
    assert forged.hung_up_by_server and not forged.media_messages()
    assert caller.media_messages() and connections == 1
    assert replayed[0].status_code == 409 and "<Stream" not in replayed[0].text  # a replay gets no line
    assert parse_twiml(behind_proxy).stream_url == "wss://voicebot.example.com/telephone/handler"


def test_on_a_signed_line_the_callers_own_number_finds_their_booking(config, store, phone_env) -> None:
    auth = "twilio-auth-token-for-tests"
    phone_env.setenv("TWILIO_AUTH_TOKEN", auth)
    phone_env.setenv("TWILIO_VALIDATE_SIGNATURE", "true")
    day = bookable_day(config)
    booking = Reservation("Tanaka", dt.date.fromisoformat(day), dt.time(19, 0), 2, phone="090-1234-5678")
    booking_id = store.book(booking, config, dt.datetime.now(dt.UTC))
    script = Script(
        greet("Hello, this is AI-SHIFT."),
        on_caller_speech(
            user_said("I would like to change my booking."),
            call_tool("find_reservation", {"booking_id": booking_id}),  # no name: the line vouches for the caller
            say(lambda out: f"I have your booking on {out['reservation']['date']}."),
        ),
    )

    async def call(server: ServerThread, number: str) -> TwilioCaller:
        call_sid = new_sid("CA")
        twiml = parse_twiml(incoming(server.url, call_sid, auth, caller=number))
        async with TwilioCaller(twiml.stream_url, parameters=twiml.parameters, call_sid=call_sid) as caller:
            await caller.until(lambda: caller.audible_ms() > 200, what="the greeting")
            await caller.until_quiet()
            await caller.say("I would like to change my booking.")
            await caller.until(lambda: fake.tool_outputs(), what="the lookup")
            await caller.until_quiet()
        return caller

    with FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as fake:
        with running_server(config, store, fake, phone_env) as server:
            asyncio.run(call(server, "+819012345678"))
            found = fake.tool_outputs()[-1].output
            fake.reset_records()
            asyncio.run(call(server, "+819099998888"))
            stranger = fake.tool_outputs()[-1].output

    assert (found["changing"], found["reservation"]["date"]) == (booking_id, day)
    assert [problem["code"] for problem in stranger["problems"]] == ["not_found"] and stranger["changing"] is None
    assert "Tanaka" not in json.dumps(stranger)


def test_fastrtcs_raw_websocket_route_is_closed(config, store, phone_env) -> None:
    """It would bypass the shared call limit and wait forever for UI inputs; the phone and WebRTC are the ways in."""
    from websockets.asyncio.client import connect

    async def knock(url: str) -> tuple[dict, int | None]:
        async with connect(url) as ws:
            message = json.loads(await ws.recv())
            await ws.wait_closed()
            return message, ws.close_code

    with running_server(config, store, None, phone_env) as server:
        message, code = asyncio.run(knock(f"ws://127.0.0.1:{server.port}/websocket/offer"))

    assert message == {"status": "failed", "meta": {"error": "not_supported"}} and code == 1008


# ---- the live feed ---------------------------------------------------------------------------------------


def test_the_feed_follows_only_the_call_asked_for_and_checks_its_id(config, store, phone_env) -> None:
    script = Script(
        greet("Hello, this is AI-SHIFT."),
        on_caller_speech(user_said("My name is Tanaka."), say("Thank you, Tanaka.")),
    )

    async def two_calls(server: ServerThread) -> tuple[FeedReader, FeedReader, FeedReader]:
        _, one = start_call(server)
        _, two = start_call(server)
        async with one, two:
            feed_one = FeedReader(f"{server.url}/outputs?stream_id={one.stream_sid}")
            feed_two = FeedReader(f"{server.url}/outputs?webrtc_id={two.stream_sid}")  # either name works
            async with feed_one, feed_two:
                await one.until(lambda: one.audible_ms() > 200 and two.audible_ms() > 200, what="both greetings")
                await one.until_quiet()
                await one.say("My name is Tanaka.")
                await one.until(lambda: "Thank you, Tanaka." in str(feed_one.lines()), what="the first answer")
                await asyncio.sleep(0.5)
                late = FeedReader(f"{server.url}/outputs?stream_id={one.stream_sid}")
                async with late:  # a follower that joins mid-call gets the whole call so far at once
                    await one.until(lambda: late.views, what="the late follower's first view")
        return feed_one, feed_two, late

    with FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as fake:
        with running_server(config, store, fake, phone_env, max_concurrent_calls=2) as server:
            feed_one, feed_two, late = asyncio.run(two_calls(server))
            get = lambda query, **headers: httpx.get(f"{server.url}/outputs{query}", headers=headers, timeout=10)  # noqa: E731
            owner = {"Authorization": f"Bearer {FEED_TOKEN}"}
            missing, both = get(""), get("?webrtc_id=a&stream_id=b")
            malformed, too_long = get("?webrtc_id=../../etc"), get("?stream_id=" + "a" * 65)
            unknown = get("?stream_id=MZ" + "0" * 32, **owner)

    assert "Tanaka" in str(feed_one.lines("user"))
    assert feed_two.views and not any("Tanaka" in json.dumps(view) for _, view in feed_two.views)
    assert late.views[0][1]["transcript"] == feed_one.views[-1][1]["transcript"]
    assert (missing.status_code, both.status_code) == (400, 400)
    assert (malformed.status_code, too_long.status_code) == (422, 422)
    assert unknown.status_code == 404


def test_a_phone_calls_feed_is_refused_without_the_owners_token_and_streams_with_it(config, store, phone_env) -> None:
    async def call(server: ServerThread) -> dict[str, Any]:
        _, caller = start_call(server)
        base = f"{server.url}/outputs"
        async with caller:
            await caller.until(lambda: caller.audible_ms() > 200, what="the greeting")
            async with httpx.AsyncClient(timeout=10) as client:
                refused = {
                    "no token": await client.get(f"{base}?stream_id={caller.stream_sid}"),
                    "wrong token": await client.get(
                        f"{base}?stream_id={caller.stream_sid}", headers={"Authorization": "Bearer " + "0" * 64}
                    ),
                    "the other name": await client.get(f"{base}?webrtc_id={caller.stream_sid}"),
                    # a token in the link would be kept by access logs and browser histories: only the header counts
                    "token in the link": await client.get(f"{base}?stream_id={caller.stream_sid}&token={FEED_TOKEN}"),
                }
            by_header = FeedReader(f"{base}?stream_id={caller.stream_sid}")
            by_other_name = FeedReader(f"{base}?webrtc_id={caller.stream_sid}")
            async with by_header, by_other_name:
                greeted = lambda feed: "AI-SHIFT" in str(feed.lines("assistant"))  # noqa: E731
                await caller.until(lambda: greeted(by_header) and greeted(by_other_name), what="the owner's feeds")
        return {"refused": refused, "by_header": by_header, "by_other_name": by_other_name}

    with FakeRealtimeServer(Script(greet("Hello, this is AI-SHIFT.")), api_key=KEY, min_audio_ms=300) as fake:
        with running_server(config, store, fake, phone_env) as server:
            outcome = asyncio.run(call(server))

    for why, response in outcome["refused"].items():
        assert response.status_code == 401, why
        assert "AI-SHIFT" not in response.text and response.headers["www-authenticate"] == "Bearer"
    assert outcome["by_header"].status == 200 and outcome["by_other_name"].status == 200
    assert "Hello, this is AI-SHIFT." in str(outcome["by_header"].lines("assistant"))


async def webrtc_call(server: ServerThread, webrtc_id: str, via_ui: bool) -> Any:
    """A browser-like WebRTC peer (aiortc): microphone track (silence) and data channel, offered to the server."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("text")
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    body = {"sdp": pc.localDescription.sdp, "type": "offer", "webrtc_id": webrtc_id}
    async with httpx.AsyncClient(timeout=20) as client:
        if via_ui:
            component = server.stream.ui_components[0]
            payload = {"session_hash": "test", "component_id": component._id, "fn_name": "offer", "data": body}
            answer = (await client.post(f"{server.url}/gradio_api/component_server/", json=payload)).json()
        else:
            answer = (await client.post(f"{server.url}/webrtc/offer", json={**body, "language": "en"})).json()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    if via_ui:  # the page's inputs, as Gradio's `tick` event hands them to fastrtc
        component.set_input(webrtc_id, webrtc_id, *CallRequest("en", "cedar").inputs())
    return pc


@pytest.mark.parametrize("via_ui", [False, True], ids=["offer-route", "ui-component"])
def test_the_feed_follows_a_browser_call_too(config, store, phone_env, via_ui) -> None:
    async def call(server: ServerThread) -> FeedReader:
        webrtc_id = "browser" + new_sid("")[:12]
        async with FeedReader(f"{server.url}/outputs?webrtc_id={webrtc_id}") as feed:
            pc = await webrtc_call(server, webrtc_id, via_ui)
            try:
                deadline = time.monotonic() + 20
                while "May I have your name?" not in str(feed.lines("assistant")):
                    assert time.monotonic() < deadline, f"no greeting in the feed: {feed.view}"
                    await asyncio.sleep(0.05)
            finally:
                await pc.close()
            deadline = time.monotonic() + 10
            while not feed.ended and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        return feed

    with FakeRealtimeServer(Script(greet("Hello, May I have your name?")), api_key=KEY, min_audio_ms=300) as fake:
        with running_server(config, store, fake, phone_env) as server:
            feed = asyncio.run(call(server))
        session = fake.session()

    assert feed.view["language"] == "en" and session["audio"]["input"]["transcription"]["language"] == "en"
    assert session["audio"]["input"]["noise_reduction"]["type"] == "near_field"  # a browser call, not the phone
    assert feed.ended  # the hang-up closed the feed


# ---- the entry points: `python app.py --server` and `--phone` ------------------------------------------

APP = Path(__file__).resolve().parent.parent / "app.py"


def test_python_app_py_server_serves_the_ui_the_phone_line_and_the_feed(config, tmp_path) -> None:
    from tests.browser import AppProcess

    async def call(url: str, port: int) -> tuple[TwilioCaller, FeedReader]:
        call_sid = new_sid("CA")  # Twilio's stream carries the CallSid its webhook did: the token is for that call
        twiml = parse_twiml(incoming(url, call_sid))
        assert twiml.stream_url == f"ws://127.0.0.1:{port}/telephone/handler"
        caller = TwilioCaller(twiml.stream_url, parameters=twiml.parameters, call_sid=call_sid)
        async with caller, FeedReader(f"{url}/outputs?stream_id={caller.stream_sid}") as feed:
            await caller.until(lambda: caller.audible_ms() > 200, timeout=30, what="the greeting")
            await caller.until(lambda: "AI-SHIFT" in str(feed.lines("assistant")), what="the greeting in the feed")
        return caller, feed

    with FakeRealtimeServer(Script(greet("Hello, this is AI-SHIFT.")), api_key=KEY, min_audio_ms=300) as fake:
        env = {
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": fake.base_url,
            "VOICE_ENGINE": "realtime",
            "RESERVATIONS_DB": str(tmp_path / "reservations.db"),
            "TWILIO_AUTH_TOKEN": "",
            "TWILIO_VALIDATE_SIGNATURE": "false",  # unsigned webhooks: a local test
            "PUBLIC_URL": "",
            "OWNER_PASSWORD": OWNER_PASSWORD,
        }
        with AppProcess(APP, tmp_path / "logs", env=env, args=("--server",)) as app:
            page = httpx.get(app.url, timeout=10)
            base = app.url.rstrip("/")
            caller, feed = asyncio.run(call(base, app.port))
            log = app.log_text()

    assert page.status_code == 200 and "gradio" in page.text.lower()  # the UI is at /
    assert all(m["streamSid"] == caller.stream_sid for m in caller.media_messages())
    assert feed.view["transcript"][0]["role"] == "assistant"
    assert f"follow it at /outputs?stream_id={caller.stream_sid}" in log and KEY not in log
    assert "POST /telephone/incoming" not in log  # no access log: it would keep query strings (`?code=`)


def test_python_app_py_phone_without_a_hugging_face_token_says_what_to_do(tmp_path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_TOKEN_PATH=str(tmp_path / "hf" / "token"))
    done = subprocess.run(
        [sys.executable, str(APP), "--phone"],
        cwd=APP.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert done.returncode == 1
    assert "HF_TOKEN" in done.stderr and "huggingface.co/settings/tokens" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_test_callers_mu_law_is_the_one_fastrtc_decodes() -> None:
    """The caller's audio goes through `audioop.ulaw2lin` on the server: our encoder must be G.711 exactly."""
    import warnings

    import numpy as np

    from tests.twilio_caller import mulaw_decode, mulaw_encode

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

    pcm = np.arange(-32768, 32768, dtype=np.int16)
    assert mulaw_encode(pcm) == audioop.lin2ulaw(pcm.tobytes(), 2)
    every_code = bytes(range(256))
    assert mulaw_decode(every_code).tobytes() == audioop.ulaw2lin(every_code, 2)
