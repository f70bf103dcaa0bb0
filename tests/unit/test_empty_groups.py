"""MMTRACE_EMPTY_PROGRAMS: the benchmarks' switch that empties every BPF
program, or the programs of some groups (capture/loader.py empty_groups,
collectors/compat.h MMT_EMPTY_RETURN_IN).  No root, no BCC: the parser, the
-D flags it gives run through compat.h with cc, and the collector sources
read as text."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from mmtrace.capture.kernel import COLLECTOR_FILES, collectors_dir
from mmtrace.capture.loader import EMPTY_GROUPS, _empty_cflags, empty_groups

# A program definition and the first statement of its body.
_PROGRAM = re.compile(r"\b(?:RAW_)?TRACEPOINT_PROBE\(([^)]*)\)[\s\\]*\{[\s\\]*(\w+(?:\(\w*\))?)")


@pytest.mark.parametrize("value", [None, "", " ", "0"])
def test_unset_empties_nothing(value):
    assert empty_groups(value) == ()


@pytest.mark.parametrize("value", ["1", "all", " all "])
def test_one_and_all_empty_every_group(value):
    assert empty_groups(value) == EMPTY_GROUPS


def test_groups_in_the_canonical_order_once():
    assert empty_groups("tree") == ("tree",)
    assert empty_groups("mmap_lock, tree,tree,") == ("tree", "mmap_lock")


def test_unknown_group_names_it_and_the_valid_ones():
    with pytest.raises(ValueError) as e:
        empty_groups("tree,trees")
    msg = str(e.value)
    assert "\n" not in msg and "'trees'" in msg and "MMTRACE_EMPTY_PROGRAMS=tree,trees" in msg
    assert all(g in msg for g in EMPTY_GROUPS)
    with pytest.raises(ValueError):
        empty_groups("tree,0")


def test_flags():
    assert _empty_cflags(()) == []
    assert _empty_cflags(EMPTY_GROUPS) == ["-DMMT_EMPTY_PROGRAMS"]  # the floor, as before groups
    assert _empty_cflags(("tree", "proc")) == ["-DMMT_EMPTY_GROUP_tree", "-DMMT_EMPTY_GROUP_proc"]


@pytest.mark.parametrize("value", ["", "1", "tree", "syscall,mmap_lock", "hugetlb"])
def test_flags_empty_exactly_those_groups(tmp_path, value):
    """compat.h with the loader's flags: MMT_EMPTY_RETURN_IN(g) returns for the emptied groups only."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is part of mmtrace's install (setup.sh installs gcc)"
    lines = ["#include <stdio.h>", f'#include "{collectors_dir() / "compat.h"}"']
    for g in EMPTY_GROUPS:
        lines.append(f"static int ran_{g}(void) {{ MMT_EMPTY_RETURN_IN({g}); return 1; }}")
    lines.append("int main(void) {")
    lines += [f'printf("{g} %d\\n", ran_{g}());' for g in EMPTY_GROUPS]
    lines.append("return 0; }")
    (tmp_path / "g.c").write_text("\n".join(lines))
    exe = tmp_path / "g"
    subprocess.run([cc, "-Wall", "-Werror", *_empty_cflags(empty_groups(value)), "-o", str(exe),
                    str(tmp_path / "g.c")], check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    emptied = {ln.split()[0] for ln in out.splitlines() if ln.split()[1] == "0"}
    assert emptied == set(empty_groups(value))


def _programs() -> list[tuple[str, str, str]]:
    """(file, program, first statement of its body) of every BPF program in the collectors."""
    out = []
    for name in COLLECTOR_FILES:
        text = (collectors_dir() / name).read_text()
        out += [(name, m.group(1), m.group(2)) for m in _PROGRAM.finditer(text)]
    return out


def test_c_and_python_groups_agree():
    """Every program starts with MMT_EMPTY_RETURN_IN of a known group; every
    group of EMPTY_GROUPS has its compat.h default and at least one program."""
    progs = _programs()
    assert len(progs) >= 20  # the regex still finds them
    bad = [(f, p, first) for f, p, first in progs if not re.fullmatch(r"MMT_EMPTY_RETURN_IN\(\w+\)", first)]
    assert not bad, f"programs that do not begin with MMT_EMPTY_RETURN_IN(group): {bad}"
    used = {first[len("MMT_EMPTY_RETURN_IN("):-1] for _, _, first in progs}
    assert used <= set(EMPTY_GROUPS), f"groups unknown to capture/loader.py EMPTY_GROUPS: {used - set(EMPTY_GROUPS)}"
    assert used == set(EMPTY_GROUPS), f"groups with no program: {set(EMPTY_GROUPS) - used}"
    compat = (collectors_dir() / "compat.h").read_text()
    defaults = set(re.findall(r"^#define MMT_EMPTY_GROUP_(\w+) 0$", compat, re.M))
    assert defaults == set(EMPTY_GROUPS)
    for g in EMPTY_GROUPS:  # documented in the header's comment block
        assert re.search(rf"^ \*\s+{g}\s", compat, re.M), g
    # no use of the macro anywhere but at the top of a program
    for name in COLLECTOR_FILES:
        text = (collectors_dir() / name).read_text()
        assert "MMT_EMPTY_RETURN;" not in text, name
        assert text.count("MMT_EMPTY_RETURN_IN(") == sum(1 for f, *_ in progs if f == name), name
