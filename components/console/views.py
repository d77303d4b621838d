"""What the owner's console shows, as plain data: tables of bookings, callbacks and the audit log, the day's
table load, and the exports (CSV for a spreadsheet or a POS, iCalendar for a calendar).

Pure functions of store rows and the config, so the page and the tests read the same thing. Times are shown
on the restaurant's clock; phone numbers are masked unless the owner asks to see them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from components.restaurant.config import RestaurantConfig
from components.restaurant.fields import mask_phone
from components.restaurant.rules import opening
from components.restaurant.seating import stay

BOOKING_COLUMNS = {
    "date": "日付 / Date",
    "time": "時間 / Time",
    "guest_name": "お名前 / Name",
    "party_size": "人数 / Party",
    "tables": "席 / Tables",
    "requests": "ご要望 / Requests",
    "phone": "電話 / Phone",
    "source": "経路 / Source",
    "status": "状態 / Status",
    "booking_id": "予約番号 / Booking",
    "created_at": "受付 / Made",
    "override": "特例 / Override",
}
CALLBACK_COLUMNS = {
    "id": "No.",
    "created_at": "受付 / Received",
    "guest_name": "お名前 / Name",
    "phone": "電話 / Phone",
    "request": "ご用件 / Request",
    "source": "経路 / Source",
    "status": "状態 / Status",
    "done_by": "対応 / Done by",
}
WAITLIST_COLUMNS = {
    "date": "日付 / Date",
    "time": "時間 / Time",
    "party_size": "人数 / Guests",
    "guest_name": "お名前 / Name",
    "phone": "電話 / Phone",
    "status": "状態 / Status",
    "notified_at": "お知らせ / Told",
    "freed_by": "空いた予約 / Freed by",
}
AUDIT_COLUMNS = {
    "at": "日時 / When",
    "actor": "誰が / Who",
    "action": "操作 / What",
    "booking_id": "予約番号 / Booking",
}
CSV_FIELDS = (
    "booking_id",
    "date",
    "time",
    "guest_name",
    "party_size",
    "tables",
    "requests",
    "phone",
    "source",
    "status",
)
CAPACITY_SERIES = "席数 / Tables"


def local_stamp(stamp: str | None, config: RestaurantConfig) -> str:
    """A stored UTC time as the restaurant's wall clock, to the minute."""
    if not stamp:
        return ""
    return dt.datetime.fromisoformat(stamp).astimezone(config.tz).strftime("%Y-%m-%d %H:%M")


def bookings_frame(rows: Iterable[Mapping[str, Any]], config: RestaurantConfig, show_phone: bool) -> pd.DataFrame:
    records = [
        {
            **{key: row.get(key) for key in BOOKING_COLUMNS},
            "phone": (row.get("phone") or "") if show_phone else (mask_phone(row.get("phone")) or ""),
            "requests": row.get("requests") or "",
            "tables": (row.get("tables") or "") + (" 📌" if row.get("tables_pinned") else ""),
            "override": row.get("override") or "",
            "created_at": local_stamp(row.get("created_at"), config),
        }
        for row in rows
    ]
    return pd.DataFrame(records, columns=list(BOOKING_COLUMNS)).rename(columns=BOOKING_COLUMNS)


def callbacks_frame(rows: Iterable[Mapping[str, Any]], config: RestaurantConfig, show_phone: bool) -> pd.DataFrame:
    records = [
        {
            **{key: row.get(key) or "" for key in CALLBACK_COLUMNS},
            "created_at": local_stamp(row["created_at"], config),
            "phone": row["phone"] if show_phone else mask_phone(row["phone"]),
        }
        for row in rows
    ]
    return pd.DataFrame(records, columns=list(CALLBACK_COLUMNS)).rename(columns=CALLBACK_COLUMNS)


def waitlist_frame(
    rows: Iterable[Mapping[str, Any]], config: RestaurantConfig, show_phone: bool, now: dt.datetime | None = None
) -> pd.DataFrame:
    """The waitlist; an entry still waiting when its slot has begun is shown as expired (it can no longer be
    offered a table)."""
    local = (now or dt.datetime.now(dt.UTC)).astimezone(config.tz).replace(tzinfo=None)
    records = [
        {
            **{key: row.get(key) or "" for key in WAITLIST_COLUMNS},
            "status": "expired" if _expired(row, local) else row.get("status") or "",
            "notified_at": local_stamp(row["notified_at"], config) if row.get("notified_at") else "",
            "phone": row["phone"] if show_phone else mask_phone(row["phone"]),
        }
        for row in rows
    ]
    return pd.DataFrame(records, columns=list(WAITLIST_COLUMNS)).rename(columns=WAITLIST_COLUMNS)


def _expired(row: Mapping[str, Any], local_now: dt.datetime) -> bool:
    return row.get("status") == "waiting" and dt.datetime.fromisoformat(f"{row['date']}T{row['time']}") <= local_now


def audit_frame(rows: Iterable[Mapping[str, Any]], config: RestaurantConfig) -> pd.DataFrame:
    records = [
        {
            **{key: row.get(key) or "" for key in AUDIT_COLUMNS},
            "at": local_stamp(row["at"], config),
            "detail": _detail(row.get("detail")),
        }
        for row in rows
    ]
    columns = {**AUDIT_COLUMNS, "detail": "内容 / Detail"}
    return pd.DataFrame(records, columns=list(columns)).rename(columns=columns)


def _detail(detail: Any) -> str:
    """An audit entry's detail in one line: `field: old → new` for a change, `field: value` otherwise."""
    if not isinstance(detail, dict):
        return ""
    parts = []
    for key, value in detail.items():
        if key == "phone":
            value = [mask_phone(v) for v in value] if isinstance(value, list) else mask_phone(value)
        text = f"{value[0]} → {value[1]}" if isinstance(value, list) and len(value) == 2 else value
        if text not in (None, ""):
            parts.append(f"{key}: {text}")
    return ", ".join(parts)


def load_frame(rows: Iterable[Mapping[str, Any]], day: dt.date, config: RestaurantConfig) -> pd.DataFrame:
    """Tables in use in each area at each start step of `day`'s opening hours (tables pushed together count each),
    next to the restaurant's tables (long format, one row per step and series, for a Gradio line plot). A booking
    not seated yet counts in the first area. Empty on a closed day."""
    hours = opening(day, config)
    if hours is None:
        return pd.DataFrame({"time": [], "series": [], "tables": []})
    area_of = {table.id: area.id for area in config.areas for table in area.tables}
    held = []  # (area, start, end, tables)
    for row in rows:
        if row.get("status", "confirmed") != "confirmed":
            continue
        names = [name for name in (row.get("tables") or "").split("+") if name in area_of]
        area = area_of[names[0]] if names else config.areas[0].id
        start = dt.datetime.fromisoformat(f"{row['date']}T{row['time']}")
        held.append((area, start, start + stay(config, area), max(1, len(names))))
    series = {area.id: f"{area.name.ja}（使用中） / {area.name.en} in use" for area in config.areas}
    moment, close = dt.datetime.combine(day, hours.open), dt.datetime.combine(day, hours.close)
    records = []
    while moment <= close:
        for area in config.areas:
            in_use = sum(count for where, start, end, count in held if where == area.id and start <= moment < end)
            records.append({"time": moment, "series": series[area.id], "tables": in_use})
        records.append({"time": moment, "series": CAPACITY_SERIES, "tables": config.tables})
        moment += dt.timedelta(minutes=config.step_minutes)
    return pd.DataFrame(records)


def bookings_csv(rows: Iterable[Mapping[str, Any]], show_phone: bool) -> bytes:
    """The bookings as CSV, UTF-8 with a byte-order mark so that Excel opens Japanese names correctly."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        phone = row.get("phone") if show_phone else mask_phone(row.get("phone"))
        cells = {**{key: row.get(key) for key in CSV_FIELDS}, "phone": phone or ""}
        writer.writerow({key: _inert(value) for key, value in cells.items()})
    return out.getvalue().encode("utf-8-sig")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _inert(value: Any) -> Any:
    """A guest's text as a spreadsheet shows it, never runs it: a cell that would start a formula (`=HYPERLINK(…)`)
    gets a leading apostrophe, as OWASP's CSV-injection guidance says. Phone numbers (`+81…`) keep their plus
    sign behind the apostrophe, so they still read right."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
