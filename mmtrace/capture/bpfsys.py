"""The few bpf(2) and perf_event_open(2) calls the recorder makes itself.

BCC compiles the collectors (capture/compile.py, in a short-lived child);
the long-lived recorder only replays what BCC produced: create the maps,
load the programs, attach them, and read/update a few small maps.  Doing
that through the kernel's stable ABI (``union bpf_attr`` in
include/uapi/linux/bpf.h, ``struct perf_event_attr`` in
include/uapi/linux/perf_event.h) keeps libbcc, and the LLVM it links, out of
the recorder: loading the bcc module alone maps ~65 MB.

Attaching follows what libbcc does (src/cc/libbpf.c): a tracepoint is a
perf event of PERF_TYPE_TRACEPOINT on CPU 0 with PERF_EVENT_IOC_SET_BPF (the
program then runs on every CPU, from the tracepoint's perf callback); a raw
tracepoint is BPF_RAW_TRACEPOINT_OPEN, and so is a BTF-typed one (tp_btf: a
BPF_PROG_TYPE_TRACING program of attach type BPF_TRACE_RAW_TP, loaded against
the tracepoint's ``btf_trace_<name>`` typedef, attached with no name: the
kernel takes it from the program, bpf_raw_tp_link_attach() in
kernel/bpf/syscall.c).  Every object lives as long as one of its fds is open.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

__all__ = [
    "BpfError",
    "map_create",
    "btf_load",
    "prog_load",
    "raw_tracepoint_open",
    "tracepoint_attach",
    "tp_btf_works",
    "rdonly_cast_works",
    "patch_kfunc_calls",
    "map_lookup",
    "map_update",
    "map_next_key",
    "map_delete",
    "map_info",
    "btf_blob",
    "possible_cpus",
    "PROG_TYPE_TRACEPOINT",
    "PROG_TYPE_RAW_TRACEPOINT",
    "PROG_TYPE_TRACING",
    "ATTACH_TRACE_RAW_TP",
]

# enum bpf_cmd
_MAP_CREATE, _MAP_LOOKUP_ELEM, _MAP_UPDATE_ELEM, _MAP_DELETE_ELEM, _MAP_GET_NEXT_KEY, _PROG_LOAD = 0, 1, 2, 3, 4, 5
_OBJ_GET_INFO_BY_FD, _RAW_TRACEPOINT_OPEN, _BTF_LOAD, _BTF_GET_FD_BY_ID = 15, 17, 18, 19
# enum bpf_prog_type
PROG_TYPE_TRACEPOINT = 5
PROG_TYPE_RAW_TRACEPOINT = 17
PROG_TYPE_TRACING = 26
# enum bpf_attach_type
ATTACH_TRACE_RAW_TP = 23
# Syscall numbers (arch/*/entry/syscalls, include/uapi/asm-generic/unistd.h).
_NR = {"x86_64": {"bpf": 321, "perf_event_open": 298}, "aarch64": {"bpf": 280, "perf_event_open": 241}}
_PERF_TYPE_TRACEPOINT = 2
_PERF_SAMPLE_RAW = 1 << 10
_PERF_FLAG_FD_CLOEXEC = 1 << 3
_PERF_EVENT_IOC_ENABLE = 0x2400  # _IO('$', 0)
_PERF_EVENT_IOC_SET_BPF = 0x40042408  # _IOW('$', 8, __u32)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]


class BpfError(OSError):
    """A bpf(2) or perf_event_open(2) call failed; ``log`` holds the verifier's output, if any."""

    def __init__(self, err: int, what: str, log: str = "") -> None:
        super().__init__(err, f"{what}: {os.strerror(err)}" + (f"\n{log}" if log else ""))
        self.log = log


def _nr(name: str) -> int:
    try:
        return _NR[platform.machine()][name]
    except KeyError:
        raise BpfError(errno.ENOSYS, f"no {name} syscall number for {platform.machine()}") from None


def _bpf(cmd: int, attr: ctypes.Structure, what: str) -> int:
    r = _libc.syscall(ctypes.c_long(_nr("bpf")), ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
    if r < 0:
        raise BpfError(ctypes.get_errno(), what)
    return int(r)


class _MapCreate(ctypes.Structure):
    _fields_ = [("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32), ("value_size", ctypes.c_uint32),
                ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32), ("inner_map_fd", ctypes.c_uint32),
                ("numa_node", ctypes.c_uint32), ("map_name", ctypes.c_char * 16), ("map_ifindex", ctypes.c_uint32),
                ("btf_fd", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
                ("btf_value_type_id", ctypes.c_uint32)]


class _ElemAttr(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32), ("_pad", ctypes.c_uint32), ("key", ctypes.c_uint64),
                ("value", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class _ProgLoad(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32), ("insns", ctypes.c_uint64),
                ("license", ctypes.c_uint64), ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
                ("prog_name", ctypes.c_char * 16), ("prog_ifindex", ctypes.c_uint32),
                ("expected_attach_type", ctypes.c_uint32), ("prog_btf_fd", ctypes.c_uint32),
                ("func_info_rec_size", ctypes.c_uint32), ("func_info", ctypes.c_uint64),
                ("func_info_cnt", ctypes.c_uint32), ("line_info_rec_size", ctypes.c_uint32),
                ("line_info", ctypes.c_uint64), ("line_info_cnt", ctypes.c_uint32),
                ("attach_btf_id", ctypes.c_uint32), ("attach_btf_obj_fd", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32)]


class _RawTp(ctypes.Structure):
    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


class _BtfLoad(ctypes.Structure):
    _fields_ = [("btf", ctypes.c_uint64), ("btf_log_buf", ctypes.c_uint64), ("btf_size", ctypes.c_uint32),
                ("btf_log_size", ctypes.c_uint32), ("btf_log_level", ctypes.c_uint32)]


class _InfoByFd(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class _GetById(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


class _MapInfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
                ("name", ctypes.c_char * 16), ("ifindex", ctypes.c_uint32),
                ("btf_vmlinux_value_type_id", ctypes.c_uint32), ("netns_dev", ctypes.c_uint64),
                ("netns_ino", ctypes.c_uint64), ("btf_id", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
                ("btf_value_type_id", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


class _BtfInfo(ctypes.Structure):
    _fields_ = [("btf", ctypes.c_uint64), ("btf_size", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("name", ctypes.c_uint64), ("name_len", ctypes.c_uint32), ("kernel_btf", ctypes.c_uint32)]


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, flags: int = 0, name: str = "",
               btf_fd: int = 0, btf_key_type_id: int = 0, btf_value_type_id: int = 0) -> int:
    """BPF_MAP_CREATE: the new map's fd."""
    a = _MapCreate(map_type=map_type, key_size=key_size, value_size=value_size, max_entries=max_entries,
                   map_flags=flags, map_name=name.encode()[:15], btf_fd=btf_fd, btf_key_type_id=btf_key_type_id,
                   btf_value_type_id=btf_value_type_id)
    return _bpf(_MAP_CREATE, a, f"creating BPF map {name}")


def btf_load(blob: bytes) -> int:
    """BPF_BTF_LOAD of a raw BTF blob: its fd."""
    buf = ctypes.create_string_buffer(blob, len(blob))
    a = _BtfLoad(btf=ctypes.addressof(buf), btf_size=len(blob))
    return _bpf(_BTF_LOAD, a, "loading the collectors' BTF")


def prog_load(prog_type: int, insns: bytes, name: str, license: str = "GPL", kern_version: int = 0,
              expected_attach_type: int = 0, attach_btf_id: int = 0) -> int:
    """BPF_PROG_LOAD; on failure, loads again with the verifier log to say why.
    ``attach_btf_id`` (vmlinux BTF) with PROG_TYPE_TRACING: what it attaches to."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    a = _ProgLoad(prog_type=prog_type, insn_cnt=len(insns) // 8, insns=ctypes.addressof(code),
                  license=ctypes.addressof(lic), kern_version=kern_version, prog_name=name.encode()[:15],
                  expected_attach_type=expected_attach_type, attach_btf_id=attach_btf_id)
    try:
        return _bpf(_PROG_LOAD, a, f"loading BPF program {name}")
    except BpfError as e:
        if e.errno not in (errno.EACCES, errno.EINVAL):
            raise
        size = 1 << 22
        log = ctypes.create_string_buffer(size)
        a.log_level, a.log_size, a.log_buf = 1, size, ctypes.addressof(log)
        try:
            return _bpf(_PROG_LOAD, a, f"loading BPF program {name}")
        except BpfError as e2:
            text = log.value.decode(errors="replace")
            raise BpfError(e2.errno, f"loading BPF program {name}", "\n".join(text.splitlines()[-20:])) from None


def raw_tracepoint_open(name: str, prog_fd: int, *, tp_btf: bool = False) -> int:
    """BPF_RAW_TRACEPOINT_OPEN: the link's fd (the program stays attached while it is open).
    A tp_btf program is opened with no name (its attach_btf_id names the tracepoint)."""
    n = ctypes.create_string_buffer(name.encode())
    return _bpf(_RAW_TRACEPOINT_OPEN, _RawTp(name=0 if tp_btf else ctypes.addressof(n), prog_fd=prog_fd),
                f"attaching to raw tracepoint {name}")


_PSEUDO_KFUNC_CALL = 2  # include/uapi/linux/bpf.h: src_reg of a call of a kernel function
_CALL = 0x85  # BPF_JMP | BPF_CALL


def patch_kfunc_calls(insns: bytearray, placeholders: dict[int, int]) -> int:
    """Turn each call of helper id ``p`` (an id no helper has) into a call of
    kfunc ``placeholders[p]`` (its BTF_KIND_FUNC id in vmlinux), in place:
    BCC 0.26 cannot compile a kfunc call (no ``__ksym`` externs), so the
    collectors call the placeholder like a helper.  How many were patched."""
    n = 0
    for i in range(0, len(insns) - 7, 8):
        if insns[i] == _CALL and insns[i + 1] >> 4 == 0:
            imm = int.from_bytes(insns[i + 4 : i + 8], "little", signed=True)
            if imm in placeholders:
                insns[i + 1] = (insns[i + 1] & 0x0F) | _PSEUDO_KFUNC_CALL << 4
                insns[i + 4 : i + 8] = placeholders[imm].to_bytes(4, "little", signed=True)
                n += 1
    return n


def rdonly_cast_works(func_id: int, struct_id: int) -> bool:
    """Can a raw tracepoint program call the bpf_rdonly_cast() kfunc
    (``func_id``) to read a ``struct_id`` object by direct loads?  The kfunc
    came with "bpf: Add a kfunc for generic type cast" (v6.2); the verifier
    then replaces the call by a register move (fixup_kfunc_call() in
    kernel/bpf/verifier.c) and the loads by exception-protected ones
    (BPF_PROBE_MEM).  Loaded and closed at once, never attached."""
    insns = b"".join(struct.pack("<BBhi", *i) for i in (
        (0xB7, 1, 0, 0),                               # r1 = 0
        (0xB7, 2, 0, struct_id),                       # r2 = the struct's BTF id (a constant, as it must be)
        (_CALL, _PSEUDO_KFUNC_CALL << 4, 0, func_id),  # r0 = bpf_rdonly_cast(r1, r2)
        (0x79, 3 | 0 << 4, 0, 0),                      # r3 = *(u64 *)(r0 + 0): a direct load
        (0xB7, 0, 0, 0),                               # r0 = 0
        (0x95, 0, 0, 0),                               # exit
    ))
    try:
        fd = prog_load(PROG_TYPE_RAW_TRACEPOINT, insns, "mmt_probe")
    except OSError:
        return False
    os.close(fd)
    return True


def tp_btf_works(btf_id: int) -> bool:
    """Can a BTF-typed raw tracepoint program (tp_btf) be loaded against
    typedef ``btf_id`` (``btf_trace_<name>``) and read its second argument
    by a direct load?  It needs CONFIG_DEBUG_INFO_BTF and v5.5+ ("bpf:
    Introduce BPF_TRACE_RAW_TP"); not ftrace, unlike fentry, which may
    fail where this works.  Loaded and closed at once, never attached."""
    insns = b"".join(struct.pack("<BBhi", *i) for i in (
        (0x79, 2 | 1 << 4, 8, 0),   # r2 = *(u64 *)(r1 + 8): the second argument, a BTF pointer
        (0x79, 3 | 2 << 4, 0, 0),   # r3 = *(u64 *)(r2 + 0): a direct load through it
        (0xB7, 0, 0, 0),            # r0 = 0
        (0x95, 0, 0, 0),            # exit
    ))
    try:
        fd = prog_load(PROG_TYPE_TRACING, insns, "mmt_probe", expected_attach_type=ATTACH_TRACE_RAW_TP,
                       attach_btf_id=btf_id)
    except OSError:
        return False
    os.close(fd)
    return True


def tracepoint_attach(prog_fd: int, tracefs: str, category: str, name: str) -> int:
    """Attach to tracepoint category:name as libbcc's bpf_attach_tracepoint does; the perf event's fd."""
    with open(os.path.join(tracefs, "events", category, name, "id")) as f:
        tp_id = int(f.read())
    attr = (ctypes.c_uint64 * 16)()  # struct perf_event_attr, PERF_ATTR_SIZE_VER5 = 112 bytes used
    raw = ctypes.cast(attr, ctypes.POINTER(ctypes.c_uint32))
    raw[0] = _PERF_TYPE_TRACEPOINT  # type
    raw[1] = 112  # size
    attr[1] = tp_id  # config
    attr[2] = 1  # sample_period
    attr[3] = _PERF_SAMPLE_RAW  # sample_type
    raw[12] = 1  # wakeup_events
    fd = _libc.syscall(ctypes.c_long(_nr("perf_event_open")), ctypes.byref(attr), ctypes.c_int(-1), ctypes.c_int(0),
                       ctypes.c_int(-1), ctypes.c_ulong(_PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        raise BpfError(ctypes.get_errno(), f"perf_event_open of tracepoint {category}:{name}")
    fd = int(fd)
    for req, arg in ((_PERF_EVENT_IOC_SET_BPF, prog_fd), (_PERF_EVENT_IOC_ENABLE, 0)):
        if _libc.ioctl(fd, req, arg) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise BpfError(err, f"attaching to tracepoint {category}:{name}")
    return fd


def _elem_op(cmd: int, fd: int, key: bytes | None, value, what: str, flags: int = 0) -> bool:
    """One map element command on ``key`` (None: no key) and buffer ``value``;
    False when the kernel says ENOENT (no such key, or no next key)."""
    k = ctypes.create_string_buffer(key, len(key)) if key is not None else None
    a = _ElemAttr(map_fd=fd, key=ctypes.addressof(k) if k is not None else 0,
                  value=ctypes.addressof(value) if value is not None else 0, flags=flags)
    try:
        _bpf(cmd, a, what)
    except BpfError as e:
        if e.errno == errno.ENOENT:
            return False
        raise
    return True


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    """The value at ``key`` (for per-CPU maps, value_size is per CPU x possible CPUs), or None."""
    v = ctypes.create_string_buffer(value_size)
    return v.raw if _elem_op(_MAP_LOOKUP_ELEM, fd, key, v, "BPF map lookup") else None


def map_update(fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    """BPF_MAP_UPDATE_ELEM (flags 0: BPF_ANY)."""
    _elem_op(_MAP_UPDATE_ELEM, fd, key, ctypes.create_string_buffer(value, len(value)), "BPF map update", flags)


def map_delete(fd: int, key: bytes) -> None:
    """BPF_MAP_DELETE_ELEM (a missing key is not an error)."""
    _elem_op(_MAP_DELETE_ELEM, fd, key, None, "BPF map delete")


def map_next_key(fd: int, key: bytes | None, key_size: int) -> bytes | None:
    """The key after ``key`` (the first with None), or None at the end."""
    n = ctypes.create_string_buffer(key_size)
    return n.raw if _elem_op(_MAP_GET_NEXT_KEY, fd, key, n, "BPF map iteration") else None


def map_info(fd: int) -> dict:
    """type, key_size, value_size, max_entries, map_flags, name, btf_id, btf_key_type_id, btf_value_type_id."""
    info = _MapInfo()
    _bpf(_OBJ_GET_INFO_BY_FD, _InfoByFd(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info)),
         "reading BPF map info")
    out = {f: getattr(info, f) for f, _ in _MapInfo._fields_ if not f.startswith("_")}
    out["name"] = info.name.decode()
    return out


def btf_blob(btf_id: int) -> bytes:
    """The raw BTF data of loaded BTF object ``btf_id``."""
    fd = _bpf(_BTF_GET_FD_BY_ID, _GetById(id=btf_id), "opening BTF by id")
    try:
        info = _BtfInfo()
        q = _InfoByFd(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
        _bpf(_OBJ_GET_INFO_BY_FD, q, "reading BTF info")
        buf = ctypes.create_string_buffer(info.btf_size)
        info = _BtfInfo(btf=ctypes.addressof(buf), btf_size=len(buf))
        q = _InfoByFd(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
        _bpf(_OBJ_GET_INFO_BY_FD, q, "reading BTF data")
        return buf.raw[: info.btf_size]
    finally:
        os.close(fd)


def possible_cpus() -> int:
    """How many CPUs per-CPU maps hold a value for (/sys/devices/system/cpu/possible)."""
    with open("/sys/devices/system/cpu/possible") as f:
        n = 0
        for part in f.read().strip().split(","):
            lo, _, hi = part.partition("-")
            n = max(n, int(hi or lo) + 1)
    return n
