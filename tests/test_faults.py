"""Fault injection: an artifact damaged after it was written is noticed and rebuilt (to the
same bytes), never reused; a stage whose training diverges stores nothing and says so in
one line."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from pebench_core.config import ConfigError, load_config
from pebench_core.pipeline import Run, get_eval, get_model, get_unlearned, get_world, model_dir
from pebench_core.storage import read_marker
from pebench_core.world import world_digest

SMALL = {"unlearn": {"targets": ["person"], "methods": ["ga"]}}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cfg = load_config("smoke", seed=0, overrides=SMALL)
    run = tmp_path_factory.mktemp("faults") / "run"
    folder = get_unlearned(cfg, "ga", "person", run, progress=False)
    get_eval(cfg, "finetune", "person", run, progress=False)
    return cfg, run, folder


def test_a_world_that_lost_manifest_rows_is_rebuilt_identical(built, capsys):
    cfg, run, _ = built
    out = next((run / "world").iterdir())
    before = world_digest(out)
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(manifest.read_text().splitlines(keepends=True)[:-20]))
    capsys.readouterr()
    ds = get_world(cfg, run, progress=False)
    assert "cannot be reused: manifest.jsonl" in capsys.readouterr().out
    assert world_digest(out) == before and len(ds.items) == sum(1 for _ in manifest.open())


def test_truncated_weights_are_retrained_to_the_same_bytes(built, capsys):
    cfg, run, _ = built
    weights = model_dir(cfg, "finetune", None, run) / "model.safetensors"
    before = _sha(weights)
    weights.write_bytes(weights.read_bytes()[:1000])
    capsys.readouterr()
    get_model(cfg, "finetune", None, run, progress=False)
    assert "cannot be reused: model.safetensors has 1000 bytes" in capsys.readouterr().out
    assert _sha(weights) == before


def test_an_adapter_overwritten_in_place_is_noticed(built, capsys):
    """Same size, other content (e.g. NaN written over the weights): only the digest sees it."""
    cfg, run, folder = built
    adapter = folder / "adapter" / "adapter_model.safetensors"
    before, data = _sha(adapter), bytearray(adapter.read_bytes())
    data[-64:] = b"\xff" * 64  # float32 0xffffffff is a NaN
    adapter.write_bytes(bytes(data))
    capsys.readouterr()
    again = get_unlearned(cfg, "ga", "person", run, progress=False)
    assert "adapter/adapter_model.safetensors differs from what was written" in capsys.readouterr().out
    assert again == folder and _sha(adapter) == before


def test_a_corrupt_results_table_is_rebuilt(built, capsys):
    cfg, run, _ = built
    folder = get_eval(cfg, "finetune", "person", run, progress=False)
    table = folder / "results.parquet"
    good = pd.read_parquet(table)
    table.write_bytes(b"not a parquet file")
    capsys.readouterr()
    assert get_eval(cfg, "finetune", "person", run, progress=False) == folder
    assert "results.parquet" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(table), good)
    assert Run(cfg, run).evaluation("finetune", "person").results.equals(good)


def test_an_intact_stage_is_reused_without_a_notice(built, capsys):
    cfg, run, folder = built
    stamp = read_marker(folder)["seconds"]
    capsys.readouterr()
    assert get_unlearned(cfg, "ga", "person", run, progress=False) == folder
    assert "cannot be reused" not in capsys.readouterr().out and read_marker(folder)["seconds"] == stamp


def test_a_diverging_injection_is_one_line_and_stores_nothing(tmp_path):
    cfg = load_config("smoke", seed=0, overrides={**SMALL, "train": {"lr": 1e9}})
    with pytest.raises(ConfigError, match=r"(step \d+ \(learning rate|non-finite)"):
        get_model(cfg, "finetune", None, tmp_path, progress=False)
    assert not model_dir(cfg, "finetune", None, tmp_path).exists()


def test_an_unlearning_run_that_turns_nan_is_a_failed_stage_unless_kept(tmp_path):
    over = {**SMALL, "unlearn": {**SMALL["unlearn"], "lr": 1e30}}
    cfg = load_config("smoke", seed=0, overrides=over)
    with pytest.raises(ConfigError, match=r"unlearning ga/person stopped at step \d+: .*no result was stored"):
        get_unlearned(cfg, "ga", "person", tmp_path, progress=False)
    assert not any((tmp_path / "unlearn").rglob("*.parquet"))
    kept = load_config("smoke", seed=0, overrides={**over, "unlearn": {**over["unlearn"], "keep_stopped": True}})
    outcome = Run(kept, tmp_path).unlearned("ga", "person")
    assert outcome.status.startswith("stopped at step")
    assert set(outcome.results["status"]) == {outcome.status}
