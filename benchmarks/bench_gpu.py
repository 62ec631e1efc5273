"""The prepared GPU check (design: Models and families; Budgets): a 7B-shaped LLaVA-1.5 with random weights in bf16
through the `paper` profile's injection and unlearning steps.

For a lent GPU, as one short script: builds the model from LLaVA-1.5-7B's configuration
(``tests/model_families.build_llava_7b_config_folder``; random weights, nothing downloaded)
on the device, then times

* injection: LoRA r=16 on the language model + projector, gradient checkpointing, the
  profile's batch (8, in 2 micro-batches) of PEBench-style QA on 336 px images;
* unlearning: a few steps of every method of the profile (a second LoRA adapter);

and prints, per stage: seconds a step, tokens a second, MFU (6·N·tokens a second, N the
language model's parameters, against ``--peak-tflops``, the GPU's dense bf16 peak: 989 for an
H100/H200 SXM) and the peak memory (``torch.cuda.max_memory_allocated``) beside the memory
plan's estimate. The 6·N convention counts the weight gradients a LoRA step skips (and not
the recomputation checkpointing adds), so it states the hardware's use only roughly.
``--shape tiny`` runs the same code on a tiny LLaVA on the CPU (a dry run).

    python benchmarks/bench_gpu.py --steps 4 [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=("7b", "tiny"), default="7b")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from model_families import build_checkpoint, build_llava_7b_config_folder
    from transformers import AutoModelForImageTextToText

    from pebench_core import memory, models, unlearn
    from pebench_core.config import load_config
    from pebench_core.data import event_qa, load_dataset, person_qa, world_texts
    from pebench_core.encoding import encode_qa
    from pebench_core.trainer import gradient_checkpointing, train_model
    from pebench_core.world import generate_world, write_world

    cuda = args.shape == "7b"
    device, dtype = (torch.device("cuda"), torch.bfloat16) if cuda else (torch.device("cpu"), torch.float32)
    tmp = Path(tempfile.mkdtemp())
    smoke = load_config("smoke")
    ds = load_dataset(write_world(generate_world(smoke.world, 0), tmp / "world", progress=False))
    texts = world_texts(ds)
    folder = (
        build_llava_7b_config_folder(tmp / "llava-7b", texts)
        if cuda
        else build_checkpoint("llava", tmp / "llava", texts, image_size=ds.image_size)
    )
    cfg = load_config(
        "paper",
        overrides=[
            f"model.path={folder}",
            f"model.device={device.type}",
            f"model.dtype={'bfloat16' if cuda else 'float32'}",
            f"world.image_size={512 if cuda else ds.image_size}",
        ],
    )
    skeleton = models.load_skeleton(folder, device.type, dtype)
    t0 = time.perf_counter()
    with torch.device(device):
        torch.manual_seed(0)
        model = AutoModelForImageTextToText.from_config(skeleton.base_model.config, dtype=dtype)
    model.eval()
    bundle = models.ModelBundle(
        model, skeleton.processor, skeleton.tokenizer, device, dtype, {"kind": "local", "path": str(folder)}
    )
    print(f"model built on {device} in {time.perf_counter() - t0:.1f}s")
    plans = {p.stage.split()[0]: p for p in memory.stage_plans(cfg, bundle)}
    n_lm = sum(p.numel() for n, p in model.named_parameters() if bundle.family.role_of(n) == "language model")
    report = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "parameters": memory.model_shape(model.config, dtype).total,
        "rows": [],
    }

    def row(stage, seconds, tokens, plan):
        peak = torch.cuda.max_memory_allocated() if cuda else float("nan")
        r = {
            "stage": stage,
            "s/step": seconds,
            "tokens/s": tokens / seconds,
            "MFU": 6 * n_lm * tokens / seconds / (args.peak_tflops * 1e12),
            "peak GiB": peak / memory.GiB,
            "plan GiB": plan.total / memory.GiB,
        }
        report["rows"].append(r)
        print("  ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()), flush=True)

    items = ds.items_where(role="train")
    qa = person_qa(items, ds) + event_qa(items, ds)
    qa = qa[: cfg.train.batch_size * args.steps]
    enc = encode_qa(bundle, qa, lambda q: ds.image(q.item_id))
    tokens = int(enc.lengths.sum()) / args.steps
    bundle.model = models.add_lora(bundle, r=cfg.train.lora_r, alpha=cfg.train.lora_alpha, projector=True)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with gradient_checkpointing(bundle, cuda):
        h = train_model(
            bundle,
            enc,
            epochs=1,
            lr=cfg.train.lr,
            batch_size=cfg.train.batch_size,
            seed=0,
            progress=False,
            micro_batches=cfg.train.micro_batches,
        )
    row("inject (LoRA)", h[-1]["seconds"] / len(h), tokens, plans["inject"])
    bundle.model = models.remove_lora(bundle.model)

    ucfg = cfg.unlearn
    for method in ucfg.methods:
        target = "both" if method.endswith("+bgd") else "person"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        secs = unlearn.step_cost(bundle, ds, target, method, ucfg, cfg.eval, steps=args.steps)
        sets = memory.sequences_per_step(load_config("paper", overrides=[f"unlearn.methods={method}"]))
        row(f"unlearn {method}", secs, sets * (tokens / cfg.train.batch_size), plans["unlearn"])
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
