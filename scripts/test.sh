#!/usr/bin/env bash
# The whole test suite, as CI runs it. On a machine with no GPU adapter it first installs
# Mesa's software Vulkan driver (lavapipe), when it can, so that the GPU tests run too.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 && [ ! -e /dev/nvidia0 ] && [ ! -e /dev/dri ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "test.sh: no Vulkan driver found; installing mesa-vulkan-drivers (lavapipe)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q mesa-vulkan-drivers >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q mesa-vulkan-drivers >/dev/null; } \
            || echo "test.sh: could not install mesa-vulkan-drivers; GPU tests will use whatever adapter exists" >&2
    fi
fi
# Mesa's device-select layer complains about XDG_RUNTIME_DIR on headless machines.
export NODEVICE_SELECT=1

cargo test --locked "$@"
