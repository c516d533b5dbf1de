#!/usr/bin/env python3
"""The token path (issue 11): what ferry-server spends per streamed output token when the model
costs almost nothing. stories260K (0.26M parameters) is served from a temporary repository with
max_num_seqs 64, so every stream of a run decodes in the same step; the client runs on the same
machine.

Per round and per server variant (interleaved: variant A, B, A, B, ...), one server start, then:
  - HTTP SSE: perf/bench/ferry-bench, streaming /v1/completions, input 64 / output 128 tokens
    (exact, by the model's tokenizer), ignore_eos, at each concurrency C;
  - ZeroMQ: ferry-loadgen --protocol zmq --stream, streaming infer with a 64-token prompt,
    max_tokens 128, ignore_eos, C in flight;
  - KServe generate (not streamed): 16 requests one after another, then 16 at once; the ratio of
    the two wall times (sequential / concurrent).
For each run the server's CPU (user + system, /proc/PID/stat) is read before and after: the
figure is server CPU microseconds per output token. Output tokens/s is the client's count over
the wall time of the timed phase. The engine's share is the CPU of its threads (named llm-step
and cpu-pool); the rest ("host" below: the output processor, civetweb's workers, the ZeroMQ
threads) is the token path's cost, what issue 11 asks to make small.

Usage: perf/bench/token_path_bench.py --variant NAME=SERVER_BIN[:BACKEND_DIR][@CONFIG_JSON] [--variant ...]
           --bench build/perf/bench/ferry-bench --loadgen build/perf/loadgen/ferry-loadgen
           [--model ../shared/testdata/stories260K-hf-format.derived] [--rounds 3]
           [--concurrency 1,8,32] [--frontends sse,zmq,generate]
Prints one markdown table row per run and a median table per (variant, frontend, C). CONFIG_JSON:
keys merged into the model's config.json (e.g. '{"stream_interval": 2}').
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

MODEL = "stories260K"
INPUT_LEN = 64
OUTPUT_LEN = 128
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENGINE_THREADS = ("llm-step", "cpu-pool")  # the step loop and the kernels' pool: the engine


def cpu_seconds(pid):
    """(whole process, engine threads) user + system CPU seconds, from /proc/PID/task/*/stat."""
    total = engine = 0.0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                text = f.read()
        except OSError:
            continue  # the thread ended
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        s = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)
        total += s
        if comm in ENGINE_THREADS:
            engine += s
    # Threads that ended took their CPU with them from task/; the process's own stat keeps it.
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    process = (int(fields[11]) + int(fields[12])) / TICK
    return max(total, process), engine


class Server:
    def __init__(self, binary, backends, model_dir, extra_config=None):
        self.repo = tempfile.mkdtemp(prefix="token_path_")
        os.makedirs(os.path.join(self.repo, MODEL))
        os.symlink(os.path.abspath(model_dir), os.path.join(self.repo, MODEL, "1"))
        with open(os.path.join(self.repo, MODEL, "config.json"), "w") as f:
            json.dump(dict({"backend": "llm", "max_num_seqs": 64}, **(extra_config or {})), f)
        self.port = free_port()
        self.zmq = "tcp://127.0.0.1:%d" % free_port()
        args = [binary, "--model-repository", self.repo, "--http-port", str(self.port), "--zmq-endpoint", self.zmq,
                "--metrics-port", "0", "--log-level", "warning"]
        if backends:
            args += ["--backend-directory", backends]
        self.log = open(os.path.join(self.repo, "server.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = "http://127.0.0.1:%d" % self.port
        for _ in range(600):
            try:
                if urllib.request.urlopen(self.url + "/v2/models/%s/ready" % MODEL).status == 200:
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready; log in " + self.log.name)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.repo, ignore_errors=True)

    def post(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode())
        return json.loads(urllib.request.urlopen(req, timeout=600).read())

    def cpu(self):
        return cpu_seconds(self.proc.pid)


def delta(after, before):
    return after[0] - before[0], after[1] - before[1]


def prompt_of_length(server, n):
    """A text whose tokenization (BOS included) is exactly n tokens, found through /tokenize."""
    words = ("Once upon a time there was a little girl named Lily who liked to play in the park with her "
             "dog and her friend Tom every day after school ").split() * 8
    for k in range(len(words), 0, -1):
        text = " ".join(words[:k])
        count = server.post("/tokenize", {"model": MODEL, "prompt": text})["count"]
        if count == n:
            return text
        if count < n:
            break
    raise RuntimeError("no prompt of exactly %d tokens" % n)


def run_sse(server, args, c, out_dir):
    n = 32 if c == 1 else 8 * c
    result = os.path.join(out_dir, "sse-c%d.json" % c)
    cmd = [args.bench, "--base-url", server.url, "--model", MODEL, "--tokenizer", args.model,
           "--input-len", str(INPUT_LEN), "--output-len", str(OUTPUT_LEN), "--num-prompts", str(n),
           "--max-concurrency", str(c), "--warmup", "2", "--no-progress", "--result-json", result]
    cpu0 = server.cpu()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    cpu = delta(server.cpu(), cpu0)
    r = json.load(open(result))
    return r["output_throughput"], r["total_output_tokens"], cpu, r["failed"]


def run_zmq(server, args, c, prompt, out_dir):
    n = 32 if c == 1 else 8 * c
    result = os.path.join(out_dir, "zmq-c%d.json" % c)
    params = {"max_tokens": OUTPUT_LEN, "ignore_eos": True, "temperature": 0}
    cmd = [args.loadgen, "--protocol", "zmq", "--endpoint", server.zmq, "--model", MODEL, "--prompt", prompt,
           "--parameters", json.dumps(params), "--stream", "--requests", str(n), "--warmup", "0",
           "--concurrency", str(c), "--no-progress", "--json-out", result, "--timeout-ms", "60000"]
    cpu0 = server.cpu()
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    cpu = delta(server.cpu(), cpu0)
    r = json.load(open(result))
    return r["output_tokens_per_s"], r["output_tokens"], cpu, r["errors"]


def run_generate(server, prompt):
    body = {"text_input": prompt, "max_tokens": OUTPUT_LEN, "ignore_eos": True, "temperature": 0}

    def one():
        out = server.post("/v2/models/%s/generate" % MODEL, body)
        assert out["usage"]["completion_tokens"] == OUTPUT_LEN, out

    t0 = time.perf_counter()
    for _ in range(16):
        one()
    sequential = time.perf_counter() - t0
    threads = [threading.Thread(target=one) for _ in range(16)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    concurrent = time.perf_counter() - t0
    return sequential, concurrent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", action="append", required=True, help="NAME=SERVER_BIN[:BACKEND_DIR][@CONFIG_JSON]")
    ap.add_argument("--bench", required=True)
    ap.add_argument("--loadgen", required=True)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--model", default=os.path.join(here, "../../../shared/testdata/stories260K-hf-format.derived"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--frontends", default="sse,zmq,generate")
    args = ap.parse_args()
    args.model = os.path.abspath(args.model)
    variants = []
    for v in args.variant:
        name, spec = v.split("=", 1)
        spec, _, extra = spec.partition("@")
        binary, _, backends = spec.partition(":")
        variants.append((name, os.path.abspath(binary), os.path.abspath(backends) if backends else "",
                         json.loads(extra) if extra else {}))
    cs = [int(c) for c in args.concurrency.split(",")]
    frontends = args.frontends.split(",")
    out_dir = tempfile.mkdtemp(prefix="token_path_out_")
    rows = {}
    print("machine: nproc %d, load average %s, %s" % (os.cpu_count(), open("/proc/loadavg").read().split()[:3],
                                                     time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())))
    print("| round | variant | frontend | C | out tok/s | server CPU us/token | engine | host | tokens | failed | load |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for rnd in range(args.rounds):
        for name, binary, backends, extra in variants:
            server = Server(binary, backends, args.model, extra)
            try:
                prompt = prompt_of_length(server, INPUT_LEN)
                for fe in frontends:
                    for c in cs if fe != "generate" else [16]:
                        load = open("/proc/loadavg").read().split()[0]
                        if fe == "generate":
                            seq, conc = run_generate(server, prompt)
                            key = (name, fe, c)
                            rows.setdefault(key, []).append((seq / conc, 0, 0, 0))
                            print("| %d | %s | generate 16 seq / conc | 16 | %.2fx (%.2f s / %.2f s) | | | | | | %s |"
                                  % (rnd + 1, name, seq / conc, seq, conc, load), flush=True)
                            continue
                        if fe == "sse":
                            tps, tokens, cpu, failed = run_sse(server, args, c, out_dir)
                        else:
                            tps, tokens, cpu, failed = run_zmq(server, args, c, prompt, out_dir)
                        per = [x * 1e6 / tokens if tokens else float("nan") for x in (cpu[0], cpu[1], cpu[0] - cpu[1])]
                        rows.setdefault((name, fe, c), []).append((tps, *per))
                        print("| %d | %s | %s | %d | %.0f | %.1f | %.1f | %.1f | %d | %d | %s |"
                              % (rnd + 1, name, fe, c, tps, *per, tokens, failed, load), flush=True)
            finally:
                server.stop()
    print("\nmedians over %d rounds:\n" % args.rounds)
    print("| variant | frontend | C | out tok/s | server CPU us/token | engine | host |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (name, fe, c), vals in sorted(rows.items()):
        if fe == "generate":
            print("| %s | generate 16: sequential / concurrent | 16 | %.2fx | | | |"
                  % (name, statistics.median(v[0] for v in vals)))
        else:
            print("| %s | %s | %d | %.0f | %.1f | %.1f | %.1f |" % (
                name, fe, c, *(statistics.median(v[k] for v in vals) for k in range(4))))
    print("\nload average after: %s" % open("/proc/loadavg").read().split()[:3])


if __name__ == "__main__":
    main()
