"""The booking store on both backends: rows, refusals, ids, changes, cancellations, races for the last table,
callbacks and the audit log, and a database that goes away. Every test that is not about a SQLite file runs
against SQLite and against a real PostgreSQL server (`tests.postgres`)."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import queue
import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from components.restaurant.book import BookingRefused, StoreUnavailable
from components.restaurant.config import DEFAULT_CONFIG_PATH, PROJECT_ROOT, load_config
from components.restaurant.fields import Reservation
from components.restaurant.problems import Code
from components.settings import Settings
from components.store import reservations as store_module
from components.store.reservations import ID_ALPHABET, ReservationStore
from tests import postgres
from tests.domain_fixtures import (
    FIRST_RELEASE_ROWS,
    ID_PATTERN,
    booking,
    count,
    first_release_database,
    jst,
    race_to_book,
)

CONFIG = load_config(DEFAULT_CONFIG_PATH)
NOW = jst(2026, 4, 20, 9, 0)
TUESDAY = dt.date(2026, 4, 21)


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path) -> str:
    """Where a test's store lives: a new SQLite file, or a new database on the PostgreSQL test server."""
    return str(tmp_path / "reservations.db") if request.param == "sqlite" else postgres.fresh_database()


@pytest.fixture
def store(location):
    store = ReservationStore(location)
    yield store
    store.db.engine.dispose()


def test_book_writes_a_complete_row(store):
    reservation = Reservation("山田 太郎", TUESDAY, dt.time(19, 0), 3, "窓際の席")
    booking_id = store.book(reservation, CONFIG, NOW, language="ja")
    assert re.fullmatch(ID_PATTERN, booking_id)
    assert store.get(booking_id) == {
        "booking_id": booking_id,
        "guest_name": "山田 太郎",
        "date": "2026-04-21",
        "time": "19:00",
        "party_size": 3,
        "requests": "窓際の席",
        "language": "ja",
        "created_at": "2026-04-20T00:00:00+00:00",
        "status": "confirmed",
        "source": "web",
        "phone": None,
        "updated_at": None,
        "cancelled_at": None,
        "override": None,
        "seating": None,
        "tables": "1",  # the first of the identical tables
        "tables_pinned": 0,
    }
    assert store.get(booking_id.lower()) == store.get(booking_id)  # as a guest might spell it
    assert store.get("AS-ZZZZ") is None
    assert count(store) == 1


def test_a_phone_booking_keeps_the_callers_number_and_its_source(store):
    reservation = Reservation("Yamada", TUESDAY, dt.time(19, 0), 2, phone="+819012345678")
    booking_id = store.book(reservation, CONFIG, NOW, language="en", source="phone")
    row = store.get(booking_id)
    assert (row["source"], row["phone"], row["language"]) == ("phone", "+819012345678", "en")
    assert store.audit.entries()[0]["actor"] == "agent:phone"


def test_language_defaults_to_the_restaurants(store):
    booking_id = store.book(booking(TUESDAY, 19), CONFIG, NOW)
    assert store.get(booking_id)["language"] == CONFIG.default_language


def test_bookings_on_a_day_in_time_order(store):
    for hour in (20, 12, 18):
        store.book(booking(TUESDAY, hour), CONFIG, NOW)
    store.book(booking(TUESDAY + dt.timedelta(days=1), 19), CONFIG, NOW)
    assert [row["time"] for row in store.bookings_from(TUESDAY, until=TUESDAY)] == ["12:00", "18:00", "20:00"]
    assert [row["time"] for row in store.bookings_from("2026-04-22", until="2026-04-22")] == ["19:00"]
    assert count(store) == 4


def test_refusals_carry_problems_and_write_nothing(store):
    with pytest.raises(BookingRefused) as incomplete:
        store.book(Reservation(date=TUESDAY, time=dt.time(19, 0)), CONFIG, NOW)
    assert [(p.code, p.field) for p in incomplete.value.problems] == [
        (Code.MISSING_FIELD, "guest_name"),
        (Code.MISSING_FIELD, "party_size"),
    ]
    with pytest.raises(BookingRefused) as closed:
        store.book(booking(dt.date(2026, 12, 31), 19), CONFIG, jst(2026, 12, 1))
    assert [p.code for p in closed.value.problems] == [Code.CLOSED_DAY]
    assert count(store) == 0
    assert store.audit.entries() == []


def test_the_seventh_booking_at_a_time_is_refused(store):
    for _ in range(CONFIG.tables):
        store.book(booking(TUESDAY, 19), CONFIG, NOW)
    with pytest.raises(BookingRefused) as full:
        store.book(booking(TUESDAY, 18, 30), CONFIG, NOW)
    assert [p.code for p in full.value.problems] == [Code.FULLY_BOOKED]
    store.book(booking(TUESDAY, 21), CONFIG, NOW)  # the 19:00 tables are free again at 21:00
    assert count(store) == CONFIG.tables + 1


def test_seated_between_reads_the_neighbourhood(store):
    first = store.book(booking(TUESDAY, 19), CONFIG, NOW)
    store.book(booking(TUESDAY + dt.timedelta(days=2), 19), CONFIG, NOW)
    (seated,) = store.seated_between(TUESDAY, TUESDAY + dt.timedelta(days=1))
    assert (seated.start, seated.booking_id, seated.tables) == (dt.datetime(2026, 4, 21, 19, 0), first, ("1",))


def test_a_change_keeps_the_id_and_its_own_table_does_not_count_against_it(store):
    ids = [store.book(booking(TUESDAY, 19, name=f"Guest {n}"), CONFIG, NOW) for n in range(CONFIG.tables)]
    moved = Reservation("Guest 0", TUESDAY, dt.time(19, 30), 4, "birthday")

    row = store.change(ids[0], moved, CONFIG, jst(2026, 4, 20, 10, 0), actor="agent:web")

    assert (row["booking_id"], row["time"], row["party_size"], row["requests"]) == (ids[0], "19:30", 4, "birthday")
    assert row["updated_at"] == "2026-04-20T01:00:00+00:00"
    assert count(store) == CONFIG.tables
    with pytest.raises(BookingRefused) as full:  # the tables are all still taken
        store.book(booking(TUESDAY, 19, name="Walk-in"), CONFIG, NOW)
    assert [p.code for p in full.value.problems] == [Code.FULLY_BOOKED]
    entry = store.audit.entries()[0]
    assert (entry["action"], entry["booking_id"], entry["actor"]) == ("changed", ids[0], "agent:web")
    assert entry["detail"]["time"] == ["19:00", "19:30"]
    assert entry["detail"]["party_size"] == [2, 4]


def test_a_change_to_a_closed_day_is_refused_and_changes_nothing(store):
    booking_id = store.book(booking(TUESDAY, 19), CONFIG, NOW)
    closed = Reservation("Guest", dt.date(2026, 12, 31), dt.time(19, 0), 2)
    with pytest.raises(BookingRefused) as refused:
        store.change(booking_id, closed, CONFIG, jst(2026, 12, 1), actor="agent:web")
    assert [p.code for p in refused.value.problems] == [Code.CLOSED_DAY]
    assert store.get(booking_id)["date"] == "2026-04-21"
    assert [entry["action"] for entry in store.audit.entries()] == ["booked"]


def test_a_cancellation_keeps_the_row_and_frees_the_table_at_once(store):
    ids = [store.book(booking(TUESDAY, 19), CONFIG, NOW) for _ in range(CONFIG.tables)]
    with pytest.raises(BookingRefused):
        store.book(booking(TUESDAY, 19), CONFIG, NOW)

    row = store.cancel(ids[2], jst(2026, 4, 20, 11, 0), actor="owner:alice")

    assert (row["status"], row["cancelled_at"]) == ("cancelled", "2026-04-20T02:00:00+00:00")
    assert store.get(ids[2])["status"] == "cancelled"  # nothing is deleted
    assert re.fullmatch(ID_PATTERN, store.book(booking(TUESDAY, 19), CONFIG, NOW))
    assert count(store) == CONFIG.tables + 1
    assert count(store, "cancelled") == 1
    with pytest.raises(BookingRefused) as again:
        store.cancel(ids[2], NOW, actor="owner:alice")
    assert [p.code for p in again.value.problems] == [Code.NOT_FOUND]
    cancelled = [entry for entry in store.audit.entries() if entry["action"] == "cancelled"]
    assert [(entry["actor"], entry["booking_id"]) for entry in cancelled] == [("owner:alice", ids[2])]


def test_the_owner_may_book_a_party_over_the_limit_on_purpose_and_it_is_recorded(store):
    party = Reservation("Sato", TUESDAY, dt.time(19, 0), CONFIG.max_party_size + 2)
    with pytest.raises(BookingRefused) as refused:
        store.book(party, CONFIG, NOW)
    assert [p.code for p in refused.value.problems] == [Code.PARTY_TOO_LARGE]

    booking_id = store.book(party, CONFIG, NOW, source="owner", actor="owner:alice", override="party of 6 agreed")

    assert store.get(booking_id)["override"] == "party of 6 agreed"
    entry = store.audit.entries()[0]
    assert (entry["actor"], entry["action"], entry["detail"]["override"]) == (
        "owner:alice",
        "booked",
        "party of 6 agreed",
    )


def test_search_and_status_filters(store):
    yamada = store.book(booking(TUESDAY, 19, name="Yamada Taro"), CONFIG, NOW)
    store.book(booking(TUESDAY, 20, name="Suzuki"), CONFIG, NOW)
    store.cancel(store.book(booking(TUESDAY + dt.timedelta(days=1), 19, name="Tanaka"), CONFIG, NOW), NOW, actor="x")
    assert [row["guest_name"] for row in store.bookings_from(TUESDAY, search="yamada")] == ["Yamada Taro"]
    assert [row["booking_id"] for row in store.bookings_from(TUESDAY, search=yamada[-4:].lower())] == [yamada]
    assert [row["guest_name"] for row in store.bookings_from(TUESDAY, status="cancelled")] == ["Tanaka"]
    assert [row["guest_name"] for row in store.bookings_from(TUESDAY + dt.timedelta(days=1))] == ["Tanaka"]


def test_a_calls_view_is_kept_with_its_booking(store):
    booking_id = store.book(booking(TUESDAY, 19), CONFIG, NOW)
    view = {"transcript": [{"role": "user", "text": "四名で", "status": "final"}], "reservation": {}}
    store.save_transcript([booking_id], view)
    assert store.transcript(booking_id) == view
    assert "transcript" not in store.get(booking_id)


def test_callback_requests_newest_first_until_done(store):
    first = store.callbacks.add(
        NOW, guest_name="Sato", phone="+819011112222", request="party of 8", language="ja", source="phone"
    )
    second = store.callbacks.add(
        NOW, guest_name=None, phone="0312345678", request="parking?", language="en", source="web"
    )
    assert [row["id"] for row in store.callbacks.listed()] == [second, first]
    assert store.callbacks.mark_done(first, NOW, actor="owner:alice")
    assert not store.callbacks.mark_done(first, NOW, actor="owner:alice")
    assert [row["id"] for row in store.callbacks.listed("open")] == [second]
    done = store.callbacks.listed("done")[0]
    assert (done["done_by"], done["request"]) == ("owner:alice", "party of 8")


def test_booking_id_collisions_are_retried(location):
    ids = iter(["AS-AAAA", "AS-AAAA", "AS-BBBB"])
    store = ReservationStore(location, booking_ids=lambda prefix: next(ids))
    assert store.book(booking(TUESDAY, 18), CONFIG, NOW) == "AS-AAAA"
    assert store.book(booking(TUESDAY, 19), CONFIG, NOW) == "AS-BBBB"
    assert count(store) == 2


def test_booking_ids_avoid_ambiguous_characters():
    assert not set("01OIL") & set(ID_ALPHABET)
    ids = {store_module.new_booking_id("AS") for _ in range(200)}
    assert all(re.fullmatch(ID_PATTERN, booking_id) for booking_id in ids)
    assert len(ids) > 190


def test_many_threads_share_six_tables(store, location):
    barrier, results = threading.Barrier(20), queue.Queue()
    threads = [
        threading.Thread(
            target=race_to_book, args=(location, str(DEFAULT_CONFIG_PATH), NOW, booking(TUESDAY, 19), barrier, results)
        )
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    outcomes = [results.get_nowait() for _ in threads]
    assert sum(kind == "ok" for kind, _ in outcomes) == CONFIG.tables
    assert all(detail == ["fully_booked"] for kind, detail in outcomes if kind == "refused")
    assert count(store) == CONFIG.tables


def race(location: str, processes_count: int, threads_count: int, slot: Reservation) -> list[tuple[str, object]]:
    """Start every racer, release them together, and collect their outcomes."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes_count + threads_count), context.Queue()
    args = (location, str(DEFAULT_CONFIG_PATH), NOW, slot, barrier, results)
    processes = [context.Process(target=race_to_book, args=args) for _ in range(processes_count)]
    threads = [threading.Thread(target=race_to_book, args=args) for _ in range(threads_count)]
    for worker in processes + threads:
        worker.start()
    outcomes = [results.get(timeout=150) for _ in range(processes_count + threads_count)]
    for worker in processes + threads:
        worker.join(timeout=30)
    assert all(process.exitcode == 0 for process in processes)
    return outcomes


@pytest.mark.timeout(180)
def test_threads_and_processes_race_for_the_last_table(store, location):
    for _ in range(CONFIG.tables - 1):
        store.book(booking(TUESDAY, 19), CONFIG, NOW)
    outcomes = race(location, processes_count=4, threads_count=8, slot=booking(TUESDAY, 19, name="Racer"))

    winners = [detail for kind, detail in outcomes if kind == "ok"]
    assert len(winners) == 1 and re.fullmatch(ID_PATTERN, winners[0])
    assert sorted(detail for kind, detail in outcomes if kind == "refused") == [["fully_booked"]] * 11
    assert count(store) == CONFIG.tables
    assert [row["guest_name"] for row in store.bookings_from(TUESDAY, until=TUESDAY)].count("Racer") == 1
    if store.db.backend == "sqlite":
        with sqlite3.connect(store.db.path) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.timeout(180)
def test_processes_creating_a_new_database_together(location):
    outcomes = race(location, processes_count=8, threads_count=0, slot=booking(TUESDAY, 19))
    assert sorted(kind for kind, _ in outcomes) == ["ok"] * CONFIG.tables + ["refused"] * 2
    assert count(ReservationStore(location)) == CONFIG.tables


# ---- SQLite files ----------------------------------------------------------------------------------------


def test_path_comes_from_the_environment_at_start(tmp_path, monkeypatch):
    monkeypatch.delenv("RESERVATIONS_DB", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert ReservationStore.from_settings(Settings.load()).db.path == PROJECT_ROOT / "data" / "reservations.db"
    monkeypatch.setenv("RESERVATIONS_DB", str(tmp_path / "env.db"))
    assert ReservationStore.from_settings(Settings.load()).db.path == tmp_path / "env.db"
    assert ReservationStore(tmp_path / "explicit.db").db.path == tmp_path / "explicit.db"
    monkeypatch.setenv("DATABASE_URL", "postgres://owner:secret@db.example:6543/bookings")
    store = ReservationStore.from_settings(Settings.load())
    assert (store.db.backend, store.db.path) == ("postgresql", None)
    assert "secret" not in store.db.describe() and "db.example:6543/bookings" in store.db.describe()


def test_folder_and_schema_are_created_on_first_use(tmp_path):
    store = ReservationStore(tmp_path / "nested" / "deeper" / "reservations.db")
    assert not store.db.path.parent.exists()  # constructing touches nothing
    assert count(store) == 0
    with sqlite3.connect(store.db.path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert count(ReservationStore(store.db.path)) == 0  # a second store on the same file reuses the schema


def test_a_file_that_is_not_a_database_is_unavailable_not_a_crash(tmp_path):
    path = tmp_path / "reservations.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailable):
        ReservationStore(path).book(booking(TUESDAY, 19), CONFIG, NOW)


# ---- a database server that goes away --------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_server_that_goes_away_is_unavailable_fast_and_the_next_booking_after_it_returns_succeeds():
    store = ReservationStore(postgres.fresh_database())
    store.book(booking(TUESDAY, 18), CONFIG, NOW)  # pooled connections now exist
    server = postgres.server()
    server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.book(booking(TUESDAY, 19), CONFIG, NOW)
        assert time.monotonic() - started < 10
    finally:
        server.start()
    assert re.fullmatch(ID_PATTERN, store.book(booking(TUESDAY, 19), CONFIG, NOW))
    rows = store.bookings_from(TUESDAY, until=TUESDAY)
    assert [row["time"] for row in rows] == ["18:00", "19:00"]  # nothing half-written


# ---- a database made by the first release ----------------------------------------------------------------


def test_a_first_release_database_is_migrated_in_place_and_loses_nothing(location):
    first_release_database(location)

    store = ReservationStore(location)

    for booking_id, name, day, moment, party, requests, language, created in FIRST_RELEASE_ROWS:
        assert store.get(booking_id) == {
            "booking_id": booking_id,
            "guest_name": name,
            "date": day,
            "time": moment,
            "party_size": party,
            "requests": requests,
            "language": language,
            "created_at": created,
            "status": "confirmed",
            "source": "web",
            "phone": None,
            "updated_at": None,
            "cancelled_at": None,
            "override": None,
            "seating": None,
            "tables": None,  # seated by the next booking around it
            "tables_pinned": 0,
        }
    assert count(store) == 3
    assert len(store.seated_between(TUESDAY, TUESDAY)) == 2  # the old bookings still hold their tables
    new_id = store.book(booking(TUESDAY, 19), CONFIG, NOW)
    old_tables = {row["booking_id"]: row["tables"] for row in store.bookings_from(TUESDAY, until=TUESDAY)}
    assert (
        len({old_tables[new_id], *(old_tables[row[0]] for row in FIRST_RELEASE_ROWS if row[2] == TUESDAY.isoformat())})
        == 3
    )
    store.cancel("AS-7K3Q", NOW, actor="agent:web")
    assert count(store) == 4 and count(store, "cancelled") == 1
    assert store.callbacks.listed() == []
    with store.db.read() as connection:
        versions = connection.exec_driver_sql("SELECT version FROM schema_version ORDER BY version").scalars().all()
    assert versions == [1, 2, 3, 4, 5, 6, 7, 8]  # 6: the waitlist; 7: tables; 8: texts
    assert ReservationStore(location).get(new_id)["status"] == "confirmed"  # a restart migrates nothing twice


def test_on_a_space_bookings_go_to_persistent_storage_and_otherwise_the_owner_is_warned(tmp_path, monkeypatch):
    """`/data` is where a Space mounts persistent storage; the test makes one (as CI's root) if there is none."""
    for name in ("DATABASE_URL", "RESERVATIONS_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPACE_ID", "owner/voicebot")
    data = Path("/data")
    made = not data.exists()
    if made:
        data.mkdir()
    try:
        store = ReservationStore.from_settings(Settings.load())
        assert store.db.path == data / "reservations.db"
        assert store.db.persistent and store.db.warning() is None
    finally:
        if made:
            data.rmdir()
    local = ReservationStore(tmp_path / "reservations.db", on_space=True)
    assert not local.db.persistent
    assert "will be lost when the Space restarts" in local.db.warning() and "DATABASE_URL" in local.db.warning()
    assert ReservationStore(postgres.server().url(), on_space=True).db.warning() is None
    off_space = ReservationStore(tmp_path / "reservations.db", on_space=False)
    assert off_space.db.warning() is None  # not a Space: the owner's own disk
