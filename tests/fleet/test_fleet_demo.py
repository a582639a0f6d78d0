"""The fleet demo on real local cells: a bad release in ring 0 rolls back and ring 1 is never touched."""

from __future__ import annotations

import pytest

from zdu.registry import get_plugin_manager
from zdu_local.fleet_demo import render_fleet_table, run_fleet_demo


@pytest.mark.slow
def test_a_bad_release_in_ring_0_rolls_back_and_ring_1_is_never_touched():
    rows = {row.cell: row for row in run_fleet_demo(manager=get_plugin_manager(), rps=20)}
    canary = rows["cell-a"]
    assert (canary.ring, canary.status, canary.serving) == ("ring-0", "rolled_back", "16.5.0")
    # the instrument saw the bad release: failed requests during the canary's rollout
    assert canary.requests > 0 and canary.failed > 0
    for name in ("cell-b", "cell-c"):
        row = rows[name]
        assert (row.ring, row.status, row.serving, row.requests) == ("ring-1", "untouched", "16.5.0", 0)
        assert "ring-0 halted the fleet" in row.note
    assert "rolled_back" in render_fleet_table(list(rows.values()))
