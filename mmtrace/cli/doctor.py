"""``mmtrace doctor``: can this host record?  One row per check, a fix per failure."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

__all__ = ["Check", "run_checks", "render"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def run_checks() -> list[Check]:
    """Run every check; never raises."""
    from ..capture.kernel import OPTIONAL_TRACEPOINTS, REQUIRED_TRACEPOINTS, SYSCALL_NR, SYSCALLS, Tracefs, find_headers
    from ..capture.kernel import COMPAT_ENV, compat_unavailable, tracepoints_without_callers

    checks: list[Check] = []
    root = os.geteuid() == 0
    checks.append(Check("root", root, "euid 0" if root else f"euid {os.geteuid()}", "run with sudo"))
    try:
        import bcc  # noqa: F401

        checks.append(Check("BCC python module", True, getattr(bcc, "__file__", "")))
    except ImportError as e:
        checks.append(
            Check(
                "BCC python module",
                False,
                str(e),
                "apt-get install python3-bpfcc bpfcc-tools (then ./setup.sh links it into the venv); "
                "never 'pip install bcc'",
            )
        )
    btf = "/sys/kernel/btf/vmlinux"
    checks.append(
        Check("kernel BTF", os.path.exists(btf), btf if os.path.exists(btf) else "missing",
              "needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")
    )
    try:
        h = find_headers()
        own = f"/lib/modules/{platform.release()}/build"
        if h is None and os.path.isdir(own):
            checks.append(Check("kernel headers", True, own))
        elif h:
            checks.append(Check("kernel headers", True, f"{h} (fallback tree; offsets come from BTF)"))
        else:
            checks.append(
                Check("kernel headers", False, "none found",
                      f"apt-get install linux-headers-{platform.release()} || apt-get install linux-headers-amd64")
            )
    except PermissionError as e:
        checks.append(Check("kernel headers", False, f"{e.filename} is not readable as euid {os.geteuid()}",
                            "run 'sudo mmtrace doctor'"))
    except Exception as e:  # noqa: BLE001 - doctor reports, never crashes
        checks.append(Check("kernel headers", False, str(e), "apt-get install linux-headers-amd64"))
    tf = Tracefs()
    try:
        mounted = tf.mounted
    except OSError:
        mounted = False
    if not root and not _readable(tf.root / "events"):
        # tracefs is root-only (mode 0700): an unprivileged doctor cannot
        # list the tracepoints, and must say so rather than die on it.
        checks.append(Check("tracefs", False, f"{tf.root}/events is not readable as euid {os.geteuid()}",
                            "run 'sudo mmtrace doctor' to check the tracepoints (recording needs root anyway)"))
        return checks + _huge_pages_check()
    if not mounted and root:
        try:
            tf.mount()
            mounted = True
        except Exception:  # noqa: BLE001
            pass
    checks.append(
        Check("tracefs", mounted, str(tf.root) if mounted else "not mounted",
              "mount -t tracefs nodev /sys/kernel/tracing")
    )
    if mounted:
        for tp in REQUIRED_TRACEPOINTS:
            ok = tf.exists(tp)
            checks.append(Check(f"tracepoint {tp}", ok, "present" if ok else "MISSING",
                                "needs Linux 6.1+ (maple tree) with CONFIG_TRACEPOINTS"))
        dead = tracepoints_without_callers([tp for tp in OPTIONAL_TRACEPOINTS if tf.exists(tp)])
        for tp in OPTIONAL_TRACEPOINTS:
            ok = tf.exists(tp) and tp not in dead
            detail = ("present" if ok else "present, but nothing in this kernel fires it (optional)" if tp in dead
                      else "absent (optional; not recorded)")
            checks.append(Check(f"tracepoint {tp}", ok, detail, "", required=False))
        missing = [s for s in SYSCALLS if not tf.exists(f"syscalls:sys_enter_{s}")]
        checks.append(
            Check("syscall tracepoints", len(missing) < len(SYSCALLS),
                  f"{len(SYSCALLS) - len(missing)}/{len(SYSCALLS)} present" + (f"; absent: {', '.join(missing)}" if missing else ""),
                  "needs CONFIG_FTRACE_SYSCALLS", required=False)
        )
        raw = tf.exists("raw_syscalls:sys_enter") and platform.machine() in SYSCALL_NR
        checks.append(
            Check("raw syscall hook", raw,
                  "available (MMTRACE_SYSCALL_HOOK=raw; the default, per-syscall tracepoints, costs "
                  "other processes less)" if raw
                  else "unavailable (needs raw_syscalls and a known syscall table: x86_64)",
                  "", required=False)
        )
        # capture/session.py compat_reason: followed only where a target needs it
        why32 = compat_unavailable(tf)
        ia32 = not why32
        checks.append(
            Check("32-bit (ia32) syscalls", ia32,
                  "can be followed: when the command or a -p process is a 32-bit program, for the whole system, "
                  f"or with 'record --compat' ({COMPAT_ENV}=1/0: always/never); it runs a program at every "
                  "syscall of the host" if ia32
                  else f"cannot be followed here ({why32}): 32-bit processes are reported not modelled",
                  "", required=False)
        )
    return checks + _huge_pages_check()


def _readable(d) -> bool:
    try:
        os.listdir(d)
        return True
    except OSError:
        return False


def _huge_pages_check() -> list[Check]:
    try:
        nr = int(open("/proc/sys/vm/nr_hugepages").read())
        return [Check("huge pages", nr > 0, f"nr_hugepages={nr}",
                      "echo 8 > /proc/sys/vm/nr_hugepages (only for hugetlb workloads)", required=False)]
    except (OSError, ValueError) as e:
        return [Check("huge pages", False, str(e), "kernel without hugetlbfs", required=False)]


def render(checks: list[Check]) -> str:
    w = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        status = "ok  " if c.ok else ("FAIL" if c.required else "warn")
        line = f"{status}  {c.name.ljust(w)}  {c.detail}"
        if not c.ok and c.fix:
            line += f"\n      {'':{w}}  fix: {c.fix}"
        lines.append(line)
    bad = [c for c in checks if not c.ok and c.required]
    lines.append("")
    lines.append("recording can work on this host" if not bad else f"recording cannot work: {len(bad)} check(s) failed")
    return "\n".join(lines)
