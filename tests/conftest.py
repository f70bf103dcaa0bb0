"""Shared fixtures: literal event frames (no root), and the live-test gate."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mmtrace.events.decode import make_records, to_frame


def records(kind: str, rows: list[dict]) -> np.ndarray:
    """Build raw records of ``kind`` from dicts (missing fields are 0)."""
    return make_records(kind, rows)


def frame(kind: str, rows: list[dict], **kw):
    """A decoded DataFrame of ``kind`` built from dicts, as the recorder stores it."""
    return to_frame(kind, records(kind, rows), **kw)


@pytest.fixture
def root_only():
    """Live tests record real tracepoints: they need root.  CI runs as root, so
    this fails (never skips) when not root: a skipped live test would hide a
    broken CI setup."""
    assert os.geteuid() == 0, "live tests need root (CI runs them as root): run them with sudo"


def raise_hugepages(n: int) -> None:
    """At least ``n`` huge pages in the pool (mmtrace.capture.host.raise_hugepages:
    raised if lower, never lowered), or the test fails."""
    from mmtrace.capture.host import raise_hugepages as raise_pool

    assert raise_pool(n) >= n, f"the kernel kept vm.nr_hugepages below {n}"


def compile_c(directory, name: str, source: str):
    """``source`` written to ``directory/name.c`` and built (cc -O2) into
    ``directory/name``; returns that executable's path."""
    import subprocess
    from pathlib import Path

    src = Path(directory) / f"{name}.c"
    src.write_text(source)
    exe = src.with_suffix("")
    subprocess.run(["cc", "-O2", "-o", str(exe), str(src)], check=True)
    return exe
