#!/bin/sh
# The image's install step, also run by tests/integration/test_image_install.py:
#   install.sh WHEEL_DIR PREFIX
# installs the moderation-consumer wheel found in WHEEL_DIR (and, with INSTALL_OFFLINE=1, only the
# dependency wheels beside it: the image's build stage made them) into a virtual environment at
# PREFIX, for the production install (the wheel holds the consumer package alone; the simulator and
# the developer tools never leave the repository). The result is read-only: the service writes
# nothing but to /tmp. PYTHON picks the interpreter (python3).
set -eu

wheels=${1:?usage: install.sh WHEEL_DIR PREFIX}
prefix=${2:?usage: install.sh WHEEL_DIR PREFIX}
python=${PYTHON:-python3}

set -- "$wheels"/moderation_consumer-*.whl
if [ ! -f "$1" ] || [ "$#" -ne 1 ]; then
    echo "install.sh: expected exactly one moderation_consumer-*.whl in $wheels" >&2
    exit 1
fi
wheel=$1

"$python" -m venv "$prefix"
offline=""
if [ "${INSTALL_OFFLINE:-0}" = "1" ]; then
    offline="--no-index"
fi
# shellcheck disable=SC2086  # $offline is one flag or nothing
"$prefix/bin/python" -m pip install --no-cache-dir --disable-pip-version-check --quiet \
    $offline --find-links "$wheels" "$wheel"
"$prefix/bin/python" -m pip uninstall --yes --quiet pip setuptools wheel 2>/dev/null || true

site=$("$prefix/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# bytecode now, as the files will be read-only at run time
"$prefix/bin/python" -m compileall -q "$site" >/dev/null
chmod -R a-w "$prefix"

"$prefix/bin/moderation-consumer" --version
