#!/usr/bin/env bash
# mmtrace setup: install everything a fresh Debian/Ubuntu x86_64 host lacks,
# then run the demo or the tests.  Idempotent: a second run only checks.
#
#   sudo ./setup.sh demo     install, then record + summarise the bundled demo workload
#   sudo ./setup.sh test     install, then run the whole test suite (what CI runs)
#   sudo ./setup.sh install  install only
#   sudo ./setup.sh vm [ARGS] install (with qemu), then tests/vm/run ARGS (other kernels)
#   sudo ./setup.sh bench [ARGS] install (with bpftrace and perf, the tools mmtrace is
#                    compared with), then benchmarks/run_all.sh ARGS (README's tables)
#
# What it installs:
#   Debian packages  bpfcc-tools python3-bpfcc bpftool python3 python3-venv gcc libc6-dev,
#                    chromium chromium-driver (the report page's browser test),
#                    and kernel headers: linux-headers-$(uname -r) when the distribution has
#                    them, else its generic headers package (BCC only needs *a* header tree:
#                    mmtrace takes tracepoint fields from tracefs and struct offsets from BTF),
#                    and the newest linux-source-X.Y (its hugetlb selftest is recorded by the tests)
#   for test and vm  qemu-system-x86 busybox-static kmod (tests/vm: other kernels under qemu)
#   .venv/           a virtual environment on the distribution's python3, with mmtrace
#                    installed editable and BCC (python3-bpfcc, not on PyPI) linked in
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
action="${1:-install}"
shift || true

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

case "$action" in
  install|demo|test|vm|bench) ;;
  -h|--help|help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown action '$action' (use: install, demo, test, vm or bench)" ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo -E "$0" "$action" "$@"
  fi
  die "needs root (apt-get, BPF): run it as root or with sudo"
fi

# ---- Debian packages ---------------------------------------------------------
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
apt_updated=0
# Another apt/dpkg run (unattended-upgrades, a second setup) holds the lock: wait for it.
apt_opts=(-o DPkg::Lock::Timeout=600)
apt_install() {
  local missing=()
  for p in "$@"; do have_pkg "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated -eq 0 ]; then
    log "apt-get update"
    apt-get "${apt_opts[@]}" update -qq >/dev/null
    apt_updated=1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install bpfcc-tools python3-bpfcc bpftool python3 python3-venv gcc libc6-dev
# The report page's browser test: headless Chromium driven by Selenium.
apt_install chromium chromium-driver
# Live tests of real programs (tests/live/test_real_programs.py): a -m32 program needs multilib
# (the kernel's mm selftests come from linux-source, installed below).
apt_install gcc-multilib

headers_ok() {
  [ -d "/lib/modules/$(uname -r)/build/include" ] && return 0
  ls -d /usr/src/linux-headers-*/arch/x86 >/dev/null 2>&1
}
if ! headers_ok; then
  apt_installable() {
    [ $apt_updated -eq 1 ] || { apt-get "${apt_opts[@]}" update -qq >/dev/null; apt_updated=1; }
    apt-cache show "$1" >/dev/null 2>&1
  }
  if apt_installable "linux-headers-$(uname -r)"; then
    apt_install "linux-headers-$(uname -r)"
  elif apt_installable linux-headers-amd64; then
    log "no headers packaged for $(uname -r): using Debian's generic linux-headers-amd64"
    apt_install linux-headers-amd64
  elif apt_installable linux-headers-generic; then
    log "no headers packaged for $(uname -r): using Ubuntu's linux-headers-generic"
    apt_install linux-headers-generic
  else
    log "warning: no kernel headers package found: 'mmtrace doctor' will tell what recording lacks"
  fi
fi

# The kernel's own hugetlb selftest (tools/testing/selftests/mm/hugetlb-madvise.c),
# recorded by tests/live/test_hugetlb_live.py, comes from the distribution's kernel
# source tarball: the newest one packaged (Debian 12: linux-source-6.12; the
# metapackage linux-source is 6.1, whose selftests still live under vm/).
if ! ls /usr/src/linux-source-*.tar.xz >/dev/null 2>&1; then
  newest_src() { { apt-cache pkgnames linux-source- 2>/dev/null || true; } | grep -E '^linux-source-[0-9]+\.[0-9]+$' | sort -V | tail -1; }
  src_pkg=$(newest_src)
  if [ -z "$src_pkg" ] && [ $apt_updated -eq 0 ]; then
    apt-get "${apt_opts[@]}" update -qq >/dev/null; apt_updated=1; src_pkg=$(newest_src)
  fi
  if [ -n "$src_pkg" ]; then
    apt_install "$src_pkg"
  else
    log "warning: no linux-source package: the hugetlb selftest test will fail"
  fi
fi

# tracefs: the recorder mounts it too, but tests read it directly.
if [ ! -d /sys/kernel/tracing/events ] && [ ! -d /sys/kernel/debug/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || log "warning: could not mount tracefs"
fi

# ---- virtual environment -----------------------------------------------------
# The distribution's python3: python3-bpfcc is built for it.
py=/usr/bin/python3
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  log "creating $venv"
  rm -rf "$venv"
  "$py" -m venv "$venv"
fi
# BCC is pure Python over libbcc; link only the bcc package into the venv
# (not all of dist-packages, which would shadow our pinned dependencies).
bcc_dir="$("$py" -c 'import bcc, os; print(os.path.dirname(bcc.__file__))' 2>/dev/null)" \
  || die "python3-bpfcc is installed but 'import bcc' fails for $py"
mkdir -p "$venv/bcc-link"
ln -sfn "$bcc_dir" "$venv/bcc-link/bcc"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$venv/bcc-link" > "$site/_mmtrace_bcc.pth"

stamp="$venv/.mmtrace-installed"
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing Python packages into $venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  if ! "$venv/bin/python" -m pip install -q -e ".[dev,notebooks,perfetto,browser,fleet]" > "$venv/pip.log" 2>&1; then
    cat "$venv/pip.log" >&2
    die "pip install failed (log above, also in $venv/pip.log)"
  fi
  "$venv/bin/python" -c 'import mmtrace, pandas, pyarrow, matplotlib, bcc' \
    || die "the Python install failed (see above)"
  echo "$want" > "$stamp"
fi
# Files created here by root for a sudo user stay usable by that user.
if [ -n "${SUDO_UID:-}" ] && [ -n "${SUDO_GID:-}" ]; then
  chown -R "$SUDO_UID:$SUDO_GID" "$venv" 2>/dev/null || true
fi

# ---- tests/vm: the live suite on other kernels (issue #16) -------------------
# `test` also boots Debian's 6.1 kernel under qemu (TCG) and runs the guest's
# part of the live suite in it (tests/vm/README.md); MMTRACE_VM_KERNELS picks
# the kernels ("6.1" by default, "6.1 6.12", or "" for the host suite only).
# Only when no pytest arguments are given: `./setup.sh test tests/unit` stays quick.
vm_kernels="${MMTRACE_VM_KERNELS-6.1}"
# The benchmarks' comparison tools (benchmarks/overhead.py: their rows say
# "skipped" without them).
if [ "$action" = bench ]; then
  apt_install bpftrace linux-perf
fi
if [ "$action" = vm ] || { [ "$action" = test ] && [ $# -eq 0 ] && [ -n "$vm_kernels" ]; }; then
  apt_install qemu-system-x86 busybox-static kmod
fi
run_vm_suite() {
  local k rc=0
  for k in $vm_kernels; do
    log "tests/vm/run --kernel $k"
    "$here/tests/vm/run" --kernel "$k" || rc=$?
  done
  return $rc
}
# The host suite, then the guests'; the first failure's status is the result.
run_tests() {
  if [ $# -gt 0 ] || [ -z "$vm_kernels" ]; then
    exec "$venv/bin/python" -m pytest -q "$@"
  fi
  local rc=0
  "$venv/bin/python" -m pytest -q || rc=$?
  run_vm_suite || rc=$(( rc ? rc : $? ))
  exit $rc
}
# ---- end tests/vm ------------------------------------------------------------

case "$action" in
  install)
    log "done. Try: sudo $venv/bin/mmtrace doctor"
    ;;
  vm)
    exec "$here/tests/vm/run" "$@"
    ;;
  demo)
    "$venv/bin/mmtrace" doctor
    exec "$venv/bin/mmtrace" demo "$@"
    ;;
  test)
    run_tests "$@"
    ;;
  bench)
    exec "$here/benchmarks/run_all.sh" "$@"
    ;;
esac
