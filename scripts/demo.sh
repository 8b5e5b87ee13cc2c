#!/usr/bin/env bash
# The main job: install, build (once), start the local sandbox, and run a live rollout
# (shadow -> canary -> A/B on real metrics) and then an automatic rollback of a bad model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/modelrollout demo "$@"
