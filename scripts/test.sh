#!/usr/bin/env bash
# The whole test suite, as CI runs it. On a fresh machine it first installs what the
# tests need and the machine lacks, when it can (root with apt-get):
#   - Mesa's software Vulkan driver (lavapipe) when no GPU driver is present, so that the
#     GPU tests run on the CPU through the same wgpu code path;
#   - spirv-tools, whose spirv-val checks the SPIR-V target (tests/targets.rs);
#   - Chromium, whose WebGPU (Tint) validates the WGSL independently of naga
#     (tests/webgpu_independent.rs);
#   - a nightly toolchain and cargo-fuzz, for the brief run of the fuzz targets at the end
#     (scripts/fuzz.sh installs them);
#   - for the Python package's tests (python/tests): a virtual environment in
#     target/python-env with maturin, NumPy, pytest and PyTorch from PyPI, in which
#     `pip install .` builds and installs the package from this checkout.
# No test skips when something is missing: it fails and says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
    # apt_install REASON PACKAGE...
    local reason=$1
    shift
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "test.sh: installing $* ($reason)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q "$@" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$@" >/dev/null; } \
            || echo "test.sh: could not install $*; the tests that need it will fail" >&2
    else
        echo "test.sh: $* missing and cannot be installed here ($reason)" >&2
    fi
}

if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 && [ ! -e /dev/nvidia0 ] && [ ! -e /dev/dri ]; then
    apt_install "no Vulkan driver found" mesa-vulkan-drivers
fi
command -v spirv-val >/dev/null 2>&1 || apt_install "spirv-val checks the SPIR-V target" spirv-tools
if [ -z "${LOSSC_CHROMIUM:-}" ] && [ ! -x /usr/lib/chromium/chromium ]; then
    apt_install "Chromium's WebGPU validates the WGSL independently" chromium
fi

# Mesa's device-select layer complains about XDG_RUNTIME_DIR on headless machines.
export NODEVICE_SELECT=1

cargo test --locked --features burn "$@"

# The Python package (docs/python.md), only for the whole suite (no arguments): built by
# pip from this checkout as the README says (`pip install .`), with cargo's dev profile
# into target/ so that it reuses the dependencies the tests just built where their
# features agree; then its tests, on both back ends.
if [ $# -eq 0 ]; then (
    venv=target/python-env
    if [ ! -x "$venv/bin/python" ]; then
        "${LOSSC_PYTHON:-python3}" -m venv "$venv"
    fi
    # The environment's tools (maturin, which pip's build step runs) come first on PATH,
    # in this subshell only.
    PATH="$PWD/$venv/bin:$PATH"
    pip install -q --disable-pip-version-check "maturin>=1.9.4,<2" numpy pytest torch
    MATURIN_PEP517_ARGS="--profile dev" pip install -q --disable-pip-version-check \
        --no-build-isolation --force-reinstall --no-deps .
    python -m pytest -q python/tests
) fi

# The fuzz targets briefly (docs/fuzzing.md), so that their harnesses keep up with the
# code: LOSSC_FUZZ_SECONDS (default 30) each from their seeds, built without optimisation
# (the build is most of the cost). Only for the whole suite (no arguments);
# LOSSC_FUZZ_SECONDS=0 skips them.
fuzz_seconds=${LOSSC_FUZZ_SECONDS:-30}
if [ $# -eq 0 ] && [ "$fuzz_seconds" != 0 ]; then
    LOSSC_FUZZ_PROFILE=${LOSSC_FUZZ_PROFILE:-dev} LOSSC_FUZZ_FRESH=1 scripts/fuzz.sh "$fuzz_seconds"
fi
