"""What the app's page shows, read the way a person reads it: the card, the transcript, the call, the toasts.

Shared by the real-browser tests of the app (`test_app_browser`, `test_self_service_browser`, ...): the app
started as a subprocess with a fake model (`app_env`), the card recorded on every change (`record_card`,
`wait_for_card`), the transcript in screen order (`wait_for_line`), and what a failure message should show.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests import fake_openai_http as http
from tests.browser import MIC_ACCESS_BUTTON, START_BUTTON, call_state, page_time_ms, snap, visible_messages
from tests.fake_live import FakeLiveServer
from tests.fake_realtime import FakeRealtimeServer

APP = Path(__file__).resolve().parent.parent / "app.py"
CALL = "#call-realtime"  # the Realtime engine's call widget (the page starts with it against the Realtime fake)
PIPELINE_CALL = "#call-pipeline"  # the one shown once Settings pick the pipeline engine
LIVE_CALL = "#call-live"  # GPT-Live's, the Space's default
BOOKING_ID = re.compile(r"^AS-[A-Z2-9]{3}-[A-Z2-9]{3}$")
LOUD = 0.02  # output meter RMS: the agent is audible
QUIET = 0.01  # output meter RMS: nothing is playing


def app_env(
    tmp_path: Path, server: FakeRealtimeServer | FakeLiveServer | http.FakeOpenAIServer | None, key: str | None
) -> dict[str, str]:
    """The app's environment against `server`; the page starts with the engine that server plays (GPT-Live by
    default, the Realtime engine against the Realtime fake)."""
    env = {"RESERVATIONS_DB": str(tmp_path / "reservations.db")}
    if server is not None:
        env["OPENAI_BASE_URL"] = server.base_url
    if isinstance(server, FakeRealtimeServer):
        env["VOICE_ENGINE"] = "realtime"
    if key is not None:
        env["OPENAI_API_KEY"] = key
    return env


# --------------------------------------------------------------------------------------------------------------
# What the page shows: the card (recorded on every change), the transcript, the call button
# --------------------------------------------------------------------------------------------------------------

_CARD_STATE_JS = """
() => {
  const card = document.querySelector('#reservation-card .reservation-card');
  if (!card) return null;
  const shown = (el) => !!el && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  const fields = {};
  card.querySelectorAll('[data-field]').forEach((el) => {
    fields[el.dataset.field] = { value: el.textContent.trim(), state: el.dataset.state };
  });
  const badge = card.querySelector('.badge');
  const id = card.querySelector('[data-booking-id]');
  return {
    status: badge ? badge.dataset.status : null,
    badge: badge ? badge.textContent.trim() : null,
    fields,
    problems: [...card.querySelectorAll('.problems li')].map((li) => ({
      code: li.dataset.code, field: li.dataset.problemField, text: li.textContent.trim(), visible: shown(li),
    })),
    booking_id: id ? { attr: id.dataset.bookingId, text: id.textContent.trim(), visible: shown(id) } : null,
    changing: card.querySelector('[data-changing]')?.dataset.changing ?? null,
    outcome: card.querySelector('.booking-id')?.dataset.outcome ?? null,
    callback: !!card.querySelector('[data-callback]'),
  };
}
"""

_RECORD_CARD_JS = f"""
() => {{
  const state = {_CARD_STATE_JS};
  window.__cardStates = [];
  let last = null;
  const record = () => {{
    const now = state();
    if (!now) return;
    const key = JSON.stringify(now);
    if (key !== last) {{ last = key; window.__cardStates.push(now); }}
  }};
  record();
  window.__cardObserver = new MutationObserver(record);
  const everything = {{ subtree: true, childList: true, characterData: true, attributes: true }};
  window.__cardObserver.observe(document.body, everything);
}}
"""

_TRANSCRIPT_JS = """
() => [...document.querySelectorAll("#transcript [data-testid='user'], #transcript [data-testid='bot']")].map(
  (el) => ({ role: el.dataset.testid, text: el.innerText.trim() }))
"""


def card_now(page: Page) -> dict[str, Any] | None:
    return page.evaluate(_CARD_STATE_JS)


def record_card(page: Page) -> None:
    """Keep every distinct state the card shows in `window.__cardStates` (a MutationObserver), so transient
    states are asserted even if they last only until the next turn."""
    page.evaluate(_RECORD_CARD_JS)


def card_history(page: Page) -> list[dict[str, Any]]:
    return page.evaluate("() => window.__cardStates || []")


def transcript(page: Page) -> list[tuple[str, str]]:
    """The transcript as (role, text) in screen order; role is "user" or "bot" (agent and product notices)."""
    return [(line["role"], line["text"]) for line in page.evaluate(_TRANSCRIPT_JS)]


def describe(page: Page) -> str:
    """What the page shows now, for a failure message."""
    return (
        f"\ncalls: {call_state(page, CALL)} (realtime), {call_state(page, PIPELINE_CALL)} (pipeline)"
        f"\ntoasts: {visible_messages(page)}\ncard: {card_now(page)}"
        f"\ntranscript: {json.dumps(transcript(page), ensure_ascii=False, indent=1)}"
    )


def wait_for_card(
    page: Page, matches: Callable[[dict[str, Any]], bool], what: str, since: int = 0, timeout_s: float = 20.0
) -> tuple[int, dict[str, Any]]:
    """The first recorded card state at index >= `since` that `matches`: (its index, the state)."""
    deadline = time.monotonic() + timeout_s
    while True:
        history = card_history(page)
        for index in range(since, len(history)):
            if matches(history[index]):
                return index, history[index]
        if time.monotonic() > deadline:
            states = json.dumps(history[since:], ensure_ascii=False, indent=1)
            raise AssertionError(
                f"the card never showed {what} within {timeout_s:.0f} s; states: {states}{describe(page)}"
            )
        page.wait_for_timeout(100)


def wait_for_line(page: Page, role: str, text: str | re.Pattern[str], timeout_s: float = 20.0) -> list[tuple[str, str]]:
    """Wait until the transcript shows a `role` line equal to `text` (or matching the pattern); return it all."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = transcript(page)
        for line_role, line_text in lines:
            if line_role == role and (text.search(line_text) if isinstance(text, re.Pattern) else line_text == text):
                return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"the transcript never showed the {role} line {text!r}{describe(page)}")
        page.wait_for_timeout(100)


def fields_of(state: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """{field: (value, data-state)} of a card state."""
    return {name: (field["value"], field["state"]) for name, field in state["fields"].items()}


def press_record(page: Page, root: str = CALL) -> None:
    """Click record (after "Click to Access Microphone") without expecting the call to open."""
    page.wait_for_selector(f"{root} {START_BUTTON}, {root} {MIC_ACCESS_BUTTON}", timeout=20_000)
    access = page.locator(f"{root} {MIC_ACCESS_BUTTON}")
    if access.count():
        access.first.click()
    page.locator(f"{root} {START_BUTTON}").first.click()


def wait_for_idle(page: Page, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while call_state(page, CALL) != "closed":
        if time.monotonic() > deadline:
            raise AssertionError(f"the call did not return to idle within {timeout_s:.0f} s{describe(page)}")
        page.wait_for_timeout(100)


def wait_for_toast(page: Page, needle: str, timeout_s: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        messages = visible_messages(page)
        if any(needle in message for message in messages):
            return messages
        if time.monotonic() > deadline:
            raise AssertionError(f"no message containing {needle!r} within {timeout_s:.0f} s{describe(page)}")
        page.wait_for_timeout(100)


def clock_offset_ms(page: Page) -> float:
    """`time.monotonic() * 1000 - performance.now()` of the page: maps the fake's event times onto the meter's."""
    best: tuple[float, float] | None = None
    for _ in range(5):
        before = time.monotonic()
        page_ms = page_time_ms(page)
        after = time.monotonic()
        offset = (before + after) / 2 * 1000 - page_ms
        if best is None or after - before < best[0]:
            best = (after - before, offset)
    assert best is not None
    return best[1]


def countdown_s(page: Page, timeout_s: float = 5.0) -> int:
    """The card's time left ("4:53", ticked by the page's own script), in seconds."""
    try:
        handle = page.wait_for_function(
            """() => {
                 const el = document.querySelector('#reservation-card [data-deadline]');
                 return el && /^\\d+:\\d\\d$/.test(el.textContent) ? el.textContent : false; }""",
            timeout=timeout_s * 1000,
            polling=50,
        )
    except PlaywrightTimeout:
        raise AssertionError(f"the card shows no time left{describe(page)}") from None
    minutes, seconds = str(handle.json_value()).split(":")
    return int(minutes) * 60 + int(seconds)


def settle_and_snap(page: Page, directory: Path, name: str) -> Path:
    """A screenshot once toasts have finished fading in."""
    page.wait_for_timeout(800)
    return snap(page, directory, name)


def no_traceback(page: Page) -> None:
    content = page.content()
    assert "Traceback" not in content, "the page shows a Python traceback"
    assert 'File "' not in content, "the page shows a Python stack frame"


# --------------------------------------------------------------------------------------------------------------
# The owner's console
# --------------------------------------------------------------------------------------------------------------

_TABLE_JS = """
(id) => {
  const tables = document.querySelectorAll(`#${id} table`);  // first a one-row copy Gradio measures with
  const table = tables[tables.length - 1];
  if (!table) return null;
  const text = (cells) => [...cells].map((cell) => cell.innerText.trim());
  return { head: text(table.querySelectorAll('thead th')), rows: [...table.querySelectorAll('tbody tr')]
    .map((row) => text(row.querySelectorAll('td'))).filter((row) => row.some((cell) => cell)) };
}
"""


def table(page: Page, elem_id: str) -> list[dict[str, str]]:
    """A console table as one dict per row, keyed by the column titles ("お名前 / Name", ...)."""
    shown = page.evaluate(_TABLE_JS, elem_id)
    if not shown:
        return []
    return [dict(zip(shown["head"], row, strict=False)) for row in shown["rows"]]


def open_console(page: Page, password: str | None) -> None:
    """Open the owner's tab and, given a password, sign in with it."""
    page.get_by_role("tab", name="管理 / Owner").click()
    if password is not None:
        page.locator("#owner-password textarea, #owner-password input").first.fill(password)
        page.click("#owner-sign-in")


def wait_for_rows(
    page: Page, elem_id: str, matches: Callable[[list[dict[str, str]]], bool], what: str, timeout_s: float = 20.0
) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = table(page, elem_id)
        if matches(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"#{elem_id} never showed {what}; it shows {json.dumps(rows, ensure_ascii=False)}")
        page.wait_for_timeout(200)


def select_booking(page: Page, name: str, booking_id: str) -> None:
    """Pick a booking in the console's table by its guest's name, and wait for its number in the form."""
    page.locator("#owner-bookings").get_by_text(name, exact=True).last.click()  # the table on top
    page.wait_for_function(
        "(id) => document.querySelector('#owner-booking-id textarea, #owner-booking-id input')?.value === id",
        arg=booking_id,
        timeout=10_000,
    )
    # Gradio shows an event's outputs a moment before its own state holds them: a value typed at once was sent as
    # the one just shown (the move test moved a booking to its own table, in ~1 run of 20). A person never types
    # that fast; the test waits as long as one would.
    page.wait_for_timeout(300)


def show_bookings_from(page: Page, day: str) -> None:
    """Set the console's first day and apply it."""
    field = page.locator("#owner-day textarea, #owner-day input").first
    field.fill(day)
    field.press("Enter")
