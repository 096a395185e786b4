"""ablate.records: what a run produced, and the late validation gain read from its curve."""

from __future__ import annotations

import pytest

from ablate.records import late_gain


def test_late_gain_is_over_the_last_quarter_of_each_members_own_epochs():
    assert late_gain([0.5, 0.6, 0.7, 0.8]) == pytest.approx(0.1)  # 4 epochs: the last one
    assert late_gain([0.1 * i for i in range(1, 9)]) == pytest.approx(0.2)  # 8 epochs: the last two
    assert late_gain([0.5]) != late_gain([0.5])  # NaN: one epoch says nothing
    # an ensemble's curve is its members' in a row: member 2's early epochs are not "late"
    member = [0.2, 0.4, 0.6, 0.7, 0.8, 0.85, 0.88, 0.9, 0.9, 0.91]
    assert late_gain(member + member, members=2) == pytest.approx(0.01)
    assert late_gain(member + member[:-1] + [0.93], members=2) == pytest.approx(0.02)  # the members' mean
    assert late_gain(member + member) == pytest.approx(0.11)  # read as one run: member 2's epoch 5 to 10
