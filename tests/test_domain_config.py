"""The restaurant config: shipped defaults, path resolution, strict validation, and owners' edits taking effect."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from components.restaurant.config import DEFAULT_CONFIG_PATH, PROJECT_ROOT, ClosedPeriod, Localized, load_config
from components.restaurant.fields import Reservation
from components.restaurant.problems import Code
from components.restaurant.prompt import render_instructions
from components.restaurant.rules import opening, validate_reservation
from components.settings import Settings
from tests.domain_fixtures import jst, write_config


def test_shipped_defaults_are_ai_shift(monkeypatch):
    monkeypatch.delenv("RESTAURANT_CONFIG", raising=False)
    monkeypatch.chdir(Path("/"))  # resolved from the package, not the working directory
    config = load_config()
    assert DEFAULT_CONFIG_PATH == PROJECT_ROOT / "assets" / "restaurant.toml"
    assert (config.name("ja"), config.name("en")) == ("AI-SHIFT", "AI-SHIFT")
    assert config.tz.key == "Asia/Tokyo"
    assert (config.weekday_hours.open, config.weekday_hours.close) == (dt.time(11), dt.time(22))
    assert (config.weekend_hours.open, config.weekend_hours.close) == (dt.time(10), dt.time(23))
    assert config.public_holidays == "JP"
    assert config.closed_periods == (ClosedPeriod((12, 31), (1, 3), Localized("年末年始休業", "New Year holidays")),)
    assert (config.min_party_size, config.max_party_size) == (1, 4)
    assert (config.last_seating_minutes, config.table_minutes, config.tables) == (60, 120, 6)
    assert (config.max_days_ahead, config.step_minutes) == (60, 15)
    assert (config.booking_id_prefix, config.default_language) == ("AS", "ja")


def test_environment_variable_overrides_the_path(tmp_path, monkeypatch):
    path = write_config(tmp_path, {'name.en = "AI-SHIFT"': 'name.en = "Elsewhere"'})
    monkeypatch.setenv("RESTAURANT_CONFIG", str(path))
    assert load_config(Settings.load().restaurant_config).name("en") == "Elsewhere"
    assert load_config(DEFAULT_CONFIG_PATH).name("en") == "AI-SHIFT"  # an explicit path still wins


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('timezone = "Asia/Tokyo"\n', "", "restaurant.timezone"),
        ('timezone = "Asia/Tokyo"', 'timezone = "Mars/Olympus"', "restaurant.timezone"),
        ('close = "22:00"', 'close = "25:00"', "hours.weekday.close"),
        ('close = "22:00"', 'close = "10:00"', "hours.weekday.close"),
        ("tables = 6", "tabels = 6", "booking.tabels"),
        ("tables = 6", "tables = 0", "booking.tables"),
        ("tables = 6", 'tables = "6"', "booking.tables"),
        ("max_party_size = 4", "max_party_size = true", "booking.max_party_size"),
        ("min_party_size = 1", "min_party_size = 9", "booking.min_party_size"),
        ("step_minutes = 15", "step_minutes = 7", "booking.step_minutes"),
        ('booking_id_prefix = "AS"', 'booking_id_prefix = "as-"', "restaurant.booking_id_prefix"),
        ('default_language = "ja"', 'default_language = "fr"', "restaurant.default_language"),
        ('public_holidays = "JP"', 'public_holidays = "XX"', "hours.public_holidays"),
        ("closed_weekdays = []", 'closed_weekdays = ["funday"]', "hours.closed_weekdays"),
        ('from = "12-31"', 'from = "02-30"', "closed[0].from"),
        ('from = "12-31"', 'from = "2026-12-31"', "closed[0].from"),
        ('reason.en = "New Year holidays"', "", "closed[0].reason.en"),
        ("last_seating_minutes = 60", "last_seating_minutes = 700", "hours.last_seating_minutes"),
    ],
)
def test_invalid_settings_name_the_key(tmp_path, old, new, key):
    with pytest.raises(ValueError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(write_config(tmp_path, {old: new}))


def test_not_toml_is_a_value_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[restaurant\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(path)


def test_closed_periods_fixed_dates_and_weekly_days(tmp_path):
    path = write_config(
        tmp_path,
        {
            "closed_weekdays = []": 'closed_weekdays = ["Tuesday"]',
            'reason.en = "New Year holidays"\n': 'reason.en = "New Year holidays"\n\n'
            '[[closed]]\nfrom = "2026-08-13"\nto = "2026-08-16"\nreason.ja = "改装"\nreason.en = "renovation"\n',
        },
    )
    config = load_config(path)
    assert opening(dt.date(2026, 8, 12), config) is not None
    assert opening(dt.date(2026, 8, 13), config) is None
    assert opening(dt.date(2026, 8, 16), config) is None
    assert opening(dt.date(2027, 8, 13), config) is not None  # a fixed range does not recur
    assert opening(dt.date(2026, 8, 18), config) is None  # a Tuesday


def test_changed_config_changes_rules_and_prompt(tmp_path):
    config = load_config(
        write_config(
            tmp_path,
            {
                'weekday = { open = "11:00", close = "22:00" }': 'weekday = { open = "12:00", close = "20:00" }',
                "last_seating_minutes = 60": "last_seating_minutes = 30",
                "max_party_size = 4": "max_party_size = 8",
            },
        )
    )
    now = jst(2026, 4, 20, 9, 0)

    def problems(hour: int, minute: int, party_size: int = 2) -> set[str]:
        reservation = Reservation("Hanako", dt.date(2026, 4, 21), dt.time(hour, minute), party_size)
        return {problem.code.value for problem in validate_reservation(reservation, config, now)}

    assert problems(11, 0) == {"outside_hours"}
    assert problems(12, 0) == set()
    assert problems(19, 30) == set()
    assert problems(19, 45) == {"outside_hours"}
    assert problems(19, 0, party_size=8) == set()
    refused = validate_reservation(Reservation("Hanako", dt.date(2026, 4, 21), dt.time(19), 9), config, now)
    assert [problem.code for problem in refused] == [Code.PARTY_TOO_LARGE]
    assert refused[0].message("en") == "We seat at most 8 guests per booking."

    japanese, english = render_instructions(config, "ja", now), render_instructions(config, "en", now)
    assert "平日 12:00〜20:00（最終入店 19:30）" in japanese and "11:00" not in japanese
    assert "1組1〜8名様" in japanese
    assert "weekdays 12:00–20:00 (last seating 19:30)" in english and "11:00" not in english
    assert "1 to 8 guests" in english
