"""Why a booking or a tool call is refused: stable codes, and a short message for each in both languages.

The model, the card and the tests all read the code; the message is rendered late, in the call's language,
so a caller who switches language mid-call gets the next messages in the new one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import StrEnum

from components.restaurant.config import Localized


class Code(StrEnum):
    CLOSED_DAY = "closed_day"
    OUTSIDE_HOURS = "outside_hours"
    PARTY_TOO_LARGE = "party_too_large"
    PARTY_TOO_SMALL = "party_too_small"
    IN_PAST = "in_past"
    TOO_FAR_AHEAD = "too_far_ahead"
    INVALID_DATE = "invalid_date"
    INVALID_TIME = "invalid_time"
    NOT_ON_STEP = "not_on_step"
    INVALID_PARTY_SIZE = "invalid_party_size"
    INVALID_NAME = "invalid_name"
    INVALID_REQUESTS = "invalid_requests"
    INVALID_PHONE = "invalid_phone"
    FULLY_BOOKED = "fully_booked"
    MISSING_FIELD = "missing_field"
    INVALID_ARGUMENTS = "invalid_arguments"
    UNKNOWN_FIELD = "unknown_field"
    ALREADY_CONFIRMED = "already_confirmed"
    ALREADY_CANCELLED = "already_cancelled"
    NOT_FOUND = "not_found"
    LOOKUP_LOCKED = "lookup_locked"
    NO_BOOKING_FOUND = "no_booking_found"
    NOT_IN_FACTS = "not_in_facts"
    STORE_UNAVAILABLE = "store_unavailable"
    NOT_READY = "not_ready"
    UNKNOWN_TOOL = "unknown_tool"
    LARGE_PARTY = "large_party"
    NOT_FULL = "not_full"
    TOO_MANY_BOOKINGS = "too_many_bookings"
    TOO_MANY_CALLBACKS = "too_many_callbacks"
    INTERNAL_ERROR = "internal_error"
    UNKNOWN_AREA = "unknown_area"
    AREA_FULL = "area_full"
    TABLE_TAKEN = "table_taken"
    TRANSFER_UNAVAILABLE = "transfer_unavailable"


# Codes meaning "you cannot start at that date/time": these come with nearby bookable alternatives.
SLOT_CODES = frozenset(
    {
        Code.CLOSED_DAY,
        Code.OUTSIDE_HOURS,
        Code.IN_PAST,
        Code.TOO_FAR_AHEAD,
        Code.NOT_ON_STEP,
        Code.FULLY_BOOKED,
        Code.AREA_FULL,
    }
)

_MESSAGES: dict[Code, Localized] = {
    Code.CLOSED_DAY: Localized("{date}は{reason}のため休業日です。", "We are closed on {date} ({reason})."),
    Code.OUTSIDE_HOURS: Localized(
        "{date}のご予約は{open}から{last_seating}までのご来店で承ります（{close}閉店）。",
        "On {date} bookings can start from {open} to {last_seating} (we close at {close}).",
    ),
    Code.PARTY_TOO_LARGE: Localized("ご予約は1組{max}名様までです。", "We seat at most {max} guests per booking."),
    Code.PARTY_TOO_SMALL: Localized("ご予約は{min}名様から承ります。", "A booking is for at least {min} guest(s)."),
    Code.IN_PAST: Localized("{when}はすでに過ぎています。", "{when} has already passed."),
    Code.TOO_FAR_AHEAD: Localized(
        "ご予約は{days}日先の{last_date}まで承ります。", "We take bookings up to {days} days ahead, until {last_date}."
    ),
    Code.INVALID_DATE: Localized(
        "「{value}」は日付として読み取れません。YYYY-MM-DD形式でお願いします。",
        "'{value}' is not a valid date; use YYYY-MM-DD.",
    ),
    Code.INVALID_TIME: Localized(
        "「{value}」は時刻として読み取れません。24時間制のHH:MM形式でお願いします。",
        "'{value}' is not a valid time; use 24-hour HH:MM.",
    ),
    Code.NOT_ON_STEP: Localized(
        "ご来店時刻は{step}分単位で承ります（例: {example}）。",
        "Bookings start on {step}-minute steps (for example {example}).",
    ),
    Code.INVALID_PARTY_SIZE: Localized(
        "「{value}」は人数として読み取れません。数字でお願いします。",
        "'{value}' is not a number of guests; use a whole number.",
    ),
    Code.INVALID_NAME: Localized(
        "お名前を{max}文字以内でお伺いできますか。", "Please give a name of at most {max} characters."
    ),
    Code.INVALID_PHONE: Localized(
        "「{value}」は電話番号として読み取れません。数字でお願いします。", "'{value}' is not a phone number."
    ),
    Code.INVALID_REQUESTS: Localized(
        "ご要望は{max}文字以内の文章でお願いします。", "Requests must be text of at most {max} characters."
    ),
    Code.FULLY_BOOKED: Localized("{date} {time:%H:%M}は満席です。", "We are fully booked at {time:%H:%M} on {date}."),
    Code.UNKNOWN_AREA: Localized(
        "「{value}」というお席はございません。お選びいただけるのは{areas}です。",
        "We have no seating called '{value}'; guests can sit at: {areas}.",
    ),
    Code.TRANSFER_UNAVAILABLE: Localized(
        "ただいまスタッフにおつなぎできません。折り返しのご連絡をお申し付けいただけます。",
        "Nobody from the staff can take the call right now; offer a callback request instead.",
    ),
    Code.TABLE_TAKEN: Localized(
        "{tables}は、そのご予約の時間には使えません（別のご予約があるか、そのようなお席がありません）。",
        "{tables} cannot take that booking (another booking holds it then, or there is no such table).",
    ),
    Code.AREA_FULL: Localized(
        "{date} {time:%H:%M}の{area}は{party}名様のお席が空いていませんが、ほかのお席はご用意できます。",
        "The {area} has no place for {party} at {time:%H:%M} on {date}, but other seating is free.",
    ),
    Code.MISSING_FIELD: Localized("{label}をまだお伺いしていません。", "We still need the {label}."),
    Code.INVALID_ARGUMENTS: Localized(
        "ツールの引数を読み取れませんでした（{detail}）。", "The tool arguments could not be read ({detail})."
    ),
    Code.UNKNOWN_FIELD: Localized(
        "「{name}」は予約の項目ではありません（項目: {fields}）。",
        "'{name}' is not a reservation field (fields: {fields}).",
    ),
    Code.ALREADY_CONFIRMED: Localized(
        "ご予約はすでに確定しています（予約番号 {booking_id}）。変更や取り消しは、このままお申し付けください。",
        "This booking is already confirmed (booking ID {booking_id}); a change or a cancellation can be made on this "
        "call without looking it up.",
    ),
    Code.ALREADY_CANCELLED: Localized(
        "このご予約は取り消し済みです（予約番号 {booking_id}）。",
        "This booking is cancelled (booking ID {booking_id}).",
    ),
    Code.NOT_FOUND: Localized(
        "その予約番号とお名前のご予約は見つかりませんでした。", "No booking was found for that number and name."
    ),
    Code.LOOKUP_LOCKED: Localized(
        "確認に{misses}回失敗したため、この通話ではご予約をお調べできません。スタッフからの折り返しをご提案ください。",
        "After {misses} unsuccessful tries, bookings can no longer be looked up on this call; offer a callback "
        "from the staff.",
    ),
    Code.LARGE_PARTY: Localized(
        "{max}名様を超えるご予約（{large_max}名様まで）は、店主が直接ご相談を承ります。お名前・日時・人数・お電話番号を"
        "お伺いし、内容を読み上げてから confirm_reservation で店主へのご依頼としてお送りします。",
        "Parties of more than {max} (up to {large_max}) are arranged by the owner in person: take the name, date, "
        "time, party size and phone number, read them back, and confirm_reservation sends them to the owner as a "
        "request (it is not a booking yet).",
    ),
    Code.NOT_FULL: Localized(
        "{date} {time:%H:%M}はまだご予約いただけます。キャンセル待ちではなく、そのままご予約ください。",
        "{time:%H:%M} on {date} can still be booked: book it rather than joining the waitlist.",
    ),
    Code.TOO_MANY_BOOKINGS: Localized(
        "お一人様からのご予約は1日{max}件までとさせていただいております。追加のご予約はお店に直接お電話ください。",
        "We take at most {max} new bookings a day from one caller; for more, please call the restaurant directly.",
    ),
    Code.TOO_MANY_CALLBACKS: Localized(
        "折り返しのご依頼はすでに{max}件承っております。スタッフからの連絡をお待ちください。",
        "We already have {max} callback requests from you; the staff will be in touch.",
    ),
    Code.NO_BOOKING_FOUND: Localized(
        "まだご予約を確認していません。先に予約番号とお名前でお調べください。",
        "No booking has been looked up on this call yet; find it by its number and the guest's name first.",
    ),
    Code.NOT_IN_FACTS: Localized(
        "この件はお店の情報にありません。わからないとお伝えし、スタッフからの折り返しをご提案ください。",
        "This is not in the restaurant's information: say you do not know, and offer a callback from the staff.",
    ),
    Code.STORE_UNAVAILABLE: Localized(
        "予約システムにつながらず、保存できませんでした。ご予約は成立していません。少し待ってもう一度お試しください。",
        "The booking system could not be reached, so nothing was saved and nothing was booked. Please try again "
        "in a moment.",
    ),
    Code.NOT_READY: Localized(
        "まだご予約を確定できません。先にほかの問題を解決してください。",
        "The booking cannot be confirmed yet; resolve the other problems first.",
    ),
    Code.UNKNOWN_TOOL: Localized(
        "「{name}」というツールはありません（ツール: {tools}）。", "There is no tool named '{name}' (tools: {tools})."
    ),
    Code.INTERNAL_ERROR: Localized(
        "システムで問題が発生しました。もう一度お試しください。", "Something went wrong on our side; please try again."
    ),
}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One reason a value or a reservation is not acceptable.

    ``params`` fill the message templates; slot problems also carry the refused
    ``date`` (and ``time`` when known) so callers can look for alternatives.
    """

    code: Code
    field: str | None = None
    params: Mapping[str, object] = dataclasses.field(default_factory=dict, hash=False)

    def message(self, language: str) -> str:
        values = {key: text.get(language) if isinstance(text, Localized) else text for key, text in self.params.items()}
        return _MESSAGES[self.code].get(language).format(**values)

    def to_dict(self, language: str) -> dict[str, str | None]:
        return {"field": self.field, "code": self.code.value, "message": self.message(language)}


class FieldError(ValueError):
    """A raw field value that cannot be normalised; carries the problem to report."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.code.value)
        self.problem = problem
