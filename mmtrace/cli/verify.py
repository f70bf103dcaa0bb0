"""``mmtrace verify TRACE CHECKPOINTS``: check the rebuilt VMA trees against /proc/PID/maps checkpoints.

The checking is :func:`mmtrace.model.verify.verify`; this is its command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..model.verify import Mismatch, VerifyResult, verify

__all__ = ["verify", "main", "VerifyResult", "Mismatch"]


def main(argv: list[str] | None = None) -> int:
    """``mmtrace verify TRACE CHECKPOINTS``; exit status 0 when every checkpoint matches, else 1."""
    ap = argparse.ArgumentParser(prog="mmtrace verify", description=__doc__.splitlines()[0])
    ap.add_argument("trace", type=Path, help="trace directory written by mmtrace record")
    ap.add_argument("checkpoints", type=Path, help="checkpoint directory (DIR/<pid>.txt) or file")
    ap.add_argument("--show", type=int, default=5, help="mismatches to show (default 5)")
    args = ap.parse_args(argv)
    from ..trace import TraceError

    if not args.checkpoints.exists():
        print(f"mmtrace: {args.checkpoints}: no such checkpoint file or directory", file=sys.stderr)
        return 2
    try:
        res = verify(args.trace, args.checkpoints)
    except TraceError as e:
        print(f"mmtrace: {e}", file=sys.stderr)
        return 2
    if res.total == 0:
        print(f"mmtrace: no checkpoints found in {args.checkpoints}", file=sys.stderr)
        return 2
    for pid, (mt, tot) in sorted(res.per_pid.items()):
        print(f"pid {pid}: {mt}/{tot} checkpoints match")
    print(f"total: {res.matched}/{res.total} checkpoints match")
    if res.swept:
        print(f"({res.swept} of them read while other threads changed the tree: matched line by line in address order)")
    for mm in res.mismatches[: args.show]:
        print(mm.describe())
    if len(res.mismatches) > args.show:
        print(f"... {len(res.mismatches) - args.show} more mismatching checkpoints")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
