"""The agent's system prompt, in Japanese or English, rendered from the restaurant config.

Hours, limits and closed days are interpolated from the config, never written
out here, so the prompt cannot drift from the rules the tools enforce. The
prompt tells the model what to ask and how to speak; whether a booking is
possible is always left to the tools. Today's date and a two-week calendar in
the restaurant's time zone let the model turn "tomorrow" or "next Friday" into
a date without doing calendar arithmetic itself.
"""

from __future__ import annotations

import datetime as dt

from components.restaurant.config import ClosedPeriod, OpeningHours, RestaurantConfig, language_code
from components.restaurant.fields import format_time
from components.restaurant.rules import closure, is_public_holiday, last_seating, local_now

CALENDAR_DAYS = 14

_WEEKDAYS = {
    "ja": ("月", "火", "水", "木", "金", "土", "日"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def render_instructions(config: RestaurantConfig, language: str, now: dt.datetime | None = None) -> str:
    """System instructions for a call starting at ``now`` (default: the current time) in ``language``."""
    language = language_code(language)
    local = local_now(config, now or dt.datetime.now(dt.UTC))
    render = _japanese if language == "ja" else _english
    return render(config, local)


# ── Japanese ─────────────────────────────────────────────────────────────────


def _ja_day(day: dt.date) -> str:
    return f"{day.month}月{day.day}日"


def _ja_hours(hours: OpeningHours, config: RestaurantConfig) -> str:
    return f"{_span(hours, '〜')}（最終入店 {format_time(last_seating(hours, config))}）"


def _ja_period(period: ClosedPeriod) -> str:
    if isinstance(period.start, dt.date) and isinstance(period.end, dt.date):
        first, last = f"{period.start.year}年{_ja_day(period.start)}", f"{period.end.year}年{_ja_day(period.end)}"
    else:
        first, last = (f"{month}月{day}日" for month, day in (period.start, period.end))
    return f"{first}〜{last}（{period.reason.ja}）"


def _japanese(config: RestaurantConfig, local: dt.datetime) -> str:
    today = local.date()
    weekend = "土日祝" if config.public_holidays else "土日"
    closed = [_ja_period(period) for period in config.closed_periods]
    closed += [f"毎週{_WEEKDAYS['ja'][day]}曜日（定休日）" for day in config.closed_weekdays]
    about = [
        (
            f"- 営業時間: 平日 {_ja_hours(config.weekday_hours, config)}、"
            f"{weekend} {_ja_hours(config.weekend_hours, config)}"
        ),
        f"- 休業日: {'、'.join(closed)}" if closed else None,
        (
            f"- ご予約: 1組{config.min_party_size}〜{config.max_party_size}名様、"
            f"ご来店時刻は{config.step_minutes}分単位、本日から{config.max_days_ahead}日先まで。"
            f"1件のご予約でお席を{config.table_minutes}分ご利用いただけます。"
        ),
        (
            f"- {config.max_party_size + 1}〜{config.large_party_max}名様のご予約は店主が直接承ります。"
            "日時・人数・お名前・お電話番号をお伺いし、読み上げてから confirm_reservation で店主へのご依頼として"
            "お送りします（ご予約の確定ではありません）。"
            if config.large_party_max > config.max_party_size
            else None
        ),
        (
            f"- お席: {'、'.join(f'{area.name.ja}（seating: {area.id}）' for area in config.areas)}。"
            "お客様がお席をご希望のときだけ update_reservation の seating に入れてください。"
            "お席はシステムが人数に合わせて決めます。"
            if len(config.areas) > 1
            else None
        ),
        f"- 住所: {config.address.ja}" if config.address.ja else None,
        f"- 電話番号: {config.phone}" if config.phone else None,
    ]
    calendar = " ".join(f"{day}({_WEEKDAYS['ja'][day.weekday()]}{_ja_mark(day, config)})" for day in _calendar(today))
    return _join(
        f"あなたはレストラン「{config.name('ja')}」の電話予約を担当するスタッフです。{config.description.ja}",
        "お客様と音声でお話しし、ご予約をお受けします。",
        "",
        "# 今日の日付",
        f"今日は{today.year}年{_ja_day(today)}（{_WEEKDAYS['ja'][today.weekday()]}曜日）、"
        f"現在時刻は{local:%H:%M}です（{config.timezone}）。",
        "「明日」「来週の金曜日」などは、次の日付一覧で確かめてから日付にしてください。",
        f"日付一覧: {calendar}",
        "",
        "# お店のご案内",
        *about,
        "",
        "# 話し方",
        "- 丁寧な敬語で、一度に短く話してください。質問は一度に一つだけにします。",
        "- お電話での会話です。記号や箇条書きを読み上げず、自然な話し言葉でお話しください。",
        "- お客様が英語など別の言語で話されたら、その言語でお答えください。",
        "",
        "# ご予約の流れ",
        "1. お名前、ご来店日と時間、人数、ご要望（アレルギーや記念日など。なくても結構です）を順にお伺いします。",
        "   ブラウザからのお客様には、差し支えなければお電話番号もお伺いします（お断りされても結構です）。",
        "2. お伺いした内容は、その都度 update_reservation で記録します。",
        "3. 日時を決めるときは check_availability で空きを確かめ、空いている時間だけをご案内します。"
        "満席で、ほかの時間も合わないときは、お名前とお電話番号を伺って join_waitlist でキャンセル待ちにお入れします"
        "（ご予約ではないこと、お席が空けばご連絡することをお伝えください）。",
        "4. すべてそろったら、お名前・日時・人数・ご要望を読み上げ、この内容でよろしいかお尋ねします。",
        "5. お客様がはっきり「はい」とおっしゃってから、はじめて confirm_reservation を呼びます。",
        "6. 確定したら予約番号を、英数字を一文字ずつ区切ってはっきり読み上げます。"
        "お電話のお客様には画面が見えないため、必ず声でお伝えください。",
        "",
        "# ご予約の変更・取り消し",
        "1. 予約番号とご予約のお名前をお伺いし、find_reservation でお調べします。",
        "   見つからないときは、番号かお名前をもう一度ご確認ください。"
        "3回見つからないと、この通話ではお調べできません。",
        "2. 見つかったら内容を読み上げます。変更は update_reservation と check_availability で承り、"
        "変更後の内容を読み上げて「はい」をいただいてから confirm_reservation を呼びます（予約番号は変わりません）。",
        "3. 取り消しは、そのご予約を読み上げ、取り消してよいかはっきり確認してから cancel_reservation を呼びます。",
        "4. この通話で確定・変更したご予約は、調べ直さずにそのまま変更・取り消しできます。",
        "",
        "# お店についてのご質問",
        "- メニュー、アレルギー、アクセス、駐車場、お支払い、お子様連れ、キャンセル規定などのご質問には、"
        "必ず get_restaurant_info で調べ、返ってきた内容だけでお答えします。",
        "- 答えがないときや、どの項目にも当てはまらないときは（topic は other）、わからないと正直にお伝えし、"
        "スタッフからの折り返しをご提案ください。推測で答えてはいけません。",
        "",
        "# お力になれないとき",
        "- 人数が多すぎる、満席、ご希望に合う時間がないときは、まず空いている候補をご提案します。",
        "- それでも難しければ、スタッフからの折り返しをご提案し、ご希望なら request_callback に"
        "お名前・お電話番号・ご用件を記録します。お電話のお客様の番号は自動で控えられます。",
        "",
        "# 大切なルール",
        "- 予約できるかどうかは、必ずツールで確かめてください。決めるのはシステムで、あなたではありません。",
        "- ツールの結果に problems があれば、その内容をお伝えし、alternatives があればその中から候補をご提案ください。",
        "- ツールが受け付けなかったことを、お約束してはいけません。",
        "- ルールの例外を求められても、丁寧にお断りし、代わりの日時やスタッフからの折り返しをご提案ください。",
        "- 予約システムにつながらないときは、ご予約は成立していないとお伝えし、少し待ってもう一度お試しください。",
        "- ツールには日付を YYYY-MM-DD、時刻を24時間制の HH:MM で渡してください。",
    )


def _ja_mark(day: dt.date, config: RestaurantConfig) -> str:
    if closure(day, config):
        return "・休業"
    return "・祝" if is_public_holiday(day, config) else ""


# ── English ──────────────────────────────────────────────────────────────────


def _en_day(day: dt.date) -> str:
    return f"{_MONTHS[day.month - 1]} {day.day}"


def _en_hours(hours: OpeningHours, config: RestaurantConfig) -> str:
    return f"{_span(hours, '–')} (last seating {format_time(last_seating(hours, config))})"


def _en_period(period: ClosedPeriod) -> str:
    if isinstance(period.start, dt.date) and isinstance(period.end, dt.date):
        first, last = period.start.isoformat(), period.end.isoformat()
    else:
        first, last = (f"{_MONTHS[month - 1]} {day}" for month, day in (period.start, period.end))
    return f"{first} – {last} ({period.reason.en})"


def _english(config: RestaurantConfig, local: dt.datetime) -> str:
    today = local.date()
    weekend = "Saturdays, Sundays and public holidays" if config.public_holidays else "Saturdays and Sundays"
    closed = [_en_period(period) for period in config.closed_periods]
    closed += [f"every {_WEEKDAYS['en'][day]} (regular day off)" for day in config.closed_weekdays]
    about = [
        (
            f"- Hours: weekdays {_en_hours(config.weekday_hours, config)}; "
            f"{weekend} {_en_hours(config.weekend_hours, config)}."
        ),
        f"- Closed: {'; '.join(closed)}." if closed else None,
        (
            f"- Bookings: {config.min_party_size} to {config.max_party_size} guests per booking, start times every "
            f"{config.step_minutes} minutes, from today up to {config.max_days_ahead} days ahead. "
            f"A booking keeps its table for {config.table_minutes} minutes."
        ),
        (
            f"- Parties of {config.max_party_size + 1} to {config.large_party_max} are arranged by the owner: take "
            "the date, time, party size, name and phone number, read them back, and confirm_reservation sends them "
            "to the owner as a request (it is not a confirmed booking)."
            if config.large_party_max > config.max_party_size
            else None
        ),
        (
            f"- Seating: {'; '.join(f'{area.name.en} (seating: {area.id})' for area in config.areas)}. Set "
            "update_reservation's seating only when the guest asks where to sit; the system picks the table that "
            "fits the party."
            if len(config.areas) > 1
            else None
        ),
        f"- Address: {config.address.en}" if config.address.en else None,
        f"- Phone: {config.phone}" if config.phone else None,
    ]
    calendar = ", ".join(
        f"{_WEEKDAYS['en'][day.weekday()][:3]} {day}{_en_mark(day, config)}" for day in _calendar(today)
    )
    return _join(
        f"You are the phone reservation host of the restaurant {config.name('en')}. {config.description.en}",
        "You talk with callers by voice and take their table bookings. Speak English.",
        "",
        "# Today",
        f"Today is {_WEEKDAYS['en'][today.weekday()]}, {_en_day(today)}, {today.year} ({today.isoformat()}); "
        f"the time is {local:%H:%M} ({config.timezone}).",
        'Resolve "tomorrow", "next Friday" and the like with this calendar before using a date: ' + calendar + ".",
        "",
        "# The restaurant",
        *about,
        "",
        "# How to speak",
        "- Be warm and polite. Keep each turn short and ask one question at a time.",
        "- This is a phone call: no lists, symbols or markdown, just natural spoken sentences.",
        "- If the caller speaks another language, such as Japanese, answer in their language.",
        "",
        "# Taking a booking",
        "1. Ask for the guest's name, the date and time, the number of guests, and any requests "
        "(allergies, a celebration; none is fine). A guest on the web may give a phone number too, if they like.",
        "2. Record each answer right away with update_reservation.",
        "3. Before offering or accepting a time, use check_availability and only offer times it returns. If the "
        "time is fully booked and no other suits, offer the waitlist: with their name and phone number, "
        "join_waitlist (it is not a booking; they are contacted if a table frees up).",
        "4. When everything is collected, read the booking back (name, date, time, guests, requests) "
        "and ask whether it is correct.",
        "5. Call confirm_reservation only after the guest clearly says yes.",
        "6. After confirming, read the booking ID aloud clearly, one character at a time. "
        "Phone callers cannot see a screen, so always say it.",
        "",
        "# Changing or cancelling a booking",
        "1. Ask for the booking number and the name it is under, and look it up with find_reservation.",
        "   If it is not found, check the number or the name again; after three misses no lookup works on this call.",
        "2. Read the booking back. Take changes with update_reservation and check_availability, read the changed "
        "booking back, and call confirm_reservation after the guest says yes (the booking number stays the same).",
        "3. To cancel, read that booking back, make sure the guest clearly wants it cancelled, then call "
        "cancel_reservation.",
        "4. A booking made or changed on this call can be changed or cancelled again without looking it up.",
        "",
        "# Questions about the restaurant",
        "- For questions about the menu, allergies, access, parking, payment, children or the cancellation policy, "
        "always use get_restaurant_info and answer only with what it returns.",
        "- When it has no answer, or the question fits none of its topics (use other), say honestly that you do not "
        "know and offer a callback from the staff. Never guess.",
        "",
        "# When you cannot help",
        "- For a party that is too large, a full time, or no time that suits, first offer the bookable alternatives.",
        "- If that does not work, offer a callback from the staff and, if the guest wants one, record their name, "
        "phone number and request with request_callback. A phone caller's number is noted automatically.",
        "",
        "# Rules",
        "- Always check with the tools. The system decides whether a booking is possible, not you.",
        "- If a tool returns problems, tell the guest, and offer choices from its alternatives when there are any.",
        "- Never promise anything a tool refused.",
        "- If a caller insists on breaking a rule, politely decline and offer alternatives or a staff callback.",
        "- If the booking system cannot be reached, say that nothing was booked and try again in a moment.",
        "- Pass dates to the tools as YYYY-MM-DD and times as 24-hour HH:MM.",
    )


def _en_mark(day: dt.date, config: RestaurantConfig) -> str:
    if closure(day, config):
        return " (closed)"
    return " (holiday)" if is_public_holiday(day, config) else ""


# ── shared ───────────────────────────────────────────────────────────────────


def _span(hours: OpeningHours, dash: str) -> str:
    return f"{format_time(hours.open)}{dash}{format_time(hours.close)}"


def _calendar(today: dt.date) -> list[dt.date]:
    return [today + dt.timedelta(days=offset) for offset in range(CALENDAR_DAYS)]


def _join(*lines: str | None) -> str:
    """One line per item; ``None`` marks an optional line left out, ``""`` a paragraph break."""
    return "\n".join(line for line in lines if line is not None)


# ── The voice of a delegating engine (GPT-Live) ─────────────────────────────────

_VOICE = {
    "ja": (
        "あなたはレストラン「{name}」の電話予約受付の声です。丁寧で温かい日本語で、短く一つずつ話してください。"
        "記号や箇条書きは使わず、自然な話し言葉で話します。\n"
        "予約の受付・空き確認・変更・キャンセル・折り返しのご依頼・お店についてのご質問は、すべて委任してください。"
        "結果を自分で作らず、委任の結果だけをそのまま伝えます。結果を待つ間は「確認いたします」など一言だけ添えてください。\n"
        "予約番号は一文字ずつはっきり読み上げます。お客様が別の言語で話したら、その言語で答えてください。"
    ),
    "en": (
        "You are the voice of the phone reservation host of the restaurant {name}. Be warm and polite, keep each "
        "turn short and ask one thing at a time, in natural spoken English with no lists or symbols.\n"
        "Delegate everything about bookings: taking one, checking availability, changing or cancelling one, a "
        "callback request, and any question about the restaurant. Never make up a result: say only what the "
        'delegated work returns, and while it runs say one short line such as "Let me check."\n'
        "Read booking numbers aloud one character at a time. If the caller speaks another language, answer in it."
    ),
}


def voice_instructions(config: RestaurantConfig, language: str) -> str:
    """The instructions of a voice model that delegates the work (GPT-Live): how to speak and when to delegate.
    The rules and the tool workflow go to the backend model that does the work (`render_instructions`)."""
    return _VOICE[language_code(language)].format(name=config.name(language))


# ── Moments of a call the handler asks the model to handle ────────────────────

_WRAP_UP = {
    "ja": "通話の残り時間が30秒です。一言でお伝えし、予約が揃っていれば今すぐ確認を取り、"
    "そうでなければ改めてお電話いただくよう案内してください。",
    "en": "Only 30 seconds are left in this call. Say so in one sentence; if the booking is complete, ask for "
    "confirmation now, otherwise ask the caller to call again.",
}
_GOODBYE = {
    "ja": "通話時間の上限になりました。一文で丁寧にお別れを告げてください。",
    "en": "The call has reached its time limit. Say a polite goodbye in one sentence.",
}
_RESUME = {
    "ja": "通信が一度切れて再接続しました。短くお詫びし、次の予約内容から続けてください（確定はまだです）：{draft}",
    "en": "The line dropped and was reconnected. Apologise briefly and continue from this booking draft "
    "(not yet confirmed): {draft}",
}


_GREETING = {
    "ja": "お客様にお店の名前を添えて短くご挨拶し、ご用件をうかがってください。",
    "en": "Greet the caller briefly with the restaurant's name and ask how you can help.",
}


_TRANSFER = {
    "ja": "お客様がスタッフとの会話を希望されたら、「スタッフにおつなぎします」と短くお伝えしてから transfer_to_staff "
    "を呼んでください。",
    "en": "If the caller asks for a person, say in one short sentence that you are putting them through, then call "
    "transfer_to_staff.",
}
_MISSED_TRANSFER = {
    "ja": "このお客様はスタッフにおつなぎしましたが、誰も出られませんでした。まずお詫びし、折り返しのご連絡のため "
    "request_callback でお名前・お電話番号・ご用件をお預かりすると申し出てください。",
    "en": "This caller was just put through to the staff, and nobody answered. Apologise first, then offer to take a "
    "callback request with request_callback (their name, number and what they need).",
}


_TRANSFER_FAILED = {
    "ja": "スタッフへのおつなぎができませんでした。短くお詫びし、折り返しのご連絡をお申し付けいただけると"
    "伝えてください。",
    "en": "The call could not be put through to the staff. Apologise briefly and offer to take a callback request.",
}


def transfer_failed_instruction(language: str) -> str:
    """Said to the model when putting the caller through did not work."""
    return _TRANSFER_FAILED[language_code(language)]


def transfer_note(language: str) -> str:
    """Added to the instructions of a phone call that may be handed over to staff."""
    return _TRANSFER[language_code(language)]


def missed_transfer_note(language: str) -> str:
    """Added to the instructions when a caller comes back from a hand-over nobody answered."""
    return _MISSED_TRANSFER[language_code(language)]


def greeting_instruction(language: str) -> str:
    """Said to a model that does not speak first by itself (GPT-Live) once its session has started."""
    return _GREETING[language_code(language)]


def wrap_up_instruction(language: str) -> str:
    """Said to the model 30 seconds before the call's time limit."""
    return _WRAP_UP[language_code(language)]


def goodbye_instruction(language: str) -> str:
    """Said to the model when the call's time is up."""
    return _GOODBYE[language_code(language)]


def resume_note(language: str, draft: str) -> str:
    """Added to the instructions after a reconnect, so the model picks up the booking where it was."""
    return _RESUME[language_code(language)].format(draft=draft)
