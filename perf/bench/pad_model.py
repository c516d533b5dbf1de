#!/usr/bin/env python3
"""pad_model: a Llama checkpoint that computes what a small trained model computes, at the cost of a
large one. For the speculative decoding measurements (perf/RESULTS.md): speculation pays when a
decode step's cost is reading the weights, and ferry has no trained model both big enough for that
and small enough to run on this project's machines, while a model with dummy weights has nothing
to accept. This keeps the small model's function (its tokens, so its acceptance lengths) and gives
it a large model's weight traffic.

Usage (a python3 with numpy, e.g. Debian's /usr/bin/python3):
  perf/bench/pad_model.py SRC_DIR OUT_DIR [--hidden 1024] [--intermediate 4096] [--seed 1]
SRC_DIR: an HF Llama folder (config.json with an explicit or implied head_dim, one model.safetensors
of F32 tensors, no biases), e.g. $FERRY_TESTDATA/stories260K-hf-format.derived. OUT_DIR gets
config.json, model.safetensors (F32) and links to SRC_DIR's other files (the tokenizer).

How the function is kept (exactly in real arithmetic; fp32 rounding aside):
  - hidden_size H -> H': the new residual dimensions stay zero. Embedding (tied lm_head) columns
    and the rows of o_proj and down_proj that write them are zero; q/k/v and gate/up take the
    normed input, which is zero there, so their extra columns hold random values that multiply
    zeros (they cost reads, not results).
  - RMSNorm over H' of a vector that is zero past H: mean(x^2) shrinks by H / H'. Scaling the norm
    weights by sqrt(H / H') and rms_norm_eps by H / H' gives back the same output.
  - intermediate_size I -> I': the extra units get random gate/up rows and zero down_proj
    columns, so they add exactly nothing.
  - Heads, head_dim, layers, vocabulary and RoPE are unchanged (config.json gets head_dim).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "llm", "model"))
from numpy_forward import load_safetensors  # noqa: E402


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, arr in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for arr in tensors.values():
            f.write(arr.tobytes())


def write_model(src, out, cfg, tensors):
    """OUT gets config.json (cfg), model.safetensors (tensors) and links to SRC's other files (the
    tokenizer). Returns the weights' size in bytes."""
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for name in os.listdir(src):
        dst = os.path.join(out, name)
        if name not in ("config.json", "model.safetensors") and not os.path.exists(dst):
            os.symlink(os.path.abspath(os.path.join(src, name)), dst)
    return sum(a.nbytes for a in tensors.values())


def pad(w, rows, cols, rng, fill_rows, fill_cols):
    """w placed at the top left of a [rows, cols] matrix; the rest random (scale 0.02) or zero."""
    out = np.zeros((rows, cols), dtype="<f4")
    r, c = w.shape
    if fill_rows:
        out[r:, :] = rng.standard_normal((rows - r, cols)) * 0.02
    if fill_cols:
        out[:r, c:] = rng.standard_normal((r, cols - c)) * 0.02
    out[:r, :c] = w
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--intermediate", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with open(os.path.join(args.src, "config.json")) as f:
        cfg = json.load(f)
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    h2, inter2 = args.hidden, args.intermediate
    if h2 < h or inter2 < inter:
        sys.exit("pad_model: --hidden and --intermediate must be at least the model's (%d, %d)" % (h, inter))
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        sys.exit("pad_model: models with biases are not handled")
    w = load_safetensors(os.path.join(args.src, "model.safetensors"))
    rng = np.random.default_rng(args.seed)
    out = {}
    norm_scale = np.sqrt(h / h2)
    for name, t in w.items():
        t = t.astype("<f4")
        if name.endswith("norm.weight"):  # input/post_attention layernorms and model.norm
            n = np.ones(h2, dtype="<f4")
            n[:h] = t * norm_scale
            out[name] = n
        elif name in ("model.embed_tokens.weight", "lm_head.weight"):
            out[name] = pad(t, t.shape[0], h2, rng, False, False)
        elif name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")):
            out[name] = pad(t, t.shape[0], h2, rng, False, True)
        elif name.endswith("o_proj.weight"):
            out[name] = pad(t, h2, t.shape[1], rng, False, False)
        elif name.endswith(("gate_proj.weight", "up_proj.weight")):
            out[name] = pad(t, inter2, h2, rng, True, True)
        elif name.endswith("down_proj.weight"):
            out[name] = pad(t, h2, inter2, rng, False, False)
        else:
            sys.exit("pad_model: no rule for tensor " + name)
    cfg2 = dict(cfg, hidden_size=h2, intermediate_size=inter2, rms_norm_eps=cfg.get("rms_norm_eps", 1e-6) * h / h2,
                head_dim=cfg.get("head_dim", h // cfg["num_attention_heads"]))
    weights = write_model(args.src, args.out, cfg2, out)
    print("pad_model: %s: hidden %d -> %d, intermediate %d -> %d, %.1f MB of F32 weights"
          % (args.out, h, h2, inter, inter2, weights / 1e6))


if __name__ == "__main__":
    main()
