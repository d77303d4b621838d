"""Text messages on the phone line, against a local fake of Twilio's REST API reached by the real `twilio` SDK
(`tests.fake_twilio_api`): a booking made by phone is confirmed by text in the caller's language, STOP is honoured
(from the caller's reply and from Twilio's own refusal), and the day-before reminder goes exactly once however
many replicas run the reminder round on one PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
from pathlib import Path

import pytest

from components.phone.texts import TextMessages
from components.restaurant.config import load_config
from components.restaurant.fields import Reservation
from components.settings import TextSettings
from components.store.reservations import ReservationStore
from tests import postgres
from tests.domain_fixtures import bookable_day
from tests.fake_realtime import FakeRealtimeServer, Script, call_tool, greet, on_caller_speech, say, user_said
from tests.fake_twilio_api import FakeTwilioApi
from tests.phone_server import KEY, ServerThread, running_server
from tests.twilio_caller import TwilioCaller, incoming, new_sid, parse_twiml, signed_post

pytestmark = pytest.mark.timeout(120)
ACCOUNT = "AC" + "1" * 32
AUTH = "twilio-auth-token-for-texts"
SENDER = "+815012345678"
CALLER = "+819012345678"
CONFIG = load_config()


@pytest.fixture
def twilio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Twilio's REST API, where the SDK's HTTP client reaches it (through the proxy it is told about)."""
    with FakeTwilioApi(tmp_path, ACCOUNT, AUTH) as api:
        api.reached_through(monkeypatch)
        yield api


@pytest.fixture
def line_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A signed Twilio line that also sends texts."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    for name, value in {
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_AUTH_TOKEN": AUTH,
        "TWILIO_VALIDATE_SIGNATURE": "true",
        "TWILIO_SMS_FROM": SENDER,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("PUBLIC_URL", "TWILIO_SAY_VOICE", "SMS_REMINDER_HOUR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def booking_script(day: str, name: str) -> Script:
    details = {"guest_name": name, "date": day, "time": "19:00", "party_size": 2}
    return Script(
        greet("お電話ありがとうございます。"),
        on_caller_speech(
            user_said("明日の七時に二名でお願いします。"),
            call_tool("update_reservation", details),
            call_tool("confirm_reservation", {}),
            say(lambda out: f"ご予約を承りました。予約番号は{out['booking_id']}です。"),
        ),
    )


async def phone_booking(server: ServerThread, fake: FakeRealtimeServer) -> None:
    """A caller books on the signed line, hears the booking number, and hangs up."""
    call_sid = new_sid("CA")
    twiml = parse_twiml(incoming(server.url, call_sid, AUTH, caller=CALLER))
    async with TwilioCaller(twiml.stream_url, parameters=twiml.parameters, call_sid=call_sid) as caller:
        await caller.until(lambda: caller.audible_ms() > 200, what="the greeting")
        await caller.until_quiet()
        await caller.say("明日の七時に二名でお願いします。")
        await caller.until(lambda: len(fake.tool_outputs()) >= 2, what="the booking")
        await caller.until_quiet()


async def until(condition, what: str, timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"never saw {what}"
        await asyncio.sleep(0.1)


def test_a_phone_booking_is_confirmed_by_text_and_a_stop_reply_ends_the_texts(tmp_path, line_env, twilio) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    day = bookable_day(CONFIG)

    async def calls(server: ServerThread, fake: FakeRealtimeServer) -> tuple[str, str]:
        await phone_booking(server, fake)
        await until(lambda: twilio.texts, "the confirmation text")
        stop = signed_post(f"{server.url}/telephone/sms", {"From": CALLER, "Body": "STOP", "To": SENDER}, AUTH)
        fake.reset_records()
        await phone_booking(server, fake)  # a second booking after STOP: no text
        await asyncio.sleep(1.0)
        return stop.text, fake.tool_outputs()[-1].output["booking_id"]

    with FakeRealtimeServer(booking_script(day, "Tanaka"), api_key=KEY, ms_per_char=15, min_audio_ms=300) as fake:
        with running_server(CONFIG, store, fake, line_env) as server:
            stop_reply, second = asyncio.run(calls(server, fake))

    (text,) = twilio.texts
    first = re.search(r"AS-[0-9A-Z]{3}-[0-9A-Z]{3}", text.body)[0]
    weekday = "月火水木金土日"[dt.date.fromisoformat(day).weekday()]
    month, date = dt.date.fromisoformat(day).month, dt.date.fromisoformat(day).day
    assert (text.to, text.sender) == (CALLER, SENDER)
    assert text.body == (
        f"【AI-SHIFT】ご予約を承りました。予約番号 {first}：{month}月{date}日({weekday}) 19:00、2名様。"
        "変更・取消はお電話で予約番号をお伝えください。配信停止はSTOPと返信。"
    )
    assert "Tanaka" not in text.body  # no more personal data than the guest needs
    assert "今後SMSはお送りしません" in stop_reply and "<Message>" in stop_reply
    assert store.texts.opted_out(CALLER) and store.get(second)["status"] == "confirmed"
    assert store.texts.sent(first) == [("booked", "sent")] and store.texts.sent(second) == []


def test_an_unsigned_text_reply_is_refused(tmp_path, line_env, twilio) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    with running_server(CONFIG, store, None, line_env) as server:
        forged = signed_post(f"{server.url}/telephone/sms", {"From": CALLER, "Body": "STOP"})
    assert forged.status_code == 403 and not store.texts.opted_out(CALLER)


def texts_for(store: ReservationStore, reminder_hour: int | None = None) -> TextMessages:
    return TextMessages(TextSettings(ACCOUNT, AUTH, SENDER, reminder_hour), store, CONFIG)


def test_a_number_twilio_says_has_unsubscribed_is_not_texted_again(tmp_path, twilio) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    day = dt.date.fromisoformat(bookable_day(CONFIG))
    made = dt.datetime.now(dt.UTC)
    first = store.book(Reservation("Ito", day, dt.time(19), 2, phone=CALLER), CONFIG, made, source="phone")
    twilio.unsubscribed.add(CALLER)  # they replied STOP to the number itself, on Twilio's side
    assert texts_for(store).after_call({first}, CALLER, "en", made) == 0
    assert twilio.refused == [21610] and store.texts.opted_out(CALLER)
    assert store.texts.sent(first) == [("booked", "opted_out")]


@pytest.mark.timeout(180)
def test_the_reminder_goes_once_from_two_replicas_on_one_postgresql(twilio) -> None:
    location = postgres.fresh_database()
    replicas = [ReservationStore(location), ReservationStore(location)]  # two servers, one database
    now = dt.datetime.now(CONFIG.tz).replace(hour=18, minute=5)
    tomorrow = now.date() + dt.timedelta(days=1)
    while tomorrow.month == 1 and tomorrow.day <= 3 or tomorrow.month == 12 and tomorrow.day == 31:  # closed days
        now, tomorrow = now + dt.timedelta(days=7), tomorrow + dt.timedelta(days=7)
    booked_at = now - dt.timedelta(days=2)
    booking_id = replicas[0].book(
        Reservation("Mori", tomorrow, dt.time(19), 3, phone=CALLER), CONFIG, booked_at, language="en", source="phone"
    )
    replicas[0].book(Reservation("Web guest", tomorrow, dt.time(20), 2, phone="+819011112222"), CONFIG, booked_at)
    rounds = [texts_for(store, reminder_hour=18) for store in replicas]
    assert rounds[0].reminders(now.replace(hour=17)) == 0  # not before the hour

    start, results = threading.Barrier(len(rounds)), []

    def run(texts: TextMessages) -> None:
        start.wait(10)
        results.append(texts.reminders(now))

    workers = [threading.Thread(target=run, args=(texts,)) for texts in rounds]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    again = rounds[1].reminders(now + dt.timedelta(minutes=1))  # the next minute's round

    assert sorted(results) == [0, 1] and again == 0
    (text,) = twilio.texts  # the web booking gets none: reminders are for bookings made by phone
    assert text.to == CALLER and text.body.startswith("AI-SHIFT: we look forward to seeing you tomorrow.")
    assert f"Booking {booking_id}" in text.body and "party of 3" in text.body
    assert replicas[1].texts.sent(booking_id) == [(f"reminder@{tomorrow.isoformat()}", "sent")]
    for store in replicas:
        store.db.engine.dispose()


def test_a_waitlisted_guest_is_texted_once_when_a_cancellation_frees_their_table(tmp_path, twilio) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    day = dt.date.fromisoformat(bookable_day(CONFIG))
    now = dt.datetime.now(dt.UTC)
    ids = [store.book(Reservation(f"Guest {n}", day, dt.time(19), 2), CONFIG, now) for n in range(CONFIG.tables)]
    store.waitlist.join(Reservation("Ito", day, dt.time(19), 2), now, phone=CALLER, language="en", source="phone")
    texts = texts_for(store)
    assert texts.rounds(now) == 0  # waiting: nothing to say yet

    store.cancel(ids[0], now, actor="owner:password")
    assert store.waitlist.notify_freed(day, CONFIG, now, freed_by=ids[0]) is not None
    assert texts.rounds(now) == 1 and texts.rounds(now) == 0

    (text,) = twilio.texts
    assert text.to == CALLER and "a table is free on" in text.body and "for 2, the time you waited for" in text.body
    assert "it is not booked yet" in text.body and "Ito" not in text.body
