"""tests/vm/run's pieces that need no qemu: module load order, the initramfs archive, kernel names."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import lzma
import stat
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "vm" / "run"


@pytest.fixture(scope="module")
def vm():
    loader = importlib.machinery.SourceFileLoader("mmtrace_vm_run", str(RUN))
    spec = importlib.util.spec_from_loader("mmtrace_vm_run", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_module_order_puts_dependencies_first_and_skips_builtins(vm, tmp_path):
    d = tmp_path / "lib" / "modules" / "6.1.0-1-amd64"
    d.mkdir(parents=True)
    (d / "modules.dep").write_text(
        "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko\n"
        "kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko\n"
        "kernel/fs/netfs/netfs.ko:\n"
        "kernel/net/9p/9pnet.ko:\n"
        "kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_ring.ko:\n"
    )
    (d / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
    order = vm.module_order(d, ("virtio_pci", "9pnet_virtio", "9p"))
    names = [Path(m).name for m in order]
    assert "virtio_pci.ko" not in names
    assert len(names) == len(set(names)) == 6
    pos = {n: i for i, n in enumerate(names)}
    assert pos["netfs.ko"] < pos["fscache.ko"] < pos["9p.ko"]
    assert pos["9pnet.ko"] < pos["9pnet_virtio.ko"] and pos["virtio_ring.ko"] < pos["9pnet_virtio.ko"]
    with pytest.raises(SystemExit):
        vm.module_order(d, ("no_such_module",))


def _parse_newc(data: bytes) -> dict[str, tuple[int, bytes, int]]:
    out, off = {}, 0
    while True:
        assert data[off:off + 6] == b"070701"
        f = [int(data[off + 6 + 8 * i: off + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rdevmaj, namesize = f[1], f[6], f[9], f[11]
        name = data[off + 110: off + 110 + namesize - 1].decode()
        off += 110 + namesize
        off += -off % 4
        body = data[off: off + size]
        off += size
        off += -off % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, body, rdevmaj)


def test_cpio_is_newc_the_kernel_can_unpack(vm):
    c = vm.Cpio()
    c.dir("bin")
    c.file("init", b"#!/bin/busybox sh\n", 0o755)
    c.symlink("bin/sh", "busybox")
    c.chardev("dev/console", 5, 1)
    c.file("odd", b"x" * 5)
    entries = _parse_newc(c.finish())
    assert stat.S_ISDIR(entries["bin"][0])
    assert entries["init"][1] == b"#!/bin/busybox sh\n" and entries["init"][0] & 0o777 == 0o755
    assert stat.S_ISLNK(entries["bin/sh"][0]) and entries["bin/sh"][1] == b"busybox"
    assert stat.S_ISCHR(entries["dev/console"][0]) and entries["dev/console"][2] == 5
    assert entries["odd"][1] == b"xxxxx"


def test_compressed_modules_are_unpacked(vm, tmp_path):
    p = tmp_path / "m.ko.xz"
    p.write_bytes(lzma.compress(b"\x7fELF module"))
    assert vm.read_module(p) == b"\x7fELF module"


def test_newest_kernel_by_number_not_by_text(vm):
    names = ["linux-image-6.1.0-9-amd64", "linux-image-6.1.0-57-amd64", "linux-image-6.1.0-10-amd64"]
    assert max(names, key=vm._version_key) == "linux-image-6.1.0-57-amd64"
    import re
    pat = vm.SERIES["6.12"]["pattern"]
    assert re.match(pat, "linux-image-6.12.95+deb12-amd64")
    assert not re.match(pat, "linux-image-6.12.95+deb12-amd64-dbg")
    assert not re.match(pat, "linux-image-6.12.95+deb12-rt-amd64")
    assert re.match(vm.SERIES["6.1"]["pattern"], "linux-image-6.1.0-57-amd64")
    assert not re.match(vm.SERIES["6.1"]["pattern"], "linux-image-6.1.0-57-cloud-amd64")
