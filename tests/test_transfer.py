"""Putting a phone caller through to the staff, against a local fake of Twilio's REST API reached by the real
`twilio` SDK (`tests.fake_twilio_api`) and Twilio's webhooks as signed POSTs: answered, the call ends with the
staff; not answered, the caller comes back to the agent, which takes a callback request, and the console hears of
it; outside staff hours the agent is not even given the tool, and the code refuses it if asked anyway."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from components.restaurant.config import load_config
from components.store.reservations import ReservationStore
from tests.fake_realtime import FakeRealtimeServer, Script, call_tool, greet, on_caller_speech, say, user_said
from tests.fake_twilio_api import FakeTwilioApi
from tests.phone_server import KEY, ServerThread, running_server
from tests.twilio_caller import TwilioCaller, TwiML, incoming, new_sid, parse_twiml, signed_post

pytestmark = pytest.mark.timeout(120)
ACCOUNT = "AC" + "2" * 32
AUTH = "twilio-auth-token-for-transfers"
STAFF = "+81312345678"
CALLER = "+819012345678"
CONFIG = load_config()
ASK = "スタッフの方と話せますか。"


@pytest.fixture
def twilio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with FakeTwilioApi(tmp_path, ACCOUNT, AUTH) as api:
        api.reached_through(monkeypatch)
        yield api


@pytest.fixture
def line_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A signed line with staff to put callers through to, there all day."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    for name, value in {
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_AUTH_TOKEN": AUTH,
        "TWILIO_VALIDATE_SIGNATURE": "true",
        "STAFF_PHONE": STAFF,
        "STAFF_HOURS": "00:00-24:00",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("PUBLIC_URL", "TWILIO_SAY_VOICE", "TWILIO_SMS_FROM"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def dial_result(server: ServerThread, call_sid: str, status: str) -> TwiML:
    """Twilio's `<Dial action>` request once the staff's phone was answered and hung up, or not answered."""
    fields = {"CallSid": call_sid, "AccountSid": ACCOUNT, "From": CALLER, "DialCallStatus": status}
    return parse_twiml(signed_post(f"{server.url}/telephone/transferred", fields, AUTH))


async def asks_for_a_person(server: ServerThread, twilio: FakeTwilioApi, call_sid: str) -> None:
    """The caller asks for a person; the agent says it puts them through and the line redirects the call."""
    twilio.live_calls.add(call_sid)
    twiml = parse_twiml(incoming(server.url, call_sid, AUTH, caller=CALLER))
    async with TwilioCaller(twiml.stream_url, parameters=twiml.parameters, call_sid=call_sid) as caller:
        await caller.until(lambda: caller.audible_ms() > 200, what="the greeting")
        await caller.until_quiet()
        await caller.say(ASK)
        await caller.until(lambda: twilio.call_updates, what="the call to be redirected", timeout=20)


def put_through_script(*after: object) -> Script:
    return Script(
        greet("お電話ありがとうございます。"),
        on_caller_speech(user_said(ASK), call_tool("transfer_to_staff", {}), say("スタッフにおつなぎします。")),
        *after,
    )


def test_during_staff_hours_the_caller_is_put_through_and_an_answered_call_ends_with_the_staff(
    tmp_path, line_env, twilio
) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    call_sid = new_sid("CA")
    with FakeRealtimeServer(put_through_script(), api_key=KEY, ms_per_char=15, min_audio_ms=300) as fake:
        with running_server(CONFIG, store, fake, line_env) as server:
            asyncio.run(asks_for_a_person(server, twilio, call_sid))
            answered = dial_result(server, call_sid, "completed")
            tools = [tool["name"] for tool in fake.session()["tools"]]
            spoken = [event for event in fake.sent_events("response.output_audio_transcript.done")]

    assert "transfer_to_staff" in tools
    ((redirected, form),) = twilio.call_updates
    assert redirected == call_sid
    assert (
        f'<Dial action="{server.url}/telephone/transferred" method="POST" timeout="20"><Number>{STAFF}</Number>'
        in (form["Twiml"])
    )
    assert "スタッフにおつなぎします" in form["Twiml"]  # Twilio's own voice says it too, as the staff's phone rings
    assert any("スタッフにおつなぎします" in event["transcript"] for event in spoken)  # after the agent said it
    assert answered.verbs == ["Hangup"]
    assert [entry["action"] for entry in store.audit.entries()] == []


def test_a_transfer_nobody_answers_comes_back_to_the_agent_which_takes_a_callback(tmp_path, line_env, twilio) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    call_sid = new_sid("CA")
    back = "申し訳ございません。折り返しのご連絡をいたしましょうか。"
    script = put_through_script(
        greet(back),
        on_caller_speech(
            user_said("お願いします。"),
            call_tool("request_callback", {"guest_name": "Tanaka", "request": "スタッフと話したい"}),
            say("承りました。"),
        ),
    )

    async def call(server: ServerThread, fake: FakeRealtimeServer) -> TwiML:
        await asks_for_a_person(server, twilio, call_sid)
        missed = dial_result(server, call_sid, "no-answer")
        async with TwilioCaller(missed.stream_url, parameters=missed.parameters, call_sid=call_sid) as caller:
            await caller.until(lambda: caller.audible_ms() > 200, what="the agent again")
            await caller.until_quiet()
            await caller.say("お願いします。")
            await caller.until(lambda: fake.tool_outputs("request_callback"), what="the callback request")
            await caller.until_quiet()
        return missed

    # One conversation over two connections (the call, then the caller back after the missed transfer).
    with FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300, script_scope="server") as fake:
        with running_server(CONFIG, store, fake, line_env) as server:
            missed = asyncio.run(call(server, fake))
            instructions = fake.session()["instructions"]

    assert missed.verbs == ["Say", "Connect"] and "スタッフが電話に出られません" in missed.says()[0].text
    assert missed.parameters.get("after") == "missed_transfer"
    assert "誰も出られませんでした" in instructions  # the agent knows why the caller is back
    (request,) = store.callbacks.listed()
    assert (request["guest_name"], request["phone"], request["source"]) == ("Tanaka", CALLER, "phone")
    (entry,) = [entry for entry in store.audit.entries() if entry["action"] == "transfer_missed"]
    assert entry["detail"] == {"status": "no-answer", "call": call_sid}


def test_outside_staff_hours_the_tool_is_not_offered_and_is_refused_if_called(tmp_path, line_env, twilio) -> None:
    now = dt.datetime.now(CONFIG.tz)
    window = "03:00-04:00" if now.hour != 3 else "05:00-06:00"
    line_env.setenv("STAFF_HOURS", window)
    store = ReservationStore(tmp_path / "reservations.db")
    call_sid = new_sid("CA")
    script = Script(
        greet("お電話ありがとうございます。"),
        on_caller_speech(
            user_said(ASK), call_tool("transfer_to_staff", {}), say(lambda out: out["problems"][0]["message"])
        ),
    )

    async def call(server: ServerThread, fake: FakeRealtimeServer) -> None:
        twiml = parse_twiml(incoming(server.url, call_sid, AUTH, caller=CALLER))
        async with TwilioCaller(twiml.stream_url, parameters=twiml.parameters, call_sid=call_sid) as caller:
            await caller.until(lambda: caller.audible_ms() > 200, what="the greeting")
            await caller.until_quiet()
            await caller.say(ASK)
            await caller.until(lambda: fake.tool_outputs(), what="the tool's answer")
            await caller.until_quiet()

    twilio.live_calls.add(call_sid)
    with FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as fake:
        with running_server(CONFIG, store, fake, line_env) as server:
            asyncio.run(call(server, fake))
            tools = [tool["name"] for tool in fake.session()["tools"]]
            (output,) = fake.tool_outputs()

    assert "transfer_to_staff" not in tools and "transfer_to_staff" not in fake.session()["instructions"]
    assert [problem["code"] for problem in output.output["problems"]] == ["transfer_unavailable"]
    assert twilio.call_updates == []  # the call was never redirected
