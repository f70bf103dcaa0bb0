"""Golden: the report page in a real browser (headless Chromium driven by Selenium).

setup.sh installs Debian's chromium and chromium-driver and the ``browser``
extra (selenium): nothing here is skipped when they are missing, the test fails.
"""

from __future__ import annotations

import re

import pytest
from selenium.webdriver.common.actions.action_builder import ActionBuilder

import mmtrace
from mmtrace.cli.main import main as cli
from mmtrace.report.browser import chromium, load, shadow_query_js
from tests.golden.make_golden import DATA

pytestmark = pytest.mark.golden

DEMO = DATA / "demo.trace"

# The DOM of a Bokeh model's view (its shadow root), found by the model's name.
_VIEW = shadow_query_js + """
const doc = Bokeh.documents[0];
function view(name) { const m = doc.get_model_by_name(name); const v = m && Bokeh.index.find_one(m);
                      return v ? (v.shadow_el || v.el.shadowRoot || v.el) : null; }
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("page")
    assert cli(["report", str(DEMO), "-o", str(out), "-q"]) == 0
    return out / "index.html"


def test_page_is_one_offline_file(page):
    text = page.read_text()
    # BokehJS is inline: no script, stylesheet or image is loaded from anywhere
    assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", text)
    assert "Bokeh.embed" in text and len(text) < 20e6
    assert not list(page.parent.glob("*.png"))  # PNGs only with --format png


def _rows(d, table: str) -> int:
    return d.execute_script(_VIEW + f"return deepAll('.slick-row', view('{table}')).length;")


def test_page_in_chromium(page, tmp_path):
    t = mmtrace.open(DEMO)
    ch = t.changes()
    with chromium(1400, 1800) as d:
        load(d, page)
        # the timeline and the other figures are drawn: canvases with pixels that are not background
        # (Bokeh draws each figure on a canvas and keeps an empty one on top for overlays)
        drawn = d.execute_script(_VIEW + """
            return ['timeline', 'vma-count', 'splits-merges', 'hugetlb'].map(name =>
              Math.max(0, ...deepAll('canvas', view(name)).filter(c => c.width > 50 && c.height > 50).map(c => {
                const x = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
                for (let i = 0; i < x.length; i += 4) if (x[i + 3] && (x[i] < 200 || x[i + 1] < 200 || x[i + 2] < 200)) n++;
                return n; })));""")
        assert min(drawn) > 1000, drawn
        # the timeline shows the busiest process's VMAs: its bars are in the page
        bars = d.execute_script(_VIEW + "return doc.get_model_by_name('timeline-bars').data.pid.length;")
        assert bars >= len(t.processes())
        # hovering the biggest bar shows its range, file and the change that created it
        d.execute_script(_VIEW + "Bokeh.index.find_one(doc.get_model_by_name('timeline')).el.scrollIntoView();")
        xy = d.execute_script(_VIEW + """
            const v = Bokeh.index.find_one(doc.get_model_by_name('timeline')); const b = doc.get_model_by_name('timeline-bars').data;
            const pid = doc.get_model_by_name('timeline-process').value; let k = -1;
            for (let i = 0; i < b.pid.length; i++) if (b.pid[i] == pid && (k < 0 || (b.x1[i] - b.x0[i]) * (b.y1[i] - b.y0[i]) > (b.x1[k] - b.x0[k]) * (b.y1[k] - b.y0[k]))) k = i;
            const c = deepAll('canvas', view('timeline'))[0].getBoundingClientRect();
            const x = v.frame.x_scale.compute((b.x0[k] + b.x1[k]) / 2), y = v.frame.y_scale.compute((b.y0[k] + b.y1[k]) / 2);
            return [c.left + x, c.top + y, b.range[k]];""")
        for dx in (0, 1):
            a = ActionBuilder(d)
            a.pointer_action.move_to_location(int(xy[0]) + dx, int(xy[1]))
            a.perform()
        tip = ""
        for _ in range(40):
            tip = d.execute_script(_VIEW + "return deepAll('[class*=tooltip i]', document).map(t => t.innerText).join(' ');")
            if xy[2] in tip:
                break
            d.execute_script("return new Promise(r => setTimeout(r, 50))")
        assert xy[2] in tip and "created by" in tip and " ns)" in tip, tip
        # the changes table is paged: 25 rows of the 63, then a filter on kind changes them
        assert _rows(d, "changes-table") == 25 == min(25, len(ch))
        n_split = int((ch["kind"] == "split").sum())
        d.execute_script(_VIEW + """
            const s = deepAll('select', view('changes-filter-kind'))[0];   // as a user picks "split (15)"
            s.selectedIndex = [...s.options].findIndex(o => o.text.startsWith('split ('));
            s.dispatchEvent(new Event('change', {bubbles: true}));""")
        d.implicitly_wait(0)
        for _ in range(40):
            if _rows(d, "changes-table") == min(25, n_split):
                break
            d.execute_script("return new Promise(r => setTimeout(r, 50))")
        assert _rows(d, "changes-table") == min(25, n_split) != 25
        cells = d.execute_script(_VIEW + "return deepAll('.slick-row', view('changes-table')).map(r => r.innerText);")
        assert all("split" in c for c in cells) and len(cells) == n_split
        # a click on a row marks that change in the timeline, in its process
        first = d.execute_script(_VIEW + "return deepAll('.slick-row .slick-cell', view('changes-table'))[2];")
        first.click()
        for _ in range(40):
            mark = d.execute_script(_VIEW + "return doc.get_model_by_name('mark').location;")
            if mark == mark:
                break
            d.execute_script("return new Promise(r => setTimeout(r, 50))")
        want = ch[ch["kind"] == "split"].iloc[0]
        assert abs(mark - (int(want["ts"]) - t.metadata["start_ns"]) / 1e9) < 1e-6
        x = d.execute_script(_VIEW + "const r = doc.get_model_by_name('time'); return [r.start, r.end];")
        assert x[0] < mark < x[1] and x[1] - x[0] < 0.05
        assert d.execute_script(_VIEW + "return doc.get_model_by_name('timeline-process').value;") == str(want["pid"])
        detail = d.execute_script(_VIEW + "return view('changes-detail').textContent;")
        assert f"{int(want['ts']):,} ns" in detail and "before" in detail and "after" in detail
        shot = tmp_path / "report-page.png"
        d.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000
        errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        print(f"screenshot: {shot}")


def test_state_banner_says_what_is_wrong(tmp_path):
    """The synthetic trace is flagged at the top of the page."""
    out = tmp_path / "synth"
    assert cli(["report", str(DATA / "synthetic-failed-split-vma.trace"), "-o", str(out), "-q"]) == 0
    text = (out / "index.html").read_text()
    assert "class='bad' id='state'" in text and "SYNTHETIC trace" in text
    assert "kernel_counter_underflow" in text


def test_state_banner_shows_damage(tmp_path, capsys):
    """A part of the trace that cannot be read is said at the top of the page, not only on stderr."""
    import shutil

    bad = tmp_path / "damaged.trace"
    shutil.copytree(DEMO, bad)
    part = sorted((bad / "events" / "syscall").glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])
    assert cli(["report", str(bad), "-o", str(tmp_path / "out"), "-q"]) in (0, 1)
    assert "is damaged" in capsys.readouterr().err
    text = (tmp_path / "out" / "index.html").read_text()
    assert "class='bad' id='state'" in text and "Damaged or incomplete trace" in text and part.name in text
    good = (DEMO.parent / "demo.trace")
    assert cli(["report", str(good), "-o", str(tmp_path / "good"), "-q"]) == 0
    assert "class='ok' id='state'" in (tmp_path / "good" / "index.html").read_text()
