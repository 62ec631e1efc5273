"""Configuration: profiles, overrides, validation messages, hashing."""

import dataclasses

import pytest

from pebench_core.config import ConfigError, load_config, parse_overrides
from pebench_core.hashing import config_hash
from pebench_core.world.settings import forget_count


def test_profiles_load_and_differ(checkpoint_folder):
    tiny, smoke = load_config("tiny"), load_config("smoke")
    paper = load_config("paper", overrides=[f"model.path={checkpoint_folder}"])
    assert tiny.world.n_people == 20 and tiny.world.n_events == 40
    assert paper.world.n_people == 200 and paper.world.n_events == 40
    assert smoke.world.n_people < tiny.world.n_people
    assert len({config_hash(c) for c in (tiny, smoke, paper)}) == 3


def test_overrides_are_typed():
    cfg = load_config(
        "tiny", seed=3, overrides=["world.forget_share=0.4", "unlearn.methods=ga,npo", "unlearn.lora_projector=false"]
    )
    assert cfg.seed == 3 and cfg.world.forget_share == 0.4
    assert cfg.unlearn.methods == ("ga", "npo") and cfg.unlearn.lora_projector is False


def test_yaml_profile(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("profile: smoke\nworld:\n  n_people: 12\n")
    cfg = load_config(p)
    assert cfg.profile == "smoke" and cfg.world.n_people == 12 and cfg.world.image_size == 32


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(profile="huge"), "unknown profile 'huge'"),
        (dict(overrides=["world.forget_share=1.5"]), "world.forget_share"),
        (dict(overrides=["world.forget_share=0"]), "strictly between 0 and 1"),
        (dict(overrides=["world.colour=red"]), "unknown field world.colour"),
        (dict(overrides=["unlearn.methods=ga,magic"]), "magic"),
        (dict(overrides=["unlearn.lr=-1"]), "unlearn.lr must be positive"),
        (dict(overrides=["unlearn.steps=0"]), "unlearn.steps must be at least 1"),
        (dict(overrides=["unlearn.targets=people"]), "allowed: person, event, both"),
        (dict(overrides=["eval.scorer=bleu"]), "eval.scorer"),
        (dict(overrides=["world.n_people=abc"]), "expected an integer"),
        (dict(overrides=["nonsense=1"]), "unknown configuration key"),
    ],
)
def test_bad_values_name_the_field(kwargs, needle):
    with pytest.raises(ConfigError, match=None) as info:
        load_config(**{"profile": "tiny", **kwargs})
    assert needle in str(info.value)


def test_bad_yaml_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("world: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_hash_tracks_every_field():
    a = load_config("tiny")
    b = dataclasses.replace(a, world=dataclasses.replace(a.world, forget_share=0.2))
    assert config_hash(a) == config_hash(load_config("tiny"))
    assert config_hash(a) != config_hash(b)
    assert config_hash(a.world) != config_hash(b.world)


def test_forget_count():
    assert forget_count(20, 0.1) == 2 and forget_count(40, 0.1) == 4 and forget_count(5, 0.01) == 1


def test_parse_overrides_rejects_garbage():
    with pytest.raises(ConfigError, match="section.field=value"):
        parse_overrides(["novalue"])


def test_notebook_parameters_and_overrides_are_one_route(checkpoint_folder):
    from pebench_core.config import notebook_overrides

    s = notebook_overrides("cpu", "auto", str(checkpoint_folder), "", ["unlearn.steps=80", "model.device=auto"])
    cfg = load_config("smoke", overrides=s)
    assert cfg.model.kind == "local" and cfg.model.path == str(checkpoint_folder)
    assert cfg.unlearn.steps == 80 and cfg.model.device == "auto"  # the overrides come last and win
    assert load_config("smoke", overrides=notebook_overrides()) == load_config("smoke")
    with pytest.raises(ConfigError, match="key=value"):
        notebook_overrides(overrides=["unlearn.steps"])


# -- seeds: an explicit seed (pebench --seed) wins, else the YAML file's or --set's, else 0


def test_seed_precedence(tmp_path):
    p = tmp_path / "seeded.yaml"
    p.write_text("profile: smoke\nseed: 7\n")
    assert load_config("smoke").seed == 0
    assert load_config(p).seed == 7
    assert load_config(p, overrides=["seed=5"]).seed == 5  # --set comes after the file
    assert load_config("smoke", overrides=["seed=5"]).seed == 5
    assert load_config(p, seed=2, overrides=["seed=5"]).seed == 2  # --seed wins
    assert load_config(p, seed=0).seed == 0  # an explicit 0 is a seed too


def test_cli_honours_the_profile_seed(tmp_path, monkeypatch):
    """`pebench run`: --seed when given, else the profile's / --set seed, else 0; --seeds wins."""
    import sys
    import types

    from pebench_core import cli

    ran = []
    fake = types.ModuleType("pebench_core.pipeline")  # no training: record the runs
    fake.run_all = lambda cfg, d: ran.append((cfg.seed, d))
    monkeypatch.setitem(sys.modules, "pebench_core.pipeline", fake)
    from pebench_core.stages import keys

    monkeypatch.setattr(keys, "seed_run_dir", lambda cfg, out, several: f"{out}/s{cfg.seed}" if several else str(out))
    p = tmp_path / "seeded.yaml"
    p.write_text("profile: smoke\nseed: 7\n")

    def seeds(*argv):
        ran.clear()
        assert cli.main(["run", "--out", "OUT", *argv]) == 0
        return ran[:]

    assert seeds("--profile", "smoke") == [(0, "OUT")]
    assert seeds("--profile", str(p)) == [(7, "OUT")]
    assert seeds("--profile", "smoke", "--set", "seed=5") == [(5, "OUT")]
    assert seeds("--profile", str(p), "--seed", "3") == [(3, "OUT")]
    assert seeds("--profile", str(p), "--seeds", "1,2") == [(1, "OUT/s1"), (2, "OUT/s2")]


def test_cli_checks_every_seed_before_running_one(monkeypatch, capsys):
    import sys
    import types

    from pebench_core import cli

    fake = types.ModuleType("pebench_core.pipeline")
    fake.run_all = lambda cfg, d: pytest.fail("ran before every seed was checked")
    monkeypatch.setitem(sys.modules, "pebench_core.pipeline", fake)
    assert cli.main(["run", "--profile", "smoke", "--seeds", "0,4294967296", "--out", "OUT"]) == 2
    assert "--seeds" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, expected",
    [("0,1,2", [0, 1, 2]), (" 3 , 4,", [3, 4]), ([5, 6], [5, 6]), ("4294967295", [4294967295])],
)
def test_parse_seed_list(text, expected):
    from pebench_core.ranges import parse_seed_list

    assert parse_seed_list(text) == expected


@pytest.mark.parametrize(
    "text, needle", [(",", "names no seed"), ("", "names no seed"), ("1,1", "distinct"), ("0,x", "integers"), ("-1", "between")]
)
def test_parse_seed_list_refuses(text, needle):
    from pebench_core.ranges import parse_seed_list

    with pytest.raises(ConfigError, match=needle) as info:
        parse_seed_list(text, "--seeds")
    assert str(info.value).startswith("--seeds")


# -- the per-field rules (config.RANGES)


def _numeric_fields():
    import typing

    from pebench_core.config import RunConfig

    out = {}
    top = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if dataclasses.is_dataclass(top[f.name]):
            hints = typing.get_type_hints(top[f.name])
            out.update(
                {f"{f.name}.{g.name}": hints[g.name] for g in dataclasses.fields(top[f.name]) if hints[g.name] in (int, float)}
            )
        elif top[f.name] in (int, float):
            out[f.name] = top[f.name]
    return out


def _number_list_fields():
    """Fields that hold a list of numbers (unlearn.lr_factors, robust.relearn_steps): each number meets the row."""
    import typing

    from pebench_core.config import RunConfig

    top = typing.get_type_hints(RunConfig)
    return {
        f"{f.name}.{g.name}"
        for f in dataclasses.fields(RunConfig)
        if dataclasses.is_dataclass(top[f.name])
        for g in dataclasses.fields(top[f.name])
        if typing.get_type_hints(top[f.name])[g.name] in (tuple[float, ...], tuple[int, ...])
    }


def test_every_numeric_field_has_a_rule():
    from pebench_core.config import RANGES

    assert _number_list_fields() == {"unlearn.lr_factors", "robust.relearn_steps"}
    assert set(RANGES) == set(_numeric_fields()) | _number_list_fields()


def _with(cfg, key, value):
    if "." not in key:
        return dataclasses.replace(cfg, **{key: value})
    section, name = key.split(".")
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{name: value})})


def _outside(rule, typ):
    """Values just outside a rule's range (the bound itself where it is open)."""
    step = 1 if typ is int else 0.5
    out = []
    if rule.lo is not None:
        out.append(typ(rule.lo) if rule.lo_open else typ(rule.lo - step))
    if rule.hi is not None:
        out.append(typ(rule.hi) if rule.hi_open else typ(rule.hi + step))
    return out


@pytest.mark.parametrize("key", sorted(_numeric_fields()))
def test_each_numeric_field_is_checked(key):
    """Out of range, not finite, or of the wrong type: refused, naming the field first."""
    from pebench_core.config import RANGES, validate

    typ = _numeric_fields()[key]
    cfg = load_config("smoke")
    bad = [*_outside(RANGES[key], typ), "3", True, None]
    bad += [1.5, float("inf")] if typ is int else [float("inf"), float("-inf"), float("nan")]
    for value in bad:
        with pytest.raises(ConfigError) as info:
            validate(_with(cfg, key, value))
        assert str(info.value).startswith(f"{key} must be"), (value, str(info.value))


@pytest.mark.parametrize(
    "setting, needle",
    [
        ("unlearn.steps=inf", "unlearn.steps: expected an integer, got 'inf'"),
        ("model.patch_size=0", "model.patch_size must be at least 1, got 0"),
        ("train.lr=inf", "train.lr: expected a finite number, got 'inf'"),
        ("train.warmup_share=nan", "train.warmup_share: expected a finite number"),
        ("train.warmup_share=1.01", "train.warmup_share must be between 0 and 1, got 1.01"),
        ("train.weight_decay=-5", "train.weight_decay must be non-negative, got -5.0"),
        ("world.n_events=41", "world.n_events must be between 2 and 40 (PEBench has 40 events), got 41"),
        ("world.image_size=8", "world.image_size must be between 16 and 1024 pixels, got 8"),
        ("model.max_length=-1", "model.max_length must be 0 (from the model) or a positive number of tokens"),
        ("eval.max_items=-1", "eval.max_items must be 0 (all) or a positive number, got -1"),
        ("unlearn.beta=0", "unlearn.beta must be positive, got 0.0"),
        ("seed=4294967296", "seed must be between 0 and 4294967295"),
        ("world.pope_questions=3", "world.pope_questions must be a non-negative even number"),
        ("model.vision_heads=5", "model.vision_hidden (32) must be a positive multiple of model.vision_heads (5)"),
        ("unlearn.methods=ga,npo,ga", "unlearn.methods names ga more than once"),
        ("unlearn.targets=event,event", "unlearn.targets names event more than once"),
        ("profile=paper", "--profile"),
        ("model.path=[1]", None),  # a string field takes any text from the command line
    ],
)
def test_rule_messages(setting, needle):
    if needle is None:
        assert load_config("smoke", overrides=[setting]).model.path == "[1]"
        return
    with pytest.raises(ConfigError) as info:
        load_config("smoke", overrides=[setting])
    assert needle in str(info.value)


def test_whole_numbers_and_bounds_are_accepted():
    cfg = load_config(
        "smoke",
        overrides=["unlearn.steps=1e1", "eval.max_items=0", "train.warmup_share=1", "train.weight_decay=0", "seed=4294967295"],
    )
    assert cfg.unlearn.steps == 10 and isinstance(cfg.unlearn.steps, int)
    assert cfg.eval.max_items == 0 and cfg.train.warmup_share == 1.0 and cfg.seed == 4294967295
    with pytest.raises(ConfigError, match="unlearn.steps: expected an integer, got '2.5'"):
        load_config("smoke", overrides=["unlearn.steps=2.5"])


def test_data_dir_must_be_a_folder(tmp_path):
    assert load_config("smoke", overrides=[f"world.data_dir={tmp_path}"]).world.data_dir == str(tmp_path)
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nope'} does not exist"):
        load_config("smoke", overrides=[f"world.data_dir={tmp_path / 'nope'}"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=f"{tmp_path / 'file'} is not a folder"):
        load_config("smoke", overrides=[f"world.data_dir={tmp_path / 'file'}"])


def test_yaml_file_must_be_utf8(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes("profile: smoke\nmodel:\n  path: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=f"profile file {p} is not UTF-8 text"):
        load_config(p)
    p.write_bytes("profile: smoke\nmodel:\n  path: café\n".encode("utf-8"))
    assert load_config(p).model.path == "café"


def test_yaml_errors_are_one_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("world: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert "\n" not in str(info.value) and "line 2" in str(info.value)
