#!/usr/bin/env python3
"""An independent forward pass of the decoders ferry serves, in numpy float64, for tests.

Usage: numpy_forward.py MODEL_DIR TOKENS OUT
  MODEL_DIR  an HF model folder: config.json and one model.safetensors with F32 tensors
  TOKENS     comma-separated token ids of one sequence
  OUT        written with the logits of every position: float64 little-endian, [len(TOKENS), vocab]

Written from the HuggingFace modeling code's math (the model definitions, not ferry's C++): one
whole sequence at a time, dense causal attention with explicit masks, no KV cache, no paging, so
it shares nothing with the engine it checks but the checkpoint. Architectures: LlamaForCausalLM
(rope_scaling linear / llama3, attention_bias), MistralForCausalLM (sliding_window),
Qwen2ForCausalLM (q/k/v bias, use_sliding_window / max_window_layers), Qwen3ForCausalLM (q/k norm),
Phi3ForCausalLM (fused qkv_proj / gate_up_proj, longrope, partial_rotary_factor, sliding_window),
Gemma2ForCausalLM and Gemma3ForCausalLM.

Longrope: HF picks the long factors when the sequence (max position + 1) exceeds
original_max_position_embeddings, else the short ones; this script does the same for the whole
sequence it is given (tests pick lengths where that matches ferry's per-model choice).
"""
import json
import math
import struct
import sys

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{name}: only F32 tensors are read, not {info['dtype']}")
        begin, end = info["data_offsets"]
        arr = np.frombuffer(blob[base + begin:base + end], dtype="<f4").reshape(info["shape"])
        tensors[name] = arr.astype(np.float64)
    return tensors


def rms_norm(x, w, eps, plus_one=False):
    # x [..., d]; HF's RMSNorm: x / sqrt(mean(x^2) + eps) * w  (Gemma: * (1 + w)).
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return y * ((1.0 + w) if plus_one else w)


def default_inv_freq(theta, dim):
    return 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))


def inv_freq_and_attention_factor(cfg, rope_theta, rope_scaling, dim, seq_len):
    """inv_freq [dim/2] and the factor HF multiplies cos/sin by."""
    inv = default_inv_freq(rope_theta, dim)
    if not rope_scaling:
        return inv, 1.0
    kind = rope_scaling.get("rope_type", rope_scaling.get("type", "default"))
    if kind == "default":
        return inv, 1.0
    if kind == "linear":
        return inv / rope_scaling["factor"], 1.0
    if kind == "llama3":
        factor = rope_scaling["factor"]
        low = rope_scaling.get("low_freq_factor", 1.0)
        high = rope_scaling.get("high_freq_factor", 4.0)
        old = rope_scaling.get("original_max_position_embeddings", 8192)
        wavelen = 2 * math.pi / inv
        out = np.where(wavelen > old / low, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        blended = (1 - smooth) * out / factor + smooth * out
        medium = (wavelen >= old / high) & (wavelen <= old / low)
        return np.where(medium, blended, out), 1.0
    if kind in ("longrope", "su"):
        orig = rope_scaling.get("original_max_position_embeddings",
                                cfg.get("original_max_position_embeddings", cfg["max_position_embeddings"]))
        ext = np.array(rope_scaling["long_factor"] if seq_len > orig else rope_scaling["short_factor"],
                       dtype=np.float64)
        inv = 1.0 / (ext * rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
        attn = rope_scaling.get("attention_factor")
        if attn is None:
            scale = cfg["max_position_embeddings"] / orig
            attn = 1.0 if scale <= 1.0 else math.sqrt(1 + math.log(scale) / math.log(orig))
        return inv, attn
    raise ValueError(f"rope type {kind} not implemented here")


def apply_rope(x, positions, inv, attn_factor, rotary_dim):
    # x [T, heads, head_dim]; the first rotary_dim values of each head turn, pairs (i, i + rotary_dim/2)
    # (HF's rotate_half), cos/sin scaled by attn_factor.
    freqs = positions[:, None] * inv[None, :]                 # [T, rotary_dim/2]
    emb = np.concatenate([freqs, freqs], axis=-1)              # [T, rotary_dim]
    cos = (np.cos(emb) * attn_factor)[:, None, :]
    sin = (np.sin(emb) * attn_factor)[:, None, :]
    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    half = rotary_dim // 2
    rotated = np.concatenate([-rot[..., half:], rot[..., :half]], axis=-1)
    return np.concatenate([rot * cos + rotated * sin, rest], axis=-1)


def attention(q, k, v, scaling, window, softcap):
    # q [T, H, D], k/v [T, KV, D] -> [T, H * D]; causal, and with a window the keys (i - window, i].
    t, heads, d = q.shape
    group = heads // k.shape[1]
    i = np.arange(t)[:, None]
    j = np.arange(t)[None, :]
    allowed = j <= i
    if window:
        allowed &= j > i - window
    out = np.zeros((t, heads, d))
    for h in range(heads):
        s = (q[:, h, :] @ k[:, h // group, :].T) * scaling
        if softcap:
            s = softcap * np.tanh(s / softcap)
        s = np.where(allowed, s, -np.inf)
        p = np.exp(s - s.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        out[:, h, :] = p @ v[:, h // group, :]
    return out.reshape(t, heads * d)


def silu(x):
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def layer_windows(cfg, arch, num_layers):
    """The sliding window of each layer (0 = full attention), by HF's rules per model type."""
    window = cfg.get("sliding_window")
    types = cfg.get("layer_types")
    if arch in ("Gemma2ForCausalLM", "Gemma3ForCausalLM"):
        window = cfg.get("sliding_window", 4096)
        if types is None:
            if arch == "Gemma2ForCausalLM":
                types = ["sliding_attention" if l % 2 == 0 else "full_attention" for l in range(num_layers)]
            else:
                pattern = cfg.get("sliding_window_pattern", 6)
                types = ["sliding_attention" if (l + 1) % pattern else "full_attention" for l in range(num_layers)]
    elif arch in ("Qwen2ForCausalLM", "Qwen3ForCausalLM"):
        if not cfg.get("use_sliding_window", False):
            window = None
        if types is None:
            mwl = cfg.get("max_window_layers", 28)
            types = ["sliding_attention" if l >= mwl else "full_attention" for l in range(num_layers)]
    elif arch == "LlamaForCausalLM":
        window = None
    if not window:
        return [0] * num_layers
    if types is None:
        types = ["sliding_attention"] * num_layers
    return [window if t == "sliding_attention" else 0 for t in types]


def forward(cfg, w, tokens):
    arch = cfg["architectures"][0]
    gemma = arch in ("Gemma2ForCausalLM", "Gemma3ForCausalLM")
    phi3 = arch == "Phi3ForCausalLM"
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", heads)
    head_dim = cfg.get("head_dim") or hidden // heads
    layers = cfg["num_hidden_layers"]
    eps = cfg.get("rms_norm_eps", 1e-6)
    inter = cfg["intermediate_size"]
    rotary_dim = int(head_dim * cfg.get("partial_rotary_factor", 1.0))
    t = len(tokens)
    positions = np.arange(t, dtype=np.float64)
    windows = layer_windows(cfg, arch, layers)

    theta = cfg.get("rope_theta", 1e6 if arch == "Gemma3ForCausalLM" else 10000.0)
    global_inv, attn_factor = inv_freq_and_attention_factor(cfg, theta, cfg.get("rope_scaling"), rotary_dim, t)
    local_inv = global_inv
    if arch == "Gemma3ForCausalLM":
        local_inv = default_inv_freq(cfg.get("rope_local_base_freq", 10000.0), rotary_dim)

    if gemma:
        scaling = cfg.get("query_pre_attn_scalar", 256) ** -0.5
        default_caps = (None, None) if arch == "Gemma3ForCausalLM" else (50.0, 30.0)
        attn_cap = cfg.get("attn_logit_softcapping", default_caps[0])
        final_cap = cfg.get("final_logit_softcapping", default_caps[1])
    else:
        scaling = head_dim ** -0.5
        attn_cap = final_cap = None

    embed = w["model.embed_tokens.weight"]
    x = embed[np.array(tokens)]
    if gemma:
        # sqrt(hidden) as a tensor of the activation dtype (these test models are float32).
        x = x * float(np.float32(math.sqrt(hidden)))

    q_size, kv_size = heads * head_dim, kv_heads * head_dim
    for l in range(layers):
        p = f"model.layers.{l}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps, gemma)
        if phi3:
            qkv = h @ w[p + "self_attn.qkv_proj.weight"].T
            q, k, v = qkv[:, :q_size], qkv[:, q_size:q_size + kv_size], qkv[:, q_size + kv_size:]
        else:
            q = h @ w[p + "self_attn.q_proj.weight"].T
            k = h @ w[p + "self_attn.k_proj.weight"].T
            v = h @ w[p + "self_attn.v_proj.weight"].T
            if p + "self_attn.q_proj.bias" in w:
                q = q + w[p + "self_attn.q_proj.bias"]
                k = k + w[p + "self_attn.k_proj.bias"]
                v = v + w[p + "self_attn.v_proj.bias"]
        q = q.reshape(t, heads, head_dim)
        k = k.reshape(t, kv_heads, head_dim)
        v = v.reshape(t, kv_heads, head_dim)
        if p + "self_attn.q_norm.weight" in w:  # Qwen3, Gemma 3: per-head norm before RoPE
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps, gemma)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps, gemma)
        inv = local_inv if windows[l] else global_inv
        q = apply_rope(q, positions, inv, attn_factor, rotary_dim)
        k = apply_rope(k, positions, inv, attn_factor, rotary_dim)
        a = attention(q, k, v, scaling, windows[l], attn_cap)
        o = a @ w[p + "self_attn.o_proj.weight"].T
        if p + "self_attn.o_proj.bias" in w:
            o = o + w[p + "self_attn.o_proj.bias"]
        if gemma:
            x = x + rms_norm(o, w[p + "post_attention_layernorm.weight"], eps, True)
            h = rms_norm(x, w[p + "pre_feedforward_layernorm.weight"], eps, True)
        else:
            x = x + o
            h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if phi3:
            gate_up = h @ w[p + "mlp.gate_up_proj.weight"].T
            m = silu(gate_up[:, :inter]) * gate_up[:, inter:]
        else:
            gate = h @ w[p + "mlp.gate_proj.weight"].T
            up = h @ w[p + "mlp.up_proj.weight"].T
            m = (gelu_tanh(gate) if gemma else silu(gate)) * up
        m = m @ w[p + "mlp.down_proj.weight"].T
        x = x + (rms_norm(m, w[p + "post_feedforward_layernorm.weight"], eps, True) if gemma else m)

    x = rms_norm(x, w["model.norm.weight"], eps, gemma)
    tied = cfg.get("tie_word_embeddings", gemma)
    logits = x @ (embed if tied else w["lm_head.weight"]).T
    if final_cap:
        logits = final_cap * np.tanh(logits / final_cap)
    return logits


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    model_dir, tokens_arg, out_path = sys.argv[1:]
    with open(f"{model_dir}/config.json") as f:
        cfg = json.load(f)
    weights = load_safetensors(f"{model_dir}/model.safetensors")
    tokens = [int(x) for x in tokens_arg.split(",")]
    logits = forward(cfg, weights, tokens)
    logits.astype("<f8").tofile(out_path)


if __name__ == "__main__":
    main()
