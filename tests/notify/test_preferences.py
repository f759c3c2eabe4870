"""Preferences: opt-outs are obeyed, quiet hours hold back what is not critical, until they end."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shopflow.notify.preferences import Defer, Preferences, QuietHours, Send, Skip, decide, is_critical
from shopflow.schemas.notifications import Channel

NIGHT = QuietHours(22, 7, "Europe/Paris")  # wraps midnight


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, 15, hour, minute, tzinfo=UTC)  # Paris is UTC+1 in January


def test_a_user_who_chose_nothing_gets_everything_now():
    assert decide(Preferences(), Channel.EMAIL, "welcome", at(3)) == Send()


def test_a_channel_turned_off_is_skipped_even_for_a_critical_message():
    prefs = Preferences(channels_off=frozenset({Channel.SMS}))
    assert decide(prefs, Channel.SMS, "order_confirmed", at(12)) == Skip("channel-off")
    assert decide(prefs, Channel.EMAIL, "order_confirmed", at(12)) == Send()


def test_quiet_hours_defer_a_non_critical_message_until_they_end():
    # 23:30 UTC is 00:30 in Paris: quiet until 07:00 Paris, 06:00 UTC the next day.
    decision = decide(Preferences(quiet_hours=NIGHT), Channel.EMAIL, "welcome", at(23, 30))
    assert decision == Defer(datetime(2026, 1, 16, 6, 0, tzinfo=UTC))


def test_quiet_hours_before_midnight_end_the_next_morning():
    decision = decide(Preferences(quiet_hours=NIGHT), Channel.PUSH, "cart_expiring", at(21, 15))  # 22:15 Paris
    assert decision == Defer(datetime(2026, 1, 16, 6, 0, tzinfo=UTC))


def test_critical_messages_go_through_quiet_hours():
    assert is_critical("order_confirmed") and is_critical("security_new_login") and not is_critical("welcome")
    assert decide(Preferences(quiet_hours=NIGHT), Channel.EMAIL, "order_cancelled", at(2)) == Send()


def test_outside_quiet_hours_everything_goes():
    assert decide(Preferences(quiet_hours=NIGHT), Channel.EMAIL, "welcome", at(12)) == Send()


def test_a_span_within_one_day():
    lunch = QuietHours(12, 14)
    assert lunch.ends_after(at(13)) == at(14)
    assert lunch.ends_after(at(14)) is None
    assert lunch.ends_after(at(11, 59)) is None


@pytest.mark.parametrize(("start", "end", "zone", "message"), [
    (24, 7, "UTC", "start_hour must be an hour from 0 to 23"),
    (7, 7, "UTC", "the same hour"),
    (22, 7, "Mars/Olympus", "unknown time zone"),
])
def test_bad_quiet_hours_are_refused_with_what_to_give(start, end, zone, message):
    with pytest.raises(ValueError, match=message):
        QuietHours(start, end, zone)
