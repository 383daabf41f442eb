#!/bin/sh
# Installs the Debian packages mmdiff needs, or prints the command when it cannot.
#   sh tools/install-deps.sh              install what is missing (root or sudo)
#   sh tools/install-deps.sh --if-missing the same; quiet when nothing is missing
# Packages: OpenCL ICD loader + headers, PoCL (CPU OpenCL device), CLBlast, libyaml, stb,
# pkg-config, and a C toolchain.
PKGS="build-essential pkg-config ocl-icd-opencl-dev opencl-headers pocl-opencl-icd libclblast-dev libyaml-dev libstb-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    [ "$1" = "--if-missing" ] || echo "mmdiff: all packages present:$PKGS"
    exit 0
fi
echo "mmdiff: installing missing packages:$missing" >&2
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "mmdiff: not root and no sudo; please run as root:" >&2
    echo "  apt-get update && apt-get install -y$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends $missing || {
    echo "mmdiff: package installation failed; run: apt-get install$missing" >&2
    exit 1
}
