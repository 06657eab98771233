#!/bin/sh
# The image's install step, also run by tests/integration/test_image_install.py:
#   install.sh WHEEL_DIR PREFIX LOCK
# makes a virtual environment at PREFIX with exactly the dependencies pinned in LOCK
# (requirements.lock: every version and every file's sha256, wheels only, so two builds of one commit
# install the same bytes), then the moderation-consumer wheel found in WHEEL_DIR without its
# dependencies, and checks that the lock satisfied the wheel's requirements. The wheel holds the
# consumer package alone: the simulator and the developer tools never leave the repository. The
# result is read-only: the service writes nothing but to /tmp. PYTHON picks the interpreter
# (python3); INSTALL_OFFLINE=1 takes the locked wheels from WHEEL_DIR instead of the package index.
set -eu

usage="usage: install.sh WHEEL_DIR PREFIX LOCK"
wheels=${1:?$usage}
prefix=${2:?$usage}
lock=${3:?$usage}
python=${PYTHON:-python3}

set -- "$wheels"/moderation_consumer-*.whl
if [ ! -f "$1" ] || [ "$#" -ne 1 ]; then
    echo "install.sh: expected exactly one moderation_consumer-*.whl in $wheels" >&2
    exit 1
fi
wheel=$1

"$python" -m venv "$prefix"
pip() { "$prefix/bin/python" -m pip --disable-pip-version-check --no-input "$@"; }
source_flags=""
if [ "${INSTALL_OFFLINE:-0}" = "1" ]; then
    source_flags="--no-index --find-links $wheels"
fi
# shellcheck disable=SC2086  # $source_flags is words on purpose
pip install --no-cache-dir --quiet --no-compile --require-hashes --only-binary :all: --no-deps $source_flags -r "$lock"
pip install --no-cache-dir --quiet --no-compile --no-deps --no-index "$wheel"
# every requirement of the wheel met by the lock (a lock out of step with pyproject.toml fails here)
pip check
pip uninstall --yes --quiet pip setuptools wheel 2>/dev/null || true

site=$("$prefix/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# bytecode now, as the files will be read-only at run time; checked by the source's hash, not its
# install time, so two installs of one lock and wheel write the same bytes
"$prefix/bin/python" -m compileall -q --invalidation-mode unchecked-hash "$site" >/dev/null
chmod -R a-w "$prefix"

"$prefix/bin/moderation-consumer" --version
