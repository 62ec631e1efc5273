"""Configuration: profiles, overrides, validation messages, hashing."""

import dataclasses

import pytest

from pebench_core.config import ConfigError, config_hash, forget_count, load_config, parse_overrides


def test_profiles_load_and_differ():
    tiny, smoke, paper = load_config("tiny"), load_config("smoke"), load_config("paper", overrides=["model.path=/x"])
    assert tiny.world.n_people == 20 and tiny.world.n_events == 40
    assert paper.world.n_people == 200 and paper.world.n_events == 40
    assert smoke.world.n_people < tiny.world.n_people
    assert len({config_hash(c) for c in (tiny, smoke, paper)}) == 3


def test_overrides_are_typed():
    cfg = load_config(
        "tiny", seed=3, overrides=["world.forget_share=0.2", "unlearn.methods=ga,npo", "unlearn.lora_projector=false"]
    )
    assert cfg.seed == 3 and cfg.world.forget_share == 0.2
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


def test_notebook_parameters_and_overrides_are_one_route():
    from pebench_core.config import notebook_overrides

    s = notebook_overrides("cpu", "auto", "/models/x", "", ["unlearn.steps=80", "model.device=auto"])
    cfg = load_config("smoke", overrides=s)
    assert cfg.model.kind == "local" and cfg.model.path == "/models/x"
    assert cfg.unlearn.steps == 80 and cfg.model.device == "auto"  # the overrides come last and win
    assert load_config("smoke", overrides=notebook_overrides()) == load_config("smoke")
    with pytest.raises(ConfigError, match="key=value"):
        notebook_overrides(overrides=["unlearn.steps"])
