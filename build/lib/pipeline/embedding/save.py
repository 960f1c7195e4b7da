"""Save a trained model as a sentence-transformers folder (Transformer, Pooling, Normalize)
with the query prompt registered, so `SentenceTransformer(path)` encodes like our Embedder."""

import copy
from pathlib import Path

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

from pipeline.embedding.model import EmbeddingModel, query_prompt
from pipeline.models.folder import save_atomically

# Plain text in, token states out. sentence-transformers would otherwise route the text of
# a model whose tokenizer has a chat template through that template, which we never train on.
TEXT_ONLY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}


def export_model(model: EmbeddingModel, out: Path, instruction: str | None) -> Path:
    """Write `model` (LoRA adapters merged in) to `out` atomically."""
    return save_atomically(out, lambda folder: write_model(model, folder, instruction))


def write_model(model: EmbeddingModel, folder: Path, instruction: str | None) -> None:
    """Write `model` (LoRA adapters merged in) into the empty `folder` as it is, for a caller
    that makes the folder atomic itself (export_model; a checkpoint, which adds its state)."""
    backbone = model.backbone
    if hasattr(backbone, "merge_and_unload"):  # a peft model: fold the adapters in
        backbone = copy.deepcopy(backbone).merge_and_unload()
    backbone.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    modules = [
        Transformer(
            str(folder),
            max_seq_length=model.max_length,
            modality_config=TEXT_ONLY,
            module_output_name="token_embeddings",
        ),
        Pooling(model.dimension, pooling_mode=model.pooling),
        Normalize(),
    ]
    prompts = {"query": query_prompt(instruction), "document": ""}
    SentenceTransformer(modules=modules, prompts=prompts, device="cpu").save(str(folder))
