"""Tests of the model adapter (pebench_core.models): build, save/load, batching, generation, LoRA."""

from __future__ import annotations

import dataclasses
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from pebench_core import forward as F
from pebench_core import models as M
from pebench_core.config import ConfigError, load_config

torch.set_num_threads(min(2, torch.get_num_threads()))

IMAGE_SIZE = 32
NAMES = ["Alice Montgomery", "Boris Kettleworth", "Chen Ravindra", "Dalia Okonkwo-Fenn"]
DESCRIPTIONS = [
    "The person is jogging along a path in a green park on a sunny morning.",
    "The person is attending a concert, with a bright stage, lights and a cheering crowd.",
    "The person is relaxing on a sandy beach with waves and a striped umbrella.",
]
QUESTIONS = ["Who is the person in the image?", "What is happening in the image?"]
TEXTS = (
    [f"{n} is a {p} from {c}." for n in NAMES for p in ("doctor", "pilot") for c in ("Lyon", "Osaka")]
    + NAMES * 3
    + DESCRIPTIONS * 3
    + QUESTIONS * 3
    + ["I don't know who this is.", "Is there a guitar in the image? Yes. No."]
)


def _cfg():
    # The smoke model, pinned to CPU/float32 so that equality checks are exact anywhere.
    return dataclasses.replace(load_config("smoke").model, device="cpu", dtype="float32")


def _images(n: int, seed: int = 0, size: int = IMAGE_SIZE) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        arr[: size // 2, :, i % 3] = 255  # make the images clearly different
        out.append(Image.fromarray(arr))
    return out


def _scramble(model: torch.nn.Module, seed: int) -> None:
    """Large random weights, so that a random model gives varied, image-dependent answers."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / p.shape[-1] ** 0.5))


@pytest.fixture(scope="module")
def bundle():
    return M.build_tiny(_cfg(), TEXTS, IMAGE_SIZE, seed=0)


@pytest.fixture(scope="module")
def saved(bundle, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    M.save_bundle(bundle, path)
    return path


def _forward_logits(b: M.ModelBundle, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return b.model(**{k: v for k, v in batch.items() if k != "labels"}).logits


# ------------------------------------------------------------------------- device / dtype


def test_resolve_device_dtype():
    dev, dt = M.resolve_device_dtype()
    if torch.cuda.is_available():
        assert (dev.type, dt) == ("cuda", torch.bfloat16) or dt == torch.float16
    else:
        assert (dev.type, dt) == ("cpu", torch.float32)
        with pytest.raises(ConfigError, match="CUDA is not available"):
            M.resolve_device_dtype("cuda")
    assert M.resolve_device_dtype("cpu", "bfloat16") == (torch.device("cpu"), torch.bfloat16)
    with pytest.raises(ConfigError, match="model.device"):
        M.resolve_device_dtype("tpu")
    with pytest.raises(ConfigError, match="model.dtype"):
        M.resolve_device_dtype("cpu", "int8")


# ------------------------------------------------------------------------- tokenizer


def test_tokenizer_deterministic_and_round_trips():
    a = M.train_tokenizer(TEXTS, 700)
    b = M.train_tokenizer(list(TEXTS), 700)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    for i, t in enumerate(M.SPECIAL_TOKENS):
        assert a.convert_tokens_to_ids(t) == i
    assert a.pad_token == "<pad>" and a.eos_token == "</s>" and a.bos_token == "<s>" and a.unk_token == "<unk>"
    for text in NAMES + DESCRIPTIONS + ["Zoë O'Neil, 42, née Ünal — ok?"]:
        ids = a(text, add_special_tokens=False)["input_ids"]
        assert a.decode(ids) == text
        assert a.unk_token_id not in ids
    for name in NAMES:  # names seen in the world's text are a few tokens, not characters
        assert len(a(" " + name, add_special_tokens=False)["input_ids"]) <= 4
    # the image placeholder is one token
    assert a("<image>", add_special_tokens=False)["input_ids"] == [a.convert_tokens_to_ids("<image>")]


def test_chat_template(bundle):
    msgs = M.build_messages("Who is this?", "Alice")
    full = bundle.tokenizer.apply_chat_template(msgs, tokenize=False)
    assert full == "<s>USER: <image>\nWho is this? ASSISTANT: Alice</s>"
    prompt = bundle.processor.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<s>USER: <image>\nWho is this? ASSISTANT:"
    assert M.prompt_and_answer_text(bundle, "Who is this?", None)[0] == prompt


# ------------------------------------------------------------------------- build / save / load


def test_same_seed_same_weights(bundle):
    again = M.build_tiny(_cfg(), TEXTS, IMAGE_SIZE, seed=0)
    other = M.build_tiny(_cfg(), TEXTS, IMAGE_SIZE, seed=1)
    sa, sb, so = bundle.model.state_dict(), again.model.state_dict(), other.model.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], so[k]) for k in sa)
    cfg = bundle.model.config
    assert cfg.image_token_id == bundle.tokenizer.convert_tokens_to_ids("<image>")
    assert cfg.text_config.vocab_size == len(bundle.tokenizer)
    assert cfg.text_config.max_position_embeddings >= _cfg().max_length


def test_save_load_identical_logits(bundle, saved):
    files = sorted(os.listdir(saved))
    assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    assert not any(p.name.startswith(".") for p in saved.parent.iterdir())  # no temp leftovers
    loaded = M.load_bundle(saved)
    assert type(loaded.model).__name__ == "LlavaForConditionalGeneration"
    assert (loaded.device.type, loaded.dtype) == ("cpu", torch.float32) or torch.cuda.is_available()
    loaded = M.load_bundle(saved, device="cpu", dtype="float32")
    assert loaded.meta["seed"] == 0 and loaded.meta["image_size"] == IMAGE_SIZE
    imgs = _images(3)
    args = (imgs, [QUESTIONS[0]] * 3, NAMES[:3])
    b1, b2 = M.encode_train(bundle, *args), M.encode_train(loaded, *args)
    assert b1.keys() == b2.keys() and all(torch.equal(b1[k], b2[k]) for k in b1)
    assert torch.equal(_forward_logits(bundle, b1), _forward_logits(loaded, b2))
    # saving again over an existing checkpoint replaces it atomically
    M.save_bundle(loaded, saved)
    assert (saved / "model.safetensors").is_file()


def test_load_errors(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match="does not exist") as e:
        M.load_bundle(missing)
    assert str(missing) in str(e.value)

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "llava"}))
    (pickled / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ConfigError, match="safetensors") as e:
        M.load_bundle(pickled)
    assert str(pickled) in str(e.value) and "pytorch_model.bin" in str(e.value)

    from transformers import BertConfig, BertModel

    bert = tmp_path / "bert"
    BertModel(
        BertConfig(
            vocab_size=32,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
            max_position_embeddings=16,
        )
    ).save_pretrained(bert)
    assert any(p.suffix == ".safetensors" for p in bert.iterdir())
    with pytest.raises(ConfigError, match="cannot drive; supported families: LLaVA-1.5") as e:
        M.load_bundle(bert)
    assert str(bert) in str(e.value) and "bert" in str(e.value)


# ------------------------------------------------------------------------- batches


def test_labels_mask_only_answer_tokens(bundle):
    imgs = _images(4)
    qs = [QUESTIONS[0], QUESTIONS[1], QUESTIONS[0], "Who?"]
    ans = [NAMES[0], DESCRIPTIONS[0], NAMES[3], "I don't know who this is."]
    batch = M.encode_train(bundle, imgs, qs, ans)
    prompts = M.encode_prompts(bundle, imgs, qs)
    prompt_ids = [p.ids for p in prompts]
    tok = bundle.tokenizer
    n_img = (IMAGE_SIZE // _cfg().patch_size) ** 2
    assert batch["pixel_values"].shape == (4, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.equal(batch["pixel_values"], torch.cat([p.vision["pixel_values"] for p in prompts]))
    for i in range(4):
        n = int(batch["attention_mask"][i].sum())
        assert batch["attention_mask"][i, :n].all() and not batch["attention_mask"][i, n:].any()  # right padding
        ids = batch["input_ids"][i, :n].tolist()
        p = prompt_ids[i]
        assert ids[: len(p)] == p  # exactly the ids generation starts from
        assert p.count(bundle.model.config.image_token_id) == n_img
        answer = tok(" " + ans[i], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert ids[len(p) :] == answer
        lab = batch["labels"][i].tolist()
        assert lab[: len(p)] == [-100] * len(p)
        assert lab[len(p) : n] == answer
        assert all(v == -100 for v in lab[n:])
        assert tok.decode(answer, skip_special_tokens=True).strip() == ans[i]


def test_sequence_logprobs_matches_unpadded_loss(bundle):
    imgs = _images(3)
    qs = [QUESTIONS[0], QUESTIONS[1], QUESTIONS[0]]
    ans = [NAMES[0], DESCRIPTIONS[1], "Bo"]
    batch = M.encode_train(bundle, imgs, qs, ans)
    with torch.no_grad():
        logp, n = F.sequence_logprobs(bundle, batch)
    assert logp.shape == (3,) and n.tolist() == (batch["labels"] != -100).sum(1).tolist()
    for i in range(3):  # one item at a time, no padding: HF's mean loss over the same tokens
        one = M.encode_train(bundle, imgs[i : i + 1], qs[i : i + 1], ans[i : i + 1])
        with torch.no_grad():
            loss = bundle.model(**one).loss
        torch.testing.assert_close(-logp[i] / n[i], loss, rtol=1e-5, atol=1e-5)
    # gradients flow when asked for
    lp, _ = F.sequence_logprobs(bundle, batch)
    lp.sum().backward()
    assert bundle.model.lm_head.weight.grad is not None
    bundle.model.zero_grad(set_to_none=True)


def test_generate_invariant_to_batch_size_and_order():
    b = M.build_tiny(_cfg(), TEXTS, IMAGE_SIZE, seed=3)
    _scramble(b.model, seed=3)
    imgs = _images(7, seed=5)
    qs = [
        QUESTIONS[0],
        QUESTIONS[1],
        "Who?",
        "What is happening here in this picture?",
        QUESTIONS[0],
        "Is there a guitar in the image?",
        QUESTIONS[1],
    ]
    runs = {bs: M.generate(b, imgs, qs, max_new_tokens=12, batch_size=bs) for bs in (1, 3, 8)}
    assert runs[1] == runs[3] == runs[8]
    assert len(set(runs[1])) >= 3  # the check means something: answers differ across items
    perm = [4, 0, 6, 2, 1, 5, 3]
    shuffled = M.generate(b, [imgs[i] for i in perm], [qs[i] for i in perm], max_new_tokens=12, batch_size=3)
    assert [shuffled[perm.index(i)] for i in range(len(qs))] == runs[1]
    assert M.generate(b, [], [], max_new_tokens=3) == []


def test_training_and_generation_agree():
    """Fit two answers; greedy generation from the prompt must then reproduce them exactly."""
    b = M.build_tiny(_cfg(), TEXTS, IMAGE_SIZE, seed=0)
    imgs = _images(2, seed=9)
    qs = [QUESTIONS[0], QUESTIONS[0]]
    ans = [NAMES[0], NAMES[1]]
    batch = M.encode_train(b, imgs, qs, ans)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(b.model.parameters(), lr=1e-2)
    b.model.train()
    for _ in range(80):
        lp, n = F.sequence_logprobs(b, batch)
        loss = -(lp / n).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if loss.item() < 0.03:
            break
    b.model.eval()
    assert M.generate(b, imgs, qs, max_new_tokens=8, batch_size=2) == ans


# ------------------------------------------------------------------------- LoRA


def test_lora_targets_language_model_and_projector_only():
    b = M.build_tiny(_cfg(), TEXTS, IMAGE_SIZE, seed=0)
    n_before = M.count_parameters(b.model)
    pm = M.add_lora(b, r=4, alpha=8, projector=True, seed=0)
    lora = [n for n, _ in pm.named_parameters() if "lora_" in n]
    assert lora and not any("vision_tower" in n for n in lora)
    for leaf in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(f"language_model.layers.0.{'self_attn' if leaf[0] in 'qkvo' else 'mlp'}.{leaf}.lora_A" in n for n in lora), (
            leaf
        )
    assert any("multi_modal_projector.linear_1.lora_A" in n for n in lora)
    assert any("multi_modal_projector.linear_2.lora_A" in n for n in lora)
    trainable = {n for n, p in pm.named_parameters() if p.requires_grad}
    assert trainable == set(lora)
    table = M.describe(pm)
    assert table.set_index("part").loc["LoRA adapter", "trainable"] == table.set_index("part").loc["total", "trainable"]
    base = M.remove_lora(pm)
    assert M.count_parameters(base) == n_before
    assert not any("lora_" in n for n, _ in base.named_parameters())

    regex = M.lora_target_regex(base, projector=False)
    assert "vision" not in regex and "projector" not in regex
    pm2 = M.add_lora(b.with_model(base), r=4, alpha=8, projector=False, seed=0)
    names = [n for n, _ in pm2.named_parameters() if "lora_" in n]
    assert names and not any("multi_modal_projector" in n or "vision_tower" in n for n in names)
    assert M.lora_target_regex(pm2, projector=False) == regex  # also on an adapted model


def test_reference_mode_is_the_base_model_and_adapter_round_trip(tmp_path):
    b = M.build_tiny(_cfg(), TEXTS, IMAGE_SIZE, seed=0)
    batch = M.encode_train(b, _images(3), [QUESTIONS[0]] * 3, NAMES[:3])
    with torch.no_grad():
        base_lp, _ = F.sequence_logprobs(b, batch)
        base_logits = _forward_logits(b, batch)
    with pytest.raises(ConfigError):
        with M.reference_mode(b.model):
            pass
    pm = M.add_lora(b, r=4, alpha=8, projector=True, seed=0)
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=5e-2)
    pm.train()
    lp, n = F.sequence_logprobs(pm, batch)
    (-(lp / n).mean()).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    pm.eval()
    with torch.no_grad():
        tuned_lp, _ = F.sequence_logprobs(pm, batch)
        with M.reference_mode(pm):
            ref_lp, _ = F.sequence_logprobs(pm, batch)
            ref_logits = _forward_logits(b.with_model(pm), batch)
        after_lp, _ = F.sequence_logprobs(pm, batch)
    assert not torch.allclose(tuned_lp, base_lp)  # the adapter changed the model ...
    assert torch.equal(ref_lp, base_lp)  # ... and the reference is exactly the base model
    assert torch.equal(ref_logits, base_logits)
    assert torch.equal(after_lp, tuned_lp)  # the adapter is back on after the block
    assert len(M.generate(b.with_model(pm), _images(2), [QUESTIONS[0]] * 2, max_new_tokens=3)) == 2

    M.save_adapter(pm, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    base = M.remove_lora(pm)
    loaded = M.load_adapter(b.with_model(base), tmp_path / "adapter")
    with torch.no_grad():
        again, _ = F.sequence_logprobs(loaded, batch)
    assert torch.equal(again, tuned_lp)
    with pytest.raises(ConfigError, match="adapter path"):
        M.load_adapter(b.with_model(M.remove_lora(loaded)), tmp_path / "missing")


def test_plain_linears_decode_as_the_adapted_model_and_put_everything_back(monkeypatch):
    """While decoding, each LoRA layer runs as one linear layer holding ``W + (alpha/r)·B·A``
    (or ``W`` with the adapter off): the same function as peft's three products, to float
    rounding; afterwards every layer and every weight tensor is the one it was, bit for bit."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    b = M.build_tiny(_cfg(), TEXTS, IMAGE_SIZE, seed=3)
    _scramble(b.model, seed=3)
    pm = M.add_lora(b, r=4, alpha=8, projector=True, seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a non-zero update (a fresh adapter's B is zero)
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    pm.eval()
    ub = b.with_model(pm)
    batch = M.encode_train(b, _images(3), [QUESTIONS[0]] * 3, NAMES[:3])
    state = {k: v.clone() for k, v in pm.state_dict().items()}
    weights = {n: p for n, p in pm.named_parameters()}
    n_lora = sum(isinstance(m, LoraLinear) for m in pm.modules())
    with torch.no_grad():
        adapted = _forward_logits(ub, batch)
        with M.reference_mode(pm):
            reference = _forward_logits(ub, batch)
            with M.plain_linears(pm):
                assert not any(isinstance(m, LoraLinear) for m in pm.modules())
                assert torch.equal(_forward_logits(ub, batch), reference)  # adapter off: the base weights themselves
        with M.plain_linears(pm):
            assert not any(isinstance(m, LoraLinear) for m in pm.modules())
            merged = _forward_logits(ub, batch)
        with M.plain_linears(pm, max_bytes=0):  # too large to merge: run as it is
            assert sum(isinstance(m, LoraLinear) for m in pm.modules()) == n_lora
    assert not torch.allclose(adapted, reference, atol=1e-3)  # the adapter does something ...
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-4)  # ... and merged it is the same function
    assert sum(isinstance(m, LoraLinear) for m in pm.modules()) == n_lora
    assert all(p is weights[n] for n, p in pm.named_parameters())
    assert all(torch.equal(v, state[k]) for k, v in pm.state_dict().items())
    pm.train()  # training keeps peft's layers (the adapter's gradients need them)
    with M.plain_linears(pm):
        assert sum(isinstance(m, LoraLinear) for m in pm.modules()) == n_lora
    pm.eval()
    imgs, qs = _images(5, seed=5), [QUESTIONS[0], QUESTIONS[1], "Who?", QUESTIONS[1], QUESTIONS[0]]
    answers = M.generate(ub, imgs, qs, max_new_tokens=10, batch_size=2)  # decodes merged
    import pebench_core.models.lora as lora

    monkeypatch.setattr(lora, "MERGE_BYTES", 0)
    assert M.generate(ub, imgs, qs, max_new_tokens=10, batch_size=2) == answers  # through peft's layers
    assert len(set(answers)) >= 3
    assert all(torch.equal(v, state[k]) for k, v in pm.state_dict().items())


# ------------------------------------------------------------------------- describe


def test_describe(bundle):
    table = M.describe(bundle)
    parts = table.set_index("part")["parameters"]
    assert list(table.columns) == ["part", "parameters", "trainable", "share"]
    for part in ("vision tower", "projector", "embeddings", "language model"):
        assert parts[part] > 0
    assert parts["total"] == M.count_parameters(bundle.model)
    assert parts.drop("total").sum() == parts["total"]


def test_encode_train_max_length(bundle):
    with pytest.raises(ConfigError, match="max_length"):
        M.encode_train(bundle, _images(1), [QUESTIONS[1]], [DESCRIPTIONS[1] * 4], max_length=40)
