"""The language names of a prompts folder: what a prompt calls each query language.

`languages.yaml` maps an ISO 639-1 code to the English name prompts ask for ('de' ->
'German'). A user's prompts folder may bring its own; the bundled one serves otherwise.
Apart from the library so that the job config can check its languages when it loads.
"""

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.errors import UserError

# The bundled families, languages and personas: package data, so an installed wheel has
# them (the repository's top-level `prompts` is a link to this folder, for browsing).
DEFAULT_PROMPTS_DIR = Path(str(resources.files("pipeline.prompts") / "bundled"))


def read_yaml(path: Path) -> Any:
    """A prompt data file; a missing or malformed one is a one-line error naming it."""
    if not path.is_file():
        raise UserError(f"prompt data file not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc


def language_names(root: Path | None) -> tuple[dict[str, str], Path]:
    """The language names of a prompts folder (code -> English name, as prompts ask for
    a language), from its languages.yaml or the bundled one, and the file read."""
    root = root or DEFAULT_PROMPTS_DIR
    if not root.is_dir():
        raise UserError(f"prompts folder not found: {root}")
    path = next(
        (
            r / "languages.yaml"
            for r in (root, DEFAULT_PROMPTS_DIR)
            if (r / "languages.yaml").exists()
        ),
        root / "languages.yaml",
    )
    names = read_yaml(path)
    if not isinstance(names, dict):
        raise UserError(f"{path}: expected one `code: name` line per language")
    if not all(isinstance(code, str) for code in names):
        raise UserError(f"{path}: quote every code (YAML reads no as false)")
    return names, path


def check_language_names(codes: list[str], root: Path | None, config: Path) -> None:
    """Refuse a query language (of the job file `config`) the prompts have no name for:
    its prompts would ask for the bare code ("write in xx") and no check would notice."""
    names, path = language_names(root)
    for code in codes:
        if code not in names:
            known = ", ".join(names)
            raise UserError(f"{config}: languages.query {code!r} is not in {path} (has: {known})")
