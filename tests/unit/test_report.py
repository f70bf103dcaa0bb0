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


def _regions_reference(intervals, max_regions=10, min_gap=64 << 20):
    """The first, pure-Python address_regions: the vectorised one must agree with it."""
    iv = sorted((int(s), int(e)) for s, e in intervals if int(e) > int(s))
    if not iv:
        return []
    merged = [list(iv[0])]
    for s, e in iv[1:]:
        if s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    gaps = sorted(((merged[i + 1][0] - merged[i][1], i) for i in range(len(merged) - 1)), reverse=True)
    cut = sorted(i for g, i in gaps[: max(0, max_regions - 1)] if g >= min_gap)
    regions, lo = [], merged[0][0]
    for i in cut:
        regions.append((lo, merged[i][1]))
        lo = merged[i + 1][0]
    regions.append((lo, merged[-1][1]))
    return regions


def test_address_regions_agree_with_the_reference():
    import numpy as np

    rng = np.random.default_rng(15)
    for trial in range(300):
        n = int(rng.integers(1, 60))
        base = rng.choice([0x400000, 0x7F0000000000, 0x7FFF00000000, 0x200000000], size=n)
        starts = base + rng.integers(0, 1 << int(rng.integers(12, 40)), size=n) // 4096 * 4096
        ends = starts + rng.integers(0, 64, size=n) * 4096  # some empty
        iv = list(zip(starts.tolist(), ends.tolist()))
        for mr in (1, 3, 10):
            want = _regions_reference(iv, max_regions=mr)
            assert address_regions(iv, max_regions=mr) == want, (trial, mr)
            assert address_regions((starts.astype(np.uint64), ends.astype(np.uint64)), max_regions=mr) == want


def test_sample_rows_keeps_every_group_over_its_whole_span():
    import numpy as np
    import pandas as pd

    from mmtrace.report.views import sample_rows

    n = 10_000
    df = pd.DataFrame({"pid": [1] * n + [2] * 10, "kind": ["map"] * (n // 2) + ["split"] * (n // 2) + ["unmap"] * 10,
                       "cause": "mmap", "ts": np.arange(n + 10)})
    rows = sample_rows(df, 500)
    assert len(rows) <= 500 and np.all(np.diff(rows) > 0)
    kept = df.iloc[rows]
    assert (kept["kind"] == "unmap").sum() == 10  # a small group keeps all its rows
    for kind in ("map", "split"):
        g = df[df["kind"] == kind]
        k = kept[kept["kind"] == kind]
        assert len(k) > 200 and k["ts"].iloc[0] == g["ts"].iloc[0] and k["ts"].iloc[-1] == g["ts"].iloc[-1]
    assert list(sample_rows(df.head(50), 500)) == list(range(50))


def test_join_lifetimes_joins_only_what_a_pixel_hides():
    import numpy as np

    from mmtrace.report.views import join_lifetimes

    # one range mapped 1000 times, 10 ns apart; another range once; a third colour on the first range
    s = np.array([0x1000] * 1000 + [0x9000, 0x1000], dtype=np.uint64)
    e = np.array([0x2000] * 1000 + [0xA000, 0x2000], dtype=np.uint64)
    keys = ["rw-"] * 1000 + ["rw-", "r--"]
    born = np.concatenate([np.arange(1000) * 100, [0, 50]])
    died = np.concatenate([np.arange(1000) * 100 + 90, [5, 60]])
    first, b, d, n = join_lifetimes(s, e, keys, born, died, px=10)
    assert sorted(n.tolist()) == [1, 1, 1000] and b.min() == 0 and d.max() == 99_990
    first, b, d, n = join_lifetimes(s, e, keys, born, died, px=5)  # gaps of 10 ns now show
    assert len(first) == 1002
