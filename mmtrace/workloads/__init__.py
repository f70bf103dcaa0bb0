"""Bundled C workloads, compiled on first use.

``demo``  a deterministic tour of splits, merges, holes, mremap, MAP_FIXED,
          file mappings, brk, a thread, fork, exec and hugetlb
          (``demo [--checkpoints DIR] [--sleep-ms N]``).
``churn`` a seeded random op generator for testing a VMA-tree model
          (``churn --seed S --ops N [--checkpoints DIR] [--forks K]
          [--hugetlb auto|on|off] [--threads] [-v]``).
``hugetlb`` hugetlb reservation scenarios (private, fork, NORESERVE, shared, memfd).
``hugetlb_churn`` seeded hugetlb churn of a parent and forked children at once
          (``hugetlb_churn --seed S [--ops N] [--pages P] [--procs K] [--shared]``).

With ``--checkpoints DIR`` both append ``/proc/self/maps`` snapshots to
``DIR/<pid>.txt``; :func:`mmtrace.events.procmaps.read_checkpoints` reads them.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

__all__ = ["build", "source", "NAMES"]

NAMES = ("demo", "churn", "hugetlb", "hugetlb_churn")

CFLAGS = ("-O2", "-Wall", "-pthread")


class WorkloadBuildError(RuntimeError):
    """The C compiler is missing or failed; the message carries its stderr."""


def source(name: str) -> Path:
    """Path of the C source of workload ``name`` (shipped next to this module).

    Raises ``ValueError`` for a name not in :data:`NAMES`.
    """
    if name not in NAMES:
        raise ValueError(f"unknown workload {name!r} (known: {', '.join(NAMES)})")
    return Path(__file__).resolve().with_name(f"{name}.c")


def _default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "mmtrace" / "bin"


def build(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Compile workload ``name`` and return the path of the executable.

    The binary is ``<cache_dir>/<name>-<first 12 hex of sha256(source and headers)>``, so
    an edited source gets a new binary and an existing one is reused.
    ``cache_dir`` defaults to ``$XDG_CACHE_HOME/mmtrace/bin`` (else
    ``~/.cache/mmtrace/bin``).  The compiler is ``$CC`` (may hold flags) or
    ``cc``, run with ``-O2 -Wall -pthread``; it writes a temporary file that
    is then renamed into place, so concurrent builds are safe.

    Raises :class:`WorkloadBuildError` with the compiler's stderr when the
    compiler is missing or fails.
    """
    src = source(name)
    # The headers next to the sources (checkpoint.h) are part of every build.
    h = hashlib.sha256(src.read_bytes())
    for header in sorted(src.parent.glob("*.h")):
        h.update(header.read_bytes())
    digest = h.hexdigest()[:12]
    out_dir = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    out = out_dir / f"{name}-{digest}"
    if out.is_file() and os.access(out, os.X_OK):
        return out
    out_dir.mkdir(parents=True, exist_ok=True)

    cc = shlex.split(os.environ.get("CC") or "cc")
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-{digest}.", suffix=".tmp", dir=out_dir)
    os.close(fd)
    cmd = [*cc, *CFLAGS, "-o", tmp, str(src)]
    try:
        try:
            res = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:  # no such compiler, or not executable
            raise WorkloadBuildError(f"cannot run C compiler {cc[0]!r}: {e}") from e
        if res.returncode != 0:
            raise WorkloadBuildError(
                f"building {name} failed ({shlex.join(cmd)}, exit {res.returncode}):\n"
                f"{res.stderr.strip()}"
            )
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
