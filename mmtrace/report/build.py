"""``write_report``: tables, plots and index.html of one trace into a directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .export import TABLES, export
from .frames import ReportData, report_data
from .progress import Progress

__all__ = ["write_report", "ReportResult", "default_output"]

STAGES = {"replay: changes": 3, "splits and merges": 2, "hugetlb and anomalies": 1, "replay: VMAs over time": 3,
          "tables": 2, "plots": 3, "index.html": 1}


def default_output(trace_path) -> Path:
    """``TRACE-report`` beside the trace (``mmtrace.data`` -> ``mmtrace.data-report``)."""
    p = Path(trace_path)
    return p.with_name(p.name.rstrip("/") + "-report")


@dataclass
class ReportResult:
    out_dir: Path
    files: dict = field(default_factory=dict)  # table name -> path
    images: dict = field(default_factory=dict)  # title -> (path, caption)
    index: Path | None = None
    errors: dict = field(default_factory=dict)  # table -> error message
    data: ReportData | None = None

    def text(self) -> str:
        """The terminal summary, listing the files written."""
        from .text import report_text

        allf = dict(self.files)
        for title, (p, _) in self.images.items():
            allf[title] = p
        if self.index is not None:
            allf["open in a browser"] = self.index
        return report_text(self.data, files=allf, out_dir=self.out_dir)


def write_report(trace, out_dir=None, fmt: str = "csv", *, progress: Progress | None = None,
                 timelines: int = 4) -> ReportResult:
    """Write the report of ``trace`` (path, trace or ReportData) into ``out_dir``.

    Files: the tables (:data:`mmtrace.report.export.TABLES`) as ``.csv`` or
    ``.parquet``; ``vma_count.png``, ``timeline-PID.png`` (the ``timelines``
    busiest processes), ``splits_merges.png``, ``hugetlb.png`` (when the
    trace has hugetlb samples); ``index.html``.  A table that cannot be
    computed is reported in ``errors`` and the rest is still written.
    """
    import matplotlib.pyplot as plt

    from . import plots
    from .html import write_index

    progress = progress or Progress(STAGES, enabled=False)
    rd = report_data(trace)
    rd.progress = progress
    out = Path(out_dir) if out_dir is not None else default_output(rd.trace.path)
    out.mkdir(parents=True, exist_ok=True)
    res = ReportResult(out_dir=out, data=rd)
    with progress.stage("replay: changes"):
        rd.safe("changes")
    with progress.stage("splits and merges"):
        rd.safe("splits")
        progress.update(0.6)
        rd.safe("merges")
    with progress.stage("hugetlb and anomalies"):
        rd.safe("hugetlb")
        rd.safe("anomalies")
    with progress.stage("replay: VMAs over time"):
        rd.safe("vma_counts")
        rd.safe("processes")
    with progress.stage("tables"):
        res.files = export(rd, out, fmt, progress=progress)
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
    with progress.stage("index.html"):
        res.index = write_index(rd, out, files=res.files, images=res.images)
    progress.close()
    res.errors = dict(rd.errors)
    return res


__all__ += ["TABLES"]
