"""The memory plan (pebench_core.memory) against what a training step really holds, per family.

For each tiny family checkpoint (tests/model_families.py) this runs one injection micro-batch
(LoRA on the language model + projector, as `pebench run` trains a local checkpoint) and
measures, exactly:

* the weights (every parameter's bytes) and the trainable state (LoRA parameters, their
  gradients and AdamW's moments after one step);
* the activations the backward pass keeps: every tensor autograd saves during the forward,
  counted once per storage (``torch.autograd.graph.saved_tensors_hooks``), parameters excluded;

and prints them beside the plan's estimate of the same components, then the plan of a
7B-shaped LLaVA-1.5 (weights never allocated: a ``meta`` model) under the ``paper`` profile.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_memory.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

from model_families import FAMILIES, build_checkpoint  # noqa: E402
from pebench_core import memory, models  # noqa: E402
from pebench_core.config import load_config  # noqa: E402
from pebench_core.data import load_dataset, person_qa, event_qa, world_texts  # noqa: E402
from pebench_core.encoding import collate, encode_qa  # noqa: E402
from pebench_core.world import generate_world, write_world  # noqa: E402


def saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd saves while ``fn()`` runs (parameters excluded)."""
    seen: dict[int, int] = {}
    params: set[int] = set()

    def pack(t):
        if isinstance(t, torch.nn.Parameter) or t.data_ptr() in params:
            return t
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def measure(family: str, ckpt: Path, ds, cfg) -> dict:
    b = models.load_bundle(ckpt, device="cpu", dtype="float32")
    weights = sum(p.numel() * p.element_size() for p in b.model.parameters())
    qa = person_qa(ds.items_where(role="train")[:8], ds) + event_qa(ds.items_where(role="train")[8:16], ds)
    enc = encode_qa(b, qa, lambda q: ds.image(q.item_id))
    micro = cfg.train.batch_size // max(1, cfg.train.micro_batches)
    idx = list(range(min(micro, len(enc))))
    batch = collate(enc, idx, b.pad_token_id)
    peft = models.add_lora(b, r=cfg.train.lora_r, alpha=cfg.train.lora_alpha, projector=True)
    peft.train()
    params = [p for p in peft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    from pebench_core.forward import answer_logits

    def loss():
        logits, targets, _ = answer_logits(peft, models.move_batch(batch, b.device, b.dtype))
        return torch.nn.functional.cross_entropy(logits, targets)

    act, lo = saved_bytes(loss)
    lo.backward()
    opt.step()
    state = sum(p.numel() * p.element_size() * 2 for p in params)  # parameter + gradient
    state += sum(
        t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if torch.is_tensor(t) and t.ndim > 0
    )
    shape = memory.model_shape(b.base_model.config, torch.float32)
    seq = max(len(enc.input_ids[i]) for i in idx)
    est_act = memory.activation_bytes(shape, len(idx), seq, False, 4) + memory.logit_bytes(
        shape, int(sum((enc.labels[i] != -100).sum() for i in idx))
    )
    est_state = 16.0 * shape.lora(cfg.train.lora_r)
    return {
        "family": family,
        "weights MiB": weights / 2**20,
        "plan weights MiB": shape.total * 4 / 2**20,
        "state KiB": state / 1024,
        "plan state KiB": est_state / 1024,
        "activations KiB": act / 1024,
        "plan activations KiB": est_act / 1024,
        "plan / measured": round(est_act / act, 2),
    }


def main() -> None:
    import pandas as pd

    torch.manual_seed(0)
    cfg = load_config("smoke", overrides=["train.lora_r=8", "train.lora_alpha=16"])
    tmp = Path(tempfile.mkdtemp())
    ds = load_dataset(write_world(generate_world(cfg.world, 0), tmp / "world", progress=False))
    rows = [measure(f, build_checkpoint(f, tmp / f, world_texts(ds), image_size=ds.image_size), ds, cfg) for f in FAMILIES]
    with pd.option_context("display.width", 200, "display.float_format", "{:.1f}".format):
        print(pd.DataFrame(rows).to_string(index=False))

    from model_families import build_llava_7b_config_folder

    folder = build_llava_7b_config_folder(tmp / "llava-1.5-7b", world_texts(ds))
    paper = load_config("paper", overrides=[f"model.path={folder}"])
    b = models.load_skeleton(folder, device="cpu", dtype="bfloat16")
    prompt, image = models.prompt_tokens(b, paper.world.image_size)
    shape = memory.model_shape(b.base_model.config, torch.bfloat16)
    print(
        f"\n7B-shaped LLaVA-1.5 (paper profile): {shape.total / 1e9:.2f} B parameters, prompt {prompt} tokens "
        f"({image} image tokens)"
    )
    for p in memory.plan(paper, shape, prompt, image, 80 * memory.GiB, "cuda"):
        print("  " + p.describe())


if __name__ == "__main__":
    main()
