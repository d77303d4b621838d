"""What a visitor takes away from a call: the booking as a calendar file (`.ics`), and once the call is over
the whole conversation (transcript, booking card, per-turn latency and cost) as Markdown and as JSON.

Files are written once per version into the app's download folder (`web.downloads`, cleaned by age and size),
from which Gradio serves them to the page that made the call only (its own download buttons); nothing here is
listed anywhere.
"""

from __future__ import annotations

import json
from typing import Any

from components.call.state import CallView
from components.restaurant.calendar import bookings_calendar
from components.restaurant.config import RestaurantConfig
from components.web.downloads import DOWNLOADS


def booking_ics(view: CallView | None, config: RestaurantConfig) -> str | None:
    """The path of the `.ics` for the booking a call made or changed, or None while there is none."""
    snapshot = view.reservation if view is not None else {}
    booking_id = snapshot.get("booking_id")
    if snapshot.get("status") != "confirmed" or not booking_id or view is None:
        return None
    booking = {**(snapshot.get("reservation") or {}), "booking_id": booking_id, "status": "confirmed"}
    return DOWNLOADS.write(f"{booking_id}.ics", bookings_calendar([booking], config, view.language))


def conversation_files(view: CallView | None, config: RestaurantConfig) -> tuple[str, str] | None:
    """The paths of the call's Markdown and JSON record (None before anything was said)."""
    if view is None or not view.transcript:
        return None
    data = view.model_dump(mode="json")
    record = {
        "restaurant": config.name(view.language),
        "language": view.language,
        "transcript": data["transcript"],
        "reservation": data["reservation"],
        "turns": data["turns"],
        "other_cost_usd": round(view.other_cost_usd, 6),
        "cost_usd": round(view.cost_usd(), 6),
    }
    markdown = DOWNLOADS.write("conversation.md", _markdown(record).encode())
    data = DOWNLOADS.write("conversation.json", json.dumps(record, ensure_ascii=False, indent=2).encode())
    return markdown, data


_SPEAKERS = {"user": "お客様 / Guest", "assistant": "エージェント / Agent", "system": "お知らせ / Notice"}


def _markdown(record: dict[str, Any]) -> str:
    snapshot = record.get("reservation") or {}
    booking = snapshot.get("reservation") or {}
    lines = [f"# {record['restaurant']} — 通話の記録 / Conversation", "", "## 会話 / Transcript", ""]
    for line in record["transcript"]:
        lines.append(f"- **{_SPEAKERS.get(line['role'], line['role'])}**: {line['text']}")
    lines += ["", "## ご予約 / Booking", ""]
    lines += [f"- {field}: {value}" for field, value in booking.items() if value not in (None, "")]
    if snapshot.get("booking_id"):
        lines.append(f"- booking_id: {snapshot['booking_id']} ({snapshot.get('status')})")
    lines += ["", "## 応答ごとの数字 / Per turn", "", "| # | latency ms | tokens | cost USD |", "|---:|---:|---:|---:|"]
    for number, turn in enumerate(record["turns"], 1):
        latency = turn.get("latency_ms") if turn.get("latency_ms") is not None else ""
        lines.append(f"| {number} | {latency} | {turn.get('total_tokens') or ''} | {turn.get('cost_usd') or 0:.4f} |")
    if record["other_cost_usd"]:  # so that the rows and the total add up
        lines.append(f"| – | 応答のない発話など / turns with no answer | | {record['other_cost_usd']:.4f} |")
    lines += ["", f"合計の推定費用 / Estimated total cost: ${record['cost_usd']:.4f}", ""]
    return "\n".join(lines)
