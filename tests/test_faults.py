"""Fault injection: an artifact damaged after it was written is noticed and rebuilt (to the
same bytes), never reused; a stage whose training diverges stores nothing and says so in
one line."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from pebench_core.config import ConfigError, load_config
from pebench_core.run import Run
from pebench_core.stages import get_eval, get_model, get_unlearned, get_world, model_dir
from pebench_core.storage import read_marker
from pebench_core.world import world_digest

SMALL = {"unlearn": {"targets": ["person"], "methods": ["ga"]}}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every stage of this module on one torch thread, in this process and in the runs it
    starts (``_env`` passes the count on): a pooled ``pebench run`` trains in workers of one
    thread, and weights summed in another order differ in their last bits, so the resumed
    run's weights can equal the fixture's only when both count the same threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


# --- interrupted runs: Ctrl-C, kill -9, a full disk, through the command line ------------------
ROOT = Path(__file__).resolve().parent.parent
RUN_SMALL = ["run", "--profile", "smoke", "--set", "unlearn.methods=ga", "--set", "unlearn.targets=person"]


def _env(**extra) -> dict:
    # the thread count of this process, so that the subprocess's numbers can equal the fixture's
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg", "TQDM_DISABLE": "1"}
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra.pop("PYTHONPATH", ""), str(ROOT)]))
    return {**env, **extra}


def _default_sigint() -> None:
    # A shell without job control starts a background job (`make test &`) with SIGINT
    # ignored, and Python keeps an ignored SIGINT ignored: the Ctrl-C test would then see a run
    # that never stops. The run under test gets the default, as a terminal's foreground job has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(argv, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pebench_core.cli", *argv],
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
        start_new_session=True,  # a group of its own, as a terminal's job: Ctrl-C reaches its workers too
    )


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp-*") if p.is_dir()]


def _wait_for_temp(proc: subprocess.Popen, folder: Path, timeout: float = 300) -> Path:
    """Block until a stage under ``folder`` is being written (its temporary folder exists)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = _temps(folder) if folder.is_dir() else []
        if found:
            return found[0]
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {folder} was written: {proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no stage under {folder} started within {timeout}s")


def _one_error_line(stderr: str, command: str = "run") -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and lines, stderr
    assert lines[-1].startswith(f"pebench {command}: "), stderr
    return lines[-1]


def test_ctrl_c_then_kill_9_mid_stage_then_resume_gives_the_same_results(built, tmp_path):
    cfg, _, folder = built
    out = tmp_path / "run"
    pool = {"PEBENCH_WORKERS": "2"}  # the stages in worker processes, as `make book` builds them
    # Ctrl-C while the base model trains: one line, and no half-written folder
    proc = _cli([*RUN_SMALL, "--out", str(out)], **pool)
    _wait_for_temp(proc, out / "models" / "base-full")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the run and its workers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in _one_error_line(err) and _temps(out) == []
    # kill -9 while fine-tuning: nothing can clean up, so a temporary folder stays behind ...
    proc = _cli([*RUN_SMALL, "--out", str(out)], **pool)
    left = _wait_for_temp(proc, out / "models" / "finetune")
    proc.kill()
    proc.communicate(timeout=60)
    assert left.is_dir() and not (out / "models" / "finetune" / left.name.split(".")[1]).exists()
    # ... and the same command resumes: the stale folder swept, every number as without interruptions
    proc = _cli([*RUN_SMALL, "--out", str(out)], **pool)
    stdout, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "[models] base-full" not in stdout  # the base that finished before the kill is reused
    assert _temps(out) == []
    weights = "model.safetensors"
    assert _sha(model_dir(cfg, "finetune", None, out) / weights) == _sha(model_dir(cfg, "finetune", None, built[1]) / weights)
    again = get_unlearned(cfg, "ga", "person", out, progress=False)
    assert _sha(again / "adapter" / "adapter_model.safetensors") == _sha(folder / "adapter" / "adapter_model.safetensors")
    pd.testing.assert_frame_equal(pd.read_parquet(again / "results.parquet"), pd.read_parquet(folder / "results.parquet"))


FULL_DISK = """
import errno, os
if os.environ.get("FILL_AFTER"):  # the device fills after this many images were saved
    from PIL import Image
    save, calls = Image.Image.save, [0]
    def full(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] > int(os.environ["FILL_AFTER"]):
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, *args, **kwargs)
    Image.Image.save = full
if os.environ.get("FILL_WEIGHTS"):  # the device fills when the first weights are written
    import safetensors.torch
    def full_weights(*args, **kwargs):
        raise RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                           'message: "No space left on device" })')
    safetensors.torch.save_file = full_weights
"""


@pytest.mark.parametrize(
    ("argv", "env", "folder"),
    [
        (["world", "--profile", "smoke"], {"FILL_AFTER": "20"}, "world"),
        ([*RUN_SMALL], {"FILL_WEIGHTS": "1"}, "models/init"),
    ],
    ids=["world-images", "model-weights"],
)
def test_a_full_disk_is_one_line_naming_the_folder(tmp_path, argv, env, folder):
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(FULL_DISK)
    out = tmp_path / "out"
    proc = _cli([*argv, "--out", str(out)], PYTHONPATH=str(tmp_path / "hooks"), **env)
    _, err = proc.communicate(timeout=300)
    line = _one_error_line(err, argv[0])
    assert proc.returncode == 2, err
    where = out.parent if argv[0] == "world" else out / folder
    assert f"no space left on the device of {where} while writing" in line and " are free" in line, line
    assert _temps(tmp_path) == [] and not (out / "world.json").exists()
