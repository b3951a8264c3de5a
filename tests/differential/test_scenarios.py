"""Hand-written differential scenarios: each runs plainly and cached (every cached mode in
CACHED_MODES); any difference fails, naming scenario, session, cell and the first difference."""

from __future__ import annotations

import pytest

from . import (
    scenarios_bindings,
    scenarios_data,
    scenarios_everyday,
    scenarios_imports,
    scenarios_mutation,
    scenarios_objects,
    scenarios_state,
)
from .harness import CACHED_MODES, ForkServer, Mode, Scenario, check, report

MODULES = [
    scenarios_everyday,
    scenarios_imports,
    scenarios_mutation,
    scenarios_bindings,
    scenarios_state,
    scenarios_objects,
    scenarios_data,
]
SCENARIOS: list[Scenario] = [s for m in MODULES for s in m.SCENARIOS]


def test_scenario_names_are_unique() -> None:
    names = [s.name for s in SCENARIOS]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("mode", CACHED_MODES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(server: ForkServer, scenario: Scenario, mode: Mode) -> None:
    diffs = check(server, scenario, mode)
    if diffs:
        pytest.fail(report(diffs), pytrace=False)
