"""Store outages are logged once per interval and scope, with a count of what was held back."""

from __future__ import annotations

from wingman.server.log_gate import WarningGate
from wingman.server.request_log import request_id_from


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_warning_per_interval_and_scope() -> None:
    clock = Clock()
    gate = WarningGate(interval=10, clock=clock)
    assert gate.open("api:user") == 0
    assert [gate.open("api:user") for _ in range(3)] == [None, None, None]
    assert gate.open("otp:ip") == 0  # scopes are independent
    clock.now += 10
    assert gate.open("api:user") == 3
    assert gate.open("api:user") is None


def test_request_ids_are_kept_only_when_plain() -> None:
    assert request_id_from("req-42_a.b:c") == "req-42_a.b:c"
    made = {request_id_from(bad) for bad in (None, "", "a b", "x" * 129, "é", "a\nb")}
    assert len(made) == 6
    assert all(len(value) == 32 and value.isalnum() for value in made)
