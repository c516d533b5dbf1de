#!/usr/bin/env python3
"""Speculative decoding on the CPU engine: decode tokens/s with speculation off / n-gram / draft
model, at batch 1, 8 and 32, on input-grounded prompts (the answer repeats much of the prompt) and on free
generation, plus acceptance lengths from the server's /metrics. One interleaved run: every round
sends the same requests to each model in turn (the order rotates per round), so load changes on a
shared machine hit every configuration alike (at batch 1 each prompt goes to every model in turn).

It starts its own ferry-server over a temporary repository holding the given model three times:
  off          no speculation
  ngram        "speculative": {"method": "ngram", "num_speculative_tokens": K} with the defaults
               (the adaptive rule on)
  NAME         with --ngram NAME=JSON: the ngram model with the JSON object's keys added, e.g.
               --ngram 'fixed={"min_acceptance_rate": 0.3}'
  ngram_always the same with the adaptive rule off (disable_by_batch_size 4096,
               min_acceptance_rate 0): what speculation costs where it does not pay
  draftN       with --draft-layers N[,M...]: "speculative": {"method": "draft", "num_speculative_tokens":
               K} with the defaults, the draft being the same model cut to its first N layers (a
               snapshot folder beside it: its config.json with num_hidden_layers N, the rest linked;
               N = all layers: the model drafting for itself)
               with --draft-from DIR: the draft is DIR's first N layers instead (DIR shares the
               model's tokenizer; e.g. the small model that perf/bench/pad_model.py padded into the
               measured one)

Usage: perf/bench/speculative_bench.py --server build/host/ferry-server \
           --model ../shared/testdata/stories260K-hf-format.derived [--rounds 3] [--max-tokens 128] \
           [--draft-layers 2,5] [--draft-from DIR] [--ngram NAME=JSON ...]
Prints a markdown table (median of the rounds) and the load average before and after.

Decode tokens/s excludes tokenization and prefill: each batch is sent twice, with max_tokens 1 and
with --max-tokens, and the figure is (tokens of the second - tokens of the first) / (wall of the
second - wall of the first). Every prompt is sent once to every model before the rounds, so both
runs find its prefix blocks cached alike.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

MODELS = ["off", "ngram", "ngram_always"]  # "draftN" join with --draft-layers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, model_dir, k, max_num_seqs, draft_layers, draft_from, extra):
        self.repo = tempfile.mkdtemp(prefix="spec_bench_")
        base = {"backend": "llm", "max_num_seqs": max_num_seqs}
        spec = {"method": "ngram", "num_speculative_tokens": k}
        configs = {
            "off": base,
            "ngram": dict(base, speculative=spec),
            "ngram_always": dict(base, speculative=dict(spec, disable_by_batch_size=4096, min_acceptance_rate=0)),
        }
        for name, keys in extra.items():
            configs[name] = dict(base, speculative=dict(spec, **keys))
        for layers in draft_layers:
            make_draft(draft_from or model_dir, os.path.join(self.repo, "draft_src%d" % layers), layers)
            configs["draft%d" % layers] = dict(base, speculative={"method": "draft", "num_speculative_tokens": k,
                                                                  "draft_model": "draft_src%d" % layers})
        for name, config in configs.items():
            os.makedirs(os.path.join(self.repo, name))
            os.symlink(os.path.abspath(model_dir), os.path.join(self.repo, name, "1"))
            with open(os.path.join(self.repo, name, "config.json"), "w") as f:
                json.dump(config, f)
        self.port = free_port()
        self.log = open(os.path.join(self.repo, "server.log"), "w")
        self.proc = subprocess.Popen([binary, "--model-repository", self.repo, "--http-port", str(self.port),
                                      "--zmq-endpoint", "tcp://127.0.0.1:%d" % free_port()],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.url = "http://127.0.0.1:%d" % self.port
        for _ in range(600):
            try:
                if all(urllib.request.urlopen(self.url + "/v2/models/%s/ready" % m).status == 200 for m in MODELS):
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready; log in " + self.log.name)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.repo, ignore_errors=True)

    def generate(self, model, body):
        req = urllib.request.Request(self.url + "/v2/models/%s/generate" % model, data=json.dumps(body).encode())
        return json.loads(urllib.request.urlopen(req, timeout=600).read())

    def spec_metrics(self, model):
        text = urllib.request.urlopen(self.url + "/metrics").read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("ferry_llm_spec") and 'model="%s"' % model in line and "_bucket" not in line:
                out[line.split("{")[0]] = float(line.split()[-1])
        return out


def make_draft(model_dir, out, layers):
    """A snapshot folder: model_dir's files linked, its config.json with num_hidden_layers cut."""
    os.makedirs(out)
    for f in os.listdir(model_dir):
        if f != "config.json":
            os.symlink(os.path.abspath(os.path.join(model_dir, f)), os.path.join(out, f))
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    config["num_hidden_layers"] = layers
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f)


def one_token(bodies):
    return [dict(b, max_tokens=1) for b in bodies]


def run_batch(server, model, bodies):
    """Sends the bodies at once; returns (completion tokens, wall seconds)."""
    tokens = [0] * len(bodies)

    def one(i):
        tokens[i] = server.generate(model, bodies[i])["usage"]["completion_tokens"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(tokens), time.perf_counter() - t0


def workloads(server, max_tokens):
    """Input-grounded prompts: a story the model wrote, then its first words again (the answer
    retells it). Free generation: short story openings, greedy and sampled."""
    openings = ["Once upon a time", "Tom had a red ball", "The little dog", "Lily and Ben", "One day, a bird",
                "The sun was hot", "Mom said", "A big fish"]
    stories = [server.generate("off", {"text_input": o, "max_tokens": 150, "temperature": 0, "ignore_eos": True})
               ["text_output"] for o in openings]
    grounded = [{"text_input": o + s + "\n" + o + s[:24], "max_tokens": max_tokens, "temperature": 0,
                 "ignore_eos": True} for o, s in zip(openings, stories)]
    free = [{"text_input": o, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True} for o in openings]
    sampled = [{"text_input": o, "max_tokens": max_tokens, "temperature": 0.8, "seed": i, "ignore_eos": True}
               for i, o in enumerate(openings)]
    return {"input-grounded (greedy)": grounded, "free (greedy)": free, "free (T=0.8, seeded)": sampled}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--draft-layers", default="", help="add the draft method once per N of this list, the "
                    "draft being the model's first N layers")
    ap.add_argument("--draft-from", default="", help="cut the drafts from this model folder instead of --model")
    ap.add_argument("--ngram", action="append", default=[], metavar="NAME=JSON",
                    help="one more n-gram model: the ngram model's speculative keys updated by the JSON object")
    args = ap.parse_args()
    extra = {}
    for spec in args.ngram:
        name, keys = spec.split("=", 1)
        extra[name] = json.loads(keys)
        MODELS.append(name)
    batches = [int(b) for b in args.batches.split(",")]
    draft_layers = [int(n) for n in args.draft_layers.split(",") if n]
    MODELS.extend("draft%d" % n for n in draft_layers)
    load_before = os.getloadavg()
    server = Server(args.server, args.model, args.k, max(batches), draft_layers, args.draft_from, extra)
    try:
        loads = workloads(server, args.max_tokens)
        for bodies in loads.values():
            for model in MODELS:
                for b in one_token(bodies):
                    run_batch(server, model, [b])
        # results[(workload, batch, model)] = list of tokens/s; spec[(workload, batch, model)] = metric deltas
        results, spec = {}, {}
        for r in range(args.rounds):
            for wname, bodies in loads.items():
                for batch in batches:
                    # Batch 1: one request at a time, each prompt sent to every model in turn (the
                    # order rotating), so that a slow spell of the machine hits all models alike.
                    groups = [[b] for b in bodies] if batch == 1 else [[bodies[i % len(bodies)] for i in range(batch)]]
                    tokens, wall, deltas = {}, {}, {}
                    for g, sent in enumerate(groups):
                        shift = (r + g) % len(MODELS)
                        for model in MODELS[shift:] + MODELS[:shift]:
                            before = server.spec_metrics(model)
                            t1, w1 = run_batch(server, model, one_token(sent))
                            t, w = run_batch(server, model, sent)
                            after = server.spec_metrics(model)
                            tokens[model] = tokens.get(model, 0) + t - t1
                            wall[model] = wall.get(model, 0.0) + w - w1
                            acc = deltas.setdefault(model, {})
                            for name, v in after.items():
                                acc[name] = acc.get(name, 0.0) + v - before.get(name, 0.0)
                    for model in MODELS:
                        key = (wname, batch, model)
                        results.setdefault(key, []).append(tokens[model] / wall[model])
                        acc = spec.setdefault(key, {})
                        for name, v in deltas[model].items():
                            acc[name] = acc.get(name, 0.0) + v
    finally:
        server.stop()
    load_after = os.getloadavg()
    print("| workload | batch | model | decode tokens/s (median of %d) | vs off | mean acceptance length | drafts accepted |"
          % args.rounds)
    print("|---|---:|---|---:|---:|---:|---:|")
    for wname in loads:
        for batch in batches:
            off = statistics.median(results[(wname, batch, "off")])
            for model in MODELS:
                key = (wname, batch, model)
                tps = statistics.median(results[key])
                m = spec[key]
                steps = m.get("ferry_llm_spec_acceptance_length_count", 0)
                length = "%.2f" % (m["ferry_llm_spec_acceptance_length_sum"] / steps) if steps else "-"
                proposed = m.get("ferry_llm_spec_proposed_tokens_total", 0)
                rate = "%.0f %% of %d" % (100 * m["ferry_llm_spec_accepted_tokens_total"] / proposed, proposed) \
                    if proposed else "-"
                print("| %s | %d | %s | %.0f | %.2f | %s | %s |" % (wname, batch, model, tps, tps / off, length, rate))
    print("\nload average (1, 5, 15 min) before: %.2f %.2f %.2f; after: %.2f %.2f %.2f; nproc %d"
          % (load_before + load_after + (os.cpu_count(),)))


if __name__ == "__main__":
    sys.exit(main())
