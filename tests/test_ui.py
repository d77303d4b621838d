"""The card and transcript a person sees, rendered from a call view."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from components.call.state import CallState, CallView, LineView, TurnView
from components.restaurant.config import load_config
from components.web.render import card_html, chat_messages
from components.web.takeaway import conversation_files


def field(html: str, name: str) -> tuple[str, str]:
    match = re.search(rf'<span class="value" data-field="{name}" data-state="(\w+)"[^>]*>(.*?)</span>', html)
    assert match, f"no {name} field in {html}"
    return match.group(1), match.group(2)


def snapshot(**overrides) -> dict:
    base = {
        "status": "collecting",
        "reservation": {"guest_name": None, "date": None, "time": None, "party_size": None, "requests": None},
        "missing": ["guest_name", "date", "time", "party_size"],
        "problems": [],
        "booking_id": None,
        "alternatives": [],
    }
    base.update(overrides)
    return base


def test_missing_fields_are_marked_and_filled_ones_hold_the_normalised_value() -> None:
    state = CallState(language="ja")
    state.reservation = snapshot(
        reservation={"guest_name": "山田", "date": "2026-12-04", "time": "19:00", "party_size": None, "requests": None}
    )
    html = card_html(state.view(), "AI-SHIFT", "ja")
    assert field(html, "guest_name") == ("filled", "山田")
    assert field(html, "date") == ("filled", "2026-12-04")
    assert "(金)" in html  # the weekday helps the caller check "next Friday"
    assert field(html, "party_size") == ("missing", "")
    assert field(html, "requests") == ("empty", "")
    assert 'data-status="collecting"' in html


def test_problems_in_the_chosen_language_and_the_booking_id_once_confirmed() -> None:
    problem = {"field": "party_size", "code": "party_too_large", "message": "We seat at most 4 guests."}
    html = card_html(CallView(reservation=snapshot(problems=[problem])), "AI-SHIFT", "en")
    assert '<li data-code="party_too_large" data-problem-field="party_size">We seat at most 4 guests.</li>' in html
    assert "Taking details" in html

    done = snapshot(status="confirmed", booking_id="AS-7K3Q")
    html = card_html(CallView(reservation=done), "AI-SHIFT", "en")
    assert '<span class="badge" data-status="confirmed">Confirmed</span>' in html
    assert 'data-booking-id="AS-7K3Q"' in html


def test_what_callers_say_cannot_inject_markup() -> None:
    evil = '<img src=x onerror="alert(1)">'
    html = card_html(
        CallView(reservation=snapshot(reservation={"guest_name": evil, "requests": evil})), "<b>Bistro</b>", "en"
    )
    assert "<img" not in html and "<b>Bistro" not in html
    assert "&lt;img" in html


def test_the_transcript_keeps_conversation_order_and_marks_notices() -> None:
    state = CallState(language="en")
    state.agent_delta("a1", "Hello, ")
    state.agent_delta("a1", "AI-SHIFT.")
    state.user_pending("u1")  # the caller spoke; the transcription comes later
    state.agent_delta("a2", "Which date?")
    state.user_said("u1", "Table for two.")
    state.agent_done("a1", "Hello, AI-SHIFT.")
    state.system("Reconnecting…")
    state.agent_cut("a2", 0.5)
    messages = chat_messages(state.view())
    assert messages == [
        {"role": "assistant", "content": "Hello, AI-SHIFT."},
        {"role": "user", "content": "Table for two."},
        {"role": "assistant", "content": "Which… (interrupted)"},
        {"role": "assistant", "content": "ℹ️ Reconnecting…"},
    ]


def test_the_idle_card_invites_a_call_and_a_live_one_shows_time_and_figures() -> None:
    assert "Press record" in card_html(None, "AI-SHIFT", "en")
    state = CallState(language="en", deadline=2_000_000_000.0)
    state.reservation = snapshot()
    state.turns = []
    view = state.view()
    view.turns = [TurnView(latency_ms=640, total_tokens=1200)]
    html = card_html(view, "AI-SHIFT", "en")
    assert 'data-deadline="2000000000"' in html
    assert "640 ms" in html and "1,200 tokens" in html


def test_a_pipeline_turn_shows_each_stage_of_its_response_time() -> None:
    state = CallState(language="en", deadline=2_000_000_000.0)
    state.reservation = snapshot()
    view = state.view()
    pipeline_turn = {"latency_ms": 900, "transcript_ms": 210, "first_token_ms": 560, "first_audio_ms": 740}
    view.turns = [TurnView(**pipeline_turn)]
    html = card_html(view, "AI-SHIFT", "en")
    assert "Response 900 ms" in html
    assert '<span class="stages" data-stages="210,560,740">STT 210 · LLM 350 · TTS 180 ms</span>' in html
    assert "認識 210 · 生成 350 · 合成 180 ms" in card_html(view, "AI-SHIFT", "ja")

    view.turns = [TurnView(latency_ms=640)]  # the Realtime engine: one service, no stages
    assert "stages" not in card_html(view, "AI-SHIFT", "en")


def test_a_looked_up_booking_is_marked_as_a_change_and_a_cancelled_one_is_struck_out() -> None:
    found = snapshot(mode="change", changing="AS-7K3Q", status="ready")
    html = card_html(CallView(reservation=found), "AI-SHIFT", "en")
    assert 'Changing booking <strong data-changing="AS-7K3Q">AS-7K3Q</strong>' in html

    saved = snapshot(mode="change", changing="AS-7K3Q", status="confirmed", booking_id="AS-7K3Q")
    html = card_html(CallView(reservation=saved), "AI-SHIFT", "ja")
    assert "data-changing" not in html and '変更を保存しました <strong data-booking-id="AS-7K3Q">' in html

    gone = snapshot(mode="change", changing="AS-7K3Q", status="cancelled", booking_id="AS-7K3Q")
    html = card_html(CallView(reservation=gone), "AI-SHIFT", "en")
    assert '<span class="badge" data-status="cancelled">Cancelled</span>' in html
    assert 'data-outcome="cancelled">Cancelled booking <strong' in html


def test_a_phone_number_shows_masked_only_once_given_and_a_callback_is_promised() -> None:
    without = card_html(CallView(reservation=snapshot()), "AI-SHIFT", "en")
    assert 'data-field="phone"' not in without
    given = snapshot(reservation={**snapshot()["reservation"], "phone": "••••••••5678"}, callback_requested=True)
    html = card_html(CallView(reservation=given), "AI-SHIFT", "en")
    assert field(html, "phone") == ("filled", "••••••••5678")
    assert '<p class="callback" data-callback="requested">The staff will call you back.</p>' in html


def test_a_large_party_sent_to_the_owner_and_a_waitlist_place_say_so_and_are_not_bookings() -> None:
    sent = card_html(CallView(reservation=snapshot(status="requested", owner_request=True)), "AI-SHIFT", "en")
    assert 'data-status="requested">Sent to the owner<' in sent
    assert "The owner will call you back to arrange your table." in sent and "data-booking-id" not in sent
    waiting = card_html(CallView(reservation=snapshot(waitlisted="2026-04-21 19:00")), "AI-SHIFT", "ja")
    assert 'data-waitlisted="2026-04-21 19:00"' in waiting and "2026-04-21 19:00のキャンセル待ち" in waiting
    assert "data-booking-id" not in waiting


def test_a_freshly_drawn_card_already_shows_the_time_left() -> None:
    html = card_html(CallView(reservation=snapshot(), deadline=time.time() + 125.2), "AI-SHIFT", "en")
    assert re.search(r'data-deadline="\d+">2:0[45]</span>', html), html


def test_the_conversation_record_adds_up_to_its_total_with_the_turns_that_got_no_answer() -> None:
    """A mumble the agent did not answer still cost its transcription: the record shows it beside the responses."""
    view = CallView(
        language="en",
        transcript=[LineView(role="user", text="Two people.", status="final")],
        turns=[TurnView(latency_ms=800, total_tokens=120, cost_usd=0.0125)],
        other_cost_usd=0.0003,
    )
    files = conversation_files(view, load_config())
    assert files is not None
    markdown = Path(files[0]).read_text(encoding="utf-8")
    record = json.loads(Path(files[1]).read_text(encoding="utf-8"))
    assert record["other_cost_usd"] == 0.0003 and record["cost_usd"] == 0.0128
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and line.rstrip().endswith(" |")]
    costs = [float(row.rstrip(" |").rsplit("|", 1)[1]) for row in rows if re.search(r"\d\.\d{4} \|$", row)]
    assert costs == [0.0125, 0.0003] and "turns with no answer" in rows[-1]
    assert "Estimated total cost: $0.0128" in markdown
