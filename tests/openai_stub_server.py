"""A tiny OpenAI-shaped HTTP server that stands in for a model replica in tests.

    python tests/openai_stub_server.py --port 8123 --name demo --model-dir /path/to/folder

It answers GET /health, GET /v1/models and POST /v1/chat/completions. What it says comes from
`<model-dir>/stub.json` (all optional): {"reply": "text", "status": 200, "delay_s": 0,
"ignore_sigterm": false}; a folder whose stub.json says `"status": 500` plays a broken model,
one with `"ignore_sigterm": true` a server that will not stop when asked. Every reply names the folder, so a
test can tell which replica answered.
"""
import argparse
import json
import signal
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_handler(name: str, model_dir: Path):
    stub = json.loads((model_dir / "stub.json").read_text()) if (model_dir / "stub.json").exists() else {}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/health":
                self._send(200, {})
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": name, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path != "/v1/chat/completions":
                return self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            time.sleep(stub.get("delay_s", 0))
            status = stub.get("status", 200)
            if status != 200:
                return self._send(status, {"error": {"message": "stub failure", "type": "server_error"}})
            reply = stub.get("reply", f"{model_dir.name} says hi")
            self._send(200, {"id": "chatcmpl-stub", "object": "chat.completion", "model": body.get("model", name),
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": reply}}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

        def log_message(self, *args):
            pass

    return Handler


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--model-dir", type=Path, required=True)
    args = ap.parse_args()
    stub = args.model_dir / "stub.json"
    if stub.exists() and json.loads(stub.read_text()).get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.name, args.model_dir)).serve_forever()
