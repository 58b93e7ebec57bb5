"""A clone tests itself: nothing of the project reads a folder beside the checkout (the
team's reference material was copied into tests/fixtures/github/, with its licenses), and
the whole suite is collected from a copy of the repository that has no sibling folders."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.helpers import GITHUB_API, ROOT, WEBHOOK_SAMPLES

OUTSIDE = re.compile(r"""\.\./shared|parents\[2\]\s*/\s*"shared"|parent\s*/\s*"shared\"""")


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [f for f in listed if f.endswith((".py", ".toml", ".sh", ".lua")) or f == "Makefile"]


def test_no_file_reads_beside_the_checkout():
    offenders = [f for f in tracked_files() if OUTSIDE.search((ROOT / f).read_text())]
    assert offenders == []


def test_the_fixtures_carry_their_licenses():
    assert "MIT License" in (WEBHOOK_SAMPLES / "LICENSE").read_text()
    assert "MIT" in (GITHUB_API / "LICENSE.md").read_text()
    assert len(list(WEBHOOK_SAMPLES.glob("*/*.json"))) > 100


def test_the_suite_is_collected_in_a_copy_without_sibling_folders(tmp_path):
    clone = tmp_path / "lonely" / "devmetrics"  # its parent holds nothing else
    archive = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, archive):
        source, target = ROOT / name.decode(), clone / name.decode()
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    assert sorted(p.name for p in clone.parent.iterdir()) == ["devmetrics"]
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert " tests collected" in collected.stdout or "tests collected" in collected.stdout
