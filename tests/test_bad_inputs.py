"""Bad command lines: each stops before any work with one line that names the parameter or
file, a non-zero exit status and no traceback, and writes nothing (issue 13, item 2).

Every case runs ``python -m pebench_core.cli`` in a subprocess: validation happens before the
world or any stage is built, so a case takes the seconds of the imports only.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "PYTHONHASHSEED": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "MPLBACKEND": "Agg",
    "PYTHONPATH": str(ROOT),
}

# YAML profiles written to tmp_path/<name> (bytes: one is deliberately not UTF-8)
YAMLS = {
    "latin1.yaml": b"profile: smoke\nmodel:\n  path: caf\xe9\n",
    "inf_lr.yaml": b"profile: smoke\ntrain:\n  lr: .inf\n",
    "nan_int.yaml": b"profile: smoke\nworld:\n  n_people: .nan\n",
    "neg_decay.yaml": b"profile: smoke\ntrain:\n  weight_decay: -5\n",
    "dup_methods.yaml": b"profile: smoke\nunlearn:\n  methods: [ga, ga]\n",
    "map_path.yaml": b"profile: smoke\nmodel:\n  path: {a: 1}\n",
    "bool_lr.yaml": b"profile: smoke\nunlearn:\n  lr: true\n",
    "broken.yaml": b"profile: smoke\nworld: [1, 2\n",
    "list.yaml": b"- profile\n- smoke\n",
    "base.yaml": b"profile: huge\n",
    "section.yaml": b"profile: smoke\nworld: 5\n",
    "neg_seed.yaml": b"profile: smoke\nseed: -1\n",
    "text_seed.yaml": b"profile: smoke\nseed: seven\n",
    "data_dir.yaml": b"profile: smoke\nworld:\n  data_dir: /no/such/pebench\n",
}

RUN = ["run", "--profile", "smoke", "--out", "{out}"]
TINY_RUN = ["run", "--profile", "tiny", "--out", "{out}"]
WORLD = ["world", "--profile", "smoke", "--out", "{out}"]
PLAN = ["plan", "--profile", "smoke"]

# (command line, what the last line of stderr must contain)
CASES = [
    # numbers that are not finite, or out of their field's range
    (RUN + ["--set", "unlearn.steps=inf"], "unlearn.steps"),
    (RUN + ["--set", "unlearn.steps=nan"], "unlearn.steps"),
    (RUN + ["--set", "unlearn.steps=0"], "unlearn.steps must be at least 1"),
    (RUN + ["--set", "model.patch_size=0"], "model.patch_size must be at least 1"),
    (RUN + ["--set", "model.vision_layers=0"], "model.vision_layers"),
    (RUN + ["--set", "model.text_heads=-2"], "model.text_heads"),
    (RUN + ["--set", "train.lr=inf"], "train.lr"),
    (RUN + ["--set", "train.warmup_share=nan"], "train.warmup_share"),
    (RUN + ["--set", "train.warmup_share=1.5"], "train.warmup_share must be between 0 and 1"),
    (RUN + ["--set", "train.weight_decay=-5"], "train.weight_decay must be non-negative"),
    (RUN + ["--set", "train.replay_share=2"], "train.replay_share"),
    (RUN + ["--set", "train.vision_epochs=-1"], "train.vision_epochs"),
    (RUN + ["--set", "unlearn.beta=inf"], "unlearn.beta"),
    (RUN + ["--set", "unlearn.retain_weight=-1"], "unlearn.retain_weight"),
    (RUN + ["--set", "unlearn.lr=true"], "unlearn.lr"),
    (RUN + ["--set", "unlearn.lr=inf"], "unlearn.lr"),
    (RUN + ["--set", "world.forget_share=nan"], "world.forget_share"),
    # a forget set too small for a verdict, or no retain side
    (TINY_RUN + ["--set", "world.forget_share=0.1"], "forgets 2 of the 20 people, fewer than findings.min_people=6"),
    (TINY_RUN + ["--set", "world.n_events=10"], "forgets 3 of the 10 events, fewer than findings.min_events=8"),
    (RUN + ["--set", "findings.min_people=3"], "raise world.forget_share to at least 0.26"),
    (RUN + ["--set", "findings.min_people=10"], "findings.min_people=10 needs at least 11 people"),
    (RUN + ["--set", "world.forget_share=0.99"], "would forget every person or every event"),
    (RUN + ["--set", "findings.paper_methods=ga,nope"], "findings.paper_methods has unknown entries ['nope']"),
    (RUN + ["--set", "world.n_people=1e400"], "world.n_people"),
    (RUN + ["--set", "eval.batch_size=0"], "eval.batch_size"),
    (PLAN + ["--set", "train.lr=-inf"], "train.lr"),
    (WORLD + ["--set", "model.patch_size=0"], "model.patch_size"),
    # keys that are not fields, or not settable
    (RUN + ["--set", "profile=paper"], "--profile"),
    (RUN + ["--set", "seed=-1"], "seed must be between 0 and"),
    (RUN + ["--set", "world.colour=red"], "world.colour"),
    (RUN + ["--set", "unlearn.steps"], "unlearn.steps"),
    (RUN + ["--set", "a.b.c=1"], "a.b.c"),
    # lists with a name twice
    (RUN + ["--set", "unlearn.methods=ga,ga"], "unlearn.methods names ga more than once"),
    (RUN + ["--set", "unlearn.targets=person,person"], "unlearn.targets names person more than once"),
    # the data folder
    (RUN + ["--set", "world.data_dir={tmp}/missing"], "{tmp}/missing does not exist"),
    (WORLD + ["--set", "world.data_dir={tmp}/missing"], "{tmp}/missing does not exist"),
    (WORLD + ["--set", "world.data_dir={tmp}/latin1.yaml"], "{tmp}/latin1.yaml is not a folder"),
    (WORLD + ["--set", "world.data_dir={tmp}"], "needs no `pebench world` step"),
    # run folders that cannot be one
    (["run", "--profile", "smoke", "--out", "{tmp}/latin1.yaml"], "latin1.yaml exists and is not a folder"),
    (["run", "--profile", "smoke", "--out", "{tmp}/latin1.yaml/run"], "latin1.yaml exists and is not a folder"),
    (["world", "--profile", "smoke", "--out", "{tmp}/latin1.yaml/w"], "latin1.yaml exists and is not a folder"),
    # seeds
    (RUN + ["--seeds", ","], "--seeds names no seed"),
    (RUN + ["--seeds", ""], "--seeds names no seed"),
    (RUN + ["--seeds", "1,1"], "--seeds must be distinct"),
    (RUN + ["--seeds", "0,x"], "--seeds must be comma-separated integers"),
    (RUN + ["--seeds", "0,-1"], "--seeds"),
    (RUN + ["--seed", "-3"], "seed must be between 0 and"),
    (RUN + ["--seed", "abc"], "--seed"),
    # plan's own arguments
    (PLAN + ["--processes", "0"], "--processes must be at least 1"),
    (PLAN + ["--memory-gb", "nan"], "--memory-gb"),
    (PLAN + ["--memory-gb", "-1"], "--memory-gb"),
    # YAML profiles
    (["run", "--profile", "{tmp}/latin1.yaml", "--out", "{out}"], "{tmp}/latin1.yaml is not UTF-8 text"),
    (["world", "--profile", "{tmp}/inf_lr.yaml", "--out", "{out}"], "{tmp}/inf_lr.yaml: train.lr"),
    (["run", "--profile", "{tmp}/nan_int.yaml", "--out", "{out}"], "{tmp}/nan_int.yaml: world.n_people"),
    (["run", "--profile", "{tmp}/neg_decay.yaml", "--out", "{out}"], "{tmp}/neg_decay.yaml: train.weight_decay must be"),
    (["run", "--profile", "{tmp}/dup_methods.yaml", "--out", "{out}"], "{tmp}/dup_methods.yaml: unlearn.methods names ga"),
    (["run", "--profile", "{tmp}/map_path.yaml", "--out", "{out}"], "model.path: expected a string"),
    (["run", "--profile", "{tmp}/bool_lr.yaml", "--out", "{out}"], "{tmp}/bool_lr.yaml: unlearn.lr"),
    (["run", "--profile", "{tmp}/broken.yaml", "--out", "{out}"], "{tmp}/broken.yaml is not valid YAML"),
    (["run", "--profile", "{tmp}/list.yaml", "--out", "{out}"], "{tmp}/list.yaml must hold a mapping"),
    (["run", "--profile", "{tmp}/base.yaml", "--out", "{out}"], "unknown base profile 'huge'"),
    (["run", "--profile", "{tmp}/section.yaml", "--out", "{out}"], "'world' must be a mapping"),
    (["run", "--profile", "{tmp}/neg_seed.yaml", "--out", "{out}"], "{tmp}/neg_seed.yaml: seed must be between 0 and"),
    (["run", "--profile", "{tmp}/text_seed.yaml", "--out", "{out}"], "seed: expected an integer"),
    (["run", "--profile", "{tmp}/data_dir.yaml", "--out", "{out}"], "{tmp}/data_dir.yaml: world.data_dir must be"),
    (["run", "--profile", "{tmp}/absent.yaml", "--out", "{out}"], "{tmp}/absent.yaml does not exist"),
    # the file's bad seed is replaced by --seed: what stops the run is the command line's value
    (
        ["run", "--profile", "{tmp}/neg_seed.yaml", "--seed", "1", "--set", "unlearn.steps=0", "--out", "{out}"],
        "error: unlearn.steps must be at least 1",
    ),
    (["book", "--profile", "smoke", "--no-html", "--set", "unlearn.steps=nan"], "unlearn.steps"),
    # a local checkpoint that cannot be one: refused by validation, before the world is built
    (RUN + ["--set", "model.kind=local"], "model.path must name a local checkpoint folder"),
    (RUN + ["--set", "model.kind=local", "--set", "model.path={tmp}/nowhere"], "model path {tmp}/nowhere does not exist"),
    (RUN + ["--set", "model.kind=local", "--set", "model.path=llava-hf/llava-1.5-7b-hf"], "it looks like a hub id"),
    (RUN + ["--set", "model.kind=local", "--set", "model.path={tmp}/latin1.yaml"], "is not a folder"),
    (RUN + ["--set", "model.kind=local", "--set", "model.path={tmp}/empty_ckpt"], "empty_ckpt has no config.json"),
    (RUN + ["--set", "model.kind=local", "--set", "model.path={tmp}/bin_ckpt"], "holds no *.safetensors weights (found"),
    (RUN + ["--set", "model.kind=local", "--set", "model.path={tmp}/gpt2_ckpt"], "is a 'gpt2' model"),
    (["book", "--profile", "smoke", "--no-html", "--set", "model.kind=local", "--set", "model.path={tmp}/gpt2_ckpt"], "'gpt2'"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_inputs")
    for name, content in YAMLS.items():
        (tmp / name).write_bytes(content)
    (tmp / "empty_ckpt").mkdir()
    (tmp / "bin_ckpt").mkdir()
    (tmp / "bin_ckpt" / "config.json").write_text('{"model_type": "llava"}')
    (tmp / "bin_ckpt" / "pytorch_model.bin").write_bytes(b"pickle")
    (tmp / "gpt2_ckpt").mkdir()
    (tmp / "gpt2_ckpt" / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    (tmp / "gpt2_ckpt" / "model.safetensors").write_bytes(b"")
    return tmp


def _ids():
    return [
        " ".join(a.replace("{tmp}/", "") for a in argv if a not in ("{out}", "--out", "--profile", "smoke")) for argv, _ in CASES
    ]


@pytest.mark.parametrize("argv, needle", CASES, ids=_ids())
def test_bad_input_is_one_line_before_any_work(argv, needle, files, tmp_path):
    out = tmp_path / "out"
    fill = {"tmp": str(files), "out": str(out)}
    argv = [a.format(**fill) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "pebench_core.cli", *argv],
        cwd=tmp_path,  # `pebench run` without --out would write runs/ here
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert lines and lines[-1].startswith(f"pebench {argv[0]}: error: "), proc.stderr
    assert needle.format(**fill) in lines[-1], proc.stderr
    assert not out.exists() and not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.parametrize("value", ["0", "abc", "-2"])
def test_a_bad_worker_count_stops_before_any_stage_folder(value, tmp_path):
    """``PEBENCH_WORKERS`` is a setting like the others: checked with the configuration."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "pebench_core.cli", *[a.format(out=out) for a in RUN]],
        cwd=tmp_path, env={**ENV, "PEBENCH_WORKERS": value}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"PEBENCH_WORKERS={value!r}: expected a whole number of at least 1" in lines[-1], proc.stderr
    assert not out.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("overrides", [5, 2.5, {"unlearn.steps": 80}, ["unlearn.steps"]])
def test_a_chapter_given_overrides_that_are_no_settings_names_the_parameter(overrides):
    from pebench_core.config import ConfigError, notebook_overrides
    from pebench_core.run import open_chapter

    with pytest.raises(ConfigError, match="overrides must be"):
        notebook_overrides(overrides=overrides)
    with pytest.raises(ConfigError, match="overrides must be"):
        open_chapter("smoke", run_dir="/nonexistent/never-written", overrides=overrides)
