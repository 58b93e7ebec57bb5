"""The layers and the services' independence hold (import-linter's contracts in
pyproject.toml, run by `make lint`), and a new import across them breaks the build: each
contract is checked on a copy of the tree with one offending import added."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("devmetrics", "services", "shared")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """The packages and the contracts, as the repository has them."""
    copy = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_repository_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


BREACHES = {  # a module, a line added to it (created if new), the contract it breaks
    "the shared package imports a service": (
        "shared/breach.py",
        "import services.metrics.periods",
        "Layers",
    ),
    "a service imports an entry point": (
        "services/activity/breach.py",
        "import devmetrics.workers",
        "Layers",
    ),
    "a service imports another's internals": (
        "services/notifications/breach.py",
        "from services.metrics.periods import dora",
        "Services are independent",
    ),
    "the other way round": (
        "services/metrics/breach.py",
        "from services.activity.processing import Changes",
        "Services are independent",
    ),
    "an import cycle (shared.sql imports shared.database)": (
        "shared/database.py",
        "from shared import sql",
        "No import cycles",
    ),
}


@pytest.mark.parametrize("case", list(BREACHES))
def test_an_import_across_the_rules_breaks_the_build(tree, case):
    module, line, contract = BREACHES[case]
    path = tree / module
    original = path.read_text() if path.exists() else None
    try:
        path.write_text((original or "") + f"\n{line}  # noqa\n")
        result = lint_imports(tree)
    finally:
        if original is None:
            path.unlink()
        else:
            path.write_text(original)
    assert result.returncode == 1, result.stdout
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken, result.stdout
