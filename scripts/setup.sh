#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian machine, then build the
# sandbox binaries (once; later runs reuse the cache). Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

# prometheus: the sandbox's metrics; mmdebstrap, umoci, skopeo: scripts/build-image.sh and its test;
# buildah: the test that the Containerfile builds the same image; tmux: the plugin's terminal test;
# nginx: the e2e data plane's proxy; iproute2 (ip): the data plane's network namespace;
# cmake, g++: llama.cpp's server, built from its sdist by the sampled-text e2e test.
missing=""
for tool in prometheus mmdebstrap umoci skopeo buildah tmux nginx ip cmake g++; do
  package="$tool"; [ "$tool" = ip ] && package=iproute2
  PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
  echo "==> installing Debian packages:$missing"
  as_root apt-get update -qq
  # The prometheus package's own service is not used: the sandbox runs its own.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml testkit/pyproject.toml devkit/pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "==> installing Python packages (pinned in pyproject.toml), and the test kit and dev kit beside the product"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]' -e devkit -e testkit
  rm -f .venv/.installed-*; touch "$stamp"
fi

echo "==> building the sandbox control plane from Go modules (cached after the first run)"
.venv/bin/modelrollout sandbox build
