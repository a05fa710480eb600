#!/usr/bin/env python3
"""Render conversations with the pinned Qwen3 chat_template the way transformers does
(jinja2 ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks); TestChatTemplates holds
tagpr's Qwen3 format to these strings. Run from the repository root after `make setup`."""
import json
from jinja2.sandbox import ImmutableSandboxedEnvironment
tpl=json.load(open('.cache/tokenizers/qwen3/tokenizer_config.json'))['chat_template']
env=ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
env.filters['tojson']=lambda x, **k: json.dumps(x)
t=env.from_string(tpl)
convs = [
 ([{"role":"system","content":"You are helpful."},{"role":"user","content":" Hi there\n"},{"role":"assistant","content":"Hello! How can I help?"},{"role":"user","content":"Rate it"}], True),
 ([{"role":"user","content":"Which tag?"},{"role":"assistant","content":"<think>\n<recall_history>space films</recall_history>\n</think>\n<answer>sci-fi</answer>"}], False),
 ([{"role":"user","content":"Q1"},{"role":"assistant","content":"<think>r1</think>A1"},{"role":"user","content":"Q2"},{"role":"assistant","content":"plain answer"}], False),
 ([{"role":"system","content":"S"},{"role":"user","content":"Q1"},{"role":"assistant","content":"\n\n<think>\n\nr1\n\n</think>\n\nA1"},{"role":"assistant","content":"A2"}], False),
]
for msgs, gen in convs:
    print(json.dumps(t.render(messages=msgs, add_generation_prompt=gen)))
