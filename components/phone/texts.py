"""Text messages to phone callers (Twilio Messaging, only when `TWILIO_SMS_FROM` is set).

* After a phone call that booked, changed or cancelled, the caller's line gets one text per booking, in the
  call's language: the booking number, date, time and party, and how to change it. No name, no requests, no
  phone number: only what the guest needs to find the booking again.
* With `SMS_REMINDER_HOUR` set, every replica runs the reminder round each minute; from that hour on the day
  before, each phone booking for tomorrow gets one reminder. The store's `TextLog.claim` decides which replica
  sends it, so it goes exactly once.
* The same round texts each waitlisted guest whose slot a cancellation or change freed (the console marks them
  *notified*): a table is free, call to book it. It is not a booking, and the text says so.
* A number that replied STOP (Twilio's inbound webhook `/telephone/sms`, or Twilio's own error 21610 for an
  unsubscribed number) gets no more texts until it replies START.

Sending never holds up a call: texts go after the call has ended, from a worker thread, and a failure is logged
(by Twilio's error code, without the number) and never retried, so nobody gets the same text twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from components.restaurant.book import CANCELLED, CONFIRMED, StoreUnavailable
from components.restaurant.config import RestaurantConfig
from components.settings import TextSettings

log = logging.getLogger(__name__)

UNSUBSCRIBED = 21610  # Twilio: the recipient replied STOP to this sender
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "停止", "ストップ", "配信停止"}
START_WORDS = {"START", "YES", "UNSTOP", "再開"}
_WEEKDAYS = {"ja": "月火水木金土日", "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")}
TEXTS = {
    "ja": {
        "booked": "【{name}】ご予約を承りました。",
        "changed": "【{name}】ご予約を変更しました。",
        "cancelled": "【{name}】ご予約を取り消しました。",
        "reminder": "【{name}】明日のご来店をお待ちしております。",
        "details": "予約番号 {booking_id}：{month}月{day}日({weekday}) {time}、{party}名様。",
        "how": "変更・取消はお電話で予約番号をお伝えください。配信停止はSTOPと返信。",
        "table_free": "【{name}】キャンセル待ちの{month}月{day}日({weekday}) {time}、{party}名様のお席が空きました。"
        "ご予約はお早めにお電話ください（まだご予約ではありません）。",
        "stopped": "【{name}】今後SMSはお送りしません。再開はSTARTと返信してください。",
        "started": "【{name}】SMSの配信を再開しました。",
    },
    "en": {
        "booked": "{name}: your booking is confirmed.",
        "changed": "{name}: your booking has been changed.",
        "cancelled": "{name}: your booking has been cancelled.",
        "reminder": "{name}: we look forward to seeing you tomorrow.",
        "details": "Booking {booking_id}: {weekday} {day} {month_name} {time}, party of {party}.",
        "how": "To change or cancel, call us with the booking number. Reply STOP to opt out.",
        "table_free": "{name}: a table is free on {weekday} {day} {month_name} at {time} for {party}, the time you "
        "waited for. Call us soon to book it (it is not booked yet).",
        "stopped": "{name}: you will get no more texts from us. Reply START to get them again.",
        "started": "{name}: texts are on again.",
    },
}


def text(kind: str, row: dict[str, Any], language: str, config: RestaurantConfig) -> str:
    """The message about a booking `row` (booked, changed, cancelled, reminder) in `language`."""
    language = "en" if language == "en" else "ja"
    words = TEXTS[language]
    details = words["details"].format(booking_id=row["booking_id"], **_slot(row, language))
    how = "" if kind == CANCELLED else words["how"]
    parts = (words[kind].format(name=config.name(language)), details, how)
    return ("" if language == "ja" else " ").join(part for part in parts if part)


def table_free(entry: dict[str, Any], config: RestaurantConfig) -> str:
    """The message to a waitlisted guest whose slot came free, in the language they waited in."""
    language = "en" if entry["language"] == "en" else "ja"
    return TEXTS[language]["table_free"].format(name=config.name(language), **_slot(entry, language))


def _slot(row: dict[str, Any], language: str) -> dict[str, Any]:
    day = dt.date.fromisoformat(row["date"])
    weekday = _WEEKDAYS[language][day.weekday()]
    return {"month": day.month, "month_name": day.strftime("%b"), "day": day.day, "weekday": weekday,
            "time": row["time"], "party": row["party_size"]}  # fmt: skip


class TextRecords(Protocol):
    """The store's record of texts (`store.texts.TextLog`)."""

    def claim(self, booking_id: str, kind: str, now: dt.datetime) -> bool: ...
    def settle(self, booking_id: str, kind: str, status: str) -> None: ...
    def opt_out(self, number: str, now: dt.datetime) -> None: ...
    def opt_in(self, number: str) -> None: ...
    def opted_out(self, number: str) -> bool: ...


class Bookings(Protocol):
    """What the texts read of the booking store."""

    texts: TextRecords

    waitlist: Any  # `store.waitlist.WaitList`: its `listed`

    def get(self, booking_id: str) -> dict[str, Any] | None: ...
    def bookings_from(self, day: dt.date, *, until: dt.date, status: str) -> list[dict[str, Any]]: ...


class TextMessages:
    """Sends the texts about phone bookings from the restaurant's Twilio number."""

    def __init__(
        self, settings: TextSettings, store: Bookings, config: RestaurantConfig, client: Client | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.config = config
        self.client = client or Client(settings.account_sid, settings.auth_token)

    def after_call(self, booking_ids: Iterable[str], to: str, language: str, since: dt.datetime) -> int:
        """Tell the caller's line how each booking the call wrote stands now; how many texts went."""
        sent = 0
        for booking_id in sorted(booking_ids):
            row = self.store.get(booking_id)
            if row is None:
                continue
            if row["status"] == CANCELLED:
                kind = key = CANCELLED
            elif row["created_at"] >= since.astimezone(dt.UTC).isoformat(timespec="seconds"):
                kind = key = "booked"
            else:
                kind, key = "changed", f"changed@{row.get('updated_at')}"
            sent += self._send(booking_id, key, to, text(kind, row, language, self.config))
        return sent

    def reminders(self, now: dt.datetime) -> int:
        """The reminder round: from `reminder_hour` on, tomorrow's phone bookings not yet reminded; how many went."""
        local = now.astimezone(self.config.tz)
        if self.settings.reminder_hour is None or local.hour < self.settings.reminder_hour:
            return 0
        tomorrow = local.date() + dt.timedelta(days=1)
        sent = 0
        for row in self.store.bookings_from(tomorrow, until=tomorrow, status=CONFIRMED):
            if row["source"] == "phone" and row["phone"]:
                body = text("reminder", row, row["language"], self.config)
                sent += self._send(row["booking_id"], f"reminder@{row['date']}", row["phone"], body)
        return sent

    def tables_freed(self, now: dt.datetime) -> int:
        """Text each waitlisted guest who was told a table came free (once each); how many texts went."""
        sent = 0
        for entry in self.store.waitlist.listed(now.astimezone(self.config.tz).date()):
            if entry["status"] == "notified" and entry["phone"]:
                sent += self._send(f"WL-{entry['id']}", "table_free", entry["phone"], table_free(entry, self.config))
        return sent

    def rounds(self, now: dt.datetime) -> int:
        """What the background round sends: reminders, and the waitlist's good news."""
        return self.reminders(now) + self.tables_freed(now)

    def reply(self, number: str, body: str, now: dt.datetime) -> str | None:
        """An inbound text from `number`: STOP and START are honoured; the answer to send back, if any."""
        word, language = body.strip().upper(), self.config.default_language
        if word in STOP_WORDS:
            self.store.texts.opt_out(number, now)
            return TEXTS[language]["stopped"].format(name=self.config.name(language))
        if word in START_WORDS:
            self.store.texts.opt_in(number)
            return TEXTS[language]["started"].format(name=self.config.name(language))
        return None

    def _send(self, booking_id: str, key: str, to: str, body: str) -> int:
        now = dt.datetime.now(dt.UTC)
        try:
            if self.store.texts.opted_out(to) or not self.store.texts.claim(booking_id, key, now):
                return 0
        except StoreUnavailable:
            log.warning("A text about a booking was not sent: the store is unavailable.")
            return 0
        sender = {"messaging_service_sid" if self.settings.sender.startswith("MG") else "from_": self.settings.sender}
        try:
            self.client.messages.create(to=to, body=body, **sender)
        except TwilioRestException as refused:
            log.warning("A text about a booking was not sent: Twilio error %s.", refused.code)
            if refused.code == UNSUBSCRIBED:
                self.store.texts.opt_out(to, now)
            self.store.texts.settle(booking_id, key, "opted_out" if refused.code == UNSUBSCRIBED else "failed")
            return 0
        except TwilioException:
            log.warning("A text about a booking was not sent: Twilio could not be reached.")
            self.store.texts.settle(booking_id, key, "failed")
            return 0
        self.store.texts.settle(booking_id, key, "sent")
        return 1
