#!/usr/bin/env python3
"""tiny_model: a Llama checkpoint whose forward pass costs almost nothing, with a real model's
tokenizer. For the token path measurements (issue 11, perf/RESULTS.md): what the server spends per
token outside the engine shows only when the engine's own cost per token is a few microseconds, and
stories260K's is not on a 2-core machine (~50 us of CPU per token at 32 sequences). The weights are
random (scale 0.3, seeded), so the text is meaningless but every token is a real token of the source
vocabulary: the detokenizer, stop checks, sampler and responses do their normal work.

Usage (a python3 with numpy, e.g. Debian's /usr/bin/python3):
  perf/bench/tiny_model.py SRC_DIR OUT_DIR [--hidden 8] [--layers 1] [--heads 1] [--head-dim 8]
                           [--intermediate 16] [--seed 1]
SRC_DIR: an HF Llama folder, e.g. $FERRY_TESTDATA/stories260K-hf-format.derived: its vocab_size,
special token ids and RoPE settings are kept, its tokenizer files are linked into OUT_DIR.
"""
import argparse
import json
import os

import numpy as np

from pad_model import write_model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--hidden", type=int, default=8)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--head-dim", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with open(os.path.join(args.src, "config.json")) as f:
        cfg = json.load(f)
    vocab, h, hd, inter = cfg["vocab_size"], args.hidden, args.head_dim, args.intermediate
    rng = np.random.default_rng(args.seed)

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.3).astype("<f4")

    w = {"model.embed_tokens.weight": rand(vocab, h), "model.norm.weight": np.ones(h, dtype="<f4")}
    for i in range(args.layers):
        p = "model.layers.%d." % i
        w[p + "input_layernorm.weight"] = np.ones(h, dtype="<f4")
        w[p + "post_attention_layernorm.weight"] = np.ones(h, dtype="<f4")
        for name in ("q_proj", "k_proj", "v_proj"):
            w[p + "self_attn.%s.weight" % name] = rand(args.heads * hd, h)
        w[p + "self_attn.o_proj.weight"] = rand(h, args.heads * hd)
        w[p + "mlp.gate_proj.weight"] = rand(inter, h)
        w[p + "mlp.up_proj.weight"] = rand(inter, h)
        w[p + "mlp.down_proj.weight"] = rand(h, inter)
    cfg2 = dict(cfg, hidden_size=h, intermediate_size=inter, num_hidden_layers=args.layers,
                num_attention_heads=args.heads, num_key_value_heads=args.heads, head_dim=hd,
                tie_word_embeddings=True, attention_bias=False, mlp_bias=False, torch_dtype="float32")
    weights = write_model(args.src, args.out, cfg2, w)
    print("tiny_model: %s: vocab %d, hidden %d, %d layer(s), %.1f KB of F32 weights"
          % (args.out, vocab, h, args.layers, weights / 1e3))


if __name__ == "__main__":
    main()
