"""``write_report``: tables, the interactive index.html and (``png``) static plots of one trace into a directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .export import TABLES, export
from .frames import ReportData, report_data
from .progress import Progress

__all__ = ["write_report", "ReportResult", "default_output", "parse_formats", "OUTPUT_FORMATS"]

#: What ``--format`` takes: table formats (``csv``, ``parquet``; at least one is
#: always written, csv by default) and ``png`` (the static figures as well).
OUTPUT_FORMATS = ("csv", "parquet", "png")

STAGES = {"replay: changes": 5, "hugetlb and anomalies": 1, "VMAs over time": 1,
          "tables": 2, "plots": 3, "index.html": 1}


def default_output(trace_path) -> Path:
    """``TRACE-report`` beside the trace (``mmtrace.data`` -> ``mmtrace.data-report``)."""
    p = Path(trace_path)
    return p.with_name(p.name.rstrip("/") + "-report")


def parse_formats(fmt) -> tuple[list[str], bool]:
    """``"parquet,png"`` (or a list of names) -> (table formats, write PNGs).

    Tables are always written (the page shows a decimated view; the exact
    rows are in them): csv unless csv or parquet is named.
    """
    names = [f.strip().lower() for f in (fmt.split(",") if isinstance(fmt, str) else fmt) if f.strip()]
    bad = [f for f in names if f not in OUTPUT_FORMATS]
    if bad:
        raise ValueError(f"unknown format {bad[0]!r}: formats are {', '.join(OUTPUT_FORMATS)} (comma-separated)")
    tables = [f for f in dict.fromkeys(names) if f in ("csv", "parquet")] or ["csv"]
    return tables, "png" in names


@dataclass
class ReportResult:
    out_dir: Path
    files: dict = field(default_factory=dict)  # table name -> path
    images: dict = field(default_factory=dict)  # title -> (path, caption)
    index: Path | None = None
    errors: dict = field(default_factory=dict)  # table -> error message
    data: ReportData | None = None
    callsites_text: str = ""  # record -g: the "who changed the address space" section (report/callsites.py)

    def text(self) -> str:
        """The terminal summary, listing the files written."""
        from .text import report_text

        allf = dict(self.files)
        for title, (p, _) in self.images.items():
            allf[title] = p
        if self.index is not None:
            allf["open in a browser"] = self.index
        return report_text(self.data, files=allf, out_dir=self.out_dir) + self.callsites_text


def write_report(trace, out_dir=None, fmt: str = "csv", *, progress: Progress | None = None,
                 timelines: int = 4) -> ReportResult:
    """Write the report of ``trace`` (path, trace or ReportData) into ``out_dir``.

    ``fmt``: what :func:`parse_formats` takes (``"csv"``, ``"parquet"``,
    ``"csv,png"``...).  Files: the tables
    (:data:`mmtrace.report.export.TABLES`) as ``.csv`` and/or ``.parquet``;
    ``index.html`` (interactive, self-contained); with ``png`` also
    ``vma_count.png``, ``timeline-PID.png`` (the ``timelines`` busiest
    processes), ``splits_merges.png``, ``hugetlb.png`` (when the trace has
    hugetlb samples).  A table that cannot be computed is reported in
    ``errors`` and the rest is still written.
    """
    import warnings

    from .html import write_index

    table_fmts, png = parse_formats(fmt)
    progress = progress or Progress(STAGES, enabled=False)
    if not png:
        progress.weights.pop("plots", None)
        progress.total = sum(progress.weights.values()) or 1.0
    rd = report_data(trace)
    rd.progress = progress
    out = Path(out_dir) if out_dir is not None else default_output(rd.trace.path)
    out.mkdir(parents=True, exist_ok=True)
    res = ReportResult(out_dir=out, data=rd)
    # Warnings met on the way (a damaged part skipped...) go on the page too, and
    # are raised again for the caller once the report is written.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with progress.stage("replay: changes"):
            streamed = _stream(rd, out, table_fmts, progress)
        give_back_memory()  # the replay's windows are gone: the peak is what comes next, not their sum
        with progress.stage("hugetlb and anomalies"):
            rd.safe("hugetlb")
            rd.safe("anomalies")
        with progress.stage("VMAs over time"):  # fed by the changes pass
            rd.safe("vma_counts")
            rd.safe("processes")
        with progress.stage("tables"):
            rest = [n for n in TABLES if n not in streamed]
            for f in table_fmts:
                written = export(rd, out, f, tables=rest, progress=progress)
                written.update({n: p[f] for n, p in streamed.items()})
                written = {n: written[n] for n in TABLES}
                res.files.update(written if f == table_fmts[0] else {f"{k} ({f})": v for k, v in written.items()})
            _callsites_hook(rd, out, res, table_fmts)
        if png:
            _write_pngs(rd, out, res, progress, timelines)
        with progress.stage("index.html"):
            give_back_memory()
            notes = list(dict.fromkeys(str(w.message) for w in caught
                                       if not issubclass(w.category, (DeprecationWarning, FutureWarning))))
            try:
                res.index = write_index(rd, out, files=res.files, images=res.images, notes=notes,
                                        callsites=res.callsites_text)
            except Exception as e:  # noqa: BLE001 - the tables are written: say what the page lacks
                rd.errors["index.html"] = f"{type(e).__name__}: {e}"
    progress.close()
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    res.errors = dict(rd.errors)
    return res


def give_back_memory() -> None:
    """Return freed memory to the system between stages (best effort).

    The report's peak RSS is set by the stage that needs the most on top of
    what earlier stages freed but the allocators kept: Python's cyclic
    garbage, pyarrow's memory pool (jemalloc/mimalloc keep freed pages) and
    glibc's malloc arenas (numpy and pandas buffers; ``malloc_trim`` hands
    their free pages back).  None of it changes a result.
    """
    import gc

    from ..trace.pool import trim_malloc

    gc.collect()
    try:
        import pyarrow

        pyarrow.default_memory_pool().release_unused()
    except Exception:  # noqa: BLE001 - an allocator without the call
        pass
    trim_malloc()


def _callsites_hook(rd, out: Path, res: ReportResult, fmts: list[str]) -> None:
    """record -g: the "who changed the address space" section (report/callsites.py)."""
    from ..detect.callsites import has_stacks
    from .callsites import section_text, write_callsites

    if not has_stacks(rd.trace):
        return  # no stacks: do not materialize the changes the stream pass wrote
    ch = rd.safe("changes")
    if ch is None:
        return
    try:
        res.files.update(write_callsites(rd.trace, ch, out, fmts))
        res.callsites_text = section_text(rd.trace, ch)
    except Exception as e:  # noqa: BLE001 - one section must not lose the report
        rd.errors["callsites"] = f"{type(e).__name__}: {e}"


def _stream(rd, out: Path, table_fmts, progress) -> dict:
    """changes, splits and merges in one pass (:func:`mmtrace.report.stream.stream_changes`);
    {table: {format: path}}; on an error, the error is recorded and the tables are
    left to :func:`export` (written empty, with their columns)."""
    from .html import PAGE_ROWS
    from .stream import CHANGE_INDEX, SM_INDEX, stream_changes

    try:
        return stream_changes(rd, out, table_fmts, page_rows=PAGE_ROWS, progress=progress)
    except Exception as e:  # noqa: BLE001 - one broken table must not lose the others
        for name in ("changes", "splits", "merges"):
            rd.errors[name] = f"{type(e).__name__}: {e}"
        rd._c.update(change_index=pd.DataFrame(columns=CHANGE_INDEX), split_index=pd.DataFrame(columns=SM_INDEX),
                     merge_index=pd.DataFrame(columns=SM_INDEX), change_sample=(pd.DataFrame(), 0),
                     sm_sample=(pd.DataFrame(), 0))
        for name in ("changes", "splits", "merges"):
            rd._c[name] = pd.DataFrame()
        return {}


def _write_pngs(rd, out: Path, res: ReportResult, progress: Progress, timelines: int) -> None:
    """The static figures (matplotlib) for papers and terminals."""
    import matplotlib.pyplot as plt

    from . import plots

    with progress.stage("plots"):
        jobs = [("VMA count over time", "vma_count.png", plots.vma_count,
                 "VMAs of each process after each change (the busiest processes).")]
        procs = rd.safe("processes")
        pids = rd.busiest(timelines) if procs is not None else []
        for pid in pids:
            jobs.append((f"Address space of {pid} {rd.comm_of(pid)}", f"timeline-{pid}.png",
                         lambda r, p, pid=pid: plots.address_timeline(r, pid, p),
                         "Each VMA is a bar from its creation to its end (x) over its address range (y); the wide "
                         "empty stretches between address regions are cut out (grey bands) so that every region "
                         "is readable; colours are permissions, hugetlb in pink."))
        jobs.append(("Splits and merges over time", "splits_merges.png", plots.splits_merges,
                     "Split points (one per __split_vma) above the axis, merge points below, per time bin; "
                     "dashed: running totals."))
        h = rd.safe("hugetlb")
        if h is not None and len(h):
            jobs.append(("hugetlb reservations: model vs kernel", "hugetlb.png", plots.hugetlb,
                         "The kernel's resv_huge_pages at each in-kernel sample (black) against the reservations "
                         "the model rebuilt from the traced mappings (dashed blue); red lines: anomalies."))
        for i, (title, name, fn, caption) in enumerate(jobs):
            try:
                ax = fn(rd, out / name)
                plt.close(ax.figure)
                res.images[title] = (out / name, caption)
            except Exception as e:  # noqa: BLE001 - one figure must not lose the report
                rd.errors[f"plot {name}"] = f"{type(e).__name__}: {e}"
            progress.update((i + 1) / len(jobs))


__all__ += ["TABLES"]
