"""The system prompt: rendered from the config, in Japanese and English, with the restaurant's today."""

from __future__ import annotations

import datetime as dt

import pytest

from components.restaurant.config import DEFAULT_CONFIG_PATH, load_config
from components.restaurant.prompt import render_instructions
from components.restaurant.tools import TOOL_NAMES
from tests.domain_fixtures import jst

CONFIG = load_config(DEFAULT_CONFIG_PATH)


def test_japanese_prompt_states_the_config_and_today():
    prompt = render_instructions(CONFIG, "ja", dt.datetime(2026, 3, 1, 15, 30, tzinfo=dt.UTC))
    assert "「AI-SHIFT」" in prompt
    assert "今日は2026年3月2日（月曜日）" in prompt  # Tokyo's today, not UTC's
    assert "平日 11:00〜22:00（最終入店 21:00）" in prompt
    assert "土日祝 10:00〜23:00（最終入店 22:00）" in prompt
    assert "12月31日〜1月3日（年末年始休業）" in prompt
    assert "1組1〜4名様" in prompt and "15分単位" in prompt and "60日先" in prompt
    assert "敬語" in prompt and "その言語でお答えください" in prompt
    assert "はっきり「はい」" in prompt and "予約番号" in prompt


def test_english_prompt_states_the_config_and_today():
    prompt = render_instructions(CONFIG, "en", dt.datetime(2026, 3, 1, 15, 30, tzinfo=dt.UTC))
    assert "Today is Monday, Mar 2, 2026 (2026-03-02)" in prompt
    assert "weekdays 11:00–22:00 (last seating 21:00)" in prompt
    assert "Saturdays, Sundays and public holidays 10:00–23:00 (last seating 22:00)" in prompt
    assert "Dec 31 – Jan 3 (New Year holidays)" in prompt
    assert "1 to 4 guests" in prompt
    assert "Speak English" in prompt and "answer in their language" in prompt
    assert "only after the guest clearly says yes" in prompt and "booking ID aloud" in prompt


@pytest.mark.parametrize("language", ["ja", "en"])
def test_both_prompts_name_every_tool(language):
    prompt = render_instructions(CONFIG, language, jst(2026, 4, 20))
    assert all(name in prompt for name in TOOL_NAMES)


def test_calendar_marks_holidays_and_closed_days():
    golden_week = render_instructions(CONFIG, "ja", jst(2026, 4, 28))
    assert "2026-05-06(水・祝)" in golden_week and "2026-05-07(木)" in golden_week
    new_year = render_instructions(CONFIG, "en", jst(2026, 12, 25))
    assert "Thu 2026-12-31 (closed)" in new_year and "Mon 2027-01-04," in new_year
    assert "Fri 2027-01-08" not in new_year  # two weeks only


def test_english_language_tags_and_bad_clocks():
    assert render_instructions(CONFIG, "en-US", jst(2026, 4, 20)).startswith("You are")
    with pytest.raises(ValueError):
        render_instructions(CONFIG, "fr", jst(2026, 4, 20))
    with pytest.raises(ValueError, match="aware"):
        render_instructions(CONFIG, "ja", dt.datetime(2026, 4, 20, 12, 0))


def test_default_now_is_the_current_time():
    before = dt.datetime.now(CONFIG.tz).date()
    prompt = render_instructions(CONFIG, "en")
    after = dt.datetime.now(CONFIG.tz).date()  # the call may straddle midnight
    assert f"({before.isoformat()})" in prompt or f"({after.isoformat()})" in prompt


def test_a_restaurant_with_areas_tells_the_agent_where_guests_can_sit(tmp_path):
    from tests.domain_fixtures import seating_config

    config = load_config(seating_config(tmp_path))
    english = render_instructions(config, "en", jst(2026, 4, 20))
    japanese = render_instructions(config, "ja", jst(2026, 4, 20))
    assert "Seating: table (seating: table); counter (seating: counter)." in english
    assert "カウンター（seating: counter）" in japanese
    assert "Seating:" not in render_instructions(CONFIG, "en", jst(2026, 4, 20))  # one area: nothing to choose
