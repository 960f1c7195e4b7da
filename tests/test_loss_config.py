"""Losses named in a training config: the registry knows every name the config accepts and
builds each entry with its settings, the older `loss` section stands for a fixed list, and
a bad entry is a one-line config error."""

from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from pipeline.config.errors import UserError
from pipeline.embedding.losses import LOSSES, InfoNCE, MarginMSE, Matryoshka, build_loss
from pipeline.embedding.train_config import (
    InfoNCEConfig,
    LossConfig,
    LossSpec,
    MarginMSEConfig,
    MatryoshkaConfig,
    legacy_losses,
    load_train_config,
)
from tests.conftest import cli


def test_the_registry_and_the_config_know_the_same_names() -> None:
    entries = get_args(get_args(LossSpec)[0])  # the classes of the discriminated union
    assert {entry.model_fields["name"].default for entry in entries} == set(LOSSES)
    for entry in entries:
        assert LOSSES[entry.model_fields["name"].default].name == entry.model_fields["name"].default


def test_an_entry_builds_its_module_with_its_settings() -> None:
    info_nce = build_loss(InfoNCEConfig(temperature=0.1, doc_doc=False, margin=0.3))
    assert isinstance(info_nce, InfoNCE)
    assert (info_nce.temperature, info_nce.in_batch, info_nce.query_query) == (0.1, True, True)
    assert (info_nce.doc_doc, info_nce.margin) == (False, 0.3)
    wrapped = build_loss(MatryoshkaConfig(dims=[8, 16], loss=MarginMSEConfig(temperature=0.2)))
    assert isinstance(wrapped, Matryoshka) and wrapped.dims == [8, 16]
    assert isinstance(wrapped.loss, MarginMSE) and wrapped.loss.temperature == 0.2


LEGACY = [
    ({}, [InfoNCEConfig()]),
    ({"mrl_dims": [16, 32]}, [MatryoshkaConfig(dims=[16, 32], loss=InfoNCEConfig())]),
    ({"info_nce": False, "distill": "margin_mse"}, [MarginMSEConfig()]),
    (
        {"distill": "margin_mse", "distill_weight": 0.5, "mrl_dims": [16], "in_batch": False,
         "query_query": False, "temperature": 0.1, "margin": 0.2},
        [
            MatryoshkaConfig(dims=[16], loss=InfoNCEConfig(
                temperature=0.1, in_batch=False, query_query=False, margin=0.2)),
            MarginMSEConfig(weight=0.5, temperature=0.1),
        ],
    ),
]  # fmt: skip


@pytest.mark.parametrize("section, expected", LEGACY, ids=["default", "mrl", "distill", "all"])
def test_the_loss_section_stands_for_a_list(section: dict[str, Any], expected: list) -> None:
    got = legacy_losses(LossConfig.model_validate(section))
    assert [spec.model_dump() for spec in got] == [spec.model_dump() for spec in expected]


WEIGHTED = {"name": "info_nce", "weight": 2}
BAD = [
    ({"losses": [{"name": "triplet"}]}, "'losses.0': .*'triplet'.*'info_nce', 'margin_mse'"),
    ({"losses": [{"weight": 2.0}]}, "'losses.0': .*discriminator 'name'"),
    ({"losses": []}, "'losses': .*at least 1 item"),
    ({"losses": [{"name": "info_nce", "tau": 0.1}]}, "unknown key 'losses.0.info_nce.tau'"),
    ({"losses": [{"name": "info_nce"}], "loss": {"mrl_dims": [8]}}, "not both"),
    (
        {"losses": [{"name": "matryoshka", "dims": [8], "loss": WEIGHTED}]},
        "inner loss takes no weight",
    ),
    (
        {"losses": [{"name": "matryoshka", "dims": [8], "loss": {"name": "matryoshka"}}]},
        "'losses.0.matryoshka.loss': .*'matryoshka'",
    ),
    ({"losses": [{"name": "matryoshka", "dims": [0], "loss": {"name": "info_nce"}}]}, "dims.0"),
]


@pytest.mark.parametrize("settings, message", BAD)
def test_a_bad_loss_list_is_a_one_line_config_error(
    settings: dict[str, Any], message: str, tmp_path: Path
) -> None:
    path = tmp_path / "train.yaml"
    base = {"model": "m", "data": ["d"], "output_dir": "run"}
    path.write_text(yaml.safe_dump(base | settings))
    with pytest.raises(UserError, match=message) as caught:
        load_train_config(path)
    assert "\n" not in str(caught.value)


def test_the_train_command_names_an_unknown_loss_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    settings = {"model": "m", "data": ["d"], "output_dir": "run", "losses": [{"name": "triplet"}]}
    path.write_text(yaml.safe_dump(settings))
    done = cli("train", path)
    assert done.exit_code == 2
    assert done.stderr.count("\n") == 1 and "'triplet'" in done.stderr
