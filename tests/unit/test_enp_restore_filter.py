"""The restore role's filter: seconds between two times as PostgreSQL and the decision write them."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest
from ansible.errors import AnsibleFilterError

SPEC = importlib.util.spec_from_file_location(
    "enp_restore_filter", pathlib.Path(__file__).resolve().parents[2] / "plugins" / "filter" / "enp_restore.py"
)
assert SPEC and SPEC.loader
FILTER = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(FILTER)
seconds_between = FILTER.FilterModule().filters()["enp_seconds_between"]


@pytest.mark.parametrize(
    ("later", "earlier", "seconds"),
    [
        ("2026-12-06T07:50:13.789530Z", "2026-12-06 07:50:14.572393+00", -0.783),  # kept past the incident start
        ("2026-12-06T07:50:05Z", "2026-12-06 07:50:01.12+00", 3.88),
        ("2026-12-06T13:20:05+05:30", "2026-12-06T07:50:00Z", 5.0),  # IST against UTC
        (1796543405.0, "2026-12-06T07:50:00Z", None),  # epoch seconds are accepted (value checked below)
    ],
)
def test_seconds_between_pg_log_and_iso_times(later: object, earlier: str, seconds: float | None) -> None:
    result = seconds_between(later, earlier)
    if seconds is None:
        assert isinstance(result, float)
    else:
        assert result == pytest.approx(seconds, abs=0.001)


def test_a_missing_time_gives_none_and_garbage_fails_with_the_filter_name() -> None:
    assert seconds_between("", "2026-12-06T07:50:00Z") is None
    assert seconds_between("2026-12-06T07:50:00Z", None) is None
    with pytest.raises(AnsibleFilterError, match="enp_seconds_between"):
        seconds_between("yesterday at noon", "2026-12-06T07:50:00Z")
