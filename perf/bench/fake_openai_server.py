#!/usr/bin/env python3
"""A fake OpenAI-compatible streaming server: the test fixture of ferry-bench (check_fake_server.sh).

It generates no text worth reading. POST /v1/completions and /v1/chat/completions stream max_tokens
chunks of one word each: the first after --ttft-ms, the others --itl-ms apart, then a usage chunk
(when stream_options.include_usage) and `data: [DONE]`. prompt_tokens is the number of words in the
prompt. Every --fail-every'th request (counting from 1) gets a 500 with an OpenAI error object, so
the bench's failure count can be checked. Known timings let the check compare the bench's TTFT, ITL
and TPOT with what was served.

Usage: fake_openai_server.py [--port 0] [--ttft-ms 20] [--itl-ms 5] [--fail-every 0]
Prints "PORT <n>" on stdout once listening. Standard library only.
"""
import argparse
import itertools
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(args):
    counter = itertools.count(1)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            # Small SSE writes must leave at once (no Nagle wait for the client's delayed ACK).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, fmt, *a):  # quiet
            pass

        def send_json(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/v1/models":
                self.send_json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
            else:
                self.send_json(404, {"error": {"message": "not found", "type": "not_found_error"}})

        def do_POST(self):
            chat = self.path == "/v1/chat/completions"
            if self.path not in ("/v1/completions", "/v1/chat/completions"):
                self.send_json(404, {"error": {"message": "not found", "type": "not_found_error"}})
                return
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            with lock:
                n = next(counter)
            if args.fail_every and n % args.fail_every == 0:
                self.send_json(500, {"error": {"message": "injected failure", "type": "server_error"}})
                return
            prompt = req["messages"][-1]["content"] if chat else req.get("prompt", "")
            prompt_tokens = len(str(prompt).split())
            max_tokens = int(req.get("max_tokens", 16))
            if not req.get("stream"):
                time.sleep((args.ttft_ms + args.itl_ms * (max_tokens - 1)) / 1e3)
                text = " tok" * max_tokens
                choice = {"index": 0, "finish_reason": "length"}
                choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
                self.send_json(200, {"object": "chat.completion" if chat else "text_completion", "choices": [choice],
                                     "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": max_tokens,
                                               "total_tokens": prompt_tokens + max_tokens}})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            obj = "chat.completion.chunk" if chat else "text_completion"

            def event(payload):
                data = ("data: " + (payload if isinstance(payload, str) else json.dumps(payload)) + "\n\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def choice(text, finish):
                if chat:
                    return {"index": 0, "delta": {"content": text} if text is not None else {"role": "assistant", "content": ""},
                            "finish_reason": finish}
                return {"index": 0, "text": text, "finish_reason": finish}

            if chat:
                event({"object": obj, "choices": [choice(None, None)]})
            time.sleep(args.ttft_ms / 1e3)
            for i in range(max_tokens):
                if i > 0:
                    time.sleep(args.itl_ms / 1e3)
                event({"object": obj, "choices": [choice(" tok", None)]})
            event({"object": obj, "choices": [choice("", "length")]})
            if (req.get("stream_options") or {}).get("include_usage"):
                event({"object": obj, "choices": [],
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": max_tokens,
                                 "total_tokens": prompt_tokens + max_tokens}})
            event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ttft-ms", type=float, default=20)
    p.add_argument("--itl-ms", type=float, default=5)
    p.add_argument("--fail-every", type=int, default=0)
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args))
    server.daemon_threads = True
    print("PORT", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
