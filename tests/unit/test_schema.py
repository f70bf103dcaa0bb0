"""collectors/events.h and mmtrace/events/schema.py describe the same bytes.

The C side is compiled with the host compiler (the install brings gcc), so
this checks the real layout, padding included, not a parse of the text.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from mmtrace.capture.kernel import collectors_dir
from mmtrace.events import schema
from mmtrace.events.schema import HEADER, KINDS


def _c_layout(tmp_path) -> dict:
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is part of mmtrace's install (setup.sh installs gcc)"
    events_h = collectors_dir() / "events.h"
    lines = ["#include <stdio.h>", "#include <stddef.h>", f'#include "{events_h}"', "int main(void) {"]
    for k in KINDS.values():
        lines.append(f'printf("{k.name} sizeof %zu\\n", sizeof(struct {k.c_struct}));')
        for name, *_ in HEADER:
            lines.append(
                f'printf("{k.name} h.{name} %zu %zu\\n", offsetof(struct {k.c_struct}, h.{name}), '
                f"sizeof(((struct {k.c_struct} *)0)->h.{name}));"
            )
        for f in k.fields:
            lines.append(
                f'printf("{k.name} {f[0]} %zu %zu\\n", offsetof(struct {k.c_struct}, {f[0]}), '
                f"sizeof(((struct {k.c_struct} *)0)->{f[0]}));"
            )
    for macro in ("MMT_TREE_WRITE", "MMT_SYSCALL", "MMT_PROC", "MMT_UNMAPPED_AREA", "MMT_EXIT_MMAP",
                  "MMT_VMA_STORE", "MMT_FAULT", "MMT_HUGETLB", "MMT_HC_SYSCALL", "MMT_HC_FAULT", "MMT_HC_EXIT_MMAP", "MMT_TW_VAL_IS_VMA", "MMT_TW_CURRENT_MM", "MMT_TW_KNOWN_MM",
                  "MMT_TW_FILE", "MMT_OP_WRITE", "MMT_OP_OP", "MMT_PROC_FORK", "MMT_PROC_EXEC", "MMT_PROC_EXIT",
                  "MMT_PF_THREAD", "MMT_PF_SHARED_MM", "MMT_PF_GROUP_DEAD", "MMT_VS_STORE", "MMT_VS_SZERO",
                  "MMT_MMAP_LOCK", "MMT_ML_READ_LOCKED", "MMT_ML_WRITE_UNLOCK", "MMT_SC_UNFINISHED", "MMT_SC_COMPAT",
                  "MMT_STACK_NONE"):
        lines.append(f'printf("const {macro} %d\\n", (int){macro});')
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run([cc, "-Wall", "-o", str(exe), str(src)], check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    layout: dict = {}
    for line in out.splitlines():
        parts = line.split()
        if parts[0] == "const":
            layout.setdefault("const", {})[parts[1]] = int(parts[2])
        elif parts[1] == "sizeof":
            layout.setdefault(parts[0], {})["sizeof"] = int(parts[2])
        else:
            layout.setdefault(parts[0], {})[parts[1]] = (int(parts[2]), int(parts[3]))
    return layout


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return _c_layout(tmp_path_factory.mktemp("layout"))


@pytest.mark.parametrize("kind", list(KINDS))
def test_struct_matches_dtype(layout, kind):
    k = KINDS[kind]
    dt = k.dtype
    c = layout[kind]
    assert c["sizeof"] == dt.itemsize, f"struct {k.c_struct} is {c['sizeof']} bytes, dtype {dt.itemsize}"
    for name in dt.names:
        off, size = dt.fields[name][1], dt.fields[name][0].itemsize
        key = f"h.{name}" if name in dict((h[0], h[1]) for h in HEADER) and f"h.{name}" in c else name
        assert key in c, f"{name} not in struct {k.c_struct}"
        assert c[key] == (off, size), f"{k.c_struct}.{name}: C (offset, size) {c[key]} != numpy {(off, size)}"
    # and nothing in C that numpy lacks: offsets cover the struct without gaps
    assert sum(dt.fields[n][0].itemsize for n in dt.names) == dt.itemsize


def test_kind_ids_and_flags(layout):
    const = layout["const"]
    for k in KINDS.values():
        assert const["MMT_" + k.c_struct[len("mmt_"):].upper()] == k.id
    for macro, value in const.items():
        name = macro[len("MMT_"):]
        if hasattr(schema, name):
            assert getattr(schema, name) == value, macro


def test_kind_is_first_byte():
    # The ring buffer callback routes records on raw[0].
    for k in KINDS.values():
        assert k.dtype.fields["kind"][1] == 0 and k.dtype.fields["kind"][0] == np.dtype("u1")


def test_every_struct_declared():
    text = (collectors_dir() / "events.h").read_text()
    structs = set(re.findall(r"^struct (mmt_\w+) \{", text, re.M)) - {"mmt_hdr"}
    assert structs == {k.c_struct for k in KINDS.values()}
