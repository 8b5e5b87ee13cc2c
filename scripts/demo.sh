#!/usr/bin/env bash
# The main job: install, build (once), and start the local sandbox cluster with GPU nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/modelrollout sandbox up --name "${SANDBOX_NAME:-demo}"
echo "stop it with: .venv/bin/modelrollout sandbox down --name ${SANDBOX_NAME:-demo}"
