"""Vision pre-training of the tiny model's encoder on general visual concepts.

A real LLaVA starts from a CLIP encoder that already sees hair, clothes, scenes and
objects; a randomly initialised tiny ViT does not, and the language-modelling loss alone
is far too weak a signal to teach it (the model collapses to one answer). So
:func:`pretrain_vision` first trains the vision tower, with small throw-away heads
(:class:`ConceptHeads`), to recognise every person trait, the scene and which objects are
present, on a generic crowd (:func:`render_crowd`: random people, never the fictitious
PEBench people, rendered into the event scenes). A new identity is then a new combination
of concepts the encoder already sees. The result is cached on disk under a key of
everything it depends on, and shared by both bases.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed as D
from .forward import (
    load_vision_state,
    packed_parts,
    set_vision_trainable,
    vision_hidden,
    vision_state,
    vision_tower_of,
    vision_trainable,
)
from .models import ModelBundle
from .trainer import optimizer_step

__all__ = ["CrowdSet", "scene_events", "render_crowd", "ConceptHeads", "pretrain_vision"]


@dataclass
class CrowdSet:
    """Random people rendered into event scenes, with the concept labels of each image.

    ``labels[:, k]`` is the value index of trait ``tasks[k]`` (``tasks`` ends with ``"scene"``,
    the index into ``events``); ``objects`` is the multi-hot vector of the objects drawn.
    """

    pixel_values: torch.Tensor  # [N, 3, H, W]
    labels: torch.Tensor  # [N, len(tasks)] long
    objects: torch.Tensor  # [N, len(object_names)] float 0/1
    tasks: tuple[str, ...]
    classes: tuple[int, ...]  # number of values per task
    object_names: tuple[str, ...]
    events: tuple[str, ...]  # event names, the classes of the "scene" task

    def __len__(self) -> int:
        return len(self.labels)


def scene_events(dataset, exclude_events: Sequence[str] = ()) -> list:
    """The event scenes the crowd is rendered into: the dataset's events minus ``exclude_events``
    (ids or names). A dataset without drawable scenes (the real PEBench release) uses the
    world catalogue's events of the same names, or the whole catalogue."""
    from .world import EVENTS

    excl = set(exclude_events)
    events = [e for e in dataset.events if e.id not in excl and e.name not in excl]
    drawable = [e for e in events if e.layout and e.palette]
    if len(drawable) < len(events) or not drawable:
        names = {e.name.lower() for e in events}
        drawable = [e for e in EVENTS if e.name in names] or [
            e for e in EVENTS if e.name not in {x.name for x in dataset.events if x.id in excl}
        ]
    if not drawable:
        raise ValueError("pretrain_vision: no event scene left to render")
    return drawable


def render_crowd(events: Sequence, n: int, image_size: int, seed: int, processor=None, progress: bool = False) -> CrowdSet:
    """``n`` renders of random people (random trait combinations, never the PEBench people)
    into ``events`` (cycled, so every scene is equally frequent), seeded.

    ``processor`` (a LlavaProcessor or an image processor) turns the images into pixel
    values; without it they are scaled to [0, 1].
    """
    from .world import OBJECTS, SALIENT_TRAITS, TRAIT_VALUES, Person, objects_in, random_traits, render

    rng = random.Random(f"pebench-crowd:{seed}")
    tasks = tuple(SALIENT_TRAITS) + ("scene",)
    obj_pos = {o: i for i, o in enumerate(OBJECTS)}
    labels = np.zeros((n, len(tasks)), dtype=np.int64)
    objects = np.zeros((n, len(OBJECTS)), dtype=np.float32)
    images = []
    with tqdm(range(n), desc="render crowd", disable=not progress, leave=False, mininterval=2.0) as bar:
        for k in bar:
            gender = rng.choice(("female", "male"))
            traits = random_traits(rng, gender)
            ei = k % len(events)
            rs = rng.getrandbits(31)
            person = Person(
                id="crowd",
                name="",
                age=None,
                gender=gender,
                profession=None,
                occupation_category=None,
                birthplace=None,
                region=None,
                traits=traits,
            )
            images.append(render(None, person, events[ei], rs, size=image_size))
            labels[k, :-1] = [TRAIT_VALUES[t].index(traits[t]) for t in SALIENT_TRAITS]
            labels[k, -1] = ei
            for o in objects_in(None, events[ei], rs):
                objects[k, obj_pos[o]] = 1.0
    ip = getattr(processor, "image_processor", processor)
    if ip is not None:
        pix = ip(images, return_tensors="pt")["pixel_values"]
    else:
        pix = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 255
    classes = tuple(len(TRAIT_VALUES[t]) for t in SALIENT_TRAITS) + (len(events),)
    return CrowdSet(
        pix, torch.from_numpy(labels), torch.from_numpy(objects), tasks, classes, tuple(OBJECTS), tuple(e.name for e in events)
    )


class ConceptHeads(torch.nn.Module):
    """Throw-away heads of the vision pre-training: one attention-pooling query and one linear
    classifier per concept (traits, scene) plus one for the objects (multi-label).

    Attention pooling lets each concept read the tokens that show it (the shirt, the hat, the
    background) instead of an average over the whole image, which teaches localised concepts
    far faster than mean pooling.
    """

    def __init__(self, dim: int, classes: Sequence[int], n_objects: int):
        super().__init__()
        self.classes = list(classes)
        self.norm = torch.nn.LayerNorm(dim)
        self.query = torch.nn.Parameter(torch.randn(len(self.classes) + 1, dim) * 0.02)
        self.out = torch.nn.ModuleList([torch.nn.Linear(dim, c) for c in [*self.classes, n_objects]])

    def forward(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        h = self.norm(tokens)  # [B, T, D]
        att = torch.softmax(h @ self.query.T * h.shape[-1] ** -0.5, dim=1)  # [B, T, K]
        pooled = torch.einsum("btk,btd->bkd", att, h)
        return [lin(pooled[:, k]) for k, lin in enumerate(self.out)]


def _concept_loss(
    outs: list[torch.Tensor], labels: torch.Tensor, objects: torch.Tensor, object_weight: float = 4.0
) -> tuple[torch.Tensor, list[float]]:
    """Sum of the concepts' cross-entropies + ``object_weight`` × mean binary cross-entropy of
    the objects; also each concept's accuracy (objects: per-object accuracy)."""
    loss = outs[-1].new_zeros(())
    acc = []
    for k, lg in enumerate(outs[:-1]):
        loss = loss + torch.nn.functional.cross_entropy(lg, labels[:, k])
        acc.append(float((lg.argmax(1) == labels[:, k]).float().mean()))
    ol = outs[-1]
    loss = loss + object_weight * torch.nn.functional.binary_cross_entropy_with_logits(ol, objects)
    acc.append(float(((ol > 0).float() == objects).float().mean()))
    return loss, acc


def _vision_key(bundle: ModelBundle, events: Sequence, cfg, seed: int, image_size: int) -> str:
    """Everything a vision pre-training depends on: the tower's initial weights, the settings,
    the scenes, the seed, the image size and the code it runs."""
    from .code_keys import code_key

    h = hashlib.sha256()
    for k, v in sorted(vision_tower_of(bundle.model).state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    fields = {f: getattr(cfg, f) for f in ("vision_images", "vision_epochs", "vision_lr", "vision_batch_size")}
    h.update(repr((sorted(fields.items()), [e.name for e in events], seed, image_size)).encode())
    h.update(code_key(pretrain_vision).encode())
    return h.hexdigest()[:16]


def _load_vision_cache(folder: Path):
    from safetensors.torch import load_file

    from .storage import is_complete, read_marker, verify

    if not is_complete(folder):
        return None
    problem = verify(folder)
    if problem is not None:  # damaged after it was written: train the tower again
        print(f"[vision] the cached pre-training in {folder} cannot be reused: {problem}; rebuilding it")
        return None
    return load_file(str(folder / "vision.safetensors")), read_marker(folder)["history"]


def _save_vision_cache(folder: Path, state: dict, history: list) -> None:
    """Write the tower and its history to ``folder`` atomically, the history in the marker."""
    from safetensors.torch import save_file

    from .storage import atomic_dir

    with atomic_dir(folder, marker={"artifact": "vision pre-training", "history": history}) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "vision.safetensors"))


def pretrain_vision(
    bundle: ModelBundle,
    dataset,
    cfg,
    seed: int,
    exclude_events: Sequence[str] = (),
    progress: bool = True,
    cache: str | Path | None = None,
) -> list[dict]:
    """Pre-train the vision tower on general visual concepts (in place); return the history.

    ``cfg`` is a :class:`~pebench_core.config.TrainConfig` (``vision_images`` renders of a
    random crowd into the dataset's event scenes minus ``exclude_events``, ``vision_epochs``
    passes, AdamW at ``vision_lr``, batches of ``vision_batch_size``). No augmentation: the
    renders already vary pose, position, scale, lighting and noise, and flips or shifts slowed
    the learning of the person traits (measured).
    The concept heads are discarded afterwards; the projector and language model are
    untouched. The history ends with the held-out accuracy of every concept (on fresh renders).

    With ``cache`` (a folder) the tower is stored in ``cache/<key>`` (safetensors, written
    atomically), keyed by the tower's initial weights, the settings, the scenes, the seed and
    this module's source; a later call with the same inputs — the second base, which leaves
    the same events out, or another process — loads it instead of training again (its
    history rows then carry ``cached=True``).
    """
    image_size = int(bundle.meta.get("image_size") or dataset.image_size or 64)
    events = scene_events(dataset, exclude_events)
    folder = Path(cache) / _vision_key(bundle, events, cfg, seed, image_size) if cache is not None else None
    hit = _load_vision_cache(folder) if folder is not None else None
    if hit is not None:
        state, history = hit
        load_vision_state(bundle, state)
        return [dict(h, cached=True) for h in history]
    parts = packed_parts(bundle.model)
    if parts is None:
        raise ValueError("pretrain_vision trains the tiny LLaVA's encoder (the packed path) only")
    inner = parts[1]
    t0 = time.perf_counter()
    n = int(cfg.vision_images)
    crowd = render_crowd(events, n, image_size, seed, bundle.processor, progress=progress)
    val = render_crowd(events, min(512, max(64, n // 10)), image_size, seed + 7_919, bundle.processor)
    t_render = time.perf_counter() - t0
    tower = inner.vision_tower
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = ConceptHeads(
            tower.config.hidden_size
            * (1 if isinstance(inner.config.vision_feature_layer, int) else len(inner.config.vision_feature_layer)),
            crowd.classes,
            len(crowd.object_names),
        ).to(bundle.device, bundle.dtype)
    g = torch.Generator().manual_seed(seed)
    trainable = vision_trainable(bundle)
    set_vision_trainable(bundle, True)
    params = list(tower.parameters()) + list(heads.parameters())
    bs = int(cfg.vision_batch_size)
    steps_per_epoch = math.ceil(n / bs)
    total = steps_per_epoch * int(cfg.vision_epochs)
    opt = torch.optim.AdamW(params, lr=cfg.vision_lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, int(0.1 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (s + 1) / warm if s < warm else 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))),
    )
    history: list[dict] = []
    tower.train()
    heads.train()
    bar = tqdm(total=total, desc="vision pre-training", disable=not progress, leave=False, mininterval=2.0)
    try:
        for epoch in range(int(cfg.vision_epochs)):
            perm = torch.randperm(n, generator=g)
            for s in range(0, n, bs):
                i = perm[s : s + bs]
                x = crowd.pixel_values[i].to(bundle.device, bundle.dtype)
                outs = heads(vision_hidden(inner, x))
                loss, acc = _concept_loss(outs, crowd.labels[i].to(bundle.device), crowd.objects[i].to(bundle.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                optimizer_step(params, opt, sched, history, bar, epoch, float(loss.detach()))
    finally:
        bar.close()
        tower.eval()
        set_vision_trainable(bundle, trainable)
    with torch.no_grad():
        outs = [
            heads(vision_hidden(inner, val.pixel_values[s : s + 256].to(bundle.device, bundle.dtype)))
            for s in range(0, len(val), 256)
        ]
        outs = [torch.cat([o[k] for o in outs]) for k in range(len(outs[0]))]
        _, acc = _concept_loss(outs, val.labels.to(bundle.device), val.objects.to(bundle.device))
    history[-1].update(
        {
            "seconds": round(time.perf_counter() - t0, 3),
            "seconds_render": round(t_render, 3),
            "heldout_accuracy": dict(zip([*crowd.tasks, "objects"], [round(a, 4) for a in acc])),
        }
    )
    if folder is not None and D.is_main():  # every process trained the same tower; one writes it
        _save_vision_cache(folder, vision_state(bundle), history)
    return history
