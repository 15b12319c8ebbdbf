"""`make lab`: JupyterLab pinned in the `lab` extra, runnable as root, opening on the project's kernel.

Checked through `make -n` (what make would run), so nothing is installed: jupyterlab stays out of the
shared environment and out of requirements/*.lock (it slows `import papermill` 7x).
"""
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lab_pin() -> str:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["lab"]
    assert len(extra) == 1 and re.fullmatch(r"jupyterlab==\d+\.\d+\.\d+", extra[0]), extra
    return extra[0]


def make_lab(user: list[str] | None = None) -> list[str]:
    r = subprocess.run([*(user or []), "make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_lab_extra_is_pinned_and_not_in_the_lock():
    lab_pin()
    for lock in ("cpu.lock", "gpu.txt"):
        path = ROOT / "requirements" / lock
        if path.exists():
            assert not re.search(r"^jupyterlab\b", path.read_text(), re.M | re.I), lock


def test_make_lab_installs_the_pin_and_opens_on_the_project_kernel():
    lines = make_lab()
    install = [x for x in lines if "pip install" in x and "jupyterlab" in x]
    assert len(install) == 1 and lab_pin() in install[0].split(), install       # the pin, not a bare name
    lab = [x for x in lines if "jupyter lab" in x]
    assert len(lab) == 1, lines
    kernel = re.search(r"ipykernel install --sys-prefix --name (\S+)", (ROOT / "Makefile").read_text()).group(1)
    assert f"--MultiKernelManager.default_kernel_name={kernel}" in lab[0].split(), lab[0]
    assert ("--allow-root" in lab[0].split()) == (os.getuid() == 0), lab[0]


@pytest.mark.skipif(os.getuid() != 0 or not shutil.which("setpriv"), reason="needs root to act as another user")
def test_make_lab_as_a_plain_user_does_not_allow_root():
    lab = [x for x in make_lab(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]) if "jupyter lab" in x]
    assert len(lab) == 1 and "--allow-root" not in lab[0].split(), lab
