"""vm_flags bits and mmap/mremap constants: the kernel's values, in one place.

From include/linux/mm.h (vm_flags) and include/uapi/asm-generic/mman*.h,
include/uapi/linux/mman.h (x86_64 user ABI).  These bits have been stable for
decades; should one ever move, it moves here only.  The collectors get the
bits they test through -D flags built from this module (capture/kernel.py).
"""

from __future__ import annotations

__all__ = [
    "VM_READ", "VM_WRITE", "VM_EXEC", "VM_SHARED", "VM_MAYSHARE", "VM_GROWSDOWN", "VM_PFNMAP",
    "VM_DONTEXPAND", "VM_ACCOUNT", "VM_NORESERVE", "VM_HUGETLB", "VM_DONTCOPY", "VM_MIXEDMAP",
    "PROT_READ", "PROT_WRITE", "PROT_EXEC", "MAP_SHARED", "MAP_PRIVATE", "MAP_FIXED", "MAP_ANONYMOUS",
    "MAP_GROWSDOWN", "MAP_NORESERVE", "MAP_HUGETLB", "MAP_FIXED_NOREPLACE",
    "MREMAP_MAYMOVE", "MREMAP_FIXED", "MREMAP_DONTUNMAP", "perms",
]

VM_READ = 0x00000001
VM_WRITE = 0x00000002
VM_EXEC = 0x00000004
VM_SHARED = 0x00000008
VM_MAYSHARE = 0x00000080
VM_GROWSDOWN = 0x00000100
VM_PFNMAP = 0x00000400
VM_DONTCOPY = 0x00020000
VM_DONTEXPAND = 0x00040000
VM_ACCOUNT = 0x00100000
VM_NORESERVE = 0x00200000
VM_HUGETLB = 0x00400000
VM_MIXEDMAP = 0x10000000

PROT_READ, PROT_WRITE, PROT_EXEC = 0x1, 0x2, 0x4
MAP_SHARED, MAP_PRIVATE = 0x01, 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_GROWSDOWN = 0x0100
MAP_NORESERVE = 0x4000
MAP_HUGETLB = 0x40000
MAP_FIXED_NOREPLACE = 0x100000
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4


def perms(vm_flags: int) -> str:
    """The four characters /proc/PID/maps shows for ``vm_flags`` (e.g. ``r-xp``)."""
    return (
        ("r" if vm_flags & VM_READ else "-")
        + ("w" if vm_flags & VM_WRITE else "-")
        + ("x" if vm_flags & VM_EXEC else "-")
        + ("s" if vm_flags & VM_MAYSHARE else "p")
    )
