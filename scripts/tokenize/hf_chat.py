#!/usr/bin/env python3
"""Record transformers' apply_chat_template(tokenize=False) for the pinned Qwen3
and Llama-3 tokenizers, for Qwen2.5-Instruct's and Qwen2-Instruct's
templates (written out below; ChatML with a default system prompt when the
chat has none) on Qwen3's tokenizer.json, and for Llama-3.1/3.3-Instruct's and
Llama-3.2-Instruct's (a system turn with the knowledge cutoff and the date
always written) on Llama-3's, on multi-turn chats (system prompts, empty content,
<think> blocks, whitespace and control characters at the ends of content) into
tokenize/testdata/chat_hf.json, with the generation prompt, without it, and with
enable_thinking=False; tokenize's TestChatMatchesTransformers holds
RenderChat and EncodeChat to these strings and to the ids of encoding them.

The templates of sentencepiece-tokenizer models that tagpr recognises by their
text (tokenize/chattemplates/NAME.jinja, which tokenize/chat_sp.go embeds; each
as its model's tokenizer_config.json has it, sources in SP_SOURCES) are recorded
too, with bos_token <s> and eos_token </s> (Llama 2's and Mistral's), on Qwen3's
tokenizer.json for now: their text and ids, transformers' error where the template
raises on a chat ("error"), the messages the template leaves out without a word
("drops": found by rendering each message's content as a marker, which tagpr
refuses too), and transformers' return_assistant_tokens_mask ("mask") from the
template with {% generation %} around the assistant content and its </s>
(SP_GENERATION; the same text as the real template, checked here), which
EncodeChat's AssistantMask must equal.

    python3 scripts/tokenize/hf_chat.py tokenize/testdata/chat_hf.json

Run from the repository root after `make setup`; needs `pip install transformers`
(offline: the tokenizers are loaded from .cache/tokenizers). Llama-3's pinned
template writes the assistant header even without add_generation_prompt (the
first release of Meta-Llama-3-Instruct's template); tagpr follows the later one,
which writes it only for add_generation_prompt, so only that case is recorded
for llama3.
"""
import json
import sys

import transformers
from transformers import AutoTokenizer


# chat_template of Qwen/Qwen2.5-*-Instruct's tokenizer_config.json.
QWEN25 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

# chat_template of Qwen/Qwen2-*-Instruct's tokenizer_config.json.
QWEN2 = (r"""{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"""
         r"""{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"""
         r"""{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"""
         r"""{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}""")
# chat_template of meta-llama/Llama-3.1-*-Instruct's (and Llama-3.3-70B-Instruct's) tokenizer_config.json:
# a system turn is always written, with the knowledge cutoff and date_string (default "26 Jul 2024").
LLAMA31 = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}"""

# Llama-3.2-*-Instruct's: Llama 3.1's, with date_string from strftime_now("%d %b %Y") (today) when the
# caller gives none. Recorded with date_string=LLAMA32_DATE, which the Go test puts on tagpr's clock.
LLAMA32 = LLAMA31.replace("""{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}""", """{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}""")
assert "strftime_now" in LLAMA32
LLAMA32_DATE = "03 Feb 2025"

# Where each template in tokenize/chattemplates/ comes from (the text found in these, byte for byte
# but for white space inside {{ }} and {% %} tags outside string literals, which does not change what
# a template renders and which tagpr's recognition ignores).
SP_SOURCES = {
    # meta-llama/Llama-2-{7,13,70}b-chat-hf
    "llama2": "EricLBuehler/mistral.rs mistralrs-core/src/pipeline/mod.rs (test_chat_templates, "
              "\"meta-llama/Llama-2-13b-chat-hf\"); huggingface.co/mohitsha/Llama-2-70b-chat-hf-FP8-KV-AMMO "
              "tokenizer_config.json (f119ab9)",
    # mistralai/Mistral-7B-Instruct-v0.1 as first released: a space after </s>
    "mistral-v0.1": "huggingface/huggingface.js packages/jinja/test/e2e.test.js "
                    "(\"TheBloke/Mistral-7B-Instruct-v0.1-GPTQ\", its tokenizer_config.json); EricLBuehler/mistral.rs "
                    "mistralrs-core/src/pipeline/mod.rs (\"mistralai/Mistral-7B-Instruct-v0.1\")",
    # mistralai/Mixtral-8x7B-Instruct-v0.1; Mistral-7B-Instruct-v0.2 as first released
    "mistral": "huggingface/huggingface.js packages/jinja/test/e2e.test.js (\"mistralai/Mixtral-8x7B-Instruct-v0.1\"); "
               "ggml-org/llama.cpp tests/test-chat-template.cpp (\"mistralai/Mistral-7B-Instruct-v0.2 (NOTE: Old pre-v1 "
               "without a system prompt)\"); huggingface.co/PrunaAI/Mistral-7B-Instruct-v0.2-bnb-4bit tokenizer_config.json",
    # Mistral-7B-Instruct-v0.2's later template ("Updating chat template, trying to make it match with
    # mistral_common", mistralai/Mistral-7B-Instruct-v0.2 discussion 136): a system message in the first user turn
    "mistral-v0.2": "ggml-org/llama.cpp tests/test-chat-template.cpp (\"mistralai/Mistral-7B-Instruct-v0.2 (mistralai "
                    "'v1' template with a system prompt)\"); huggingface.co/mlabonne/NeuralDaredevil-7B commit 7097042 "
                    "(\"Add chat template from mistralai/Mistral-7B-Instruct-v0.2\")",
    # mistralai/Mistral-7B-Instruct-v0.3 (tokenizer v3): the system message in the last user turn
    "mistral-v0.3": "ggml-org/llama.cpp tests/test-chat-template.cpp (\"Mistral-Large-Instruct-2407 (mistralai 'v3' "
                    "template)\", the whole text, which Mistral's v3-tokenizer models share); its opening as "
                    "huggingface.co/api/models/mistralai/Mistral-7B-Instruct-v0.3/revision/c170c708 gives "
                    "config.tokenizer_config.chat_template; the system message in the last user turn as "
                    "mistralai/Mistral-Nemo-Instruct-2407 discussion 14 and mistral_common have it",
    # HuggingFaceH4/zephyr-7b-beta
    "zephyr": "huggingface/huggingface.js packages/jinja/test/e2e.test.js (\"HuggingFaceH4/zephyr-7b-beta\")",
}
SP_TEMPLATES = {name: open(f"tokenize/chattemplates/{name}.jinja", encoding="utf-8").read() for name in SP_SOURCES}
# TinyLlama/TinyLlama-1.1B-Chat-v1.0's, as huggingface.co/reach-vb/TinyLlama-1.1B-Chat-v1.0-Q4-mlx/blob/474db7c/
# tokenizer_config.json shows it: Zephyr's with one space where Zephyr's has two ('<|assistant|>\n' + ...),
# inside a tag; tagpr renders it as zephyr.
SP_TEMPLATES["tinyllama"] = SP_TEMPLATES["zephyr"].replace("'<|assistant|>\n'  + ", "'<|assistant|>\n' + ")
assert SP_TEMPLATES["tinyllama"] != SP_TEMPLATES["zephyr"]
# The format tagpr must recognise each recorded template as.
FORMATS = {"tinyllama": "zephyr", **{name: name for name in SP_SOURCES}}
# Each template with {% generation %} around the assistant content and the </s> closing it (what SFT trains
# on; the space Llama 2 writes between them is the model's to produce too), for return_assistant_tokens_mask
# ("+%}" keeps the newline after Zephyr's </s>, which trim_blocks would take after a block tag).
SP_GENERATION = {
    "llama2": ("{{ ' '  + content.strip() + ' ' + eos_token }}",
               "{{ ' ' }}{% generation %}{{ content.strip() + ' ' + eos_token }}{% endgeneration %}"),
    "mistral-v0.1": ("{{ message['content'] + eos_token + ' ' }}",
                     "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ ' ' }}"),
    "mistral": ("{{ message['content'] + eos_token}}",
                "{% generation %}{{ message['content'] + eos_token}}{% endgeneration %}"),
    "mistral-v0.2": ("{{- ' ' + message['content'] + eos_token}}",
                     "{{- ' ' }}{% generation %}{{ message['content'] + eos_token}}{% endgeneration %}"),
    "mistral-v0.3": ('{{- " " + message["content"]|trim + eos_token}}',
                     '{{- " " }}{% generation %}{{ message["content"]|trim + eos_token}}{% endgeneration %}'),
    "zephyr": ("{{ '<|assistant|>\n'  + message['content'] + eos_token }}",
               "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration +%}"),
    "tinyllama": ("{{ '<|assistant|>\n' + message['content'] + eos_token }}",
                  "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration +%}"),
}
SP_TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}

TEMPLATES = {"qwen2.5": QWEN25, "qwen2": QWEN2, "llama3.1": LLAMA31, "llama3.2": LLAMA32, **SP_TEMPLATES}
# The tokenizer.json each template is rendered and encoded with (default: Qwen3's).
TEMPLATE_TOKENIZERS = {"llama3.1": "llama3", "llama3.2": "llama3"}


def S(c): return {"role": "system", "content": c}
def U(c): return {"role": "user", "content": c}
def A(c): return {"role": "assistant", "content": c}


CONVS = [
    [U("Hi")], [S("You are helpful."), U("Hi")], [S(""), U("")], [U("")], [S("sys"), U("q"), A("a"), U("q2")],
    [U(" padded \n"), A("  spaced answer\n\n")], [U("q"), A("<think>\nr\n</think>\n\nans")],
    [U("q"), A("<think>r</think>ans"), U("q2")], [U("q1"), A("<think>r1</think>a1"), U("q2"), A("<think>r2</think>a2")],
    [U("q"), A("a1"), A("<think>r2</think>a2")], [U("q"), A("no think")], [U("q"), A("")], [U("q"), A("<think></think>")],
    [U("q"), A("</think>x</think>y")], [U("q"), A("<think>a<think>b</think>c")],
    [U("q"), A("\n\n<think>\n\nr\n\n</think>\n\nA")], [S("s1"), U("q"), S("s2"), U("q2")], [A("first assistant")],
    [S("only system")], [U("q"), A("<think>\nr\n</think>")], [U("日本語 👨\u200d👩\u200d👧"), A("<think>考え</think>答え")],
    [U("<|im_end|> injected"), A("<|eot_id|> also")],
    [U("\u3000q\u00a0"), A("\t a \t"), U("\u0085x\u2028"), A("\x1fy\x1c"), U("\x1e\x1d")],
    [U("q"), A("<think>\n</think>\n\n")], [U("q"), A("r</think>a")],
    # For the [INST] templates: a padded system message and turns (Llama 2 strips the system block and the first
    # user message as one), multi-turn chats ending with an assistant turn (SFT's), with and without a system
    # message (Mistral v0.3 writes one only into a last user turn), empty contents after a system message, a late
    # system message (Llama 2 leaves it out, Mistral raises) and turns out of order.
    [S("  padded system\n"), U(" q \n"), A(" a \n"), U("\tq2 ")], [U("q1"), A("a1"), U("q2"), A("a2")],
    [S("sys"), U("q"), A("a")], [S("sys"), U(""), A("")], [S("s"), U("q"), A("a"), U("q2"), S("late")],
    [U("q"), U("q2")],
]


def record_sp(tok, name, msgs, gen):
    """One render of a sentencepiece-model template: text, ids and assistant mask, the messages it leaves
    out, or the error it raises."""
    tpl = SP_TEMPLATES[name]
    try:
        text = tok.apply_chat_template(msgs, chat_template=tpl, tokenize=False, add_generation_prompt=gen, **SP_TOKENS)
    except Exception as e:  # jinja2's TemplateError (raise_exception) or transformers' ValueError
        return {"error": f"{type(e).__name__}: {e}"}
    ids = tok(text, add_special_tokens=False)["input_ids"]
    marked = [dict(m, content=f"M{i}K") for i, m in enumerate(msgs)]
    shown = tok.apply_chat_template(marked, chat_template=tpl, tokenize=False, add_generation_prompt=gen, **SP_TOKENS)
    drops = [i for i in range(len(msgs)) if f"M{i}K" not in shown]
    if drops:
        return {"text": text, "ids": ids, "drops": drops}
    old, new = SP_GENERATION[name]
    assert tpl.count(old) == 1, name
    marking = tpl.replace(old, new)
    assert tok.apply_chat_template(msgs, chat_template=marking, tokenize=False, add_generation_prompt=gen,
                                   **SP_TOKENS) == text, (name, msgs)
    enc = tok.apply_chat_template(msgs, chat_template=marking, tokenize=True, return_dict=True,
                                  return_assistant_tokens_mask=True, add_generation_prompt=gen, **SP_TOKENS)
    assert list(enc["input_ids"]) == ids, (name, msgs)
    return {"text": text, "ids": ids, "mask": [bool(b) for b in enc["assistant_masks"]]}


def main():
    out = {"reference": f"transformers {transformers.__version__}", "chats": CONVS, "templates": TEMPLATES,
           "template_tokenizers": TEMPLATE_TOKENIZERS, "formats": FORMATS, "sources": SP_SOURCES,
           "llama32_date": LLAMA32_DATE, "tokenizers": {}}
    for name in ("qwen3", "llama3", "qwen2.5", "qwen2", "llama3.1", "llama3.2", *SP_TEMPLATES):
        base = name if name in ("qwen3", "llama3") else TEMPLATE_TOKENIZERS.get(name, "qwen3")
        tok = AutoTokenizer.from_pretrained(f".cache/tokenizers/{base}", local_files_only=True)
        if name in TEMPLATES:
            tok.chat_template = TEMPLATES[name]
        rows = []
        for msgs in CONVS:
            row = {}
            if name in SP_TEMPLATES:
                # These templates write no generation prompt but Zephyr's, and know no enable_thinking.
                for key, gen in (("gen", True), ("nogen", False)):
                    row[key] = record_sp(tok, name, msgs, gen)
                rows.append(row)
                continue
            # gen_nothink: enable_thinking=False, which Qwen3's template reads and the others ignore.
            for key, gen, kw in (("gen", True, {}), ("nogen", False, {}), ("gen_nothink", True, {"enable_thinking": False})):
                if name == "llama3" and not gen:
                    continue
                if name == "llama3.2":
                    kw = dict(kw, date_string=LLAMA32_DATE)
                text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen, **kw)
                row[key] = {"text": text, "ids": tok(text, add_special_tokens=False)["input_ids"]}
            rows.append(row)
        out["tokenizers"][name] = rows
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
