"""What a newcomer meets first: `executor: ray` without the optional Ray extra is one line
naming the extra, before anything is written."""

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import cli


def test_ray_executor_without_the_extra_is_one_line(
    job_file: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ray is installed here (the dev environment has the extra): hiding it from imports is
    # the only way to meet a machine without it (a None entry makes `import ray` fail).
    monkeypatch.setitem(sys.modules, "ray", None)
    result = cli("run", job_file(executor="ray"), "--limit", "2")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "embsynth: error: executor: ray needs Ray, an optional extra: pip install 'embsynth[ray]'"
    ]
    assert not (tmp_path / "out" / "t").exists() or not any((tmp_path / "out" / "t").iterdir())
