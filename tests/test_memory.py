"""The memory plan (pebench_core.memory): what a 7B LLaVA needs per stage, and the estimate
against what a training step of a tiny checkpoint really holds."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from model_families import build_checkpoint, build_llava_7b_config_folder  # noqa: E402

from pebench_core import memory, models  # noqa: E402
from pebench_core.config import ConfigError, load_config  # noqa: E402
from pebench_core.data import event_qa, load_dataset, person_qa, world_texts  # noqa: E402


@pytest.fixture(scope="module")
def ds(smoke_world_dir):
    return load_dataset(smoke_world_dir)


@pytest.fixture(scope="module")
def llava_7b(ds, tmp_path_factory):
    return build_llava_7b_config_folder(tmp_path_factory.mktemp("7b") / "llava-1.5-7b", world_texts(ds))


def _paper_plans(folder, **sets):
    cfg = load_config("paper", overrides=[f"model.path={folder}"] + [f"{k}={v}" for k, v in sets.items()], weights=False)
    b = models.load_skeleton(folder, device="cpu", dtype="bfloat16")
    prompt, image = models.prompt_tokens(b, cfg.world.image_size)
    shape = memory.model_shape(b.base_model.config, torch.bfloat16)
    return shape, prompt, image, {p.stage.split()[0]: p for p in memory.plan(cfg, shape, prompt, image, 80 * memory.GiB, "cuda")}


def test_a_7b_llava_fits_one_gpu_in_the_paper_profile(llava_7b):
    shape, prompt, image, plans = _paper_plans(llava_7b)
    assert 7.0e9 < shape.total < 7.1e9  # LLaVA-1.5-7B: 7.06 B parameters
    assert image == 576 and 576 < prompt < 640
    assert plans["inject"].total <= 80 * memory.GiB
    assert plans["unlearn"].total <= 24 * memory.GiB
    assert plans["evaluate"].total <= 24 * memory.GiB
    # LoRA r=16 on every attention and MLP projection of the decoder + the projector
    assert 39e6 < shape.lora(16) < 41e6


def test_full_fine_tuning_without_checkpointing_is_planned_larger(llava_7b):
    _, _, _, lora = _paper_plans(llava_7b)
    _, _, _, full = _paper_plans(llava_7b, **{"train.adapter": "full", "train.gradient_checkpointing": "off"})
    assert full["inject"].rows["trainable state"] > 40 * lora["inject"].rows["trainable state"]
    assert full["inject"].rows["activations"] > 10 * lora["inject"].rows["activations"]
    # 7B full fine-tuning in bf16 with AdamW: 13 GiB of weights + 38 GiB of gradient and moments
    assert 60 * memory.GiB < full["inject"].total <= 80 * memory.GiB


def test_a_stage_that_cannot_fit_is_refused_with_the_numbers(ds, tmp_path):
    ckpt = build_checkpoint("llava", tmp_path / "llava", world_texts(ds), image_size=ds.image_size)
    cfg = load_config("smoke", overrides=["model.kind=local", f"model.path={ckpt}", "model.device=cpu"])
    b = models.load_bundle(ckpt, device="cpu", dtype="float32")
    plans = memory.stage_plans(cfg, b, budget=1024.0)  # a 1 KiB device
    assert not any(p.fits for p in plans)
    import unittest.mock as mock

    with mock.patch.object(memory, "device_memory", return_value=1024.0):
        with pytest.raises(ConfigError, match=r"the finetune stage needs about .* GiB but cpu has"):
            memory.check_stage(cfg, b, "finetune")


def test_the_activation_estimate_is_near_what_autograd_keeps(ds, tmp_path):
    """The plan's activation term against the bytes autograd really saves in one LoRA
    micro-batch of a tiny LLaVA (the benchmark does every family)."""
    ckpt = build_checkpoint("llava", tmp_path / "llava", world_texts(ds), image_size=ds.image_size)
    b = models.load_bundle(ckpt, device="cpu", dtype="float32")
    qa = person_qa(ds.items_where(role="train")[:4], ds) + event_qa(ds.items_where(role="train")[4:8], ds)
    from pebench_core.encoding import collate, encode_qa
    from pebench_core.forward import answer_logits

    enc = encode_qa(b, qa, lambda q: ds.image(q.item_id))
    idx = list(range(len(enc)))
    batch = collate(enc, idx, b.pad_token_id)
    peft = models.add_lora(b, r=8, alpha=16, projector=True)
    peft.train()
    seen: dict[int, int] = {}

    def pack(t):
        if not isinstance(t, torch.nn.Parameter):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        answer_logits(peft, batch)
    shape = memory.model_shape(b.base_model.config, torch.float32)
    answers = int(sum((enc.labels[i] != -100).sum() for i in idx))
    est = memory.activation_bytes(shape, len(idx), batch["input_ids"].shape[1], False, 4) + memory.logit_bytes(shape, answers)
    measured = sum(seen.values())
    assert 0.5 < est / measured < 2.0, (est, measured)


def test_pebench_plan_reads_no_weights_and_refuses_what_does_not_fit(llava_7b, capsys):
    from pebench_core.cli import main

    args = ["plan", "--profile", "paper", "--set", f"model.path={llava_7b}"]
    assert main(args + ["--memory-gb", "80"]) == 0
    out = capsys.readouterr().out
    assert "inject (finetune, goal)" in out and "gradient checkpointing on" in out and "DOES NOT FIT" not in out
    assert main(args + ["--memory-gb", "16"]) == 2  # 13 GiB of bf16 weights + the rest
    captured = capsys.readouterr()
    assert "DOES NOT FIT" in captured.out and "would not fit" in captured.err


def test_full_fine_tuning_of_a_7b_fits_8_gpus_with_fsdp(llava_7b):
    cfg = load_config("paper", overrides=[f"model.path={llava_7b}", "train.adapter=full"], weights=False)
    b = models.load_skeleton(llava_7b, device="cpu", dtype="bfloat16")
    one = memory.plan_for(cfg, b, 40 * memory.GiB, "cuda", processes=1)[0]
    eight = memory.plan_for(cfg, b, 40 * memory.GiB, "cuda", processes=8)[0]
    assert not one.fits and eight.fits
    assert eight.rows["trainable state"] == pytest.approx(one.rows["trainable state"] / 8)
