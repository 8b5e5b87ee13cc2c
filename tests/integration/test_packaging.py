"""The product's wheel: the operator, its CLI and the plugin; never the test or dev kit; only what it imports."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Import names whose distribution is spelled otherwise.
DISTRIBUTIONS = {"yaml": "pyyaml", "prometheus_client": "prometheus-client", "cel": "common-expression-language",
                 "jsonpath_ng": "jsonpath-ng"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True, timeout=600)
    return zipfile.ZipFile(next(out.glob("modelrollout-*.whl")))


def _third_party_imports() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "controller").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name not in ("controller", "__future__")}


def test_the_wheel_holds_the_product_and_nothing_of_the_test_kit(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert tops == {"controller", "modelrollout-0.1.0.dist-info"}
    assert "controller/schemas/pod-template-spec.json" in wheel.namelist()
    # The sandbox builder and the CRD generator are dev tooling (devkit/), found by entry point.
    assert not [name for name in wheel.namelist() if "sandbox" in name or "crdgen" in name]
    entry_points = wheel.read("modelrollout-0.1.0.dist-info/entry_points.txt").decode()
    assert "modelrollout = controller.__main__:main" in entry_points
    # The plugin, with its verbs (tests/integration/test_plugin.py runs it through kubectl).
    assert "kubectl-modelrollout = controller.plugin.cli:main" in entry_points


def test_runtime_dependencies_are_what_the_operator_imports(wheel: zipfile.ZipFile) -> None:
    metadata = Parser().parsestr(wheel.read("modelrollout-0.1.0.dist-info/METADATA").decode())
    required = {line.split("==")[0].strip().lower() for line in metadata.get_all("Requires-Dist") or []
                if "extra ==" not in line}
    imported = {DISTRIBUTIONS.get(name, name).lower() for name in _third_party_imports()}
    assert required == imported
