#!/usr/bin/env bash
# Prepares a Debian or Ubuntu machine for `make run` and `make test`; safe to run again and again.
#
#   scripts/bootstrap.sh                 OS packages, .venv, and the project installed in it
#   scripts/bootstrap.sh --with-ffmpeg   also ffmpeg and Snapcast (`make bench` and its smoke test)
#   scripts/bootstrap.sh --with-postgres also PostgreSQL's programs when no server answers on
#                                        5432 (`make test` makes a temporary cluster with them)
#
# Environment:
#   PYTHON             the interpreter for .venv (default: the newest python3.11-3.13 found)
#   VENV               where the virtualenv lives (default: .venv)
#   MAEUL_SKIP_APT=1   do not look at OS packages (they come from somewhere else)
#
# The project needs its own Mosquitto and Kannel binaries, not the system's services: the tests
# and `make run` start a private broker and SMS gateway on free ports, so a system service may
# run or not.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${VENV:-.venv}"
STAMP="$VENV/.installed"
WITH_FFMPEG=0
WITH_POSTGRES=0
for arg in "$@"; do
    case "$arg" in
        --with-ffmpeg) WITH_FFMPEG=1 ;;
        --with-postgres) WITH_POSTGRES=1 ;;
        -h | --help)
            sed -n '2,13p' "$0"
            exit 0
            ;;
        *)
            echo "bootstrap: unknown option $arg" >&2
            exit 2
            ;;
    esac
done

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'bootstrap: %s\n' "$*" >&2
    exit 1
}

# --- OS packages ------------------------------------------------------------------------------

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq -o DPkg::Lock::Timeout=300
        APT_UPDATED=1
    fi
}

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt_update_once
    say "apt-get install $*"
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "$@"
}

# Installs the named packages when root, else prints the exact command and fails.
require_packages() {
    [ "$#" -gt 0 ] || return 0
    if [ "$(id -u)" = 0 ]; then
        apt_install "$@"
    elif ! command -v apt-get >/dev/null 2>&1; then
        die "missing: $*. Install them with your system's package manager (no apt-get here)."
    else
        {
            echo "bootstrap: these system packages are missing: $*"
            echo "Install them, then run make again:"
            echo
            echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends $*"
            echo
        } >&2
        exit 1
    fi
}

have_mosquitto() { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; }
# Kannel's boxes live in /usr/sbin; its fake SMSC (kannel-extras) in /usr/lib/kannel/test.
have_kannel() { command -v bearerbox >/dev/null 2>&1 || [ -x /usr/sbin/bearerbox ]; }
have_fakesmsc() { command -v fakesmsc >/dev/null 2>&1 || [ -x /usr/lib/kannel/test/fakesmsc ]; }

python_ok() {
    "$1" - <<'EOF' >/dev/null 2>&1
import sys
sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 14) else 1)
EOF
}

find_python() {
    local candidate
    if [ -n "${PYTHON:-}" ]; then
        python_ok "$PYTHON" && echo "$PYTHON"
        return 0
    fi
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
}

if [ "${MAEUL_SKIP_APT:-0}" != 1 ]; then
    missing=()
    have_mosquitto || missing+=(mosquitto)
    # SMS: `make run` and the tests start a private Kannel against the package's fake SMSC.
    have_kannel || missing+=(kannel)
    have_fakesmsc || missing+=(kannel-extras)
    command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
    # The browser tests drive Debian's Chromium; Playwright never downloads a browser of its own.
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    # A Korean font for the pages in that browser: without one its screenshots show empty boxes.
    if [ -z "$(fc-list :lang=ko 2>/dev/null)" ]; then
        if [ "$(id -u)" = 0 ]; then
            missing+=(fonts-nanum)
        else
            say "no Korean font; the browser tests' screenshots show boxes" \
                "(sudo apt-get install -y --no-install-recommends fonts-nanum)"
        fi
    fi
    if [ -z "$(find_python)" ]; then
        # Debian 12 and Ubuntu 24.04 ship 3.11 or later as python3; Ubuntu 22.04 as python3.11.
        if [ -n "${PYTHON:-}" ]; then
            die "PYTHON=$PYTHON is not Python 3.11-3.13"
        fi
        if [ "$(id -u)" = 0 ]; then
            apt_update_once
        fi
        if apt-cache show python3.11-venv >/dev/null 2>&1; then
            missing+=(python3.11 python3.11-venv)
        else
            missing+=(python3 python3-venv)
        fi
    fi
    if [ "$WITH_FFMPEG" = 1 ] && ! command -v ffmpeg >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            missing+=(ffmpeg)
        else
            say "ffmpeg is not installed; the benchmark skips what needs it" \
                "(sudo apt-get install -y --no-install-recommends ffmpeg)"
        fi
    fi
    # The benchmark's live peer: Snapcast's server and client, started privately on free ports.
    if [ "$WITH_FFMPEG" = 1 ]; then
        snapcast=()
        command -v snapserver >/dev/null 2>&1 || snapcast+=(snapserver)
        command -v snapclient >/dev/null 2>&1 || snapcast+=(snapclient)
        if [ "${#snapcast[@]}" -gt 0 ] && [ "$(id -u)" = 0 ]; then
            missing+=("${snapcast[@]}")
        elif [ "${#snapcast[@]}" -gt 0 ]; then
            say "Snapcast is not installed; the benchmark skips its live peer" \
                "(sudo apt-get install -y --no-install-recommends ${snapcast[*]})"
        fi
    fi
    # The suite's PostgreSQL tests use the machine's server when one answers on 5432, else a
    # temporary cluster of their own, made with this package's initdb (tests/support/postgres.py).
    if [ "$WITH_POSTGRES" = 1 ] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
        && ! command -v initdb >/dev/null 2>&1 \
        && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
        missing+=(postgresql)
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        require_packages "${missing[@]}"
    fi
fi

PY="$(find_python)"
[ -n "$PY" ] || die "no Python 3.11-3.13 found (set PYTHON=/path/to/python3.11)"

# Debian splits venv's pip bootstrap into python3.X-venv.
if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "${MAEUL_SKIP_APT:-0}" = 1 ]; then
        die "$PY cannot create virtualenvs (install its -venv package)"
    fi
    require_packages "$("$PY" -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])')"
fi

# --- the virtualenv ---------------------------------------------------------------------------

if [ -x "$VENV/bin/python" ] && ! python_ok "$VENV/bin/python"; then
    say "$VENV has an unusable Python; recreating it"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $PY ($("$PY" -c 'import platform; print(platform.python_version())'))"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    rm -f "$STAMP"
fi

# Every dependency comes from the lock file, at its pinned version and hash (make lock renews
# it); then the project itself, in place, with nothing more to fetch.
LOCK=requirements/dev.lock
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ "$LOCK" -nt "$STAMP" ]; then
    say "installing the locked dependencies and the project into $VENV"
    # pip's and setuptools' chatter goes to a log, shown only when the install fails.
    log="$VENV/pip-install.log"
    pip=("$VENV/bin/python" -m pip install --disable-pip-version-check)
    if ! { "${pip[@]}" --require-hashes -r "$LOCK" && "${pip[@]}" --no-deps -e .; } >"$log" 2>&1
    then
        tail -n 40 "$log" >&2
        die "pip install failed; the whole log is in $log"
    fi
    touch "$STAMP"
fi
