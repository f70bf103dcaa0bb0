"""A cgroup v2 of its own for the recorded command, with the hugetlb controller.

The hugetlb controller charges every reservation to the cgroup of the task
that made it (``hugetlb_cgroup_charge_cgroup_rsvd()``, mm/hugetlb_cgroup.c)
and uncharges it from that same cgroup whoever releases it, so the counter
``hugetlb.<size>.rsvd.current`` of a cgroup holding only the traced command
moves with the command's own reservations and nothing else's: untraced
processes using huge pages at the same time cannot change it.  The BPF
collectors read it in the kernel at every hugetlb sample (collectors/huge.bpf.c).

Everything here is optional: where cgroup v2 is not mounted, has no hugetlb
controller, or it cannot be enabled, :func:`create` returns ``None`` with the
reason and the recording uses the global counters only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["HugetlbCgroup", "create", "find_cgroup2"]


@dataclass
class HugetlbCgroup:
    """A cgroup made for one recording (``path``), removed by :meth:`remove`."""

    path: str
    reason: str = ""

    def join(self, pid: int = 0) -> None:
        """Move ``pid`` (0: the calling process) into the cgroup; its children follow."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(f"{pid or os.getpid()}\n")

    def rsvd_current(self, size_name: str = "2MB") -> int | None:
        """``hugetlb.<size>.rsvd.current`` in bytes, None when unreadable."""
        try:
            with open(os.path.join(self.path, f"hugetlb.{size_name}.rsvd.current")) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        """Remove the cgroup (once its processes are gone); errors are ignored."""
        try:
            os.rmdir(self.path)
        except OSError:
            pass


def find_cgroup2(mounts: str = "/proc/self/mounts") -> str | None:
    """The mount point of the cgroup v2 hierarchy (``/sys/fs/cgroup`` or,
    on a hybrid host, ``/sys/fs/cgroup/unified``), None without one."""
    try:
        with open(mounts) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "cgroup2":
                    return parts[1]
    except OSError:
        pass
    return None


def _own_cgroup() -> str:
    """This process's cgroup v2 path (the ``0::`` line of /proc/self/cgroup)."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return "/"


def create(name: str | None = None) -> tuple[HugetlbCgroup | None, str]:
    """Make a cgroup for the command under the cgroup v2 root, with the
    hugetlb controller enabled there.

    Returns ``(cgroup, "")`` or ``(None, reason)``.  ``+hugetlb`` is written
    to the root's ``cgroup.subtree_control`` (it enables the controller for
    child cgroups only, and stays enabled: processes left in the root are
    charged as before).  Under the root because a cgroup that has processes
    of its own (as the recorder's has) cannot enable controllers for
    children ("no internal processes"); only the root may.
    """
    root = find_cgroup2()
    if root is None:
        return None, "no cgroup v2 hierarchy mounted"
    try:
        with open(os.path.join(root, "cgroup.controllers")) as f:
            if "hugetlb" not in f.read().split():
                return None, f"the hugetlb controller is not available in cgroup v2 ({root}/cgroup.controllers)"
    except OSError as e:
        return None, f"cannot read {root}/cgroup.controllers: {e}"
    # Our own cgroup has processes (us): only the root may still enable
    # controllers for children then, so the cgroup goes under the root.
    parent = root
    name = name or f"mmtrace-{os.getpid()}"
    try:
        with open(os.path.join(parent, "cgroup.subtree_control")) as f:
            enabled = "hugetlb" in f.read().split()
        if not enabled:
            with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
                f.write("+hugetlb\n")
        path = os.path.join(parent, name)
        os.makedirs(path, exist_ok=True)
        if not os.path.exists(os.path.join(path, "hugetlb.2MB.rsvd.current")) and not any(
            n.startswith("hugetlb.") for n in os.listdir(path)
        ):
            os.rmdir(path)
            return None, f"{path}: no hugetlb files after enabling the controller"
    except OSError as e:
        return None, f"cannot make a hugetlb cgroup under {parent}: {e}"
    return HugetlbCgroup(path), ""
