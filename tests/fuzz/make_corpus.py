#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/ (small, hand-picked valid and near-valid
inputs). Deterministic; run again after editing. Real data from $FERRY_TESTDATA (default
../shared/testdata next to the checkout) is copied where a seed is best taken from a real file."""
import json
import os
import shutil
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.normpath(os.path.join(here, "..", ".."))
testdata = os.environ.get("FERRY_TESTDATA") or os.path.normpath(os.path.join(root, "..", "shared", "testdata"))
corpus = os.path.join(here, "corpus")


def put(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def js(v):
    return json.dumps(v, ensure_ascii=False)


# --- KServe v2 infer / generate bodies -----------------------------------------------------------
kserve = {
    "infer_bytes": {"id": "r1", "inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["hello"]}]},
    "infer_fp32_nested": {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1.5, -2], [3e10, 0]]}]},
    "infer_int_types": {"inputs": [
        {"name": "a", "shape": [3], "datatype": "INT32", "data": [1, -2147483648, 2147483647]},
        {"name": "b", "shape": [2], "datatype": "INT64", "data": [-9223372036854775808, 9223372036854775807]},
        {"name": "c", "shape": [2], "datatype": "BOOL", "data": [True, False]}]},
    "infer_half": {"inputs": [
        {"name": "h", "shape": [3], "datatype": "FP16", "data": [65504, 6e-8, -0.0]},
        {"name": "g", "shape": [2], "datatype": "BF16", "data": [1e38, -1.25]}]},
    "infer_params": {"id": "p", "inputs": [{"name": "text_input", "shape": [2], "datatype": "BYTES", "data": ["a", "\u00e9\u4e2d"]}],
                     "parameters": {"priority": 1, "timeout": 500000, "max_tokens": 8, "stop": ["\n"]}},
    "infer_empty_shape": {"inputs": [{"name": "e", "shape": [0], "datatype": "INT32", "data": []}]},
    "generate_text": {"text_input": "Once upon a time", "max_tokens": 16, "temperature": 0.7, "stream": False,
                      "parameters": {"seed": 3, "priority": 2}},
    "generate_list": {"id": "g1", "text_input": ["a", "b"], "seed": 12345678901, "scale": 0.5, "bscale": 2},
}
for name, body in kserve.items():
    put("kserve_json_fuzzer", name + ".json", js(body))
put("kserve_json_fuzzer", "bad_shape.json", '{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}')

# --- ZeroMQ messages: byte 0 = framing flags, then the payload ------------------------------------
zmq = {
    "infer": {"id": "1", "model": "echo", "inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]},
    "infer_stream": {"id": "2", "model": "tiny-llama", "version": 1, "stream": True, "priority": 1, "timeout_us": 1000000,
                     "inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["Once"]}],
                     "parameters": {"max_tokens": 4}},
    "infer_version_str": {"id": "3", "type": "infer", "model": "echo", "version": "2",
                          "inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [1, 2]}]},
    "cancel": {"id": "2", "type": "cancel"},
    "unknown_type": {"id": "4", "type": "ping"},
}
for i, (name, msg) in enumerate(zmq.items()):
    put("zmq_message_fuzzer", name + ".bin", bytes([i & 1]) + js(msg).encode())
put("zmq_message_fuzzer", "not_json.bin", b"\x00{\"id\":")

# --- config.json: serving configs, llm backend keys, HF model configs, generation configs ---------
configs = {
    "echo": {"backend": "echo", "inputs": [{"name": "text_input", "datatype": "BYTES", "dims": [-1]}]},
    "llm_dummy": {"backend": "llm", "load_format": "dummy", "seed": 0, "max_num_seqs": 16, "kv_cache_memory_bytes": 67108864},
    "llm_full": {"name": "m", "backend": "llm", "version_policy": {"specific": {"versions": [1, 3]}},
                 "max_model_len": 128, "kv_cache_block_size": 16, "kv_cache_num_blocks": 64, "num_threads": 1,
                 "instance_group": [{"count": 2, "kind": "cpu"}], "idle_unload_seconds": 5,
                 "enable_prefix_caching": False, "cuda_graphs": False, "kv_warmup_prompts": ["You are"], "max_num_batched_tokens": 256,
                 "long_prefill_token_threshold": 32, "scheduling_policy": "fcfs", "priority_levels": 2,
                 "default_priority": 1, "priority_level_config": [
                     {"queue_timeout_ms": 100, "timeout_action": "reject", "max_queue_size": 4},
                     {"queue_timeout_ms": 0, "timeout_action": "keep_waiting", "max_queue_size": 0}],
                 "max_queue_delay_ms": 2},
    "policy_all": {"backend": "echo", "version_policy": {"all": {}}},
    "policy_latest": {"version_policy": {"latest": {"num_versions": 2}}},
    "generation": {"eos_token_id": [128001, 128009], "bos_token_id": 128000, "temperature": 0.6},
    "qwen3": {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 1,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 300,
              "max_position_embeddings": 1024, "rms_norm_eps": 1e-6, "rope_theta": 1000000, "torch_dtype": "bfloat16",
              "tie_word_embeddings": True, "eos_token_id": 2},
    "llama3_rope": {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
                    "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 512, "max_position_embeddings": 8192,
                    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 8192},
                    "torch_dtype": "float16", "attention_bias": True},
    "qwen2_mistral": {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
                      "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 100,
                      "max_position_embeddings": 64, "sliding_window": 32, "dtype": "float32"},
}
for name, c in configs.items():
    put("model_config_fuzzer", name + ".json", json.dumps(c, indent=1))
stories = os.path.join(testdata, "stories260K-hf-format.derived", "config.json")
if os.path.exists(stories):
    shutil.copyfile(stories, os.path.join(corpus, "model_config_fuzzer", "stories260K.json"))

# --- safetensors files -----------------------------------------------------------------------------
def safetensors(tensors, metadata=None, pad=0, extra=b""):
    header, blob = {}, b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode() + b" " * pad
    return struct.pack("<Q", len(h)) + h + blob + extra

put("safetensors_fuzzer", "f32.safetensors", safetensors(
    {"w": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)), "b": ("F32", [2], struct.pack("<2f", 0.5, -1))},
    metadata={"format": "pt"}))
put("safetensors_fuzzer", "mixed.safetensors", safetensors(
    {"h": ("F16", [3], b"\x00\x3c" * 3), "g": ("BF16", [1, 2], b"\x80\x3f" * 2), "i": ("I64", [1], struct.pack("<q", 7)),
     "s": ("F32", [], struct.pack("<f", 1)), "e": ("F32", [0, 4], b"")}, pad=5))
put("safetensors_fuzzer", "empty.safetensors", safetensors({}))
put("safetensors_fuzzer", "truncated.safetensors", safetensors({"w": ("F32", [4], struct.pack("<4f", 1, 2, 3, 4))})[:-3])

# --- tokenizer: byte 0 = flags, then text ----------------------------------------------------------
texts = [
    "Hello, world! How's it going?",
    " leading and  double  spaces\n\ttabs\r\n",
    "<|begin_of_text|>special<|eot_id|> tokens <s></s><unk>",
    "\u00e9t\u00e9 na\u00efve \u4e2d\u6587 \U0001F600\U0001F44D\u200d \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "1234567890 3.14159 1,000,000",
    "def f(x):\n    return x ** 2  # comment",
]
for i, t in enumerate(texts):
    put("tokenizer_fuzzer", "text%d.bin" % i, bytes([i % 8]) + t.encode())
put("tokenizer_fuzzer", "invalid_utf8.bin", b"\x01abc\xff\xc3(\xe2\x82")
put("tokenizer_fuzzer", "ids.bin", b"\x04" + struct.pack("<8I", 1, 2, 128000, 9906, 1917, 0xF0000000, 29871, 128009))

# --- chat templates: small hand-written ones plus two real ones ------------------------------------
templates = {
    "chatml": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "features": "{%- set ns = namespace(n=0) -%}{% macro f(x, y=2) %}{{ x * y }}{% endmacro %}"
                "{% for m in messages if m.role != 'system' %}{{ loop.index0 }}:{{ m.content | string | trim | upper }}"
                "{% set ns.n = ns.n + 1 %}{% if loop.last %}|{{ f(ns.n) }}{% endif %}{% else %}none{% endfor %}"
                "{{ tools | tojson(indent=2) }}{{ messages[1:3] | map(attribute='role') | join(',') }}"
                "{% raw %}{{ x }}{% endraw %}{{ strftime_now('%Y-%m-%d') }}{{ bos_token ~ eos_token }}",
    "raise": "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be user') }}{% endif %}",
    "filters": "{{ 'a,b' .split(',') | length }}{{ [3,1,2] | sort | reverse | list }}{{ {'k': 1}.items() | list }}"
               "{{ 'x' is string }}{{ 10 // 3 }}{{ '%s-%d' % ('a', 1) }}{{ range(3) | sum }}{{ none is none }}",
}
for name, t in templates.items():
    put("chat_template_fuzzer", name + ".jinja", t)
for real in ["meta-llama-Llama-3.1-8B-Instruct.jinja", "Qwen-Qwen2.5-7B-Instruct.jinja", "google-gemma-2-2b-it.jinja"]:
    p = os.path.join(testdata, "chat-templates", "llamacpp-models-templates", real)
    if os.path.exists(p):
        shutil.copyfile(p, os.path.join(corpus, "chat_template_fuzzer", real))

# --- chat messages: byte 0 = template index + flags, then messages JSON ----------------------------
chats = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "and 3+3?"}],
    [{"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}]}],
    [{"role": "user", "content": "add"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 1}"}}]},
     {"role": "tool", "tool_call_id": "c1", "name": "add", "content": "1"}],
    [{"role": "assistant", "content": "starts with assistant"}],
    [{"role": "user", "content": 1.5e300}, {"role": "user", "content": [1, [2, {"a": None}]]}],
]
for i, c in enumerate(chats):
    put("chat_messages_fuzzer", "chat%d.bin" % i, bytes([(i * 37) & 0xFF]) + js(c).encode())
put("chat_messages_fuzzer", "scalar.bin", b"\x85\"just a string\"")
print("seed corpora written to", corpus)
