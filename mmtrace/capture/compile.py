"""Compile the collectors with BCC in a short-lived process: ``python -m mmtrace.capture.compile``.

Reads ``{"source": ..., "cflags": [...], "headers": DIR or null}`` as JSON on
stdin, writes the module BCC built as JSON on stdout (see :func:`manifest`),
then exits, taking LLVM and clang's memory with it.  The recorder loads the
manifest itself (capture/loader.py) and keeps it in a cache, so the next
recording of the same plan on the same kernel compiles nothing.

What BCC 0.26 allows, and why it is done this way:

- ``bcc.BPF(text=...)`` always compiles (clang parses BCC's helpers.h and
  the kernel headers it pulls in: ~0.4 s for an empty program here); there is
  no object cache, and no way to build a ``bcc.BPF`` from saved bytecode or
  an ELF file.
- It does expose what it built: each function's bytecode
  (``bpf_function_start``/``_size``, what ``BPF.dump_func`` returns), the
  license and kernel version, and each map (``bpf_table_fd_id``, whose kernel
  info gives type, sizes, flags and BTF ids).  The bytecode names maps by the
  fd BCC created them with (``BPF_LD_IMM64`` with ``BPF_PSEUDO_MAP_FD``), so
  a saved module is replayed by creating the maps again and patching those
  immediates: that is :func:`mmtrace.capture.loader.load_manifest`.
- ``BPF()`` attaches every ``tracepoint__*``/``raw_tracepoint__*`` function
  as it compiles; here nothing is attached (``_trace_autoload`` is skipped),
  since this process is about to exit.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import signal
import struct
import sys

__all__ = ["manifest", "main", "MANIFEST_FORMAT"]

MANIFEST_FORMAT = 1
_LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW: two instruction slots
_PSEUDO_MAP_FD, _PSEUDO_MAP_VALUE = 1, 2
PREFIXES = (("raw_tracepoint__", "raw_tracepoint"), ("tracepoint__", "tracepoint"))


def map_relocations(insns: bytes, fd_to_map: dict[int, int]) -> list[list[int]]:
    """[instruction index, map index] of every map reference in ``insns``."""
    out = []
    i, n = 0, len(insns) // 8
    while i < n:
        code, regs, _off, imm = struct.unpack_from("<BBhi", insns, 8 * i)
        if code == _LD_IMM64:
            src = regs >> 4
            if src in (_PSEUDO_MAP_FD, _PSEUDO_MAP_VALUE):
                if imm not in fd_to_map:
                    raise ValueError(f"instruction {i} refers to fd {imm}, not one of the module's maps")
                out.append([i, fd_to_map[imm]])
            elif src:
                raise ValueError(f"instruction {i}: ld_imm64 with src_reg {src} cannot be replayed")
            i += 2
        else:
            i += 1
    return out


def manifest(source: str, cflags: list[str]) -> dict:
    """Compile with BCC and describe the module: ``maps`` (name, type, sizes,
    flags, BTF type ids), ``btf`` (base64 raw BTF or None), ``progs`` (name,
    kind "tracepoint"/"raw_tracepoint", target, base64 bytecode, map
    relocations), ``license``, ``kern_version``."""
    import bcc
    from bcc.libbcc import lib

    from .bpfsys import btf_blob, map_info

    class _Compiled(bcc.BPF):
        def _trace_autoload(self):  # compile only: this process attaches nothing
            pass

    lib.bpf_num_tables.restype = ctypes.c_size_t
    lib.bpf_num_tables.argtypes = [ctypes.c_void_p]
    lib.bpf_table_name.restype = ctypes.c_char_p
    lib.bpf_table_name.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.bpf_table_fd_id.restype = ctypes.c_int
    lib.bpf_table_fd_id.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

    b = _Compiled(text=source.encode(), cflags=cflags)
    mod = b.module
    maps, fd_to_map, btf_ids = [], {}, set()
    for i in range(lib.bpf_num_tables(mod)):
        fd = lib.bpf_table_fd_id(mod, i)
        info = map_info(fd)
        fd_to_map[fd] = len(maps)
        if info["btf_id"]:
            btf_ids.add(info["btf_id"])
        maps.append({
            "name": lib.bpf_table_name(mod, i).decode(),
            "type": info["type"], "key_size": info["key_size"], "value_size": info["value_size"],
            "max_entries": info["max_entries"], "flags": info["map_flags"],
            "btf_key_type_id": info["btf_key_type_id"], "btf_value_type_id": info["btf_value_type_id"],
        })
    if len(btf_ids) > 1:
        raise ValueError(f"maps refer to {len(btf_ids)} BTF objects, expected one")
    progs = []
    for i in range(lib.bpf_num_functions(mod)):
        name = lib.bpf_function_name(mod, i).decode()
        kind = next((k for p, k in PREFIXES if name.startswith(p)), None)
        if kind is None:
            continue
        insns = ctypes.string_at(lib.bpf_function_start(mod, name.encode()), lib.bpf_function_size(mod, name.encode()))
        target = name[len("raw_tracepoint__"):] if kind == "raw_tracepoint" else \
            name[len("tracepoint__"):].replace("__", ":")
        progs.append({"name": name, "kind": kind, "target": target,
                      "insns": base64.b64encode(insns).decode(), "relocs": map_relocations(insns, fd_to_map)})
    out = {
        "format": MANIFEST_FORMAT,
        "license": (lib.bpf_module_license(mod) or b"GPL").decode(),
        "kern_version": int(lib.bpf_module_kern_version(mod)),
        "btf": base64.b64encode(btf_blob(btf_ids.pop())).decode() if btf_ids else None,
        "maps": maps,
        "progs": progs,
    }
    b.cleanup()
    return out


def main() -> int:
    # Ctrl-C reaches the whole process group: the recorder decides (it stops
    # cleanly once loaded), so the compile is not cut short with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    req = json.load(sys.stdin)
    if req.get("headers"):
        os.environ["BCC_KERNEL_SOURCE"] = req["headers"]
    try:
        import bcc  # noqa: F401
    except ImportError as e:
        json.dump({"error": str(e), "bcc_missing": True}, sys.stdout)
        return 1
    try:
        out = manifest(req["source"], req["cflags"])
    except Exception as e:  # noqa: BLE001 - BCC raises bare Exception; the parent reports it
        json.dump({"error": str(e) or type(e).__name__}, sys.stdout)
        return 1
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
