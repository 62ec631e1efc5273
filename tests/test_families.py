"""Every supported model family, driven through the adapter, the pipeline and chapters 2 and 4.

A family is supported when a checkpoint of it goes through the real path, so each test here
starts from a tiny random-weight checkpoint saved in that family's own layout
(``tests/model_families.py``: the architecture's config classes, its processor, its chat
template and image tokens) and loads it back as a user's checkpoint is loaded
(``model.kind=local``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from model_families import FAMILIES as FIXTURE_FAMILIES  # noqa: E402
from model_families import build_checkpoint  # noqa: E402

from pebench_core import forward as F  # noqa: E402
from pebench_core import models as M  # noqa: E402
from pebench_core.book import execute_chapters  # noqa: E402
from pebench_core.config import ConfigError  # noqa: E402
from pebench_core.data import load_dataset, world_texts  # noqa: E402
from pebench_core.families import FAMILIES  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))
ROOT = Path(__file__).resolve().parent.parent


def test_every_family_of_the_table_has_a_fixture():
    assert {f.name for f in FAMILIES} == set(FIXTURE_FAMILIES)


@pytest.fixture(scope="module")
def ds(smoke_world_dir):
    return load_dataset(smoke_world_dir)


@pytest.fixture(scope="module")
def checkpoints(ds, tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    texts = world_texts(ds)
    return {f: build_checkpoint(f, root / f, texts, image_size=ds.image_size, seed=0) for f in FIXTURE_FAMILIES}


def _bundle(checkpoints, family):
    return M.load_bundle(checkpoints[family], device="cpu", dtype="float32")


def _qa(ds, n=6):
    from pebench_core.data import event_qa, person_qa

    items = ds.items_where(role="train")[:n]
    return person_qa(items[: n // 2], ds) + event_qa(items[n // 2 :], ds)


@pytest.mark.parametrize("family", FIXTURE_FAMILIES)
def test_the_table_finds_the_parts(checkpoints, family):
    b = _bundle(checkpoints, family)
    assert b.family.name == family
    parts = M.describe(b).set_index("part")["parameters"]
    assert parts["vision tower"] > 0 and parts["projector"] > 0 and parts["language model"] > 0
    targets = M.lora_targets(b.model, projector=True)
    projector_linears = [
        n for n, m in b.model.named_modules() if isinstance(m, torch.nn.Linear) and b.family.role_of(n) == "projector"
    ]
    assert {t for t in targets if b.family.role_of(t) == "projector"} == set(projector_linears)
    assert not any(b.family.role_of(t) == "vision tower" for t in targets)
    peft = M.add_lora(b, r=4, alpha=8, projector=True)
    trainable = {n for n, p in peft.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    M.remove_lora(peft)


@pytest.mark.parametrize("family", FIXTURE_FAMILIES)
def test_padded_path_is_the_models_own_loss_and_ignores_padding(checkpoints, ds, family):
    """The answer-position logits give the model's own loss, and an item's log-likelihood is
    the same alone as in a padded batch with every extra input (no leak across rows)."""
    b = _bundle(checkpoints, family)
    qa = _qa(ds)
    imgs = [ds.image(q.item_id) for q in qa]
    batch = M.encode_train(b, imgs, [q.question for q in qa], [q.answer for q in qa])
    with torch.no_grad():
        own = b.model(**batch).loss
        lp, n = F.sequence_logprobs(b, batch)
    assert torch.allclose(-lp.sum() / n.sum(), own, atol=1e-5)
    for i in (0, len(qa) - 1):
        one = M.encode_train(b, imgs[i : i + 1], [qa[i].question], [qa[i].answer])
        with torch.no_grad():
            lp1, _ = F.sequence_logprobs(b, one)
        assert torch.allclose(lp1[0], lp[i], atol=1e-4), (family, i, float(lp1[0]), float(lp[i]))


@pytest.mark.parametrize("family", FIXTURE_FAMILIES)
def test_generation_does_not_depend_on_the_batch(checkpoints, ds, family):
    b = _bundle(checkpoints, family)
    qa = _qa(ds)
    imgs, qs = [ds.image(q.item_id) for q in qa], [q.question for q in qa]
    one = M.generate(b, imgs, qs, max_new_tokens=5, batch_size=1)
    many = M.generate(b, imgs, qs, max_new_tokens=5, batch_size=4)
    assert one == many


def test_llava_packed_path_equals_the_full_forward(checkpoints, ds):
    """The packed shortcut is used for LLaVA-1.5 only because it gives the model's own numbers."""
    from pebench_core.encoding import collate, encode_qa
    from pebench_core.forward import image_features
    from pebench_core.forward import answer_pass

    b = _bundle(checkpoints, "llava")
    qa = _qa(ds)
    enc = encode_qa(b, qa, lambda q: ds.image(q.item_id))
    refusal = encode_qa(b, [dataclasses.replace(q, answer="I don't know.") for q in qa], lambda q: ds.image(q.item_id))
    for e in (enc, refusal):
        e.features = image_features(b, e.pixel_values)
    idx = list(range(len(qa)))
    with torch.no_grad():
        packed = answer_pass(b.model, [(enc, idx), (refusal, idx)], b.pad_token_id, b.device, b.dtype, {1: 0})
        for e, (lg, tg, rw, _) in zip((enc, refusal), packed):
            full, tf, rf = F.full_answer_logits(b.model, collate(e, idx, b.pad_token_id))
            assert torch.equal(tg, tf) and torch.equal(rw, rf)
            assert torch.allclose(lg, full, atol=1e-4)


def test_unsupported_architecture_and_missing_template_are_clear_errors(checkpoints, tmp_path):
    import shutil

    src = checkpoints["llava"]
    odd = tmp_path / "odd"
    shutil.copytree(src, odd)
    cfg = json.loads((odd / "config.json").read_text())
    cfg["model_type"] = "paligemma"
    cfg["architectures"] = ["PaliGemmaForConditionalGeneration"]
    (odd / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="PaliGemmaForConditionalGeneration.*supported families: LLaVA-1.5"):
        M.load_bundle(odd)

    bare = tmp_path / "bare"
    shutil.copytree(src, bare)
    for name in ("chat_template.jinja", "chat_template.json"):
        (bare / name).unlink(missing_ok=True)
    for name in ("processor_config.json", "tokenizer_config.json"):
        p = bare / name
        if p.is_file():
            d = json.loads(p.read_text())
            d.pop("chat_template", None)
            p.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match="chat template"):
        M.load_bundle(bare)


def test_an_image_too_large_for_max_length_stops_before_training(checkpoints, ds):
    from pebench_core.encoding import encode_qa

    b = _bundle(checkpoints, "llava")
    with pytest.raises(ConfigError, match="model.max_length is 20"):
        encode_qa(b, _qa(ds), lambda q: ds.image(q.item_id), max_length=20)
    assert M.context_length(b, 0) == b.model.config.text_config.max_position_embeddings


# ------------------------------------------------------------------- the whole path


def _profile(tmp_path: Path, family: str, checkpoint: Path) -> Path:
    """The smoke profile on a local checkpoint, with a reduced method set: what the chapters
    need of this family (one target, GA and NPO: a method with and one without a reference)."""
    import yaml

    p = tmp_path / f"{family}.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "profile": "smoke",
                "model": {"kind": "local", "path": str(checkpoint), "device": "cpu"},
                "train": {"finetune_epochs": 1, "lora_r": 4, "lora_alpha": 8},
                "unlearn": {"methods": ["ga", "npo"], "targets": ["person"], "steps": 2, "eval_every": 2},
                "eval": {"max_items": 6, "max_new_tokens": 6},
            }
        )
    )
    return p


@pytest.mark.notebooks
@pytest.mark.parametrize("family", FIXTURE_FAMILIES)
def test_pebench_run_and_chapters_2_and_4(checkpoints, smoke_world_dir, tmp_path, family):
    run = tmp_path / "run"
    profile = _profile(tmp_path, family, checkpoints[family])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-m", "pebench_core.cli", "run", "--profile", str(profile), "--out", str(run)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import pandas as pd

    res = pd.read_parquet(run / "results" / "results.parquet")
    assert set(res["method"]) == {"finetune", "goal", "ga", "npo"}
    assert res["value"].notna().all()
    # As `pebench book` executes them once the run's stages are built: side by side.
    chapters = execute_chapters(
        profile=str(profile),
        seed=0,
        run_dir=str(run),
        only=["02_injection", "04_npo"],
        extra={"model_path": str(checkpoints[family]), "device": "cpu"},
        out_dir=tmp_path / "chapters",
        log=lambda *_: None,
        kernels=2,
    )
    assert [c.output for c in chapters] == ["02_injection", "04_npo"]
    for ch in chapters:
        out = json.loads((tmp_path / "chapters" / f"{ch.output}.ipynb").read_text())
        errors = [
            o for c in out["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []) if o["output_type"] == "error"
        ]
        assert not errors, f"{family} {ch.output}: {errors[0]['ename']}: {errors[0]['evalue']}"
