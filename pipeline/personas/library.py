"""The persona library: the bundled personas plus the user's own files.

Users bring personas in Persona Hub's JSONL form (one `{"persona": "..."}` per line) or as a
YAML list of strings. Duplicates are dropped (first seen wins) so a user file that repeats
bundled personas does not tilt the draw towards them.
"""

from pathlib import Path

import yaml

from pipeline.config.errors import UserError
from pipeline.config.job import PersonasConfig
from pipeline.corpus.reader import jsonl_rows
from pipeline.prompts.languages import DEFAULT_PROMPTS_DIR

BUNDLED = DEFAULT_PROMPTS_DIR / "personas.jsonl"


def read_personas(path: Path) -> list[str]:
    """The personas of one file (.jsonl in Persona Hub form, or a YAML list)."""
    if not path.is_file():
        raise UserError(f"persona file not found: {path}")
    if path.suffix == ".jsonl":
        personas = []
        for number, row in jsonl_rows(path):
            if not isinstance(row.get("persona"), str):
                raise UserError(f'{path}:{number}: expected {{"persona": "..."}}')
            personas.append(row["persona"])
    else:
        try:
            personas = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
        if not isinstance(personas, list) or not all(isinstance(p, str) for p in personas):
            raise UserError(f"{path}: expected a list of personas")
    return [p.strip() for p in personas if p.strip()]


def load_personas(config: PersonasConfig, bundled: Path = BUNDLED) -> list[str]:
    """Every persona the job may use, in a stable order."""
    paths = ([bundled] if config.bundled else []) + list(config.files)
    personas = list(dict.fromkeys(p for path in paths for p in read_personas(path)))
    if not personas:
        raise UserError("no personas: personas.bundled is off and personas.files gave none")
    return personas
