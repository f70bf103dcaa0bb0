"""pytest plugin for the guest (``-p tests.vm.figures``): every model verify a
test runs is written down, with its trace's event counts, for the README's
kernel table.

Loaded before the test modules are imported, it wraps
``mmtrace.cli.verify.verify`` (so ``from mmtrace.cli.verify import verify``
in a test gets the wrapper); each call appends one JSON line to
``$MMTRACE_VM_FIGURES``: kernel, test, checkpoints matched/total, and the
trace's ``events`` (per kind) and ``lost`` from its metadata.  Nothing is
changed in what the tests see or assert.
"""

from __future__ import annotations

import functools
import json
import os
import platform
from pathlib import Path

import mmtrace.cli.verify as _verify_mod

_original = _verify_mod.verify


@functools.wraps(_original)
def _verify(trace_path, checkpoints_dir, **kw):
    res = _original(trace_path, checkpoints_dir, **kw)
    out = os.environ.get("MMTRACE_VM_FIGURES")
    if out:
        try:
            meta = json.loads((Path(trace_path) / "metadata.json").read_text())
        except (OSError, ValueError):
            meta = {}
        line = {
            "kernel": platform.release(),
            "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
            "matched": res.matched,
            "total": res.total,
            "events": meta.get("events", {}),
            "lost": sum((meta.get("lost") or {}).values()),
        }
        with open(out, "a") as f:
            f.write(json.dumps(line) + "\n")
    return res


_verify_mod.verify = _verify
