#!/usr/bin/env bash
# The one test command: install, lint, type-check, then unit and integration tests
# on a real kube-apiserver + etcd + scheduler + kwok and a real Prometheus.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "==> ruff";        ruff check .
echo "==> mypy";        mypy
echo "==> import-linter"; lint-imports
echo "==> pytest"
set +e
pytest "$@"
code=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure for us, never a pass.
exit $code
