"""Golden: the VMA counts and lifetimes fed by the changes pass are the model's
(tests/timeline_differential.py), whatever the window size."""

from __future__ import annotations

import pytest

from tests.golden.make_golden import DATA
from tests.timeline_differential import assert_timeline_is_the_model

pytestmark = pytest.mark.golden


@pytest.mark.parametrize("window", (None, 97, 5))
@pytest.mark.parametrize("name", ("demo.trace", "synthetic-failed-split-vma.trace"))
def test_timeline_is_the_model(tmp_path, name, window):
    assert assert_timeline_is_the_model(DATA / name, tmp_path, window=window) > 0
