"""vm_flags bits and mmap/mremap constants: the kernel's values, in one place.

From include/linux/mm.h (vm_flags) and include/uapi/asm-generic/mman*.h,
include/uapi/linux/mman.h (x86_64 user ABI).  These bits have been stable for
decades; should one ever move, it moves here only.  The collectors get the
bits they test through -D flags built from this module (capture/kernel.py).
"""

from __future__ import annotations

from enum import IntFlag

__all__ = [
    "VmFlag", "Prot", "MapFlag", "MremapFlag", "UnmappedAreaFlag",
    "VM_READ", "VM_WRITE", "VM_EXEC", "VM_SHARED", "VM_MAYSHARE", "VM_GROWSDOWN", "VM_PFNMAP",
    "VM_DONTEXPAND", "VM_ACCOUNT", "VM_NORESERVE", "VM_HUGETLB", "VM_DONTCOPY", "VM_MIXEDMAP",
    "VM_MAYREAD", "VM_MAYWRITE", "VM_MAYEXEC", "VM_SEALED", "PROT_GROWSDOWN",
    "PROT_READ", "PROT_WRITE", "PROT_EXEC", "PROT_BITS", "MAP_SHARED", "MAP_PRIVATE", "MAP_FIXED", "MAP_ANONYMOUS",
    "MAP_GROWSDOWN", "MAP_NORESERVE", "MAP_HUGETLB", "MAP_FIXED_NOREPLACE",
    "MREMAP_MAYMOVE", "MREMAP_FIXED", "MREMAP_DONTUNMAP", "VM_UNMAPPED_AREA_TOPDOWN",
    "MAPS_PERM_BITS", "VMA_PERM_BITS", "perms",
]


class VmFlag(IntFlag):
    """``vm_area_struct.vm_flags`` bits (include/linux/mm.h)."""

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
    # VM_MAYREAD/MAYWRITE/MAYEXEC: what mprotect may grant (do_mprotect_pkey:
    # "newflags >> 4 shift VM_MAY% in place of VM_%"); a read-only
    # MAP_SHARED file mapping lacks VM_MAYWRITE.
    VM_MAYREAD = 0x00000010
    VM_MAYWRITE = 0x00000020
    VM_MAYEXEC = 0x00000040
    # VM_SEALED: BIT(42) since "mm/mseal: always define VM_SEALED" (6.17; it
    # was _BITUL(63) in 6.10-6.16).  The model sets it itself when an mseal
    # succeeds (mm/mseal.c mseal_apply -> vm_flags_set, a silent in-place
    # edit), so it does not depend on the kernel showing it in a store.
    VM_SEALED = 1 << 42


class Prot(IntFlag):
    """mmap/mprotect ``prot`` (include/uapi/asm-generic/mman-common.h)."""

    PROT_READ = 0x1
    PROT_WRITE = 0x2
    PROT_EXEC = 0x4
    PROT_GROWSDOWN = 0x01000000


class MapFlag(IntFlag):
    """mmap ``flags`` (include/uapi/asm-generic/mman*.h, x86_64)."""

    MAP_SHARED = 0x01
    MAP_PRIVATE = 0x02
    MAP_FIXED = 0x10
    MAP_ANONYMOUS = 0x20
    MAP_GROWSDOWN = 0x0100
    MAP_NORESERVE = 0x4000
    MAP_HUGETLB = 0x40000
    MAP_FIXED_NOREPLACE = 0x100000


class MremapFlag(IntFlag):
    """mremap ``flags`` (include/uapi/linux/mman.h)."""

    MREMAP_MAYMOVE = 1
    MREMAP_FIXED = 2
    MREMAP_DONTUNMAP = 4


class UnmappedAreaFlag(IntFlag):
    """``vm_unmapped_area_info.flags`` (include/linux/mm.h), the ``flags`` of ``mmap:vm_unmapped_area``."""

    VM_UNMAPPED_AREA_TOPDOWN = 1


# Plain ints of the same values, for the replay's inner loops (IntFlag
# arithmetic goes through Python-level methods) and the collectors' -D flags.
VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = (int(f) for f in (VmFlag.VM_READ, VmFlag.VM_WRITE, VmFlag.VM_EXEC,
                                                          VmFlag.VM_SHARED))
VM_MAYSHARE, VM_GROWSDOWN, VM_PFNMAP = int(VmFlag.VM_MAYSHARE), int(VmFlag.VM_GROWSDOWN), int(VmFlag.VM_PFNMAP)
VM_DONTCOPY, VM_DONTEXPAND, VM_ACCOUNT = int(VmFlag.VM_DONTCOPY), int(VmFlag.VM_DONTEXPAND), int(VmFlag.VM_ACCOUNT)
VM_NORESERVE, VM_HUGETLB, VM_MIXEDMAP = int(VmFlag.VM_NORESERVE), int(VmFlag.VM_HUGETLB), int(VmFlag.VM_MIXEDMAP)
PROT_READ, PROT_WRITE, PROT_EXEC = int(Prot.PROT_READ), int(Prot.PROT_WRITE), int(Prot.PROT_EXEC)
PROT_GROWSDOWN = int(Prot.PROT_GROWSDOWN)
VM_MAYREAD, VM_MAYWRITE, VM_MAYEXEC = int(VmFlag.VM_MAYREAD), int(VmFlag.VM_MAYWRITE), int(VmFlag.VM_MAYEXEC)
VM_SEALED = int(VmFlag.VM_SEALED)
#: the prot bits mprotect copies into vm_flags (VM_READ|WRITE|EXEC have the same values)
PROT_BITS = PROT_READ | PROT_WRITE | PROT_EXEC
MAP_SHARED, MAP_PRIVATE, MAP_FIXED = int(MapFlag.MAP_SHARED), int(MapFlag.MAP_PRIVATE), int(MapFlag.MAP_FIXED)
MAP_ANONYMOUS, MAP_GROWSDOWN, MAP_NORESERVE = (int(MapFlag.MAP_ANONYMOUS), int(MapFlag.MAP_GROWSDOWN),
                                               int(MapFlag.MAP_NORESERVE))
MAP_HUGETLB, MAP_FIXED_NOREPLACE = int(MapFlag.MAP_HUGETLB), int(MapFlag.MAP_FIXED_NOREPLACE)
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = (int(MremapFlag.MREMAP_MAYMOVE), int(MremapFlag.MREMAP_FIXED),
                                                  int(MremapFlag.MREMAP_DONTUNMAP))
VM_UNMAPPED_AREA_TOPDOWN = int(UnmappedAreaFlag.VM_UNMAPPED_AREA_TOPDOWN)
#: the bits /proc/PID/maps shows in perms (show_map_vma: 's' is VM_MAYSHARE)
MAPS_PERM_BITS = VM_READ | VM_WRITE | VM_EXEC | VM_MAYSHARE
#: the bits a "protect" change is about (prot bits and VM_SHARED)
VMA_PERM_BITS = VM_READ | VM_WRITE | VM_EXEC | VM_SHARED


def perms(vm_flags: int) -> str:
    """The four characters /proc/PID/maps shows for ``vm_flags`` (e.g. ``r-xp``)."""
    return (
        ("r" if vm_flags & VM_READ else "-")
        + ("w" if vm_flags & VM_WRITE else "-")
        + ("x" if vm_flags & VM_EXEC else "-")
        + ("s" if vm_flags & VM_MAYSHARE else "p")
    )
