"""The `input` section of a job: where the corpus is, which columns hold what, and what a
repeated document id does.

Its own module so that the job config (pipeline.config.job, which re-exports it) stays small;
the reader and the embed command build it directly.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field

from pipeline.config.base import Strict

# The settings naming a column besides the text: a corpus need not have the default
# columns (ids then come from a content hash), but one the user names must be there.
OPTIONAL_COLUMNS = ("id_column", "title_column", "language_column")


class InputConfig(Strict):
    """Where the corpus is and which columns hold what."""

    path: Path
    format: Literal["auto", "jsonl", "parquet", "text"] = "auto"
    id_column: str | None = "id"
    text_column: str = "text"
    title_column: str | None = "title"
    language_column: str | None = "language"
    max_chars: int = Field(8000, gt=0, description="longer documents are skipped as too_long")
    batch_size: int = Field(512, gt=0, description="documents per streamed batch")
    duplicate_ids: Literal["error", "suffix"] = Field(
        "error",
        description="a repeated id (chunks sharing their parent's id): stop the job before a "
        "model loads, or keep the first and rename the later ones ID#2, ID#3, ... in order",
    )

    def named_columns(self) -> dict[str, str]:
        """setting -> column for each optional column the user named (other than its
        default, `id`, `title`, `language`): a misspelled name must not fall back to
        content-hash ids or no titles unnoticed, while the defaults stay optional."""
        fields = type(self).model_fields
        return {
            setting: column
            for setting in OPTIONAL_COLUMNS
            if (column := getattr(self, setting)) and column != fields[setting].default
        }
