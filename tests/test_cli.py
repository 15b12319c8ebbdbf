"""The CLI package: the console script and `-m` both work, library modules stay free of typer, one error decorator."""
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["ui", "demo", "lineage", "models", "data", "train", "safety", "keys", "audit", "pipeline", "serve", "gateway",
            "registry", "gate", "arena", "llamacpp", "evaluate", "optimize", "monitor", "deploy"]


def python(code: str) -> str:
    "Run `code` in a fresh interpreter on this checkout; its stdout."
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    return out.stdout


def listed(help_text: str) -> list[str]:
    "The command names in a typer help screen, in order."
    rows = [line.strip("│ ").split() for line in help_text.splitlines() if line.startswith("│ ")]
    return [r[0] for r in rows if r and not r[0].startswith("-")]


@pytest.mark.parametrize("how", ["console script", "-m"])
def test_help_lists_every_command_in_order(how):
    script = Path(sys.executable).parent / "llm-platform"
    if how == "console script":
        ep = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["llm-platform"]
        assert ep == "llm_platform.cli:app"
        if not script.exists():
            pytest.skip("no llm-platform console script next to this interpreter")
    cmd = [str(script)] if how == "console script" else [sys.executable, "-m", "llm_platform.cli"]
    out = subprocess.run([*cmd, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert listed(out.stdout) == COMMANDS, out.stdout


@pytest.mark.parametrize("module", ["llm_platform.safety.scan", "llm_platform.security.auth", "llm_platform.security.audit"])
def test_library_modules_do_not_import_typer(module):
    assert python(f"import sys, {module}; print('typer' in sys.modules)").strip() == "False"


def test_data_synth_does_not_import_the_ui(tmp_path):
    out = python(f"""
import sys
from typer.testing import CliRunner
import llm_platform.cli.data as data
assert not [m for m in sys.modules if m.startswith("llm_platform.ui")]
r = CliRunner().invoke(data.data_app, ["synth", "--augment", "4", "--out", {str(tmp_path)!r}])
assert r.exit_code == 0, r.output
print(sorted(m for m in sys.modules if m.startswith("llm_platform.ui")))""")
    assert out.strip() == "[]"
    assert (tmp_path / "synth.jsonl").exists()


def test_error_decorator_one_line_and_exit_code():
    from llm_platform.cli.common import cli_errors
    from llm_platform.config import ConfigError

    errors = {"config": ConfigError("x.yaml: train.lr: unknown field"), "missing": FileNotFoundError("y.jsonl: no such file"),
              "value": ValueError("give [one] of --model or --run"), "timeout": TimeoutError("no answer in 5 s"),
              "exit0": typer.Exit(0), "exit1": typer.Exit(1), "bug": ZeroDivisionError("a bug")}
    app = typer.Typer()

    @app.command()
    @cli_errors
    def boom(kind: str):
        "Raise errors[kind]."
        raise errors[kind]

    runner = CliRunner()
    for kind in ("config", "missing", "value", "timeout"):
        r = runner.invoke(app, [kind])
        assert (r.exit_code, r.output) == (1, f"error: {errors[kind]}\n"), r.output
    for kind, code in (("exit0", 0), ("exit1", 1)):      # typer's own exits pass through, with no error line
        r = runner.invoke(app, [kind])
        assert (r.exit_code, r.output) == (code, "")
    r = runner.invoke(app, ["bug"])                         # not expected: the traceback stays
    assert isinstance(r.exception, ZeroDivisionError)
    r = runner.invoke(app, ["--help"])
    assert "kind" in r.output.lower() and "Raise errors" in r.output     # typer read the wrapped signature


def test_commands_fail_with_one_line(tmp_path, monkeypatch):
    from llm_platform.cli import app
    monkeypatch.setenv("COLUMNS", "300")
    runner = CliRunner()
    cases = [(["train", "run", "--train-config", "configs/training/nope.yaml"], "nope.yaml: no such config file"),
             (["data", "validate", str(tmp_path / "gone.jsonl")], f"{tmp_path / 'gone.jsonl'}: no such data file"),
             (["serve"], "give exactly one of --model DIR or --run RUN_ID"),
             (["pipeline", "show", "no-such-run"], "no-such-run"),
             (["keys", "revoke", "nope", "--store", str(tmp_path / "k.json")], "no API key with id 'nope'"),
             (["arena", "stats", str(tmp_path / "none.jsonl")], "no such votes file"),
             (["lineage", "no-such-request", "--audit", "/dev/null"], "no-such-request")]
    for args, msg in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and r.output.startswith("error: ") and msg in r.output, (args, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)


def test_train_tune_prepares_once_and_continues_the_study(tmp_path):
    "`train tune` is `train.tune.tune_pipeline`: a second call on the same folder reuses the data and adds trials."
    from llm_platform.cli import app
    out = tmp_path / "study"
    args = ["train", "tune", "--config", "configs/pipelines/tiny.yaml", "--set", "train.max_steps=4",
            "--set", "mlflow.enabled=false", "--out", str(out)]
    r = CliRunner().invoke(app, [*args, "--trials", "1"])
    assert r.exit_code == 0 and r.stdout.strip().splitlines()[-1] == str(out / "best_train.yaml"), r.output
    data_mtime = (out / "data" / "train.tokens.jsonl").stat().st_mtime_ns
    r = CliRunner().invoke(app, [*args, "--trials", "2"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "tune_summary.json").read_text())["trials"] == 2
    assert (out / "data" / "train.tokens.jsonl").stat().st_mtime_ns == data_mtime
