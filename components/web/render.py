"""What a call looks like on screen: the transcript as Chatbot messages and the reservation card as HTML.

Pure functions of the call's view (`call.state.CallView`), so the browser path, a dashboard fed by
server-sent events and the tests all render the same thing. The card's markup is a contract with the
tests and the stylesheet: every field sits in an element with `data-field` holding the normalised value,
and the status badge carries `data-status`.
"""

from __future__ import annotations

import datetime as dt
import time
from html import escape
from typing import Any

from components.call.state import CallView, TurnView

FIELDS = ("guest_name", "date", "time", "party_size", "seating", "requests", "phone")
OPTIONAL = ("seating", "requests", "phone")
ASKED_FOR = ("seating", "phone")  # rows shown only once the guest gave them

LABELS = {
    "ja": {
        "title": "ご予約内容",
        "guest_name": "お名前",
        "date": "日付",
        "time": "時間",
        "party_size": "人数",
        "requests": "ご要望",
        "phone": "お電話番号",
        "seating": "お席",
        "missing": "未入力",
        "none": "なし",
        "collecting": "受付中",
        "ready": "確認待ち",
        "confirmed": "予約確定",
        "cancelled": "取り消し済み",
        "requested": "店主へご依頼済み",
        "owner_request": "店主から折り返しご連絡し、お席をご相談します。",
        "waitlisted": "{slot}のキャンセル待ちに登録しました。お席が空きしだいご連絡します（ご予約ではありません）。",
        "changing": "ご予約の変更",
        "changed": "変更を保存しました",
        "cancelled_booking": "取り消したご予約",
        "callback": "スタッフから折り返しご連絡します。",
        "booking_id": "予約番号",
        "time_left": "残り時間",
        "latency": "応答",
        "stages": ("認識", "生成", "合成"),
        "tokens": "トークン",
        "cost": "推定費用",
        "guests": "名",
        "weekdays": "月火水木金土日",
        "idle": "録音ボタンを押して話しかけると、ここに予約内容が表示されます。",
        "alternatives": "空いている時間",
    },
    "en": {
        "title": "Your booking",
        "guest_name": "Name",
        "date": "Date",
        "time": "Time",
        "party_size": "Guests",
        "requests": "Requests",
        "phone": "Phone",
        "seating": "Seating",
        "missing": "not yet given",
        "none": "none",
        "collecting": "Taking details",
        "ready": "Ready to confirm",
        "confirmed": "Confirmed",
        "cancelled": "Cancelled",
        "requested": "Sent to the owner",
        "owner_request": "The owner will call you back to arrange your table.",
        "waitlisted": "On the waitlist for {slot}: we will contact you if a table frees up (this is not a booking).",
        "changing": "Changing booking",
        "changed": "Change saved",
        "cancelled_booking": "Cancelled booking",
        "callback": "The staff will call you back.",
        "booking_id": "Booking number",
        "time_left": "Time left",
        "latency": "Response",
        "stages": ("STT", "LLM", "TTS"),
        "tokens": "tokens",
        "cost": "Est. cost",
        "guests": "guests",
        "weekdays": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
        "idle": "Press record and talk: your booking appears here as the call goes on.",
        "alternatives": "Free times",
    },
}

ROLES = {"user": "user", "assistant": "assistant", "system": "assistant"}


def chat_messages(view: CallView) -> list[dict[str, str]]:
    """Transcript lines as `gr.Chatbot(type="messages")` messages; product notices stand out with a marker."""
    messages = []
    for line in view.transcript:
        text = line.text if line.role != "system" else f"ℹ️ {line.text}"
        messages.append({"role": ROLES[line.role], "content": text})
    return messages


def _weekday(value: str, words: dict[str, Any]) -> str:
    try:
        return str(words["weekdays"][dt.date.fromisoformat(value).weekday()])
    except ValueError:
        return ""


def _field_row(field: str, value: Any, words: dict[str, Any]) -> str:
    missing = value is None or value == ""
    optional = field in OPTIONAL
    shown = "" if missing else escape(str(value))
    extra = ""
    if not missing and field == "date":
        extra = f'<span class="hint">({escape(_weekday(str(value), words))})</span>'
    elif not missing and field == "party_size":
        extra = f'<span class="hint">{escape(words["guests"])}</span>'
    placeholder = words["none"] if optional else words["missing"]
    state = "missing" if missing and not optional else ("empty" if missing else "filled")
    return (
        f'<div class="row {state}"><dt>{escape(words[field])}</dt>'
        f'<dd><span class="value" data-field="{field}" data-state="{state}" '
        f'data-placeholder="{escape(placeholder)}">{shown}</span>{extra}</dd></div>'
    )


def _stages(turn: TurnView, words: dict[str, Any]) -> str:
    """The pipeline engine's split of a response time: speech-to-text, the model's first word, the first audio.

    The turn holds times from the end of the caller's turn; shown as each stage's own share, so an owner sees
    at a glance which service to tune or swap. Empty for the Realtime engine (one service, no stages)."""
    marks = [turn.transcript_ms, turn.first_token_ms, turn.first_audio_ms]
    if marks[0] is None or marks[1] is None or marks[2] is None:
        return ""
    shares = [marks[0], marks[1] - marks[0], marks[2] - marks[1]]
    parts = " · ".join(f"{escape(label)} {max(0, share)}" for label, share in zip(words["stages"], shares, strict=True))
    return f'<span class="stages" data-stages="{",".join(str(mark) for mark in marks)}">{parts} ms</span>'


def _time_left(deadline: float) -> str:
    """The countdown as the page's script writes it ("4:53"), so a freshly drawn card never shows a blank."""
    left = max(0, round(deadline - time.time()))
    return f"{left // 60}:{left % 60:02d}"


def card_html(view: CallView | None, restaurant_name: str, language: str = "ja") -> str:
    """The reservation summary card for a call view (or the idle card before a call)."""
    words = LABELS["en" if language == "en" else "ja"]
    snapshot = view.reservation if view is not None else {}
    status = snapshot.get("status", "collecting")
    reservation = snapshot.get("reservation") or {}
    shown = [field for field in FIELDS if field not in ASKED_FOR or reservation.get(field)]
    rows = "".join(_field_row(field, reservation.get(field), words) for field in shown)
    head = (
        f'<div class="card-head"><span class="restaurant">{escape(restaurant_name)}</span>'
        f'<span class="title">{escape(words["title"])}</span>'
        f'<span class="badge" data-status="{escape(status)}">{escape(words[status])}</span></div>'
    )
    parts = [head]
    changing = snapshot.get("changing")
    if changing and status not in ("confirmed", "cancelled"):
        parts.append(
            f'<div class="changing">{escape(words["changing"])} <strong data-changing="{escape(changing)}">'
            f"{escape(changing)}</strong></div>"
        )
    parts.append(f"<dl>{rows}</dl>")
    if snapshot.get("booking_id"):
        booking_id = escape(snapshot["booking_id"])
        title = {"cancelled": "cancelled_booking"}.get(status, "changed" if changing else "booking_id")
        parts.append(
            f'<div class="booking-id" data-outcome="{"cancelled" if status == "cancelled" else "booked"}">'
            f'{escape(words[title])} <strong data-booking-id="{booking_id}">{booking_id}</strong></div>'
        )
    if snapshot.get("waitlisted"):
        waiting = words["waitlisted"].format(slot=snapshot["waitlisted"])
        parts.append(f'<p class="callback" data-waitlisted="{escape(snapshot["waitlisted"])}">{escape(waiting)}</p>')
    if snapshot.get("owner_request"):
        parts.append(f'<p class="callback" data-callback="owner">{escape(words["owner_request"])}</p>')
    elif snapshot.get("callback_requested"):
        parts.append(f'<p class="callback" data-callback="requested">{escape(words["callback"])}</p>')
    problems = snapshot.get("problems") or []
    if problems:
        items = "".join(
            f'<li data-code="{escape(p.get("code") or "")}" data-problem-field="{escape(p.get("field") or "")}">'
            f"{escape(p.get('message') or '')}</li>"
            for p in problems
        )
        parts.append(f'<ul class="problems">{items}</ul>')
    alternatives = snapshot.get("alternatives") or []
    if alternatives and status not in ("confirmed", "cancelled"):
        times = " · ".join(escape(f"{a.get('date', '')} {a.get('time', '')}".strip()) for a in alternatives[:4])
        parts.append(f'<p class="alternatives">{escape(words["alternatives"])}: {times}</p>')
    if view is None:
        parts.append(f'<p class="idle">{escape(words["idle"])}</p>')
        view = CallView()
    footer = []
    if view.deadline and not view.ended:
        footer.append(
            f'<span class="time-left">{escape(words["time_left"])} '
            f'<span data-deadline="{int(view.deadline)}">{_time_left(view.deadline)}</span></span>'
        )
    turns = [turn for turn in view.turns if turn.latency_ms is not None]
    if turns:
        footer.append(f'<span class="latency">{escape(words["latency"])} {turns[-1].latency_ms} ms</span>')
        if stages := _stages(turns[-1], words):
            footer.append(stages)
    tokens = sum(turn.total_tokens or 0 for turn in view.turns)
    if tokens:
        footer.append(f'<span class="tokens">{tokens:,} {escape(words["tokens"])}</span>')
    cost = view.cost_usd()
    if cost:
        footer.append(f'<span class="cost" data-cost="{cost:.6f}">{escape(words["cost"])} ${cost:.4f}</span>')
    if footer:
        parts.append(f'<div class="card-foot">{"".join(footer)}</div>')
    return f'<div class="reservation-card" data-status="{escape(status)}" lang="{language}">{"".join(parts)}</div>'
