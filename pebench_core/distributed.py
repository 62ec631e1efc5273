"""Data parallelism over the processes that ``accelerate launch`` starts (design: Models and families).

``pebench run`` under ``accelerate launch --multi_gpu --num_processes N`` (torch's elastic
launcher underneath, which sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) runs every stage in
all N processes at once, each on its own device:

* **training** (injection and unlearning) splits each step's batch between the processes;
  each computes the gradient of its share of the step's loss, the gradients are summed
  (one flat all-reduce a step), and every process takes the same optimiser step, so the
  weights stay identical everywhere. For unlearning, the per-sequence quantities the
  losses are built on are gathered, so every process evaluates the method's loss on the
  whole batch (BGD's running balance included) while gradients flow through its own share;
* **evaluation** gives each process a contiguous share of the questions and gathers the
  answers (answers do not depend on the batch, tested, so the table is the one process's);
* **full fine-tuning** of a local checkpoint (``train.adapter=full``) shards the weights,
  gradients and optimiser states over the processes with FSDP (torch's ``fully_shard``, one
  group per decoder layer): a 7B model whose AdamW state alone is 56 GB then needs an
  N-th of that on each GPU. Gradients are summed by FSDP's reduce-scatter instead;
* **writes** happen on rank 0 only, the others wait at a barrier and read what it wrote.

A process launched alone (no ``WORLD_SIZE``) does none of this: every function here is then
the identity or a no-op. With gloo on CPU this is tested with two processes
(``tests/test_distributed.py``); on GPUs the same code runs with NCCL.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch

__all__ = [
    "world_size",
    "rank",
    "is_main",
    "barrier",
    "init",
    "all_reduce_grads",
    "all_reduce_sum",
    "all_gather_objects",
    "gather_cat",
    "shard_slice",
    "device_for_rank",
    "shard_model",
    "is_sharded",
    "full_state_dict",
]


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    return rank() == 0


def init() -> None:
    """Join the process group of a multi-process launch (once); nothing when launched alone."""
    if world_size() <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)


def device_for_rank(device: torch.device) -> torch.device:
    """Each process on its own GPU (``cuda:LOCAL_RANK``) under a multi-process launch."""
    if world_size() > 1 and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def barrier() -> None:
    if world_size() > 1:
        init()
        torch.distributed.barrier()


def all_reduce_grads(params: Sequence[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the processes (a missing gradient counts as zero),
    in one flat buffer: one collective a step, whatever the number of tensors."""
    if world_size() <= 1:
        return
    init()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    off = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[off : off + n].view_as(p).to(p.dtype)
        off += n


def all_reduce_tensor(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the processes (a new tensor; ``t`` itself when launched alone)."""
    if world_size() <= 1:
        return t
    init()
    out = t.detach().clone()
    torch.distributed.all_reduce(out)
    return out


def all_reduce_sum(x: float) -> float:
    if world_size() <= 1:
        return x
    init()
    t = torch.tensor([float(x)], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return float(t.item())


def all_gather_objects(obj: Any) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
    if world_size() <= 1:
        return [obj]
    init()
    out: list = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def main_value(obj: Any) -> Any:
    """The main process's ``obj`` on every process (a collective). Whether to build a cached
    artifact must be decided once: a process that looks a moment later may already see the
    artifact the main process just finished, skip the build and its collective steps, and
    leave the others waiting at a barrier it never reaches."""
    return all_gather_objects(obj)[0]


def gather_cat(local: torch.Tensor) -> torch.Tensor:
    """The processes' equal-length shares concatenated in rank order, with this process's own
    share kept in the autograd graph (the others' are constants): a loss on the result is
    the loss of the whole batch, and its gradient flows into this process's share only —
    the sum over processes (:func:`all_reduce_grads`) is then the whole batch's gradient."""
    if world_size() <= 1:
        return local
    init()
    parts = [torch.empty_like(local) for _ in range(world_size())]
    torch.distributed.all_gather(parts, local.detach().contiguous())
    parts[rank()] = local
    return torch.cat(parts)


def shard_slice(n: int) -> slice:
    """This process's contiguous share of ``n`` items (shares differ by at most one)."""
    w, r = world_size(), rank()
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return slice(start, start + base + (1 if r < extra else 0))


def shard_model(model: torch.nn.Module, family) -> torch.nn.Module:
    """Shard ``model`` over the processes with FSDP (in place): each decoder layer of its
    language model is one group (gathered for its forward and backward only), the rest of
    the model the root group. FSDP's reduce-scatter *averages* gradients over the processes,
    so a sharded step multiplies each process's loss by their number (see
    :func:`pebench_core.train.train_model`; a summing reduce needs ``PREMUL_SUM``, which gloo
    lacks)."""
    from torch.distributed.fsdp import fully_shard

    init()
    for layer in family.language_model_of(model).layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    if world_size() <= 1:
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state_dict(model: torch.nn.Module) -> dict | None:
    """The whole model's weights on rank 0 (on the CPU), gathered from the shards; an empty
    dict on the other ranks; ``None`` for a model that is not sharded. Collective."""
    if not is_sharded(model):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    # Tied weights (a shared input/output embedding) come back as separate copies; keep one
    # name per parameter, as save_pretrained writes an unsharded model.
    keep = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    return {k: v for k, v in full.items() if k in keep}
