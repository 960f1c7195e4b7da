"""The package as a stranger installs it: a wheel built from this tree, installed into a
fresh virtual environment with no source tree on its path, checks its bundled prompts and
runs a tiny-model job. A file read by a path into the checkout (prompts beside the
package, say) passes every other test and fails here.

Nothing is downloaded: the wheel is built without build isolation (the environment's own
setuptools), and the fresh environment borrows this one's installed dependencies through
a path entry (which runs none of this environment's .pth hooks, so the editable install of
the checkout is not on its path)."""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import yaml

from tests.conftest import ENGINE, NO_QUALITY_FILTERS, SAMPLE_CORPUS, SEED

ROOT = Path(__file__).resolve().parent.parent


def _fresh_environment(tmp_path: Path) -> Path:
    """A venv whose site-packages holds only the wheel (and a path to the dependencies).

    The wheel is built from a copy of the sources: a build in place leaves `build/` and
    `*.egg-info` in the checkout, and a stale `build/lib` would put removed modules back
    into the next wheel."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "pipeline", source / "pipeline",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("embsynth-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(site), str(wheel)],
        check=True,
    )  # fmt: skip
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin" / "python"


def test_the_wheel_checks_its_prompts_and_runs_a_job(tmp_path: Path, tiny_model: Path) -> None:
    python = _fresh_environment(tmp_path)
    where = subprocess.run(
        [python, "-c", "import pipeline; print(pipeline.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert where.stdout.startswith(str(tmp_path / "venv"))  # the wheel, not the checkout

    embsynth = [str(python), "-m", "pipeline.cli.app"]
    check = subprocess.run([*embsynth, "prompts", "check"], capture_output=True, text=True,
                           cwd=tmp_path)  # fmt: skip
    assert check.returncode == 0 and check.stdout.startswith("ok:"), check.stderr

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(SAMPLE_CORPUS.read_text().splitlines(keepends=True)[:3]))
    job = {
        "name": "w",
        "seed": SEED,
        "input": {"path": str(corpus)},
        "languages": {"query": ["en"]},
        "personas": {"select": "random"},
        "generator": {"model": str(tiny_model), "engine": ENGINE},
        "filters": NO_QUALITY_FILTERS,
        "dedup": {"semantic": {"enabled": False}},
        "negatives": {"enabled": False},
        "output": {"dir": str(tmp_path / "out")},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    run = subprocess.run([*embsynth, "run", "job.yaml"], capture_output=True,
                         text=True, cwd=tmp_path, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    manifest = json.loads((tmp_path / "out" / "w" / "v0001" / "manifest.json").read_text())
    assert manifest["counts"]["read"]["documents"] == 3
    assert set(manifest["template_hashes"]) == {"retrieval"}
