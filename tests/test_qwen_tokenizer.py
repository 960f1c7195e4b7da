"""The offline Qwen tokenizer, whole and cut to its first BPE ranks (the scale bench's
generator samples over 8k logits instead of 152k)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.config.errors import UserError
from pipeline.models.qwen_tokenizer import QWEN3_ADDED_TOKENS, QWEN_RANKS, build_qwen3_tokenizer

TEXTS = (
    "Hello wörld, 東京 is große! ¿Qué tal? Привет, мир. 12345 🙂",
    "<|im_start|>user\nWhich alloy? <|im_end|>",
)


def test_a_cut_tokenizer_encodes_any_text_with_the_reference_ids_it_keeps() -> None:
    whole, cut = build_qwen3_tokenizer(), build_qwen3_tokenizer(4096)
    assert len(whole) == QWEN_RANKS + len(QWEN3_ADDED_TOKENS)
    assert len(cut) == 4096 + len(QWEN3_ADDED_TOKENS)
    for text in TEXTS:
        ids = cut.encode(text)
        assert cut.decode(ids) == text
        assert max(ids) < len(cut)
        assert len(ids) >= len(whole.encode(text))  # fewer merges: as many tokens or more
    kept = whole.convert_ids_to_tokens(list(range(4096)))
    assert cut.convert_ids_to_tokens(list(range(4096))) == kept
    assert cut.convert_tokens_to_ids("<|im_end|>") == 4096 + 2 == cut.eos_token_id
    chat = [{"role": "user", "content": "hi"}]
    prompt = cut.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert prompt == whole.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)


def test_a_cut_below_the_bytes_is_refused() -> None:
    with pytest.raises(UserError, match="ranks must be 256"):
        build_qwen3_tokenizer(100)


def test_the_cli_builds_a_tiny_qwen3_on_the_first_ranks(tmp_path: Path) -> None:
    done = CliRunner().invoke(
        app, ["models", "build-tiny-qwen3", str(tmp_path / "m"), "--ranks", "1024"]
    )
    assert done.exit_code == 0, done.output
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["vocab_size"] == 1088  # 1,024 ranks and 26 added tokens, padded to 64
    assert config["eos_token_id"] == 1026  # <|im_end|>
    refused = CliRunner().invoke(
        app, ["models", "build-tiny-qwen3", str(tmp_path / "n"), "--ranks", "9"]
    )
    assert refused.exit_code == 2 and "--ranks must be 256" in refused.output
    assert not (tmp_path / "n").exists()
