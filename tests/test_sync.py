"""CI's nbdev sync check catches a hand edit of the exported package and an unexported notebook change."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture()
def clone(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    dst = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dst)], check=True)
    return dst


def _check(repo: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "LLM_PLATFORM_HOME": str(repo)}
    return subprocess.run(["bash", "scripts/check_sync.sh"], cwd=repo, capture_output=True, text=True, env=env,
                          timeout=300)


def test_clean_clone_passes(clone):
    r = _check(clone)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hand_edit_of_package_fails(clone):
    (clone / "llm_platform" / "core.py").open("a").write("\nHAND_EDIT = 1\n")
    r = _check(clone)
    assert r.returncode == 1 and "make export" in r.stdout and "llm_platform/core.py" in r.stdout


def test_unexported_notebook_change_fails(clone):
    nb_path = clone / "nbs" / "00_core.ipynb"
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith("#| export"))
    cell["source"].append("\nNEW_CONSTANT = 42\n")
    nb_path.write_text(json.dumps(nb, indent=1) + "\n")
    r = _check(clone)
    assert r.returncode == 1 and "make export" in r.stdout


def test_module_without_notebook_fails(clone):
    (clone / "llm_platform" / "rogue.py").write_text("X = 1\n")
    subprocess.run(["git", "add", "llm_platform/rogue.py"], cwd=clone, check=True)
    r = _check(clone)
    assert r.returncode == 1 and "rogue.py is not exported from a notebook" in r.stdout
