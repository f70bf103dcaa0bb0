"""What the report's figures show, as small DataFrames: no drawing here.

Both renderers use these: the interactive page (:mod:`mmtrace.report.html`,
Bokeh) and the static PNGs (:mod:`mmtrace.report.plots`, matplotlib).  A
screen shows a few thousand pixels across, so everything here is decimated
to what such a screen can show (the exact rows stay in the CSV/Parquet
tables next to the page):

- :func:`region_layout`: one process's address space cut into regions
  (the wide empty stretches between them cut out), mapped onto 0..1;
- :func:`join_lifetimes`: VMA lifetimes of one range and colour less than a
  pixel apart drawn as one bar;
- :func:`timeline_bars`: every process's address-space timeline, as bars;
- :func:`count_lines`: VMAs per process over time, min/max per pixel;
- :func:`split_merge_bins`: split and merge points per time bin;
- :func:`sample_rows`: at most N rows of a table, spread over each group.

Time is in seconds since the recording started (``seconds``); raw
CLOCK_MONOTONIC ns are kept beside it where a hover shows them.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..events.flags import VM_GROWSDOWN, VM_HUGETLB
from ..trace.windows import KindReader, num, strings

__all__ = ["PERM_COLOURS", "colour_key", "colour_keys", "size_text", "address_regions", "Layout", "region_layout",
           "region_names", "join_lifetimes", "timeline_bars", "count_lines", "split_merge_bins", "sample_rows",
           "origin", "seconds", "vma_text"]

#: Colours by permissions (and hugetlb), colour-blind friendly (Okabe-Ito).
PERM_COLOURS = {
    "hugetlb": "#CC79A7",
    "r-x": "#D55E00",
    "rw-": "#0072B2",
    "r--": "#009E73",
    "---": "#999999",
    "other": "#E69F00",
}


def colour_key(perms: str, flags: int) -> str:
    """The legend entry of a VMA: ``hugetlb``, its rwx permissions, or ``other``."""
    if flags & VM_HUGETLB:
        return "hugetlb"
    p = perms[:3]
    return p if p in PERM_COLOURS else "other"


_KEYS = list(PERM_COLOURS)
# rwx bits of vm_flags (VM_READ 1, VM_WRITE 2, VM_EXEC 4) -> legend entry
_RWX_KEY = {0: "---", 1: "r--", 3: "rw-", 5: "r-x"}


def colour_keys(vm_flags) -> np.ndarray:
    """:func:`colour_key` of many VMAs at once, from their vm_flags (object array of names)."""
    f = np.asarray(vm_flags, dtype=np.uint64)
    rwx = (f & np.uint64(7)).astype(np.int64)
    lut = np.array([_RWX_KEY.get(i, "other") for i in range(8)], dtype=object)
    return np.where(f & np.uint64(VM_HUGETLB), "hugetlb", lut[rwx])


def size_text(n: int) -> str:
    """Bytes as people read them: ``16 KiB``, ``1.5 GiB``."""
    for unit, sh in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << sh:
            v = n / (1 << sh)
            return f"{v:.0f} {unit}" if v >= 10 else f"{v:.1f} {unit}"
    return f"{n} B"


def origin(rd) -> int:
    """The ns every time is counted from: the recording's start (else the first change)."""
    if rd.t0:
        return int(rd.t0)
    ch = rd.safe("change_index")
    return int(ch["ts"].min()) if ch is not None and len(ch) else 0


def seconds(rd, ts) -> np.ndarray:
    """CLOCK_MONOTONIC ns -> seconds since the recording started."""
    return (np.asarray(ts, dtype=np.int64) - origin(rd)) / 1e9


def vma_text(v) -> str:
    """One VMA of a before/after list: ``0x7f..000-0x7f..000 rw-p (16 KiB)``."""
    if isinstance(v, dict):
        s, e, p = int(v["start"]), int(v["end"]), v.get("perms", "")
    else:
        s, e, p = int(v[0]), int(v[1]), (v[2] if len(v) > 2 else "")
    return f"{s:#x}-{e:#x} {p} ({size_text(e - s)})"


# -- address regions ----------------------------------------------------------------------------------
def address_regions(intervals, *, max_regions: int = 10, min_gap: int = 64 << 20) -> list[tuple[int, int]]:
    """Group address ranges into regions separated by the widest empty gaps.

    ``intervals``: (start, end) pairs, or a pair of arrays (starts, ends).
    A gap of at least ``min_gap`` bytes separates two regions; only the
    ``max_regions - 1`` widest such gaps are cut.  Returns sorted, disjoint
    (start, end) regions covering all intervals.
    """
    if isinstance(intervals, tuple) and len(intervals) == 2 and hasattr(intervals[0], "__len__"):
        st = np.asarray(intervals[0], dtype=np.uint64)
        en = np.asarray(intervals[1], dtype=np.uint64)
    else:
        pairs = [(int(a), int(b)) for a, b in intervals]
        st = np.array([a for a, _ in pairs], dtype=np.uint64)
        en = np.array([b for _, b in pairs], dtype=np.uint64)
    keep = en > st
    st, en = st[keep], en[keep]
    if not len(st):
        return []
    o = np.lexsort((en, st))
    st, en = st[o], en[o]
    reach = np.maximum.accumulate(en)  # the end of everything up to here
    # a gap before interval i when it starts past all that came before
    gap_at = np.flatnonzero(st[1:] > reach[:-1]) + 1
    widths = st[gap_at] - reach[gap_at - 1]
    order = np.argsort(-widths.astype(np.float64), kind="stable")[: max(0, max_regions - 1)]
    cut = np.sort(gap_at[order[widths[order] >= min_gap]])
    lo = np.concatenate([[0], cut])
    hi = np.concatenate([cut, [len(st)]]) - 1
    return [(int(st[a]), int(reach[b])) for a, b in zip(lo, hi)]


@dataclass
class Layout:
    """Where each address region sits on a 0..1 axis (``bases[k]`` .. ``bases[k] + heights[k]``)."""

    regions: list[tuple[int, int]]
    bases: np.ndarray
    heights: np.ndarray

    def y(self, addr) -> np.ndarray:
        """Axis position of addresses (uint64-able); each is placed in the region holding it."""
        a = np.asarray([int(x) for x in np.atleast_1d(addr)], dtype=object)
        rs = [s for s, _ in self.regions]
        k = np.array([max(0, min(len(rs) - 1, bisect_right(rs, int(x)) - 1)) for x in a], dtype=np.int64)
        lo = np.array([self.regions[i][0] for i in k], dtype=object)
        span = np.array([max(1, self.regions[i][1] - self.regions[i][0]) for i in k], dtype=object)
        frac = np.array([float(d) for d in (a - lo)], dtype=np.float64) / np.array([float(s) for s in span])
        return self.bases[k] + self.heights[k] * np.clip(frac, 0.0, 1.0)

    @property
    def top(self) -> float:
        return float(self.bases[-1] + self.heights[-1]) if len(self.regions) else 1.0


def region_layout(starts, ends, *, max_regions: int = 10, gap: float = 0.04) -> Layout:
    """Regions of the ranges (see :func:`address_regions`) with a height each: half
    shared equally, half by size, so that a 132 KiB stack next to a 100 GiB
    reservation is still a band you can see; ``gap`` between regions."""
    regions = address_regions((np.asarray(starts, dtype=np.uint64), np.asarray(ends, dtype=np.uint64)),
                              max_regions=max_regions)
    if not regions:
        return Layout([], np.zeros(0), np.zeros(0))
    sizes = np.array([float(e - s) for s, e in regions])
    share = 0.5 / len(regions) + 0.5 * sizes / sizes.sum()
    heights = share * (1.0 - gap * (len(regions) - 1))
    bases = np.concatenate([[0.0], np.cumsum(heights + gap)[:-1]])
    return Layout(regions, bases, heights)


def region_names(rd, pid: int, v: pd.DataFrame, regions) -> list[str]:
    """A name for each region of process ``pid``: the three biggest of its files,
    ``[heap]``, ``[stack]``, ``anon``, ``hugetlb`` (``v``: its :meth:`ReportData.vmas` rows)."""
    rstarts = [s for s, _ in regions]
    heap = _brk_of(rd).get(int(pid), [])
    exe = exe_inodes(rd, pid, v)
    st = v["start"].to_numpy(np.uint64)
    k = np.searchsorted(np.array(rstarts, dtype=np.uint64), st, side="right") - 1
    flags = v["vm_flags"].to_numpy(np.uint64)
    codes, uniq = pd.factorize(v["path"], use_na_sentinel=False)  # few files, many VMAs: text per file
    # A lifetime's name depends only on (region, stack?, hugetlb?, file, inode): sum the sizes
    # of each such group first and name the few groups, not the (millions of) lifetimes.
    # Groups come in the order of their first lifetime, so (region, name) keeps it too.
    g = pd.DataFrame({"k": k, "stack": (flags & VM_GROWSDOWN) != 0, "huge": (flags & VM_HUGETLB) != 0,
                      "code": codes, "ino": v["inode"].to_numpy(np.uint64),
                      "size": v["end"].to_numpy(np.uint64) - st}).groupby(
        ["k", "stack", "huge", "code", "ino"], sort=False)["size"].sum().reset_index()
    ino = g["ino"].to_numpy(np.uint64)
    base = np.array([str(u).rsplit("/", 1)[-1] for u in uniq] + [""], dtype=object)[g["code"].to_numpy()]
    exe_name = pd.Series(ino).map({np.uint64(i): n for i, n in exe.items()}).to_numpy(dtype=object)
    inode_name = np.array([f"file (inode {int(i)})" for i in ino], dtype=object)
    name = np.where(g["stack"], "[stack]", np.where(g["huge"], "hugetlb", np.where(
        base != "", base, np.where(pd.notna(exe_name), exe_name,
                                   np.where(ino != 0, inode_name, "anon")))))
    # sizes as float, as the share of each name is compared (exact below 2**53 bytes a name)
    agg = pd.DataFrame({"k": g["k"].to_numpy(), "name": name, "size": g["size"].to_numpy(np.float64)}).groupby(
        ["k", "name"], sort=False)["size"].sum()
    return region_labels(agg, regions, heap)


def region_labels(sizes: pd.Series, regions, heap) -> list[str]:
    """Each region's label: its three biggest names by bytes (``sizes``: indexed by
    (region, name), in first-seen order, which breaks ties), ``[heap]`` first where a
    ``heap`` end (brk) falls in it, ``+N more``."""
    rstarts = [s for s, _ in regions]
    info: list[dict] = [{} for _ in regions]
    for (kk, n), sz in sizes.items():
        info[int(kk)][n] = sz
    for h in heap:
        kk = bisect_right(rstarts, h - 1) - 1
        if 0 <= kk < len(regions) and regions[kk][0] < h <= regions[kk][1]:
            info[kk]["[heap]"] = float("inf")
    out = []
    for d in info:
        top = [n for n, _ in sorted(d.items(), key=lambda kv: -kv[1])[:3]]
        more = len(d) - len(top)
        out.append(", ".join(top) + (f" +{more} more" if more > 0 else ""))
    return out


def exe_inodes(rd, pid: int, v: pd.DataFrame) -> dict[int, str]:
    """{inode: program name} of the binaries ``pid``'s execs loaded: the lowest file
    mapping that appeared with each successful exec (``v``: its lifetimes)."""
    exe: dict[int, str] = {}
    try:
        ch = rd.change_index()
        ex = ch[(ch["pid"] == pid) & ch["cause"].isin(["execve", "execveat"]) & (ch["ret"] == 0)]
        names = [n.rsplit("/", 1)[-1] for n in rd.processes().set_index("pid").loc[pid, "exec"]]
        for name, te in zip(names, ex["ts_end"].tolist()):
            f = v[(v["born_ts"] == te) & (v["inode"] != 0)]
            if len(f):
                exe[int(f.sort_values("start")["inode"].iloc[0])] = name
    except Exception:  # noqa: BLE001 - naming is best effort
        pass
    return exe


def _brk_of(rd) -> dict[int, list[int]]:
    """{pid: brk() return values > 0}, read once per ReportData.

    Only the brk rows are kept, part by part (:class:`~mmtrace.trace.windows.KindReader`):
    the syscall table of a long trace is millions of rows the report needs nothing else of."""
    got = getattr(rd, "_views_brk", None)
    if got is None:
        got = {}
        try:
            def brk_rows(col, n):
                codes, names = strings(col("syscall"))
                ret = num(col("ret"), "ret")
                keep = (codes == names.index("brk")) & (ret > 0) if "brk" in names else np.zeros(n, bool)
                return {"ts": num(col("ts"), "ts")[keep], "tgid": num(col("tgid"), "tgid")[keep], "ret": ret[keep]}

            b = KindReader(rd.trace, "syscall", ("ts", "tgid", "syscall", "ret"), brk_rows).between(-np.inf, np.inf)
            if b is not None and len(b["ts"]):
                tgid, ret = b["tgid"], b["ret"]
                o = np.argsort(tgid, kind="stable")  # ts order within each pid, as the rows came
                pids, first = np.unique(tgid[o], return_index=True)
                got = {int(p): r.tolist() for p, r in zip(pids, np.split(ret[o], first[1:]))}
        except Exception:  # noqa: BLE001 - naming is best effort
            pass
        rd._views_brk = got
    return got


# -- VMA lifetimes as bars --------------------------------------------------------------------------------
def join_lifetimes(starts, ends, keys, born, died, px: float):
    """Group the lifetimes of one (start, end, key) whose gap is at most ``px``.

    A loop that maps and unmaps the same range 100,000 times draws as the
    one bar it looks like, not 100,000.  Returns (first, born, died, n):
    the index of each group's first lifetime, its earliest birth, latest
    end and the number of lifetimes joined.
    """
    n = len(born)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, np.zeros(0), np.zeros(0), z
    df = pd.DataFrame({"s": np.asarray(starts, dtype=np.uint64), "e": np.asarray(ends, dtype=np.uint64),
                       "key": pd.factorize(np.asarray(keys, dtype=object))[0], "b": born, "d": died,
                       "i": np.arange(n)})
    df = df.sort_values(["s", "e", "key", "b"], kind="stable")
    s, e, k = df["s"].to_numpy(), df["e"].to_numpy(), df["key"].to_numpy()
    same = (s[1:] == s[:-1]) & (e[1:] == e[:-1]) & (k[1:] == k[:-1])
    # One process never maps a range twice at once: bars of one range do not
    # overlap, so comparing with the previous bar's end is enough.
    close = df["b"].to_numpy()[1:] - df["d"].to_numpy()[:-1] <= px
    group = np.concatenate([[0], np.cumsum(~(same & close))])
    g = df.groupby(group, sort=False)
    return (g["i"].first().to_numpy(), g["b"].min().to_numpy(), g["d"].max().to_numpy(),
            g.size().to_numpy())


def _changes_by_end(ch: pd.DataFrame) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{pid: (ts_end sorted, row of each)} of the changes."""
    te_all = ch["ts_end"].to_numpy(np.int64)
    out = {}
    for pid, pos in ch.groupby("pid").indices.items() if len(ch) else ():
        o = np.argsort(te_all[pos], kind="stable")
        out[int(pid)] = (te_all[pos][o], pos[o])
    return out


def _change_rows(ch_of: dict, pid: int, ts: np.ndarray) -> np.ndarray:
    """Row of the change of ``pid`` that ended at each ``ts`` (its ``ts_end``; the
    first of several), -1 where none did (``ch_of``: :func:`_changes_by_end`)."""
    if pid not in ch_of:
        return np.full(len(ts), -1, dtype=np.int64)
    te, pos = ch_of[pid]
    k = np.searchsorted(te, ts).clip(0, len(te) - 1)
    return np.where(te[k] == ts, pos[k], -1)


def _change_text(ch: pd.DataFrame, i, t0: int) -> str:
    if i is None or i < 0:
        return ""
    r = ch.iloc[i]
    what = r["call"] or (r["cause"] if r["cause"] != r["kind"] else "")
    return f"{r['kind']}{' by ' + what if what else ''} at {(int(r['ts']) - t0) / 1e9:.6f} s"


def timeline_bars(rd, *, pids=None, budget: int = 60_000, width_px: int = 4000,
                  max_regions: int = 10) -> tuple[pd.DataFrame, dict]:
    """Every process's address space over time, each VMA a bar, as a frame to draw.

    Lifetimes of one range and colour less than ``span / width_px`` apart
    are joined (:func:`join_lifetimes`); while more than ``budget`` bars
    remain, the pixel is doubled.  Columns of the bars: ``pid``, ``x0``,
    ``x1`` (seconds since the start), ``y0``, ``y1`` (0..1, see
    :func:`region_layout`), ``colour``, ``key`` (legend), ``range`` (hex and
    size), ``perms``, ``file``, ``born``/``died`` (the change that created /
    ended it), ``born_ns``/``died_ns`` (raw CLOCK_MONOTONIC; -1 alive at the
    end), ``n`` (lifetimes joined), ``vm_start``/``vm_end``.
    Also returns {pid: {"ticks", "labels", "names": [(y, text)], "gaps":
    [(y0, y1, text)], "layout": Layout, "x": (lo, hi), "joined": lifetimes
    joined, "dropped": bars left out}}.
    """
    t0 = origin(rd)
    v = rd.vmas_shown()
    ch = rd.safe("change_index")
    ch = ch if ch is not None else pd.DataFrame(columns=["pid", "ts", "ts_end", "kind", "call", "cause"])
    procs = rd.processes().set_index("pid")
    rows_of = v.groupby("pid").indices  # {pid: positions}: one pass, however many processes
    ch_of = _changes_by_end(ch)
    if pids is None:
        pids = [p for p in rd.busiest(len(procs)) if p in rows_of]
    end_all = int(rd.t1) if rd.t1 else (int(v["born_ts"].max()) if len(v) else t0)
    per: dict[int, dict] = {}
    prepared = []
    for pid in pids:
        if pid not in rows_of:
            continue
        pos = rows_of[pid]
        d = v if len(pos) == len(v) else v.iloc[pos]  # one process owns every row: no copy
        ex = procs.loc[pid, "exit_ts"] if pid in procs.index else pd.NA
        t_end = max(int(ex), int(d["died_ts"].max())) if ex is not pd.NA else end_all
        born = d["born_ts"].to_numpy(np.int64)
        died_raw = d["died_ts"].to_numpy(np.int64)
        died = np.where(died_raw < 0, t_end, died_raw)
        keys = colour_keys(d["vm_flags"].to_numpy(np.uint64))
        prepared.append((pid, d, born, died, died_raw, keys, max(1, int(died.max()) - int(born.min()))))
    px_scale = 1.0
    while True:
        joined = [join_lifetimes(d["start"].to_numpy(np.uint64), d["end"].to_numpy(np.uint64), keys, born, died,
                                 px_scale * span / width_px)
                  for pid, d, born, died, died_raw, keys, span in prepared]
        total = sum(len(j[0]) for j in joined)
        if total <= budget or px_scale * 1 >= width_px:
            break
        px_scale *= 2
    share = budget / max(1, total)
    rows = []
    for (pid, d, born, died, died_raw, keys, span), (first, b, dd, n) in zip(prepared, joined):
        dropped = 0
        if total > budget:  # still too many at one bar per range: keep the longest-lived
            keep = max(1, int(len(first) * share))
            order = np.argsort(-(dd - b), kind="stable")[:keep]
            dropped = len(first) - len(order)
            first, b, dd, n = first[order], b[order], dd[order], n[order]
        starts = d["start"].to_numpy(np.uint64)
        ends = d["end"].to_numpy(np.uint64)
        lay = region_layout(starts, ends, max_regions=max_regions)  # arrays: no Python int per lifetime
        fs, fe = starts[first], ends[first]
        y0, y1 = lay.y(fs), lay.y(fe)
        # the end of a range sits in the region of its start (its last byte's region)
        y1 = np.maximum(y1, y0)
        # text only for the bars drawn, not for every lifetime
        paths = d["path"].iloc[first].astype(str).to_numpy()
        inodes = d["inode"].to_numpy(np.uint64)[first]
        perms = d["perms"].iloc[first].astype(str).to_numpy()
        kk = np.asarray(keys, dtype=object)[first]
        braw = born[first]
        draw = died_raw[first]
        last = dd  # the latest end of the group
        brow = _change_rows(ch_of, pid, braw)
        drow = _change_rows(ch_of, pid, draw)
        for i in range(len(first)):
            bi, di = int(brow[i]), (int(drow[i]) if draw[i] >= 0 else -1)
            born_t = _change_text(ch, bi, t0) if bi >= 0 else \
                f"present at {(int(braw[i]) - t0) / 1e9:.6f} s (first sight: snapshot, fork or attach)"
            if n[i] > 1:
                died_t = f"{int(n[i]):,} lifetimes of this range joined (each gap < 1 px); the last ends at " \
                         f"{(int(last[i]) - t0) / 1e9:.6f} s: all in vmas.csv"
            elif draw[i] < 0:
                died_t = "alive when recording stopped"
            else:
                died_t = _change_text(ch, di, t0) if di >= 0 else f"ends at {(int(draw[i]) - t0) / 1e9:.6f} s"
            s_, e_ = int(fs[i]), int(fe[i])
            rows.append((str(pid), (int(b[i]) - t0) / 1e9, (int(max(dd[i], b[i])) - t0) / 1e9, float(y0[i]),
                         float(y1[i]), PERM_COLOURS[kk[i]], kk[i], f"{s_:#x}-{e_:#x} ({size_text(e_ - s_)})",
                         perms[i], paths[i] or (f"inode {int(inodes[i])}" if inodes[i] else "anonymous"),
                         born_t, died_t, str(int(braw[i])), str(int(last[i]) if draw[i] >= 0 or n[i] > 1 else -1),
                         int(n[i]), s_, e_))
        ticks, labels, gaps, names = [], [], [], []
        rn = region_names(rd, pid, d, lay.regions)
        for k, (s, e) in enumerate(lay.regions):
            ticks += [float(lay.bases[k]), float(lay.bases[k] + lay.heights[k])]
            labels += [f"{s:#x}", f"{e:#x}"]
            names.append((float(lay.bases[k] + lay.heights[k] / 2), f"{rn[k]} ({size_text(e - s)})"))
            if k + 1 < len(lay.regions):
                gaps.append((float(lay.bases[k] + lay.heights[k]), float(lay.bases[k + 1]),
                             f"≈ {size_text(lay.regions[k + 1][0] - e)} empty, cut out ≈"))
        per[pid] = {"ticks": ticks, "labels": labels, "names": names, "gaps": gaps, "layout": lay,
                    "x": ((int(born.min()) - t0) / 1e9, (int(died.max()) - t0) / 1e9),
                    "joined": int(len(d) - len(first) - dropped), "lifetimes": int(len(d)), "dropped": dropped}
    cols = ["pid", "x0", "x1", "y0", "y1", "colour", "key", "range", "perms", "file", "born", "died", "born_ns",
            "died_ns", "n", "vm_start", "vm_end"]
    return pd.DataFrame(rows, columns=cols), per


# -- VMA counts ----------------------------------------------------------------------------------------
def count_lines(rd, pids, *, buckets: int = 2000) -> pd.DataFrame:
    """VMAs of each process over time as steps, at most ~4 points per time bucket
    (first, min, max, last: the envelope a screen shows).  Columns: ``pid``,
    ``t`` (seconds), ``vmas``, ``mapped`` (bytes), ``ts`` (raw ns)."""
    t0 = origin(rd)
    vc = rd.vma_counts_shown()
    procs = rd.processes().set_index("pid")
    out = []
    end = int(rd.t1) if rd.t1 else None
    for pid in pids:
        d = vc[vc["pid"] == pid].sort_values("ts", kind="stable")
        if len(d) == 0:
            continue
        ex = procs.loc[pid, "exit_ts"] if pid in procs.index else pd.NA
        if ex is pd.NA and end is not None and int(d["ts"].iloc[-1]) < end:
            d = pd.concat([d, d.iloc[[-1]].assign(ts=end)], ignore_index=True)
        if len(d) > 4 * buckets:
            ts = d["ts"].to_numpy(np.int64)
            b = ((ts - ts[0]) * buckets // max(1, ts[-1] - ts[0])).clip(0, buckets - 1)
            d = d.assign(_b=b, _i=np.arange(len(d)))
            g = d.groupby("_b")["vmas"]
            keep = np.unique(np.concatenate([d.groupby("_b")["_i"].first(), d.groupby("_b")["_i"].last(),
                                             d.loc[g.idxmin(), "_i"], d.loc[g.idxmax(), "_i"]]))
            d = d.iloc[keep].drop(columns=["_b", "_i"])
        out.append(pd.DataFrame({"pid": pid, "t": (d["ts"].to_numpy(np.int64) - t0) / 1e9,
                                 "vmas": d["vmas"].to_numpy(np.int64),
                                 "mapped": d["mapped"].to_numpy(np.uint64).astype(np.float64),
                                 "ts": d["ts"].to_numpy(np.int64)}))
    if not out:
        return pd.DataFrame(columns=["pid", "t", "vmas", "mapped", "ts"])
    return pd.concat(out, ignore_index=True)


# -- splits and merges ----------------------------------------------------------------------------------
def split_merge_bins(rd, *, bins: int = 600) -> pd.DataFrame:
    """Split and merge points per time bin over the span of activity.  Columns:
    ``x0``, ``x1`` (seconds), ``splits``, ``merges`` (adjacent VMAs joined),
    ``new_range`` (new ranges taken into a neighbour)."""
    t0 = origin(rd)
    s = rd.safe("split_index")
    m = rd.safe("merge_index")
    ch = rd.safe("change_index")
    frames = [d for d in (s, m, ch) if d is not None and len(d)]
    if frames:
        lo = min(int(d["ts"].min()) for d in frames)
        hi = max(int(d["ts"].max()) for d in frames)
    else:
        lo, hi = t0, int(rd.t1 or t0)
    hi = max(hi, lo + 1)
    edges = np.linspace(lo, hi, bins + 1)

    def hist(d):
        if d is None or len(d) == 0:
            return np.zeros(bins, dtype=np.int64)
        h, _ = np.histogram(d["ts"].to_numpy(np.int64), bins=edges, weights=d["count"].to_numpy(np.float64))
        return h.astype(np.int64)

    mk = m[m["kind"] == "merge"] if m is not None and len(m) else None
    mn = m[m["kind"] == "new_range_merge"] if m is not None and len(m) else None
    return pd.DataFrame({"x0": (edges[:-1] - t0) / 1e9, "x1": (edges[1:] - t0) / 1e9, "splits": hist(s),
                         "merges": hist(mk), "new_range": hist(mn)})


# -- tables --------------------------------------------------------------------------------------------
def sample_rows(df: pd.DataFrame, cap: int, by=("pid", "kind", "cause")) -> np.ndarray:
    """Positions of at most ``cap`` rows of ``df``: every group of ``by`` keeps a
    share (at least its first and last row), spread evenly over the group, so
    that a filter on any of ``by`` still finds rows from the whole recording."""
    n = len(df)
    if n <= cap:
        return np.arange(n)
    by = [c for c in by if c in df.columns]
    codes = df.groupby(by, sort=False, observed=True).ngroup().to_numpy() if by else np.zeros(n, dtype=np.int64)
    counts = np.bincount(codes)
    # Water-filling: small groups keep everything, the big ones share the rest.
    quota = np.zeros_like(counts)
    left, open_ = cap, np.argsort(counts)
    for j, g in enumerate(open_):
        q = left // (len(open_) - j)
        quota[g] = min(counts[g], max(2, q))
        left -= quota[g]
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = []
    for g in range(len(counts)):
        pos = order[starts[g]:starts[g] + counts[g]]
        if quota[g] >= counts[g]:
            keep.append(pos)
        else:
            keep.append(pos[np.unique(np.linspace(0, counts[g] - 1, quota[g]).round().astype(np.int64))])
    return np.sort(np.concatenate(keep))
