#!/usr/bin/env python3
"""A scripted OpenAI-compatible model and a small knowledge base, on loopback,
for the research-agent example (`make demo`, the tests).

  fake_openai.py [--llm-port 18431] [--kb-port 18432] [--key demo-key]

The model speaks the real wire format: POST /v1/chat/completions with JSON
and `Authorization: Bearer <key>` (401 otherwise). It asks for the topics it
needs one round at a time with `fetch_page` tool calls, then answers from the
tool results; it reports token usage. The knowledge base serves GET /<topic>.
"""
import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGES = {
    "wasm": "WebAssembly is a portable binary instruction format run in a sandbox; "
            "components add typed interfaces (WIT) between modules.",
    "checkpoints": "A checkpoint stores a run's graph position, queue and channel so a "
                   "later process resumes it, even on another machine.",
}
PLAN = ["wasm", "checkpoints"]


def tokens(messages):
    return sum(len(str(m.get("content") or "").split()) for m in messages) + 10 * len(messages)


class Model(BaseHTTPRequestHandler):
    key = "demo-key"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        if self.path != "/v1/chat/completions":
            return self.reply(404, {"error": {"message": f"no route {self.path}"}})
        if self.headers.get("authorization") != f"Bearer {self.key}":
            return self.reply(401, {"error": {"message": "missing or wrong API key", "type": "invalid_request_error"}})
        try:
            req = json.loads(raw)
        except ValueError:
            return self.reply(400, {"error": {"message": "body is not JSON"}})
        messages = req.get("messages") or []
        fetched = [m.get("content", "") for m in messages if m.get("role") == "tool"]
        todo = PLAN[len(fetched):]
        if req.get("tools") and todo:
            n = len(fetched) + 1
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{n}", "type": "function",
                "function": {"name": "fetch_page", "arguments": json.dumps({"topic": todo[0]})}}]}
            finish = "tool_calls"
        else:
            question = next((m["content"] for m in messages if m.get("role") == "user"), "")
            message = {"role": "assistant", "content": (
                f"To '{question}': tasks run as WebAssembly components in a sandbox [wasm], "
                f"and a checkpoint lets a later process resume the run [checkpoints].")}
            finish = "stop"
        prompt = tokens(messages)
        completion = 20
        self.reply(200, {
            "id": f"chatcmpl-{len(messages)}", "object": "chat.completion", "model": req.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        })


class Pages(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        topic = self.path.strip("/").split("?")[0]
        page = PAGES.get(topic)
        data = (page or f"no page about {topic!r}").encode()
        self.send_response(200 if page else 404)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm-port", type=int, default=18431)
    ap.add_argument("--kb-port", type=int, default=18432)
    ap.add_argument("--key", default="demo-key")
    args = ap.parse_args()
    Model.key = args.key
    servers = [ThreadingHTTPServer(("127.0.0.1", args.llm_port), Model),
               ThreadingHTTPServer(("127.0.0.1", args.kb_port), Pages)]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print(f"model on http://127.0.0.1:{args.llm_port}/v1, knowledge base on http://127.0.0.1:{args.kb_port}", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
