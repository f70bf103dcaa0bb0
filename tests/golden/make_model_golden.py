"""Writes tests/golden/expected/<trace>.<frame>.csv (review the diff before committing).

    .venv/bin/python tests/golden/make_model_golden.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import mmtrace  # noqa: E402
from tests.golden.model_frames import DATA, EXPECTED, FRAMES, TRACES, csv_text, frame  # noqa: E402

if __name__ == "__main__":
    EXPECTED.mkdir(exist_ok=True)
    for tr in TRACES:
        t = mmtrace.open(DATA / tr)
        for name in FRAMES:
            df = frame(t, name)
            (EXPECTED / f"{tr.removesuffix('.trace')}.{name}.csv").write_text(csv_text(df))
            print(tr, name, len(df))
