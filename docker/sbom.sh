#!/bin/sh
# The image's SBOM, also made by tests/integration/test_image_install.py:
#   sbom.sh PREFIX OUTPUT
# writes OUTPUT, a CycloneDX 1.6 JSON bill of materials of every distribution installed in the
# virtual environment at PREFIX (what docker/install.sh made: moderation-consumer and each locked
# dependency, with version, package URL and declared licence). Reproducible: no timestamp
# (SOURCE_DATE_EPOCH, when set, gives one) and no random serial number, so two builds of one commit
# write the same file. CYCLONEDX_PY picks the tool (cyclonedx-py, from docker/build-tools.lock).
set -eu

usage="usage: sbom.sh PREFIX OUTPUT"
prefix=${1:?$usage}
output=${2:?$usage}
cyclonedx=${CYCLONEDX_PY:-cyclonedx-py}

"$cyclonedx" environment --output-reproducible --spec-version 1.6 --output-format JSON \
    --mc-type application --output-file "$output" "$prefix/bin/python"
