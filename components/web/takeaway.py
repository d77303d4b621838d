"""What a visitor takes away from a call: the booking as a calendar file (`.ics`) to keep.

Files are written once per booking version into a private temporary folder, from which Gradio serves them to
the page that made the booking only (its own download button); nothing here is listed anywhere.
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Any

from components.restaurant.calendar import bookings_calendar
from components.restaurant.config import RestaurantConfig

_FOLDER = Path(tempfile.mkdtemp(prefix="voicebot-takeaway-"))


def booking_ics(view: dict[str, Any] | None, config: RestaurantConfig) -> str | None:
    """The path of the `.ics` for the booking a call made or changed, or None while there is none."""
    snapshot = (view or {}).get("reservation") or {}
    booking_id = snapshot.get("booking_id")
    if snapshot.get("status") != "confirmed" or not booking_id:
        return None
    booking = {**(snapshot.get("reservation") or {}), "booking_id": booking_id, "status": "confirmed"}
    language = (view or {}).get("language", config.default_language)
    return _written(json.dumps(booking, sort_keys=True, ensure_ascii=False), language, config)


@functools.lru_cache(maxsize=512)
def _written(booking_json: str, language: str, config: RestaurantConfig) -> str:
    booking = json.loads(booking_json)
    folder = Path(tempfile.mkdtemp(dir=_FOLDER))
    path = folder / f"{booking['booking_id']}.ics"
    path.write_bytes(bookings_calendar([booking], config, language))
    return str(path)
