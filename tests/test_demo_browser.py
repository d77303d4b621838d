"""The shared demo link in a real browser: the owner's key spent only within the demo's allowances, a first
minute that shows what to say, the conversation to take away, and a link that previews as a card.

The app runs as a subprocess on its own SQLite file (where the allowances are counted) with the scripted
Realtime fake as the model. The fake takes any key, so a call made with the visitor's own key goes through too;
which key a call used is read from what the fake received.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from components.call.costs import realtime_cost
from components.restaurant.config import load_config
from components.settings import AgentSettings
from components.store.reservations import ReservationStore
from tests.browser import AppProcess, chromium_session, end_call, have_browser_tools, open_app, silence_wav, snap
from tests.browser import start_call as start_and_wait
from tests.fake_realtime import FakeRealtimeServer, Script, greet, on_caller_speech, say, user_said
from tests.page import APP, CALL, app_env, press_record, wait_for_idle, wait_for_line, wait_for_toast

pytestmark = pytest.mark.timeout(240)
OWNER_KEY = "sk-the-owners-key"
VISITOR_KEY = "sk-a-visitors-own-key"
GREETING = "Hello, this is AI-SHIFT."


@pytest.fixture(autouse=True)
def _browser_tools() -> None:
    assert have_browser_tools(), "browser tests need /usr/bin/chromium, espeak-ng and sox"


def keys_seen(fake: FakeRealtimeServer) -> list[str]:
    """The last four characters of the key each accepted connection presented."""
    return [info.api_key_last4 for info in fake.connections if info.status == 101]


def banner(page: Any) -> str:
    page.wait_for_selector("#allowance", state="visible", timeout=15_000)
    return page.inner_text("#allowance")


def use_own_key(page: Any, key: str) -> None:
    field = page.locator("#api-key input, #api-key textarea").first
    field.wait_for(state="visible", timeout=10_000)
    field.fill(key)


def test_with_the_days_minutes_used_up_the_owners_key_is_refused_and_a_visitors_key_still_works(tmp_path: Path) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    today = dt.datetime.now(load_config().tz).date()
    store.usage.admit(
        "earlier-call",
        day=today,
        visitor="ip:198.51.100.7",
        engine="realtime",
        now=dt.datetime.now(dt.UTC),
        per_visitor=None,
    )
    store.usage.record("earlier-call", seconds=60, cost_usd=0.12)
    env = {**app_env(tmp_path, None, OWNER_KEY), "DAILY_CALL_MINUTES": "1"}

    with (
        sync_playwright() as playwright,
        FakeRealtimeServer(Script(greet(GREETING)), min_audio_ms=300) as fake,
        AppProcess(APP, tmp_path, {**env, **app_env(tmp_path, fake, OWNER_KEY)}) as app,
        chromium_session(playwright, silence_wav(tmp_path / "quiet.wav", 60), tmp_path) as page,
    ):
        open_app(page, app.url)
        before = banner(page)  # said before any call, with when it comes back and what to do
        tomorrow = today + dt.timedelta(days=1)
        assert "1分" in before and "1 minutes of demo calls are used up" in before
        assert f"{tomorrow.isoformat()} 0:00 JST" in before and "own OpenAI API key" in before
        snap(page, tmp_path, "minutes-used-up")

        press_record(page)
        refused = wait_for_toast(page, "used up")
        assert any(f"{tomorrow.isoformat()} 0:00 JST" in message for message in refused)
        wait_for_idle(page)
        assert fake.connection_count == 0

        use_own_key(page, VISITOR_KEY)
        start_and_wait(page, root=CALL)
        wait_for_line(page, "bot", GREETING)
        end_call(page, root=CALL)
        assert keys_seen(fake) == [VISITOR_KEY[-4:]]

    assert store.usage.day(today).calls == 1  # the visitor's own key counted against nothing


def test_one_call_per_visitor_lets_one_through_refuses_the_second_and_a_restart_does_not_reset_it(
    tmp_path: Path,
) -> None:
    env = {**app_env(tmp_path, None, OWNER_KEY), "CALLS_PER_VISITOR_PER_DAY": "1"}
    with (
        sync_playwright() as playwright,
        FakeRealtimeServer(Script(greet(GREETING)), min_audio_ms=300) as fake,
    ):
        env |= app_env(tmp_path, fake, OWNER_KEY)
        quiet = silence_wav(tmp_path / "quiet.wav", 60)
        with AppProcess(APP, tmp_path, env) as app, chromium_session(playwright, quiet, tmp_path) as page:
            open_app(page, app.url)
            assert "残り1回" in banner(page) and "Demo calls left today: 1." in banner(page)
            start_and_wait(page, root=CALL)
            wait_for_line(page, "bot", GREETING)
            end_call(page, root=CALL)
            page.wait_for_function(  # the call counted: the page says so, and where to put one's own key
                "() => (document.querySelector('#allowance')?.innerText || '').includes(\"used today's 1 demo call\")"
            )
            assert page.locator("#api-key input, #api-key textarea").first.is_visible()
            press_record(page)
            wait_for_toast(page, "demo call")
            wait_for_idle(page)
        with AppProcess(APP, tmp_path, env) as app, chromium_session(playwright, quiet, tmp_path) as page:
            open_app(page, app.url)
            after_restart = banner(page)
            assert "本日のデモ通話（1回）はご利用済み" in after_restart and "used today's 1 demo call" in after_restart
            press_record(page)
            wait_for_toast(page, "demo call")
        assert keys_seen(fake) == [OWNER_KEY[-4:]]  # only the first call reached the model


def test_with_an_access_code_only_the_link_with_it_uses_the_owners_key(tmp_path: Path) -> None:
    env = {**app_env(tmp_path, None, OWNER_KEY), "DEMO_ACCESS_CODE": "open-sesame"}
    with (
        sync_playwright() as playwright,
        FakeRealtimeServer(Script(greet(GREETING)), min_audio_ms=300) as fake,
        AppProcess(APP, tmp_path, {**env, **app_env(tmp_path, fake, OWNER_KEY)}) as app,
        chromium_session(playwright, silence_wav(tmp_path / "quiet.wav", 60), tmp_path) as page,
    ):
        open_app(page, app.url)
        asked = banner(page)
        assert "?code=" in asked and "own OpenAI API key" in asked
        assert page.locator("#api-key input, #api-key textarea").first.is_visible()
        press_record(page)
        wait_for_toast(page, "?code=")
        wait_for_idle(page)
        open_app(page, f"{app.url}?code=wrong")
        assert "?code=" in banner(page)

        open_app(page, f"{app.url}?code=open-sesame")
        page.wait_for_timeout(1000)
        assert not page.locator("#allowance").is_visible()
        start_and_wait(page, root=CALL)
        wait_for_line(page, "bot", GREETING)
        end_call(page, root=CALL)
        assert keys_seen(fake) == [OWNER_KEY[-4:]]


def test_the_first_minute_shows_what_to_say_and_the_conversation_and_its_cost_go_home_with_the_visitor(
    tmp_path: Path,
) -> None:
    from tests.browser import speech_wav

    caller = ["Do you have a vegetarian course?"]
    answer = "Yes, if you book it by the day before."
    script = Script(greet(GREETING), on_caller_speech(user_said(caller[0]), say(answer)))
    wav = speech_wav(caller, tmp_path / "caller.wav", pad_silence_s=3.0, lead_silence_s=3.0, tail_silence_s=60)
    with (
        sync_playwright() as playwright,
        FakeRealtimeServer(script, min_audio_ms=300) as fake,
        AppProcess(APP, tmp_path, {**app_env(tmp_path, fake, OWNER_KEY)}) as app,
        chromium_session(playwright, wav, tmp_path) as page,
    ):
        open_app(page, app.url)
        hints = page.inner_text("#transcript")
        assert "こんなふうに話しかけてみてください" in hints and "来週の金曜日" in hints
        page.get_by_text("設定 / Settings").click()  # closed on a Space with a key
        page.get_by_label("English").check()
        page.wait_for_function("() => document.querySelector('#transcript').innerText.includes('Try saying')")
        assert "A table for four next Friday" in page.inner_text("#transcript")
        snap(page, tmp_path, "first-minute")

        start_and_wait(page, root=CALL)
        wait_for_line(page, "user", caller[0])
        wait_for_line(page, "bot", answer)
        page.wait_for_timeout(1000)  # the card's last update
        shown_cost = float(page.locator("#reservation-card [data-cost]").get_attribute("data-cost"))
        end_call(page, root=CALL)

        page.locator("#conversation-json").wait_for(state="visible", timeout=10_000)
        with page.expect_download() as download:
            page.click("#conversation-json")
        record = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
        with page.expect_download() as download:
            page.click("#conversation-md")
        markdown = Path(download.value.path()).read_text(encoding="utf-8")
        snap(page, tmp_path, "after-the-call")
        usages = [event["response"]["usage"] for event in fake.sent_events("response.done")]

    expected = sum(realtime_cost(usage, AgentSettings().model) for usage in usages)  # the default model's prices
    assert expected > 0 and shown_cost == pytest.approx(expected, abs=1e-6)
    assert [line["text"] for line in record["transcript"]][:3] == [GREETING, caller[0], answer]
    assert record["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert [turn["latency_ms"] is not None for turn in record["turns"]] == [False, True]  # the greeting answers no one
    assert caller[0] in markdown and answer in markdown and f"${expected:.4f}" in markdown


def test_the_app_starts_without_deprecation_warnings_and_its_link_previews_as_a_card(tmp_path: Path) -> None:
    env = {**app_env(tmp_path, None, OWNER_KEY), "PYTHONWARNINGS": "default::DeprecationWarning", "OWNER_PASSWORD": "x"}
    with AppProcess(APP, tmp_path, env) as app:
        page = httpx.get(app.url, timeout=10)
        log = app.log_text()
        tags = dict(re.findall(r'<meta (?:property|name)="((?:og|twitter):[^"]+)" content="([^"]*)"', page.text))
        image = httpx.get(tags["og:image"], timeout=10)

    assert "DeprecationWarning" not in log, log
    assert "AI-SHIFT" in tags["og:title"] and "ご予約" in tags["og:title"]
    assert "Japanese or English" in tags["og:description"] and tags["twitter:card"] == "summary_large_image"
    assert tags["og:image"] == f"{app.url}og-image.png" and tags["twitter:image"] == tags["og:image"]
    assert "Gradio" not in tags["og:title"] and "Click to try out the app!" not in page.text  # Gradio's own are gone
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (1200, 630)
