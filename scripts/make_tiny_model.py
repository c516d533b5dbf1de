#!/usr/bin/env python3
"""Writes ferry's default demo model: a small Llama-architecture model folder (HF layout) with its
own byte-level BPE tokenizer, trained here on a short built-in text. No network, stdlib only,
deterministic: running it twice writes identical files.

The weights are not written: the serving config next to the version folder says
"load_format": "dummy", so ferry draws them from a fixed seed at load. The model therefore talks
nonsense; it exists so that `scripts/serve` serves an LLM out of the box and so that the whole
path (tokenizer, chat template, engine, sampling, streaming) can be exercised without downloads.

Usage: scripts/make_tiny_model.py OUT_DIR   (OUT_DIR receives config.json, generation_config.json,
tokenizer.json, tokenizer_config.json)
"""
import json
import os
import re
import sys
from collections import Counter

CORPUS = """
A ferry carries people and their cars across the water, again and again, on a timetable that
everyone knows. The captain checks the weather, the crew counts the passengers, and the engine
hums below the deck. When the ferry is full, the next one waits at the pier. Small boats come and
go between the large ones, and the harbour master writes every arrival in a book.
The server reads a request, finds the model, and answers with text, one token after another.
Many requests arrive together; the scheduler puts them in one batch so that the machine is busy
and every client gets an answer soon. When memory runs short, the oldest cached blocks are
evicted first, and a request with a higher priority may go before the others.
Once upon a time there was a little robot who loved to read. Every morning it read a new story,
and every evening it told the story to the children of the town. They laughed, asked questions,
and went to sleep happy. The robot was glad, because stories are better when they are shared.
Hello! How are you today? I am fine, thank you. What would you like to talk about? Tell me about
the sea, the ships, the stars and the numbers 0 1 2 3 4 5 6 7 8 9, and I will do my best.
"""

NUM_MERGES = 700
SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
# A pre-tokenizer split in the spirit of GPT-2's pattern (ASCII approximation, for training only).
SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters (the ByteLevel alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def train_bpe(text, num_merges):
    byte_map = bytes_to_unicode()
    words = Counter()
    for piece in SPLIT.findall(text):
        words[tuple(byte_map[b] for b in piece.encode("utf-8"))] += 1
    vocab = [byte_map[b] for b in range(256)]
    merges = []
    for _ in range(num_merges):
        pairs = Counter()
        for word, count in words.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += count
        if not pairs:
            break
        # Most frequent pair; ties broken by the pair itself so the result is deterministic.
        (a, b), count = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if count < 2:
            break
        merges.append(f"{a} {b}")
        vocab.append(a + b)
        new_words = Counter()
        for word, c in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += c
        words = new_words
    return vocab, merges


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    vocab, merges = train_bpe(CORPUS, NUM_MERGES)
    token_to_id = {t: i for i, t in enumerate(vocab)}
    special_ids = {t: len(vocab) + i for i, t in enumerate(SPECIAL_TOKENS)}
    vocab_size = len(vocab) + len(SPECIAL_TOKENS)
    bos, eos, eot = special_ids["<|begin_of_text|>"], special_ids["<|end_of_text|>"], special_ids["<|eot_id|>"]

    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": special_ids[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for t in SPECIAL_TOKENS
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [bos], "tokens": ["<|begin_of_text|>"]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": token_to_id, "merges": merges},
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
        "chat_template": CHAT_TEMPLATE,
    }
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 256,
        "intermediate_size": 704,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "vocab_size": vocab_size,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "bos_token_id": bos,
        "eos_token_id": [eos, eot],
    }
    generation_config = {"bos_token_id": bos, "eos_token_id": [eos, eot], "temperature": 0.8, "top_p": 0.95}

    def write(name, obj):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1, sort_keys=True)
            f.write("\n")

    write("config.json", config)
    write("generation_config.json", generation_config)
    write("tokenizer.json", tokenizer)
    write("tokenizer_config.json", tokenizer_config)
    print(f"wrote {out}: vocab {vocab_size} ({len(merges)} merges), {config['num_hidden_layers']} layers, hidden {config['hidden_size']}")


if __name__ == "__main__":
    main()
