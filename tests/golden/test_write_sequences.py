"""Golden: the splits' and merges' ``writes`` (columnar) are the old row-by-row
loop's (tests/structure_differential.py), spans widened too."""

from __future__ import annotations

import pytest

from tests.golden.make_golden import DATA
from tests.structure_differential import assert_same_writes

pytestmark = pytest.mark.golden


@pytest.mark.parametrize("name", ("demo.trace", "synthetic-failed-split-vma.trace"))
def test_write_sequences_are_the_rows_ones(name):
    assert assert_same_writes(DATA / name) > 0
