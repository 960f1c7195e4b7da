"""Engine settings chosen for the machine: the dtype follows the CPU flags unless the config
pins it, every core is used, and the engine's own output goes to a log file."""

import os
from pathlib import Path

import pytest

from pipeline.executors.console import engine_output_to
from pipeline.generation.backends.engine_settings import (
    apply_settings,
    choose_dtype,
    choose_settings,
    parse_cpuinfo,
)

AVX2_EPYC = frozenset(["fpu", "sse2", "avx", "avx2", "fma", "bmi2"])
ZEN4 = AVX2_EPYC | {"avx512f", "avx512bw", "avx512_bf16", "avx512_vnni"}
SAPPHIRE_RAPIDS = AVX2_EPYC | {"avx512f", "amx_bf16", "amx_tile"}
AVX512_NO_BF16 = AVX2_EPYC | {"avx512f", "avx512bw", "avx512_vnni"}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (AVX2_EPYC, "float32"),
        (AVX512_NO_BF16, "float32"),
        (ZEN4, "bfloat16"),
        (SAPPHIRE_RAPIDS, "bfloat16"),
        (frozenset(), "float32"),
    ],
)
def test_cpu_dtype_follows_the_flags(flags: frozenset[str], expected: str) -> None:
    assert choose_dtype(None, flags, gpu=False) == (expected, "cpu flags")
    settings = choose_settings({}, cpu=("Test CPU", flags), gpu=False)
    assert (settings.dtype, settings.device, settings.native_bf16) == (
        expected,
        "cpu",
        expected == "bfloat16",
    )
    assert settings.threads >= 1


@pytest.mark.parametrize("flags", [AVX2_EPYC, ZEN4])
@pytest.mark.parametrize("pinned", ["float32", "bfloat16", "float16"])
def test_a_dtype_in_the_config_always_wins(flags: frozenset[str], pinned: str) -> None:
    settings = choose_settings({"dtype": pinned}, cpu=("Test CPU", flags), gpu=False)
    assert (settings.dtype, settings.dtype_source) == (pinned, "config")
    assert apply_settings(settings, {"dtype": pinned, "max_model_len": 64})["dtype"] == pinned
    assert choose_dtype(pinned, flags, gpu=True) == (pinned, "config")


def test_a_gpu_gets_vllms_choice() -> None:
    settings = choose_settings({}, cpu=("Test CPU", AVX2_EPYC), gpu=True)
    assert (settings.dtype, settings.dtype_source, settings.device) == ("auto", "vllm", "cuda")
    assert "cuda" in settings.describe()


def test_cpuinfo_is_parsed_for_the_model_name_and_flags() -> None:
    text = (
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 fma\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 fma\n"
    )
    assert parse_cpuinfo(text) == ("AMD EPYC 7B13", frozenset({"fpu", "avx2", "fma"}))


def test_cpu_engine_runs_in_process_with_every_core(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_NUM_OF_RESERVED_CPU"):
        monkeypatch.delenv(name, raising=False)
    settings = choose_settings({}, cpu=("Test CPU", AVX2_EPYC), gpu=False)
    options = apply_settings(settings, {"enforce_eager": True})
    assert options == {"enforce_eager": True, "dtype": "float32", "block_size": 32}
    # A block size the config gives wins (vLLM's own CPU default is 128).
    assert apply_settings(settings, {"block_size": 128})["block_size"] == 128
    assert settings.in_process and os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert "float32 (cpu flags)" in settings.describe() and "no native bf16" in settings.describe()
    # A value the user exported wins.
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    assert not choose_settings({}, cpu=("Test CPU", ZEN4), gpu=False).in_process


def test_engine_output_goes_to_the_log_and_ours_to_the_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "logs" / "engine.log"
    with engine_output_to(log) as console:
        os.write(2, b"WARNING libtcmalloc not found\n")  # as C++ code or a child would
        os.write(1, b"INFO model runner chosen\n")
        print("our own line", file=console)
    print("after")
    captured = capfd.readouterr()
    assert "libtcmalloc" not in captured.err and "model runner" not in captured.out
    assert "our own line" in captured.err and "after" in captured.out
    assert log.read_text().splitlines() == [
        "WARNING libtcmalloc not found",
        "INFO model runner chosen",
    ]
