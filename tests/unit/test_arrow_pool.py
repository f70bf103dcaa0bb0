"""mmtrace's own processes (the CLI, the recorder) allocate Arrow memory with malloc
(trace/pool.py), and no child sees the variable that chose it."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import os, sys
{setup}
import pyarrow as pa
print(pa.default_memory_pool().backend_name, os.environ.get("ARROW_DEFAULT_MEMORY_POOL"))
"""


def _run(setup: str, env=None) -> str:
    return subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True,
                          check=True, env=env).stdout.split("\n")[-2]


def test_the_cli_and_the_recorder_choose_malloc_and_put_the_variable_back():
    cli = "from mmtrace.cli.main import main\ntry:\n    main(['summary', '/nonexistent'])\nexcept SystemExit:\n    pass"
    assert _run(cli) == "system None"
    assert _run("import mmtrace.capture.recorder") == "system None"


def test_a_library_user_keeps_arrows_default_and_a_users_choice_is_kept():
    import os

    default = _run("import mmtrace")
    assert default.split()[0] != "system" and default.endswith(" None")  # importing mmtrace changes nothing
    env = dict(os.environ, ARROW_DEFAULT_MEMORY_POOL="jemalloc")
    got = _run("from mmtrace.trace.pool import use_system_allocator\nuse_system_allocator()", env=env)
    assert got.endswith(" jemalloc")  # the user's variable stays, and wins
