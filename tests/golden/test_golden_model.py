"""Golden diff: changes, splits, merges and processes of the checked-in traces
must equal, as CSV text, the expected files written beside them
(tests/golden/expected, made by make_model_golden.py from the code of the time)."""

from __future__ import annotations

import difflib

import pytest

import mmtrace
from tests.golden.model_frames import DATA, EXPECTED, FRAMES, TRACES, csv_text, frame


@pytest.mark.parametrize("name", FRAMES)
@pytest.mark.parametrize("trace", TRACES)
def test_model_frame_matches_golden(trace, name):
    want = (EXPECTED / f"{trace.removesuffix('.trace')}.{name}.csv").read_text()
    got = csv_text(frame(mmtrace.open(DATA / trace), name))
    if got != want:
        diff = "".join(list(difflib.unified_diff(want.splitlines(True), got.splitlines(True), "expected", "got"))[:60])
        pytest.fail(f"{trace} {name} differs from the golden CSV:\n{diff}")
