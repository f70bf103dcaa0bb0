"""Golden: the unmapped-area check fed by the changes pass (or by the model's one
replay) is the old stepped replay's (tests/unmapped_area_differential.py), whatever
the window size."""

from __future__ import annotations

import pytest

from tests.golden.make_golden import DATA
from tests.unmapped_area_differential import assert_same_check

pytestmark = pytest.mark.golden


@pytest.mark.parametrize("name", ("demo.trace", "synthetic-failed-split-vma.trace"))
def test_unmapped_area_check_is_the_stepped_one(name):
    n = assert_same_check(DATA / name)
    assert n > 0 or name.startswith("synthetic")
