"""Open a report page in headless Chromium (Selenium + Debian's chromium-driver).

Used by the browser test and ``benchmarks/page.py``; needs the ``browser``
extra (``pip install 'mmtrace[browser]'``) and the ``chromium`` and
``chromium-driver`` packages (``./setup.sh`` installs all three).
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from pathlib import Path

__all__ = ["chromium", "load", "cpu_seconds", "RENDERED_JS", "shadow_query_js"]

# Bokeh 3 draws inside shadow roots: search them all.
shadow_query_js = """
function deepAll(sel, root) {
  const out = [...root.querySelectorAll(sel)];
  for (const el of root.querySelectorAll('*')) if (el.shadowRoot) out.push(...deepAll(sel, el.shadowRoot));
  return out;
}
"""

#: True once Bokeh has built every view of the page and drawn the timeline's canvas.
RENDERED_JS = shadow_query_js + """
if (!window.Bokeh || !Bokeh.documents || !Bokeh.documents.length) return false;
const doc = Bokeh.documents[0];
const fig = doc.get_model_by_name('timeline') || doc.get_model_by_name('splits-merges');
if (!fig) return false;
const v = Bokeh.index.find_one(fig);
if (!v || !v.is_idle) return false;
return deepAll('canvas', document).some(c => c.width > 0 && c.height > 0);
"""


def _driver_paths() -> tuple[str, str]:
    drv = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    if not Path(drv).exists() or not Path(exe).exists():
        raise RuntimeError("chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver; "
                           "./setup.sh installs them)")
    return exe, drv


@contextmanager
def chromium(width: int = 1400, height: int = 1000):
    """A headless Chromium WebDriver that keeps the console log ('browser')."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    exe, drv = _driver_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = exe
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", "--allow-file-access-from-files"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=opts, service=Service(executable_path=drv))
    try:
        yield d
    finally:
        d.quit()


def cpu_seconds(driver) -> float:
    """CPU time (user + system, s) used so far by the browser's processes (the
    chromedriver's descendants, from /proc): unlike wall time, about the same
    on a busy machine as on an idle one."""
    import os

    root = driver.service.process.pid
    kids: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(d)] = f
        kids.setdefault(int(f[1]), []).append(int(d))
    total, todo = 0, list(kids.get(root, []))
    while todo:
        p = todo.pop()
        total += int(stats[p][11]) + int(stats[p][12])  # utime, stime (fields 14, 15 of stat)
        todo += kids.get(p, [])
    return total / os.sysconf("SC_CLK_TCK")


def load(driver, page: Path, timeout: float = 120.0) -> float:
    """Open ``page`` (file://) and wait until it is drawn; returns seconds from
    navigation start to drawn."""
    t0 = time.monotonic()
    driver.set_page_load_timeout(timeout)
    driver.get(Path(page).resolve().as_uri())
    while time.monotonic() - t0 < timeout:
        if driver.execute_script(RENDERED_JS):
            break
        time.sleep(0.05)
    else:
        raise TimeoutError(f"{page}: not drawn after {timeout:.0f} s")
    # navigation start -> now, by the browser's own clock
    return float(driver.execute_script("return performance.now()")) / 1e3
