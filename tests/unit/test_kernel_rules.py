"""Kernel differences as pure functions (no root): vm_unmapped_area's low limit, mmap_min_addr, callers."""

from __future__ import annotations

import gzip

from mmtrace.capture import kernel
from mmtrace.detect.unmapped_area import first_fit

PAGE = 4096
MIN = 65536


def test_first_fit_low_limit_rule_of_61_and_64():
    # Everything from mmap_min_addr up to high is mapped: only [PAGE, MIN) is free.
    vmas = [(MIN, 1 << 40, 0)]
    top = dict(low=PAGE, high=1 << 40, align_mask=0, align_offset=0, topdown=True, mmap_min_addr=MIN)
    assert first_fit(vmas, PAGE, **top) is None  # v6.4+: not below mmap_min_addr
    assert first_fit(vmas, PAGE, **top, clamp_low=False) == MIN - PAGE  # 6.1: down to low_limit
    up = dict(top, topdown=False)
    assert first_fit(vmas, 2 * PAGE, **up) is None
    assert first_fit(vmas, 2 * PAGE, **up, clamp_low=False) == PAGE
    # With room above mmap_min_addr both rules agree.
    vmas = [(MIN + 16 * PAGE, 1 << 40, 0)]
    assert first_fit(vmas, PAGE, **top) == first_fit(vmas, PAGE, **top, clamp_low=False) == MIN + 15 * PAGE


def test_effective_mmap_min_addr_takes_the_lsm_floor(tmp_path, monkeypatch):
    cfg = tmp_path / "config.gz"
    with gzip.open(cfg, "wt") as f:
        f.write("CONFIG_SECURITY=y\nCONFIG_LSM_MMAP_MIN_ADDR=65536\n")
    real_path = kernel.Path

    def fake_path(p, *a):
        if str(p) == "/proc/config.gz":
            return real_path(cfg)
        if str(p) == "/proc/sys/vm/mmap_min_addr":
            q = tmp_path / "sysctl"
            q.write_text("4096\n")
            return q
        return real_path(p, *a)

    monkeypatch.setattr(kernel, "Path", fake_path)
    assert kernel.kernel_config("LSM_MMAP_MIN_ADDR") == "65536"
    assert kernel.mmap_min_addr() == {"dac_mmap_min_addr": 4096, "mmap_min_addr": 65536}


def test_tracepoints_without_callers(tmp_path, monkeypatch):
    syms = tmp_path / "kallsyms"
    syms.write_text("ffffffff81000000 T _stext\nffffffff81234560 T vma_mas_store\n")
    assert kernel.kallsyms_has(("vma_mas_store", "vma_mas_remove"), str(syms)) == {
        "vma_mas_store": True, "vma_mas_remove": False}
    monkeypatch.setattr(kernel, "kallsyms_has", lambda names: {n: False for n in names})
    present = ["mmap:exit_mmap", "mmap:vma_store", "mmap:vma_mas_szero"]
    assert kernel.tracepoints_without_callers(present) == ["mmap:vma_store", "mmap:vma_mas_szero"]
    monkeypatch.setattr(kernel, "kallsyms_has", lambda names: {n: n == "vma_mas_store" for n in names})
    assert kernel.tracepoints_without_callers(present) == []
