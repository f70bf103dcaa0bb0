#!/usr/bin/env bash
# mmtrace setup: install everything a fresh Debian/Ubuntu x86_64 host lacks,
# then run the demo or the tests.  Idempotent: a second run only checks.
#
#   sudo ./setup.sh demo     install, then record + summarise the bundled demo workload
#   sudo ./setup.sh test     install, then run the whole test suite (what CI runs)
#   sudo ./setup.sh install  install only
#
# What it installs:
#   Debian packages  bpfcc-tools python3-bpfcc bpftool python3 python3-venv gcc libc6-dev,
#                    and kernel headers: linux-headers-$(uname -r) when the distribution has
#                    them, else its generic headers package (BCC only needs *a* header tree:
#                    mmtrace takes tracepoint fields from tracefs and struct offsets from BTF)
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
  install|demo|test) ;;
  -h|--help|help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown action '$action' (use: install, demo or test)" ;;
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
# Live tests of real programs (tests/live/test_real_programs.py): the kernel's mm
# selftests are built from Debian's kernel source, a -m32 program needs multilib.
# The newest packaged source (linux-source-6.12 on Debian 12) is nearer this
# kernel than the generic linux-source (6.1); either works.
apt_install gcc-multilib
if ! ls /usr/src/linux-source-*.tar.xz >/dev/null 2>&1; then
  [ $apt_updated -eq 1 ] || { apt-get "${apt_opts[@]}" update -qq >/dev/null; apt_updated=1; }
  src_pkg=$(apt-cache search --names-only '^linux-source-[0-9.]+$' 2>/dev/null | awk '{print $1}' | sort -V | tail -1)
  apt_install "${src_pkg:-linux-source}"
fi

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
  if ! "$venv/bin/python" -m pip install -q -e ".[dev,notebooks]" > "$venv/pip.log" 2>&1; then
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

case "$action" in
  install)
    log "done. Try: sudo $venv/bin/mmtrace doctor"
    ;;
  demo)
    "$venv/bin/mmtrace" doctor
    exec "$venv/bin/mmtrace" demo "$@"
    ;;
  test)
    exec "$venv/bin/python" -m pytest -q "$@"
    ;;
esac
