"""Golden: the notebooks under notebooks/ run top to bottom on the checked-in traces."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

pytestmark = pytest.mark.golden

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ["01-quickstart.ipynb", "02-time-travel.ipynb", "03-hugetlb-investigation.ipynb"]


def _kernel() -> str:
    """The venv's python3 kernel (the .[notebooks] extra installs it); registered for this interpreter if missing."""
    ksm = KernelSpecManager()
    try:
        spec = ksm.get_kernel_spec("python3")
        if Path(spec.argv[0]).resolve() == Path(sys.executable).resolve() or spec.argv[0] in ("python", "python3"):
            return "python3"
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(user=True, kernel_name="mmtrace-test", display_name="mmtrace tests")
    return "mmtrace-test"


def test_notebooks_are_committed_without_outputs():
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, monkeypatch):
    for var in ("MMTRACE_TRACE", "MMTRACE_PID", "MMTRACE_DEMO_TRACE", "MMTRACE_SYNTHETIC_TRACE"):
        monkeypatch.delenv(var, raising=False)  # the defaults: the checked-in traces
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, kernel_name=_kernel(), timeout=120,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors
    # every cell but pure assignments shows something; the plots are images
    assert sum(1 for c in code if c.outputs) >= len(code) - 2
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "no figure was drawn"


def test_notebook_shows_damage_first(tmp_path, monkeypatch):
    """On a damaged trace the notebook's first output after opening it says what is missing."""
    import shutil

    from tests.golden.make_golden import DATA

    d = tmp_path / "t"
    shutil.copytree(DATA / "demo.trace", d)
    (d / "events/tree_write/part-000001.parquet").write_bytes(b"PAR1")
    monkeypatch.setenv("MMTRACE_TRACE", str(d))
    nb = nbformat.read(NOTEBOOKS / "01-quickstart.ipynb", as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if "damage_lines" in c.source)
    nb.cells = nb.cells[: first + 1]
    NotebookClient(nb, kernel_name=_kernel(), timeout=120, resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[first].outputs)
    assert text.startswith("DAMAGED") and "part-000001.parquet" in text and "tree_write events between" in text
