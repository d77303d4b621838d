"""The owner's console: a tab of the app's page, in `python app.py` and `--server` alike.

Signed in (see `access`), the owner sees the bookings from a chosen day on (filtered by status, searched by
name or number, phone numbers masked unless asked for), the day's table load, the callback requests and the
audit log; selects a booking to see the call that made it, change it (the same rules and capacity check as the
agent, with a deliberate, recorded override of the party-size limit) or cancel it; adds a booking by hand; and
exports the bookings shown as CSV or iCalendar. Every event is left out of Gradio's API (`api_name=False`)
and checks the owner itself first, so a visitor, or an API client, gets nothing personal from any of them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import warnings
from collections.abc import Iterator
from typing import Any

import gradio as gr

from components.call.state import CallView
from components.console.access import OwnerAccess
from components.console.views import (
    audit_frame,
    bookings_csv,
    bookings_frame,
    callbacks_frame,
    load_frame,
    waitlist_frame,
)
from components.restaurant.book import BookingRefused, StoreUnavailable
from components.restaurant.calendar import bookings_calendar
from components.restaurant.config import RestaurantConfig
from components.restaurant.fields import Reservation, normalize_field
from components.restaurant.problems import Code, FieldError, Problem
from components.store.reservations import ReservationStore
from components.web.downloads import DOWNLOADS
from components.web.render import chat_messages
from components.web.visitor import client_address

NOT_SET_UP = """
### 管理画面を使うには / To open the owner's console
Spaceの **Settings → Secrets** に `OWNER_PASSWORD` を追加するか、README の先頭に `hf_oauth: true` を書いて
Hugging Face でサインインできるようにしてください（Spaceのオーナーと `OWNER_USERS` の人が入れます）。

Add the secret `OWNER_PASSWORD` under the Space's **Settings → Secrets**, or put `hf_oauth: true` in the README's
front matter to sign in with Hugging Face (the Space's owner and the users in `OWNER_USERS` may).
"""
WRONG = "パスワードが違います。/ That password is not right."
WAIT = "試行が多すぎます。{seconds}秒後にもう一度どうぞ。/ Too many attempts: try again in {seconds} s."
UNAVAILABLE = "予約データベースに接続できません。/ The booking database cannot be reached right now."
STATUSES = [("すべて / All", ""), ("確定 / Confirmed", "confirmed"), ("取り消し / Cancelled", "cancelled")]
FORM = ("guest_name", "date", "time", "party_size", "requests", "phone")


@contextlib.contextmanager
def private_events() -> Iterator[None]:
    """Gradio 5.50 keeps an event out of its API only with `api_name=False`, and warns that Gradio 6 will spell it
    `api_visibility="private"`, which 5.50 does not know yet: that one warning, and only it, is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting 'api_name=False'", category=DeprecationWarning)
        yield


def _problems(problems: list[Problem]) -> str:
    return "\n".join(f"- {problem.message('ja')} / {problem.message('en')}" for problem in problems)


class Console:
    """The console's components and events (built inside the app's `gr.Blocks`)."""

    def __init__(self, config: RestaurantConfig, store: ReservationStore, access: OwnerAccess) -> None:
        self.config = config
        self.store = store
        self.access = access

    def today(self) -> str:
        return dt.datetime.now(self.config.tz).date().isoformat()

    # ---- the page ----------------------------------------------------------------------------------

    def build(self, page: gr.Blocks) -> None:
        """Add the console to `page` (inside its `with` block)."""
        if not self.access.configured:
            gr.Markdown(NOT_SET_UP, elem_id="owner-not-set-up")
            return
        token = gr.State(None)
        with gr.Column(elem_id="owner-sign-in-box") as signed_out:
            gr.Markdown("### 管理画面 / Owner console")
            if self.access.oauth:
                gr.LoginButton("Hugging Face でサインイン / Sign in with Hugging Face")
            if self.access.password:
                password = gr.Textbox(label="パスワード / Password", type="password", elem_id="owner-password")
                sign_in = gr.Button("サインイン / Sign in", variant="primary", elem_id="owner-sign-in")
            status = gr.Markdown(elem_id="owner-status")
        with gr.Column(visible=False, elem_id="owner-console") as signed_in:
            who = gr.Markdown()
            warning = self.store.db.warning()  # where bookings are kept, if they would be lost on a restart
            gr.Markdown(f"⚠️ {warning}" if warning else "", visible=bool(warning), elem_id="owner-storage-warning")
            with gr.Row(equal_height=False):
                day = gr.Textbox(self.today, label="この日から / From (YYYY-MM-DD)", elem_id="owner-day", min_width=160)
                status_filter = gr.Dropdown(STATUSES, value="", label="状態 / Status", min_width=160)
                search = gr.Textbox(label="名前・予約番号 / Name or number", elem_id="owner-search", min_width=160)
                show_phone = gr.Checkbox(label="電話番号を表示 / Show phone numbers", min_width=160)
            refresh = gr.Button("更新 / Refresh", size="sm", elem_id="owner-refresh")
            bookings = gr.Dataframe(
                row_count=1, interactive=False, wrap=True, elem_id="owner-bookings", label="予約 / Bookings"
            )
            with gr.Row():
                csv = gr.DownloadButton("CSV", size="sm", elem_id="owner-csv")
                ics = gr.DownloadButton("カレンダー / Calendar (.ics)", size="sm", elem_id="owner-ics")
            load = gr.LinePlot(
                x="time", y="tables", color="series", label="この日の席の埋まり / Tables in use that day",
                y_title="席 / tables", x_title="時刻 / time", elem_id="owner-load", height=260,
            )  # fmt: skip
            result = gr.Markdown(elem_id="owner-result")
            with gr.Accordion("選んだ予約 / Selected booking", elem_id="owner-selected"):
                booking_id = gr.Textbox(label="予約番号 / Booking number", elem_id="owner-booking-id")
                edit = self._form("owner-edit")
                override = gr.Checkbox(
                    label="人数の上限を超えて受ける / Take a party over the limit", elem_id="owner-override"
                )
                reason = gr.Textbox(label="理由 / Why", elem_id="owner-override-reason")
                with gr.Row():
                    save = gr.Button("変更を保存 / Save change", elem_id="owner-save")
                    cancel = gr.Button("予約を取り消す / Cancel booking", variant="stop", elem_id="owner-cancel")
                with gr.Row(equal_height=True):
                    tables = gr.Textbox(
                        label=f"席 / Tables ({self._table_names()})", elem_id="owner-tables", min_width=200, scale=2
                    )
                    move = gr.Button("この席に移す / Move to these tables", elem_id="owner-move", scale=1)
                transcript = gr.Chatbot(
                    type="messages", label="通話の記録 / The call", height=300, elem_id="owner-call", allow_tags=True
                )
            with gr.Accordion("予約を追加 / Add a booking (walk-in, the shop's phone)", open=False):
                new = self._form("owner-new")
                add = gr.Button("予約を追加 / Add booking", elem_id="owner-add")
            callbacks = gr.Dataframe(
                row_count=1, interactive=False, wrap=True, elem_id="owner-callbacks", label="折り返し / Callbacks"
            )
            with gr.Row():
                callback_id = gr.Number(
                    None, label="No.", precision=0, minimum=1, elem_id="owner-callback-id", min_width=120
                )
                done = gr.Button("対応済みにする / Mark done", size="sm", elem_id="owner-callback-done")
            waiting = gr.Dataframe(
                row_count=1, interactive=False, wrap=True, elem_id="owner-waitlist", label="キャンセル待ち / Waitlist"
            )
            audit = gr.Dataframe(
                row_count=1, interactive=False, wrap=True, elem_id="owner-audit", label="操作の記録 / Audit log"
            )
            feed = gr.Markdown(elem_id="owner-feed")
            sign_out = gr.Button("サインアウト / Sign out", size="sm")

        filters = [token, day, status_filter, search, show_phone]
        data = [result, bookings, load, callbacks, waiting, audit, csv, ics]
        shown = [signed_out, signed_in, who, feed, *data]
        hidden: dict[str, Any] = {"api_name": False, "show_progress": "hidden"}
        with private_events():
            if self.access.password:
                # A wrong or early attempt is answered at once, without sleeping or reading anything, so sign-in
                # shares no limited slot that guesses could fill ahead of the owner (`web.guard` bounds each
                # address's queue joins).
                for trigger in (sign_in.click, password.submit):
                    trigger(
                        self.sign_in,
                        [password, *filters[1:]],
                        [token, status, password, *shown],
                        concurrency_id="owner-sign-in",
                        concurrency_limit=None,
                        **hidden,
                    )
            opening = [refresh.click, day.submit, search.submit, status_filter.change, show_phone.change]
            if self.access.oauth:  # a Hugging Face sign-in is in the session when the page comes back from the Hub
                opening.append(page.load)
            gr.on(opening, self.open, filters, shown, trigger_mode="always_last", **hidden)
            picked = [booking_id, *edit, override, reason, tables, transcript]
            bookings.select(self.select, [token, bookings], picked, **hidden)
            save.click(self.change, [*filters, booking_id, *edit, override, reason], data, **hidden)
            cancel.click(self.cancel, [*filters, booking_id], data, **hidden)
            move.click(self.move, [*filters, booking_id, tables], data, **hidden)
            add.click(self.add, [*filters, *new, override, reason], data, **hidden)
            done.click(self.mark_done, [*filters, callback_id], data, **hidden)
            sign_out.click(self.sign_out, [token], [token, *shown], **hidden)

    @staticmethod
    def _form(prefix: str) -> list[gr.components.Component]:
        with gr.Row(equal_height=False):
            fields = [
                gr.Textbox(label="お名前 / Name", elem_id=f"{prefix}-name", min_width=160),
                gr.Textbox(label="日付 / Date (YYYY-MM-DD)", elem_id=f"{prefix}-date", min_width=140),
                gr.Textbox(label="時間 / Time (HH:MM)", elem_id=f"{prefix}-time", min_width=120),
                gr.Number(None, label="人数 / Party", precision=0, minimum=1, elem_id=f"{prefix}-party", min_width=100),
                gr.Textbox(label="ご要望 / Requests", elem_id=f"{prefix}-requests", min_width=160),
                gr.Textbox(label="電話 / Phone", elem_id=f"{prefix}-phone", min_width=140),
            ]
        return fields

    # ---- events (each checks the owner first) ------------------------------------------------------

    def sign_in(self, attempt: str, day: str, status: str, search: str, show_phone: bool, request: gr.Request) -> tuple:
        answer = self.access.sign_in(attempt, client_address(request))
        # A refused attempt changes nothing but the message (the console is not open): the cheapest answer Gradio
        # can send, so a flood of guesses costs little and the owner's own sign-in is not held up behind it.
        unchanged = [gr.skip()] * len(self._signed_out())
        if answer.retry_in_s:
            return (None, WAIT.format(seconds=max(1, round(answer.retry_in_s))), "", *unchanged)
        if answer.token is None:
            return (None, WRONG, "", *unchanged)
        return (answer.token, "", "", *self._shown("password", day, status, search, show_phone))

    def open(self, token: str | None, day: str, status: str, search: str, show_phone: bool, request: gr.Request):
        owner = self.access.owner(token, request)
        return self._shown(owner, day, status, search, show_phone) if owner else self._signed_out()

    def sign_out(self, token: str | None) -> tuple:
        self.access.sign_out(token)
        return (None, *self._signed_out())

    def select(self, token: str | None, table: Any, event: gr.SelectData, request: gr.Request) -> tuple:
        """A row picked in the bookings table: its details into the form, and the call that made it."""
        blank = ("", "", "", "", None, "", "", False, "", "", [])
        if not self.access.owner(token, request) or table is None or not len(table):
            return blank
        row_index = event.index[0] if isinstance(event.index, list | tuple) else event.index
        try:
            booking_id = str(table.iloc[int(row_index)]["予約番号 / Booking"])
            row = self.store.get(booking_id)
            view = self.store.transcript(booking_id)
        except (IndexError, KeyError, ValueError, StoreUnavailable):
            return blank
        if row is None:
            return blank
        values = [
            row["guest_name"],
            row["date"],
            row["time"],
            row["party_size"],
            row["requests"] or "",
            row["phone"] or "",
        ]
        call = chat_messages(CallView.model_validate(view)) if view else []
        return (booking_id, *values, False, "", row.get("tables") or "", call)

    def change(self, token, day, status, search, show_phone, booking_id, *form_and_override, request: gr.Request):
        owner = self.access.owner(token, request)
        if not owner:
            return self._nothing()
        *form, override, reason = form_and_override
        reservation, problems = self._reservation(form)
        if problems:
            return self._data(day, status, search, show_phone, _problems(problems))
        note = self._override(owner, override, reason)
        booking = (booking_id or "").strip().upper()
        told: list[str] = []

        def change(now: dt.datetime) -> None:
            before = self.store.get(booking)
            self.store.change(booking, reservation, self.config, now, actor=f"owner:{owner}", override=note)
            told.extend(self._tell_the_waitlist(before, now))

        message = self._write(change, f"{booking} を変更しました。/ Booking {booking} changed.")
        return self._data(day, status, search, show_phone, " ".join([message, *told]))

    def cancel(self, token, day, status, search, show_phone, booking_id, request: gr.Request):
        owner = self.access.owner(token, request)
        if not owner:
            return self._nothing()
        booking = (booking_id or "").strip().upper()
        told: list[str] = []

        def cancel(now: dt.datetime) -> None:
            told.extend(self._tell_the_waitlist(self.store.cancel(booking, now, actor=f"owner:{owner}"), now))

        message = self._write(
            cancel, f"{booking} を取り消しました。席は再び予約できます。/ {booking} cancelled; its table is free again."
        )
        return self._data(day, status, search, show_phone, " ".join([message, *told]))

    def move(self, token, day, status, search, show_phone, booking_id, tables, request: gr.Request):
        """Put the selected booking at the tables the owner typed ("T1+T2"); it then stays there."""
        owner = self.access.owner(token, request)
        if not owner:
            return self._nothing()
        booking = (booking_id or "").strip().upper()
        names = [name.strip() for name in str(tables or "").replace(",", "+").split("+") if name.strip()]
        message = self._write(
            lambda now: self.store.move(booking, names, self.config, now, actor=f"owner:{owner}"),
            f"{booking} を {'+'.join(names)} に移しました。/ {booking} moved to {'+'.join(names)}.",
        )
        return self._data(day, status, search, show_phone, message)

    def _table_names(self) -> str:
        return "; ".join(f"{area.name.en}: {', '.join(t.id for t in area.tables)}" for area in self.config.areas)

    def _tell_the_waitlist(self, freed: dict[str, Any] | None, now: dt.datetime) -> list[str]:
        """A booking left its slot: the first waiting guest who now fits is notified; what to tell the owner."""
        if not freed:
            return []
        day = dt.date.fromisoformat(freed["date"])
        entry = self.store.waitlist.notify_freed(day, self.config, now, freed_by=freed["booking_id"])
        if entry is None:
            return []
        slot = f"{entry['date']} {entry['time']}"
        name, party = entry["guest_name"], entry["party_size"]
        ja = f"キャンセル待ちの{name}様（{slot}、{party}名）にお席が空きました。"
        return [f"{ja}/ A table is free for {name} on the waitlist ({slot}, party of {party})."]

    def add(self, token, day, status, search, show_phone, *form_and_override, request: gr.Request):
        owner = self.access.owner(token, request)
        if not owner:
            return self._nothing()
        *form, override, reason = form_and_override
        reservation, problems = self._reservation(form)
        if problems:
            return self._data(day, status, search, show_phone, _problems(problems))
        note = self._override(owner, override, reason)
        made: list[str] = []
        message = self._write(
            lambda now: made.append(
                self.store.book(reservation, self.config, now, source="owner", actor=f"owner:{owner}", override=note)
            ),
            "予約を追加しました。/ Booking added.",
        )
        if made:
            message = f"{made[0]} を追加しました。/ Booking {made[0]} added."
        return self._data(day, status, search, show_phone, message)

    def mark_done(self, token, day, status, search, show_phone, callback_id, request: gr.Request):
        owner = self.access.owner(token, request)
        if not owner:
            return self._nothing()
        try:
            done = callback_id is not None and self.store.callbacks.mark_done(
                int(callback_id), dt.datetime.now(dt.UTC), actor=f"owner:{owner}"
            )
        except StoreUnavailable:
            return self._data(day, status, search, show_phone, UNAVAILABLE)
        message = (
            "対応済みにしました。/ Marked done."
            if done
            else "その番号の未対応の依頼はありません。/ No open request has that number."
        )
        return self._data(day, status, search, show_phone, message)

    # ---- helpers -----------------------------------------------------------------------------------

    def _write(self, write: Any, success: str) -> str:
        try:
            write(dt.datetime.now(dt.UTC))
        except BookingRefused as refused:
            return _problems(refused.problems)
        except StoreUnavailable:
            return UNAVAILABLE
        return success

    def _reservation(self, form: list[Any]) -> tuple[Reservation, list[Problem]]:
        values: dict[str, Any] = {}
        problems: list[Problem] = []
        for name, raw in zip(FORM, form, strict=True):
            if raw in (None, "") and name in ("requests", "phone"):
                continue
            try:
                values[name] = normalize_field(name, int(raw) if name == "party_size" and raw is not None else raw)
            except (FieldError, ValueError) as error:
                problems.append(error.problem if isinstance(error, FieldError) else Problem(Code.INVALID_PARTY_SIZE))
        return Reservation(**values), problems

    @staticmethod
    def _override(owner: str, override: bool, reason: str) -> str | None:
        if not override:
            return None
        return f"party size limit set aside by {owner}: {(reason or '').strip() or 'no reason given'}"

    def _shown(self, owner: str, day: str, status: str, search: str, show_phone: bool) -> tuple:
        how = "パスワード / the password" if owner == "password" else f"Hugging Face: {owner}"
        who = f"サインイン中 / Signed in with **{how}**"
        try:
            spent = self.store.usage.day(dt.date.fromisoformat(self.today()))
            who += (
                f"  \n本日お店のキーで {spent.calls} 件・{spent.seconds / 60:.0f} 分、推定 ${spent.cost_usd:.2f} / "
                f"Today on the restaurant's key: {spent.calls} calls, {spent.seconds / 60:.0f} min, "
                f"about ${spent.cost_usd:.2f}"
            )
        except StoreUnavailable:
            pass
        token = self.access.feed_token()
        feed = (
            "電話の通話をリアルタイムで追う / Follow a phone call live: `GET /outputs?stream_id=<id>` with the "
            f"header `Authorization: Bearer {token}` (valid 12 hours; refresh for a new one); the id is logged when "
            "a call starts."
            if token
            else ""
        )
        return (
            gr.update(visible=False),
            gr.update(visible=True),
            who,
            feed,
            *self._data(day, status, search, show_phone),
        )

    def _signed_out(self) -> tuple:
        return (gr.update(visible=True), gr.update(visible=False), "", "", *self._nothing())

    def _nothing(self) -> tuple:
        return ("", None, None, None, None, None, None, None)

    def _data(self, day: str, status: str, search: str, show_phone: bool, message: str = "") -> tuple:
        """Everything the signed-in console shows, for the filters given."""
        try:
            first = dt.date.fromisoformat((day or "").strip())
        except ValueError:
            first = dt.date.fromisoformat(self.today())
        try:
            rows = self.store.bookings_from(first, status=status or None, search=search)
            around = self.store.bookings_from(first - dt.timedelta(days=1), until=first, status="confirmed")
            callbacks = self.store.callbacks.listed()
            waiting = self.store.waitlist.listed(dt.date.fromisoformat(self.today()))
            audit = self.store.audit.entries()
        except StoreUnavailable:
            return (UNAVAILABLE, None, None, None, None, None, None, None)
        stem = f"bookings-{first.isoformat()}"
        csv_path = DOWNLOADS.write(f"{stem}.csv", bookings_csv(rows, show_phone))
        ics_path = DOWNLOADS.write(f"{stem}.ics", bookings_calendar(rows, self.config, self.config.default_language))
        return (
            message,
            bookings_frame(rows, self.config, show_phone),
            load_frame(around, first, self.config),
            callbacks_frame(callbacks, self.config, show_phone),
            waitlist_frame(waiting, self.config, show_phone),
            audit_frame(audit, self.config),
            csv_path,
            ics_path,
        )
