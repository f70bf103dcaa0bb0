"""Unit: report helpers on literal values (no trace)."""

from __future__ import annotations

import io

import pandas as pd

from mmtrace.report.export import arrow_table, csv_frame
from mmtrace.report.frames import format_call
from mmtrace.report.plots import address_regions
from mmtrace.report.progress import Progress


def test_format_call():
    assert format_call("mmap", [0, 8192, 3, 0x22, 0xFFFFFFFF, 0], 0x7F0000000000) == (
        "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0x0) = 0x7f0000000000")
    assert format_call("mprotect", [0x7F0000400000, 4 << 20, 1], -12) == "mprotect(0x7f0000400000, 4194304, PROT_READ) = -ENOMEM"
    assert format_call("mmap", [0, 1 << 21, 3], 0x1000) == "mmap(NULL, 2097152, PROT_READ|PROT_WRITE, ...) = 0x1000"
    assert format_call("mremap", [0x1000, 4096, 8192, 3, 0x9000, 0], 0x9000) == (
        "mremap(0x1000, 4096, 8192, MREMAP_MAYMOVE|MREMAP_FIXED, 0x9000) = 0x9000")
    assert format_call("madvise", [0x1000, 4096, 4], 0) == "madvise(0x1000, 4096, MADV_DONTNEED) = 0"
    assert format_call("mmap", [0, 1 << 21, 0, 0x40022 | (21 << 26), 0xFFFFFFFF, 0], 0x200000).count("MAP_HUGE_2MB") == 1
    assert format_call("", [1, 2], 0) == ""


def test_csv_frame_hex_by_syscall_and_lists():
    df = pd.DataFrame({
        "syscall": ["mmap", "munmap", ""], "arg0": [0, 0x7F00, 0], "arg1": [4096, 4096, 0], "ret": [0x7F00, -22, 0],
        "lo": [0x7F00, 0x7F00, 1 << 63], "at": [[0x1000, 0x2000], [], [3]],
        "before": [[(0x1000, 0x2000, "rw-p")], [], []], "exec": [["/bin/a", "/bin/b"], [], []],
    })
    c = csv_frame(df)
    # a kernel path (no syscall) has no arguments: empty, not a decimal 0 among hex addresses
    assert list(c["arg0"]) == ["0x0", "0x7f00", ""] and list(c["arg1"]) == ["4096", "4096", ""]
    assert list(c["ret"]) == ["0x7f00", "-22", ""]
    assert list(c["lo"]) == ["0x7f00", "0x7f00", "0x8000000000000000"]
    assert list(c["at"]) == ["0x1000; 0x2000", "", "0x3"]
    assert c.loc[0, "before"] == "0x1000-0x2000 rw-p" and c.loc[0, "exec"] == "/bin/a; /bin/b"
    t = arrow_table(df)
    assert str(t.schema.field("lo").type) == "uint64" and t.column("lo").to_pylist()[2] == 1 << 63
    assert str(t.schema.field("at").type) == "list<item: uint64>"
    assert t.column("before").to_pylist()[0] == [{"start": 0x1000, "end": 0x2000, "perms": "rw-p"}]


def test_address_regions_cut_the_widest_gaps():
    iv = [(0x400000, 0x500000), (0x500000, 0x600000), (0x7F0000000000, 0x7F0000100000),
          (0x7F0000200000, 0x7F0000300000), (0x7FFF00000000, 0x7FFF00021000)]
    assert address_regions(iv) == [(0x400000, 0x600000), (0x7F0000000000, 0x7F0000300000), (0x7FFF00000000, 0x7FFF00021000)]
    assert address_regions(iv, max_regions=2) == [(0x400000, 0x600000), (0x7F0000000000, 0x7FFF00021000)]
    assert address_regions([]) == []


def test_progress_draws_only_when_asked():
    s = io.StringIO()
    p = Progress({"a": 1, "b": 1}, stream=s)  # StringIO is not a TTY
    with p.stage("a"):
        p.update(0.5)
    p.close()
    assert s.getvalue() == ""
    s = io.StringIO()
    p = Progress({"a": 1, "b": 1}, enabled=True, stream=s)
    with p.stage("a"):
        pass
    with p.stage("b"):
        pass
    p.close()
    out = s.getvalue()
    assert "50%" in out and "100%" in out and out.endswith("\r")


def test_timeline_joins_bars_less_than_a_pixel_apart():
    import matplotlib.pyplot as plt
    import numpy as np

    from mmtrace.report.plots import _join_subpixel

    fig = plt.figure(figsize=(10, 5))  # 1,100 px at the plots' DPI: a pixel is ~0.9 of 1,000 time units
    n = 1000
    # One range mapped and unmapped 1,000 times, 0.1 unit apart; one at another address; one after a gap.
    starts = np.array([0x1000] * n + [0x9000, 0x1000], dtype=np.uint64).astype(object)
    ends = np.array([0x2000] * n + [0xA000, 0x2000], dtype=np.uint64).astype(object)
    born = np.concatenate([np.arange(n) * 0.5, [0.0, 900.0]])
    died = np.concatenate([np.arange(n) * 0.5 + 0.4, [1000.0, 950.0]])
    flags = np.array([0x3] * (n + 2), dtype=np.uint64)
    perms = ["rw-p"] * (n + 2)
    s, e, b, d, f, p = _join_subpixel(starts, ends, born, died, flags, perms, fig)
    bars = sorted(zip(s, e, b, d))
    assert bars == [(0x1000, 0x2000, 0.0, (n - 1) * 0.5 + 0.4), (0x1000, 0x2000, 900.0, 950.0),
                    (0x9000, 0xA000, 0.0, 1000.0)]
    assert len(p) == len(f) == 3
    plt.close(fig)
