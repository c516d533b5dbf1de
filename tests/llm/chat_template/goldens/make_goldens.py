#!/usr/bin/env python3
"""Regenerates ferry_goldens.json: renders the chat templates in FERRY_TESTDATA with Python jinja2,
configured the way HF transformers' apply_chat_template configures it (ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, loopcontrols, tojson = json.dumps(ensure_ascii=False), raise_exception,
strftime_now pinned to 2024-07-26). Runs offline; needs only the jinja2 package.

Usage: make_goldens.py [TESTDATA_DIR] > ferry_goldens.json
"""
import copy
import datetime
import json
import os
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Default: ../shared/testdata beside the repository (this file is tests/llm/chat_template/goldens/).
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
TESTDATA = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "FERRY_TESTDATA", os.path.join(os.path.dirname(_REPO), "shared", "testdata"))
NOW = datetime.datetime(2024, 7, 26, 12, 0, 0)

LLAMA3 = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
MISTRAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
QWEN = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}

# (template path relative to TESTDATA, special tokens); tokenizer_config entries read their own.
TEMPLATES = [
    ("chat-templates/llamacpp-models-templates/meta-llama-Llama-3.1-8B-Instruct.jinja", LLAMA3),
    ("chat-templates/llamacpp-models-templates/meta-llama-Llama-3.2-3B-Instruct.jinja", LLAMA3),
    ("chat-templates/llamacpp-models-templates/Qwen-Qwen2.5-7B-Instruct.jinja", QWEN),
    ("chat-templates/llamacpp-models-templates/mistralai-Mistral-Nemo-Instruct-2407.jinja", MISTRAL),
    ("chat-templates/llamacpp-models-templates/deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
     {"bos_token": "<\uff5cbegin\u2581of\u2581sentence\uff5c>", "eos_token": "<\uff5cend\u2581of\u2581sentence\uff5c>"}),
    ("chat-templates/llamacpp-models-templates/llama-cpp-deepseek-r1.jinja",
     {"bos_token": "<\uff5cbegin\u2581of\u2581sentence\uff5c>", "eos_token": "<\uff5cend\u2581of\u2581sentence\uff5c>"}),
    ("chat-templates/llamacpp-models-templates/google-gemma-2-2b-it.jinja", {"bos_token": "<bos>", "eos_token": "<eos>"}),
    ("chat-templates/llamacpp-models-templates/microsoft-Phi-3.5-mini-instruct.jinja",
     {"bos_token": "<s>", "eos_token": "<|endoftext|>"}),
    ("chat-templates/llamacpp-models-templates/NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
     {"bos_token": "<|begin_of_text|>", "eos_token": "<|im_end|>"}),
    ("chat-templates/llamacpp-models-templates/CohereForAI-c4ai-command-r-plus-tool_use.jinja",
     {"bos_token": "<BOS_TOKEN>", "eos_token": "<|END_OF_TURN_TOKEN|>"}),
    ("chat-templates/llamacpp-models-templates/CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja",
     {"bos_token": "<BOS_TOKEN>", "eos_token": "<|END_OF_TURN_TOKEN|>"}),
    ("chat-templates/llamacpp-models-templates/meetkai-functionary-medium-v3.1.jinja", LLAMA3),
    ("chat-templates/llamacpp-models-templates/meetkai-functionary-medium-v3.2.jinja", LLAMA3),
    ("chat-templates/llamacpp-models-templates/fireworks-ai-llama-3-firefunction-v2.jinja", LLAMA3),
    ("mistral-common/chat_templates/v1.jinja", MISTRAL),
    ("mistral-common/chat_templates/v1_spm.jinja", MISTRAL),
    ("mistral-common/chat_templates/v2_spm.jinja", MISTRAL),
    ("mistral-common/chat_templates/v3_spm.jinja", MISTRAL),
    ("mistral-common/chat_templates/v7_spm.jinja", MISTRAL),
    ("chat-templates/tokenizer_configs/Meta-Llama-3-8B-Instruct.tokenizer_config.json", None),
    ("chat-templates/tokenizer_configs/Qwen2.5-Instruct.tokenizer_config.json", None),
    ("chat-templates/tokenizer_configs/Qwen3.tokenizer_config.json", None),
    ("chat-templates/tokenizer_configs/Phi-3-mini-instruct.tokenizer_config.json", None),
]


def token_text(t):
    return t["content"] if isinstance(t, dict) else t


def load(path, tokens):
    full = os.path.join(TESTDATA, path)
    if path.endswith(".jinja"):
        return open(full, encoding="utf-8").read(), dict(tokens)
    cfg = json.load(open(full, encoding="utf-8"))
    specials = {}
    for k in ("bos_token", "eos_token", "unk_token", "pad_token"):
        if cfg.get(k) is not None:
            specials[k] = token_text(cfg[k])
    if cfg.get("additional_special_tokens"):
        specials["additional_special_tokens"] = [token_text(t) for t in cfg["additional_special_tokens"]]
    return cfg["chat_template"], specials


def conversations():
    weather = json.load(open(os.path.join(TESTDATA, "mistral-common/samples/get_weather_full/sample.json")))
    dict_args = copy.deepcopy(weather["messages"])
    for m in dict_args:
        for call in m.get("tool_calls", []):
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return [
        ("system_user", {"messages": [{"role": "system", "content": "You are terse."},
                                      {"role": "user", "content": "Hi {{ there }} {% raw %}!"}],
                         "add_generation_prompt": True}),
        ("multi_turn_no_gen", {"messages": [{"role": "user", "content": "  2+2?  "},
                                            {"role": "assistant", "content": "4\n"},
                                            {"role": "user", "content": "caf\u00e9 \u2603 \"quoted\" 'single'"},
                                            {"role": "assistant", "content": "ok"}],
                               "add_generation_prompt": False}),
        ("tools_dict_args", {"messages": dict_args[1:], "tools": weather["tools"], "add_generation_prompt": True}),
        ("tools_string_args", {"messages": weather["messages"][2:], "tools": weather["tools"],
                               "add_generation_prompt": True}),
        ("content_parts", {"messages": [{"role": "user", "content": [{"type": "text", "text": "Describe"},
                                                                     {"type": "text", "text": "briefly"}]}],
                           "add_generation_prompt": True}),
        ("thinking_off", {"messages": [{"role": "user", "content": "Q1"},
                                       {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nA1"},
                                       {"role": "user", "content": "Q2"}],
                          "add_generation_prompt": True, "extra": {"enable_thinking": False}}),
    ]


class TemplateError(Exception):
    pass


def raise_exception(message):
    raise TemplateError(message)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: NOW.strftime(fmt)
    return env


def main():
    env = make_env()
    out = []
    for path, tokens in TEMPLATES:
        source, specials = load(path, tokens)
        template = env.from_string(source)
        for name, conv in conversations():
            kwargs = dict(specials)
            kwargs.update(conv.get("extra", {}))
            kwargs["messages"] = conv["messages"]
            kwargs["add_generation_prompt"] = conv["add_generation_prompt"]
            if "tools" in conv:
                kwargs["tools"] = conv["tools"]
            case = {"template": path, "conversation": name, "special_tokens": specials,
                    "messages": conv["messages"], "add_generation_prompt": conv["add_generation_prompt"]}
            if "tools" in conv:
                case["tools"] = conv["tools"]
            if "extra" in conv:
                case["extra"] = conv["extra"]
            try:
                case["rendered"] = template.render(**kwargs)
            except TemplateError as e:
                case["error"] = str(e)
            except Exception as e:  # jinja2 errors (e.g. undefined attribute) count as errors too
                case["error"] = "%s: %s" % (type(e).__name__, e)
            out.append(case)
    json.dump({"description": __doc__.strip().splitlines()[0] + " jinja2 " + jinja2.__version__,
               "now": NOW.isoformat(), "cases": out}, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
