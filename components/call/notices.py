"""What the voice agent says to the person on screen when something is wrong: Japanese and English together.

Errors reach people who may not read the language they picked (a stakeholder opening a Japanese demo), so
every notice carries both languages. Domain messages (why a booking is refused) live with the rules.
"""

from __future__ import annotations

import re

NOTICES: dict[str, tuple[str, str]] = {
    "no_key": (
        (
            "OpenAI APIキーが設定されていません。Spaceの Settings → Secrets に OPENAI_API_KEY を追加するか、"
            "「設定」欄にキーを貼り付けてから録音ボタンを押してください。"
        ),
        (
            "No OpenAI API key is set. Add OPENAI_API_KEY under the Space's Settings → Secrets, "
            "or paste a key in the Settings box, then press record again."
        ),
    ),
    "key_refused": (
        "OpenAIがAPIキーを拒否しました（401）。キーが正しく、Realtime APIが使える状態か確認してください。",
        "OpenAI refused the API key (401). Check that the key is correct and has access to the Realtime API.",
    ),
    "service_refused": (
        "音声サービスが接続を拒否しました（HTTP {status}）。しばらくしてからもう一度お試しください。",
        "The voice service refused the connection (HTTP {status}). Please try again in a moment.",
    ),
    "unreachable": (
        "音声サービスに接続できませんでした。ネットワークと OPENAI_BASE_URL を確認してください。",
        "Could not reach the voice service. Check the network and OPENAI_BASE_URL.",
    ),
    "reconnecting": (
        "音声サービスとの接続が切れました。再接続しています…（ご予約内容は保持されています）",
        "The connection to the voice service dropped. Reconnecting… (your booking details are kept)",
    ),
    "reconnected": (
        "再接続しました。続きをどうぞ。",
        "Reconnected. Please go on.",
    ),
    "connection_lost": (
        "音声サービスとの接続が切れ、再接続できませんでした。録音ボタンを押してもう一度お試しください。",
        "The connection to the voice service was lost and could not be restored. Press record to try again.",
    ),
    "stalled": (
        "音声サービスから応答がありません。",
        "The voice service stopped responding.",
    ),
    "service_error": (
        "音声サービスでエラーが発生しました：{detail}",
        "The voice service reported an error: {detail}",
    ),
    "time_warning": (
        "通話の残り時間はあと{seconds}秒です。",
        "{seconds} {unit} left in this call.",
    ),
    "quota": (
        "このお店のOpenAIアカウントの利用上限に達したため、通話を終了します。お手数ですが、お店へ直接お電話ください。",
        "The restaurant's OpenAI account has reached its limit, so this call has to end. Please call the restaurant.",
    ),
    "internal_error": (
        "システム内部のエラーのため通話を終了しました。録音ボタンを押してもう一度お試しください。",
        "The call ended because of an internal error. Press record to try again.",
    ),
    "time_up": (
        "通話時間の上限に達したため終了しました。もう一度録音ボタンを押すと新しい通話を始められます。",
        "The call reached its time limit and has ended. Press record to start a new call.",
    ),
    "demo_code": (
        "このデモでお店のAPIキーを使うには、共有されたリンク（?code=… 付き）から開いてください。",
        "To use the restaurant's API key in this demo, open the link you were given (the one with ?code=…).",
    ),
    "visitor_calls": (
        "本日のデモ通話（{calls}回）はご利用済みです。{resets}に戻ります。",
        "You have used today's {calls} demo call(s); they come back at {resets}.",
    ),
    "daily_minutes": (
        "本日のデモの通話時間（{minutes}分）を使い切りました。{resets}に戻ります。",
        "Today's {minutes} minutes of demo calls are used up; they come back at {resets}.",
    ),
    "daily_budget": (
        "本日のデモの予算（${budget}）を使い切りました。{resets}に戻ります。",
        "Today's demo budget (${budget}) is used up; it comes back at {resets}.",
    ),
    "own_key": (
        "お持ちのOpenAI APIキーを「設定」欄に入れれば、すぐに通話できます（料金はそのキーにかかります）。",
        "Paste your own OpenAI API key in Settings to call right away (it is charged to that key).",
    ),
    "allowance_unavailable": (
        "デモの利用状況を確認できないため、お店のAPIキーでの通話を一時停止しています。",
        "The demo's allowances cannot be checked right now, so calls on the restaurant's key are paused.",
    ),
    "allowance_left": ("本日のデモ通話: 残り{calls}回。", "Demo calls left today: {calls}."),
    "reload_page": ("ページを再読み込みしてから、もう一度お試しください。", "Reload the page, then try again."),
    "budget_end": (
        "本日のデモの通話時間・予算に達したため、通話を終了しました。",
        "Today's demo minutes or budget ran out, so the call has ended.",
    ),
    "transferring": ("スタッフにおつなぎしています。", "Putting the caller through to the staff."),
    "transfer_failed": ("スタッフにおつなぎできませんでした。", "The call could not be put through to the staff."),
    "interrupted": ("（中断）", "(interrupted)"),
    "inaudible": ("（聞き取れませんでした）", "(inaudible)"),
    "transcribing": ("…", "…"),
}


def notice(*keys: str, **values: object) -> str:
    """Both languages of a notice (of several, run together), Japanese first, one line each."""
    ja = "".join(NOTICES[key][0] for key in keys)
    en = " ".join(NOTICES[key][1] for key in keys)
    return f"{ja.format(**values)}\n{en.format(**values)}"


def label(key: str, language: str) -> str:
    """A short marker (interrupted, inaudible) in the caller's language only: it sits inside a transcript line."""
    ja, en = NOTICES[key]
    return en if language == "en" else ja


_CODE = re.compile(r"^[a-z][a-z0-9_.]{0,47}$")


def service_error(code: object = None, status: int | None = None) -> str:
    """The `service_error` notice with only what a visitor may see: the HTTP status and the provider's error code
    (`rate_limit_exceeded`), never its message, which can carry organisation or project ids (the owner's log
    keeps it)."""
    parts = [f"HTTP {status}"] if status else []
    if isinstance(code, str) and _CODE.match(code):
        parts.append(code)
    return notice("service_error", detail=" ".join(parts) or "error")
