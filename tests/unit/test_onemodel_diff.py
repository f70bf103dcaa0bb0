"""Differential test on the checked-in traces: the old change model and the
windowed one give identical changes/splits/merges/counts (see tests/differential.py)."""

import pytest

import mmtrace
from tests.differential import assert_same
from tests.golden.model_frames import DATA, TRACES


@pytest.mark.parametrize("name", TRACES)
def test_old_and_new_changes_agree(name):
    assert assert_same(mmtrace.open(DATA / name)) > 0
