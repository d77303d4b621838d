"""Real tables: areas, sizes and tables pushed together, from a restaurant.toml an owner edited (`SEATING`): two
two-tops that combine, a four-top for two to four, and a two-seat counter pair with a 90-minute stay."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
from pathlib import Path

import pytest

from components.restaurant.book import BookingRefused
from components.restaurant.config import load_config
from components.restaurant.fields import Reservation
from components.restaurant.problems import Code
from components.store.reservations import ReservationStore
from tests import postgres
from tests.domain_fixtures import SEATING, jst, race_to_book, seating_config, write_config

NOW = jst(2026, 4, 20, 9, 0)
TUESDAY = dt.date(2026, 4, 21)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return seating_config(tmp_path)


@pytest.fixture
def config(config_path: Path):
    return load_config(config_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    location = str(tmp_path / "reservations.db") if request.param == "sqlite" else postgres.fresh_database()
    store = ReservationStore(location)
    yield store
    store.db.engine.dispose()


def party(size: int, hour: int = 19, seating: str | None = None, name: str = "Guest") -> Reservation:
    return Reservation(name, TUESDAY, dt.time(hour, 0), size, seating=seating)


def tables_of(store: ReservationStore, booking_id: str) -> str:
    return store.get(booking_id)["tables"]


def test_a_party_of_two_gets_a_two_top_and_a_party_of_four_the_four_top(store, config) -> None:
    two = store.book(party(2), config, NOW)
    four = store.book(party(4), config, NOW)
    assert (tables_of(store, two), tables_of(store, four)) == ("T1", "T3")


def test_with_the_four_top_taken_four_guests_get_two_two_tops_pushed_together(store, config) -> None:
    store.book(party(4, name="First four"), config, NOW)
    second = store.book(party(4, name="Second four"), config, NOW)
    assert tables_of(store, second) == "T1+T2"
    with pytest.raises(BookingRefused) as full:  # no third place for four (the counter seats two)
        store.book(party(4, name="Third four"), config, NOW)
    assert [problem.code for problem in full.value.problems] == [Code.FULLY_BOOKED]


def test_a_guest_who_asks_for_the_counter_sits_at_the_counter(store, config) -> None:
    counter = store.book(party(2, seating="カウンター"), config, NOW)  # said in Japanese, kept as the area's id
    row = store.get(counter)
    assert (row["tables"], row["seating"]) == ("C1", "counter")


def test_a_full_counter_says_other_seating_is_free_and_an_unknown_area_names_the_real_ones(store, config) -> None:
    for name in ("A", "B"):
        store.book(party(2, seating="counter", name=name), config, NOW)
    with pytest.raises(BookingRefused) as counter_full:
        store.book(party(2, seating="counter", name="C"), config, NOW)
    (problem,) = counter_full.value.problems
    assert problem.code == Code.AREA_FULL
    assert problem.message("en") == "The counter has no place for 2 at 19:00 on 2026-04-21, but other seating is free."
    with pytest.raises(BookingRefused) as unknown:
        store.book(party(2, seating="terrace"), config, NOW)
    (problem,) = unknown.value.problems
    assert problem.code == Code.UNKNOWN_AREA and "table, counter" in problem.message("en")


def test_the_counter_frees_its_seats_after_its_own_shorter_stay(store, config) -> None:
    for name in ("A", "B"):
        store.book(party(2, hour=18, seating="counter", name=name), config, NOW)
    at_1930 = Reservation("Late", TUESDAY, dt.time(19, 30), 2, seating="counter")  # 18:00 + 90 minutes
    assert tables_of(store, store.book(at_1930, config, NOW)) == "C1"


def evening_of_pairs(store: ReservationStore, config) -> tuple[list[str], str]:
    """Five pairs at 18:00: four on the two-tops and the counter, the fifth on the four-top; then one two-top pair
    cancels, so a two-top is free again."""
    pairs = [store.book(party(2, hour=18, name=f"Pair {n}"), config, NOW) for n in range(4)]
    on_four_top = store.book(party(2, hour=18, name="Pair on T3"), config, NOW)
    assert [tables_of(store, booking_id) for booking_id in [*pairs, on_four_top]] == ["T1", "T2", "C1", "C2", "T3"]
    store.cancel(pairs[0], NOW, actor="agent:web")
    return pairs[1:], on_four_top


def test_a_pair_is_moved_to_a_free_two_top_to_make_room_for_four(store, config) -> None:
    others, on_four_top = evening_of_pairs(store, config)
    four = store.book(party(4, hour=19, name="Four"), config, NOW)

    assert tables_of(store, four) == "T3"  # the four-top is theirs: the pair moved to a two-top
    at_six = [store.get(booking_id)["tables"] for booking_id in [*others, on_four_top]]
    assert sorted(at_six) == ["C1", "C2", "T1", "T2"] and tables_of(store, on_four_top) in ("T1", "T2")
    assert store.get(others[1])["tables"] == "C1" and store.get(others[2])["tables"] == "C2"  # the counter stays
    reseated = [entry for entry in store.audit.entries(limit=5) if entry["action"] == "reseated"]
    assert reseated and on_four_top in reseated[0]["detail"]


def test_a_booking_the_owner_placed_is_never_moved(store, config) -> None:
    others, on_four_top = evening_of_pairs(store, config)
    moved = store.move(on_four_top, ["T3"], config, NOW, actor="owner:console")
    assert (moved["tables"], moved["tables_pinned"]) == ("T3", 1)
    with pytest.raises(BookingRefused) as full:
        store.book(party(4, hour=19, name="Four"), config, NOW)
    assert [problem.code for problem in full.value.problems] == [Code.FULLY_BOOKED]
    assert tables_of(store, on_four_top) == "T3"
    with pytest.raises(BookingRefused) as taken:  # the owner cannot put it where another booking sits
        store.move(on_four_top, ["C1"], config, NOW, actor="owner:console")
    assert [problem.code for problem in taken.value.problems] == [Code.TABLE_TAKEN]
    assert store.audit.entries(limit=1)[0]["action"] == "moved"


def test_a_party_no_table_takes_is_refused_and_the_config_must_seat_every_allowed_party(tmp_path, config) -> None:
    (tmp_path / "odd").mkdir()
    narrow = SEATING.replace('{ id = "T3", seats = 4, min = 2 }', '{ id = "T3", seats = 3, min = 2 }').replace(
        'combine = [["T1", "T2"]]', "combine = []"
    )
    path = write_config(tmp_path / "odd", {"tables = 6\n": "", "\n[facts]": "\n" + narrow})
    with pytest.raises(ValueError, match="no table or combination seats a party of 4"):
        load_config(path)
    both = write_config(tmp_path, {"\n[facts]": "\n" + SEATING})  # `tables = 6` left in as well
    with pytest.raises(ValueError, match="booking.tables: delete it"):
        load_config(both)


def test_a_config_without_areas_is_one_area_of_identical_tables() -> None:
    config = load_config()
    (area,) = config.areas
    assert (area.id, len(area.tables), {table.seats for table in area.tables}) == ("table", 6, {4})


@pytest.mark.timeout(180)
def test_two_replicas_racing_for_the_last_four_top_seat_it_once(config_path, config) -> None:
    location = postgres.fresh_database()
    store = ReservationStore(location)
    store.book(party(4, name="Early four"), config, NOW)  # T3: only T1+T2 is left for four
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    args = (location, str(config_path), NOW, party(4, name="Racer"), barrier, results)
    replicas = [context.Process(target=race_to_book, args=args) for _ in range(2)]
    threads = [threading.Thread(target=race_to_book, args=args) for _ in range(2)]
    for worker in replicas + threads:
        worker.start()
    outcomes = [results.get(timeout=150) for _ in range(4)]
    for worker in replicas + threads:
        worker.join(timeout=30)

    winners = [detail for kind, detail in outcomes if kind == "ok"]
    assert len(winners) == 1 and tables_of(store, winners[0]) == "T1+T2"
    assert sorted(detail for kind, detail in outcomes if kind == "refused") == [["fully_booked"]] * 3
    held = [row["tables"] for row in store.bookings_from(TUESDAY, until=TUESDAY)]
    assert sorted(held) == ["T1+T2", "T3"]
    store.db.engine.dispose()


def test_the_tool_takes_a_seating_wish_and_the_draft_is_checked_against_that_area(store, config) -> None:
    from components.restaurant.session import ReservationSession
    from components.restaurant.tools import run_tool

    for name in ("A", "B"):
        store.book(party(2, seating="counter", name=name), config, NOW)
    session = ReservationSession(config, store, "en", clock=lambda: NOW)
    details = {"guest_name": "Mori", "date": TUESDAY.isoformat(), "time": "19:00", "party_size": 2}
    result = run_tool(session, "update_reservation", {**details, "seating": "counter"})
    assert [(problem["field"], problem["code"]) for problem in result["problems"]] == [("seating", "area_full")]
    assert (result["reservation"]["time"], result["reservation"]["seating"]) == ("19:00", None)  # the wish waits
    assert result["alternatives"] and all(slot["time"] != "19:00" for slot in result["alternatives"])
    result = run_tool(session, "update_reservation", {"seating": ""})  # anywhere will do
    assert result["problems"] == [] and result["reservation"]["seating"] is None
    booked = run_tool(session, "confirm_reservation", {})
    assert tables_of(store, booked["booking_id"]) == "T1"
