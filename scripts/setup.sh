#!/usr/bin/env bash
# Idempotent controller set-up for enp: Debian packages, then the Python venv from pinned versions.
# Re-running when nothing changed takes about a second. Called by `make setup` (and so by
# `make test` and `make drill`).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[setup] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }

# Debian packages the controller needs: the lab provider (debootstrap, nspawn, bridges, overlays),
# the baseline mirror (apt-ftparchive, gpg), and Python's venv.
APT_PACKAGES=(debootstrap systemd-container iproute2 apt-utils gnupg debian-archive-keyring
              openssh-client passwd mount nftables python3-venv ca-certificates make git
              postgresql-15 python3-flask python3-psycopg2 gunicorn chromium fonts-dejavu-core)
# The civic-services tests run the app as an app host does (Debian's python3, Flask, psycopg2,
# gunicorn) against a throwaway PostgreSQL on a Unix socket: the controller needs the server
# binaries, not a running cluster. chromium: tests/integration/test_report_browser.py renders the
# recovery report headless (DejaVu is its font).

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

if [[ -r /etc/os-release ]]; then
  . /etc/os-release
  case "${ID:-}:${VERSION_ID:-}" in
    debian:12|debian:13) ;;
    *) say "warning: controller is ${PRETTY_NAME:-unknown}; enp is tested on Debian 12 and 13." ;;
  esac
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "Debian packages missing (${missing[*]}); run as root or: sudo apt-get install ${missing[*]}"
  say "installing Debian packages: ${missing[*]}"
  if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
    # Don't create and start a "main" PostgreSQL cluster on the controller as a side effect.
    mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
  fi
  apt-get update -qq
  # chromium with its recommends (fonts, GL, sandbox helper): headless rendering was only proven with them.
  recommends=() plain=()
  for pkg in "${missing[@]}"; do [[ $pkg == chromium ]] && recommends+=("$pkg") || plain+=("$pkg"); done
  ((${#plain[@]} == 0)) || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${plain[@]}" >/dev/null
  ((${#recommends[@]} == 0)) || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${recommends[@]}" >/dev/null
else
  say "Debian packages: all ${#APT_PACKAGES[@]} present"
fi

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || die "$PYTHON is $("$PYTHON" --version 2>&1); enp needs Python 3.11 or newer (set PYTHON=...)."

if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating virtualenv $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi

# Reinstall only when the pins or the package metadata changed.
stamp_want="$(cat requirements/constraints.txt requirements/dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
stamp_file="$VENV/.enp-setup-stamp"
if [[ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp_want" ]]; then
  say "installing pinned Python packages (requirements/constraints.txt)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -c requirements/constraints.txt \
    -r requirements/dev.txt
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e .
  echo "$stamp_want" > "$stamp_file"
else
  say "Python packages: up to date ($VENV)"
fi
# sed -n 1p reads the whole output: `head -1` closed the pipe early and ansible printed a BrokenPipe traceback.
say "ready: $("$VENV/bin/ansible" --version 2>/dev/null | sed -n 1p), $("$VENV/bin/enp" --version 2>/dev/null || echo 'enp not installed')"
