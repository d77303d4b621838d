"""The SQLite booking store: rows, refusals, ids, file handling, and races for the last table."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import queue
import re
import sqlite3
import threading

import pytest

from components.restaurant import store as store_module
from components.restaurant.config import DEFAULT_CONFIG_PATH, PROJECT_ROOT, load_config
from components.restaurant.fields import Reservation
from components.restaurant.problems import Code
from components.restaurant.store import ID_ALPHABET, BookingRefused, ReservationStore
from tests.domain_fixtures import ID_PATTERN, booking, jst, race_to_book

CONFIG = load_config(DEFAULT_CONFIG_PATH)
NOW = jst(2026, 4, 20, 9, 0)
TUESDAY = dt.date(2026, 4, 21)


@pytest.fixture
def store(tmp_path):
    return ReservationStore(tmp_path / "reservations.db")


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
    }
    assert store.get(booking_id.lower()) == store.get(booking_id)  # as a guest might spell it
    assert store.get("AS-ZZZZ") is None
    assert store.count() == 1


def test_language_defaults_to_the_restaurants(store):
    booking_id = store.book(booking(TUESDAY, 19), CONFIG, NOW)
    assert store.get(booking_id)["language"] == CONFIG.default_language


def test_bookings_on_a_day_in_time_order(store):
    for hour in (20, 12, 18):
        store.book(booking(TUESDAY, hour), CONFIG, NOW)
    store.book(booking(TUESDAY + dt.timedelta(days=1), 19), CONFIG, NOW)
    assert [row["time"] for row in store.bookings_on(TUESDAY)] == ["12:00", "18:00", "20:00"]
    assert [row["time"] for row in store.bookings_on("2026-04-22")] == ["19:00"]
    assert store.count() == 4


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
    assert store.count() == 0


def test_the_seventh_booking_at_a_time_is_refused(store):
    for _ in range(CONFIG.tables):
        store.book(booking(TUESDAY, 19), CONFIG, NOW)
    with pytest.raises(BookingRefused) as full:
        store.book(booking(TUESDAY, 18, 30), CONFIG, NOW)
    assert [p.code for p in full.value.problems] == [Code.FULLY_BOOKED]
    store.book(booking(TUESDAY, 21), CONFIG, NOW)  # the 19:00 tables are free again at 21:00
    assert store.count() == CONFIG.tables + 1


def test_starts_between_reads_the_neighbourhood(store):
    store.book(booking(TUESDAY, 19), CONFIG, NOW)
    store.book(booking(TUESDAY + dt.timedelta(days=2), 19), CONFIG, NOW)
    assert store.starts_between(TUESDAY, TUESDAY + dt.timedelta(days=1)) == [dt.datetime(2026, 4, 21, 19, 0)]


def test_booking_id_collisions_are_retried(store, monkeypatch):
    ids = iter(["AS-AAAA", "AS-AAAA", "AS-BBBB"])
    monkeypatch.setattr(store_module, "new_booking_id", lambda prefix: next(ids))
    assert store.book(booking(TUESDAY, 18), CONFIG, NOW) == "AS-AAAA"
    assert store.book(booking(TUESDAY, 19), CONFIG, NOW) == "AS-BBBB"
    assert store.count() == 2


def test_booking_ids_avoid_ambiguous_characters():
    assert not set("01OIL") & set(ID_ALPHABET)
    ids = {store_module.new_booking_id("AS") for _ in range(200)}
    assert all(re.fullmatch(ID_PATTERN, booking_id) for booking_id in ids)
    assert len(ids) > 190


def test_path_comes_from_the_environment_at_construction(tmp_path, monkeypatch):
    monkeypatch.delenv("RESERVATIONS_DB", raising=False)
    assert ReservationStore().path == PROJECT_ROOT / "data" / "reservations.db"
    monkeypatch.setenv("RESERVATIONS_DB", str(tmp_path / "env.db"))
    assert ReservationStore().path == tmp_path / "env.db"
    assert ReservationStore(tmp_path / "explicit.db").path == tmp_path / "explicit.db"


def test_folder_and_schema_are_created_on_first_use(tmp_path):
    store = ReservationStore(tmp_path / "nested" / "deeper" / "reservations.db")
    assert not store.path.parent.exists()  # constructing touches nothing
    assert store.count() == 0
    with sqlite3.connect(store.path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ReservationStore(store.path).count() == 0  # a second store on the same file reuses the schema


def test_many_threads_share_six_tables(store):
    barrier, results = threading.Barrier(20), queue.Queue()
    threads = [
        threading.Thread(
            target=race_to_book,
            args=(str(store.path), str(DEFAULT_CONFIG_PATH), NOW, booking(TUESDAY, 19), barrier, results),
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
    assert store.count() == CONFIG.tables


def race(store, processes_count: int, threads_count: int, slot: Reservation) -> list[tuple[str, object]]:
    """Start every racer, release them together, and collect their outcomes."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes_count + threads_count), context.Queue()
    args = (str(store.path), str(DEFAULT_CONFIG_PATH), NOW, slot, barrier, results)
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
def test_threads_and_processes_race_for_the_last_table(store):
    for _ in range(CONFIG.tables - 1):
        store.book(booking(TUESDAY, 19), CONFIG, NOW)
    outcomes = race(store, processes_count=4, threads_count=8, slot=booking(TUESDAY, 19, name="Racer"))

    winners = [detail for kind, detail in outcomes if kind == "ok"]
    assert len(winners) == 1 and re.fullmatch(ID_PATTERN, winners[0])
    assert sorted(detail for kind, detail in outcomes if kind == "refused") == [["fully_booked"]] * 11
    assert store.count() == CONFIG.tables
    assert [row["guest_name"] for row in store.bookings_on(TUESDAY)].count("Racer") == 1
    with sqlite3.connect(store.path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.timeout(180)
def test_processes_creating_a_new_file_together(store):
    assert not store.path.exists()
    outcomes = race(store, processes_count=8, threads_count=0, slot=booking(TUESDAY, 19))
    assert sorted(kind for kind, _ in outcomes) == ["ok"] * CONFIG.tables + ["refused"] * 2
    assert store.count() == CONFIG.tables
