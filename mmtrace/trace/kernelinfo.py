"""What the traced kernel was like, from the trace's metadata: ``trace.kernel``.

The recorder stores the facts the analyses need (``page_size``,
``mmap_min_addr``, ``stack_guard_gap_pages`` from /proc/sys and sysconf, and
every struct offset it read from BTF in ``probe_plan.offsets``).  A value
the trace lacks raises :class:`MissingKernelFact`: a guess (a "usual" offset
or page size) would make a wrong model look right.
"""

from __future__ import annotations

from dataclasses import dataclass

from .reader import TraceError

__all__ = ["KernelInfo", "MissingKernelFact"]


class MissingKernelFact(TraceError):
    """The trace does not record a kernel value an analysis needs."""


@dataclass(frozen=True)
class KernelInfo:
    """The traced kernel's values (see the module doc); each property raises
    :class:`MissingKernelFact` when the trace does not have it."""

    metadata: dict

    def _get(self, key: str, what: str):
        v = self.metadata.get(key)
        if v is None:
            raise MissingKernelFact(f"the trace does not record {what} ({key!r} missing from metadata.json)")
        return v

    @property
    def release(self) -> str:
        """``uname -r`` of the traced kernel."""
        return str(self._get("kernel_release", "the kernel release"))

    @property
    def page_size(self) -> int:
        """PAGE_SIZE in bytes."""
        return int(self._get("page_size", "the page size"))

    @property
    def mmap_min_addr(self) -> int:
        """/proc/sys/vm/mmap_min_addr (the lowest address mmap may return)."""
        return int(self._get("mmap_min_addr", "vm.mmap_min_addr"))

    @property
    def stack_guard_gap(self) -> int:
        """stack_guard_gap in bytes (kept free below a VM_GROWSDOWN VMA)."""
        return int(self._get("stack_guard_gap_pages", "the stack guard gap")) * self.page_size

    def has_offset(self, member: str) -> bool:
        """Does the trace record ``offsetof`` of ``member`` ("struct.field")?"""
        return member in ((self.metadata.get("probe_plan") or {}).get("offsets") or {})

    def offset(self, member: str) -> int:
        """``offsetof`` of ``member`` ("struct.field", e.g. "mm_struct.mm_mt") from BTF at recording time."""
        offs = (self.metadata.get("probe_plan") or {}).get("offsets") or {}
        if member not in offs:
            raise MissingKernelFact(f"the trace does not record offsetof({member}) (probe_plan.offsets in metadata.json)")
        return int(offs[member])

    @property
    def mm_mt(self) -> int:
        """offsetof(struct mm_struct, mm_mt): the maple tree of an mm is at mm + this."""
        return self.offset("mm_struct.mm_mt")
