"""Differential test on the checked-in traces: the change model gives identical
changes/splits/merges/counts whatever the window size (see tests/differential.py;
before the old path was deleted the same test compared old and new)."""

import pytest

import mmtrace
from tests.differential import assert_same
from tests.golden.model_frames import DATA, TRACES


@pytest.mark.parametrize("name", TRACES)
def test_changes_agree_at_every_window_size(name):
    assert assert_same(mmtrace.open(DATA / name)) > 0
