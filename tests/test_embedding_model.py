"""The model wrapper: last-token pooling under either padding side, mean pooling, EOS."""

from pathlib import Path

import pytest
import torch

from pipeline.embedding.model import EmbeddingModel, is_decoder, pool, query_text

TEXTS = ["a short one", "a much longer text that needs several more tokens than the first"]


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_token_pooling_ignores_padding(tiny_model: Path, side: str) -> None:
    model = EmbeddingModel(tiny_model).eval()
    assert model.pooling == "lasttoken"
    model.tokenizer.padding_side = side
    batch = model.tokenize(TEXTS)
    assert (batch["attention_mask"] == 0).any()  # the short text really is padded
    with torch.no_grad():
        together = model(batch)
        alone = torch.cat([model.embed([t]) for t in TEXTS])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    assert torch.allclose(together.norm(dim=-1), torch.ones(2))


def test_decoder_texts_end_with_eos_even_when_truncated(tiny_model: Path) -> None:
    model = EmbeddingModel(tiny_model, max_length=8)
    eos = model.tokenizer.eos_token_id
    batch = model.tokenize(["one", "many words " * 20])
    last = pool(batch["input_ids"].unsqueeze(-1).float(), batch["attention_mask"], "lasttoken")
    assert last.squeeze(-1).tolist() == [eos, eos]
    assert batch["input_ids"].shape[1] == 8


def test_pool_picks_the_last_real_token_on_both_sides() -> None:
    hidden = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)
    right = torch.tensor([[1, 1, 0], [1, 1, 1]])
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert pool(hidden, right, "lasttoken").tolist() == [[2.0, 3.0], [10.0, 11.0]]
    assert pool(hidden, left, "lasttoken").tolist() == [[4.0, 5.0], [10.0, 11.0]]
    assert pool(hidden, right, "mean").tolist() == [[1.0, 2.0], [8.0, 9.0]]


def test_encoders_mean_pool_and_queries_carry_the_instruction(tiny_encoder: Path) -> None:
    assert not is_decoder(str(tiny_encoder))
    model = EmbeddingModel(tiny_encoder).eval()
    assert model.pooling == "mean"
    with torch.no_grad():
        together = model.embed(TEXTS)
        alone = torch.cat([model.embed([t]) for t in TEXTS])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    assert query_text("q", "Find it") == "Instruct: Find it\nQuery:q"
    assert query_text("q", "") == "q"


def test_eos_is_appended_after_a_bos_the_tokenizer_adds(tiny_model: Path) -> None:
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    from pipeline.embedding.model import append_eos

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)  # Llama-style: BOS first
    tokenizer.bos_token = "<|im_start|>"
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)]
    )
    plain = tokenizer("hello", add_special_tokens=False)["input_ids"]
    append_eos(tokenizer)
    assert tokenizer("hello")["input_ids"] == [bos, *plain, tokenizer.eos_token_id]


def test_unsupported_pooling_is_a_user_error(tiny_encoder: Path) -> None:
    from pipeline.config.errors import UserError

    with pytest.raises(UserError, match="pooling 'cls' is not supported"):
        EmbeddingModel(tiny_encoder, pooling="cls")  # type: ignore[arg-type]
