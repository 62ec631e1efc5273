"""Linear probes: can a linear probe still tell the forget people (events) apart inside the model?

Per concept, the accuracy of a logistic regression telling the forget people (events) apart on
held-out renders, from features of the vision tower, the projector and a middle language-model
layer (at ``robust.probe_depth``). Lower is more forgotten; the reference is the goal model's
accuracy, not chance (a goal model still tells two people apart by their looks).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .. import metrics as M
from ..errors import ConfigError
from ..evaluate import CONCEPTS_OF
from ..models import ModelBundle, decoder_layers, encode_prompts, move_batch, pad_batch
from ..world import QUESTIONS
from .context import Context, label
from .registry import Probe


def probe_accuracy(train_x: np.ndarray, train_y: Sequence, test_x: np.ndarray, test_y: Sequence, seed: int = 0) -> np.ndarray:
    """Fit a logistic regression on standardised ``train_x`` and return, per test item, 1 if it
    predicts the label right, else 0 (the mean is the probe's accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ty, sy = np.asarray(list(train_y)), np.asarray(list(test_y))
    if len(set(ty.tolist())) < 2:
        raise ConfigError(f"a linear probe needs at least two classes to tell apart, got {sorted(set(ty.tolist()))}")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    clf.fit(np.asarray(train_x, dtype=np.float64), ty)
    return (clf.predict(np.asarray(test_x, dtype=np.float64)) == sy).astype(np.float64)


def _first_tensor(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "last_hidden_state") and out.last_hidden_state is not None:
        return out.last_hidden_state
    return out[0]


@torch.no_grad()
def probe_features(
    bundle: ModelBundle, images: Sequence[Image.Image], question: str, depth: float, batch_size: int = 32
) -> dict[str, np.ndarray]:
    """Per image, the mean vision-tower output, the mean projector output and a decoder
    layer's output (at ``depth`` of the stack) at the last prompt token, where the answer's
    first token is predicted. Forward hooks on the family's modules, so every family works;
    a family without the packed path runs one image at a time (its image outputs are not
    stacked per image)."""
    fam, model = bundle.family, bundle.model
    layers = decoder_layers(model)
    sites = {
        "tower": fam.module(model, fam.vision_tower[0]),
        "projector": fam.module(model, fam.projector[0]),
        "lm": layers[min(len(layers) - 1, int(depth * len(layers)))],
    }
    seen: dict[str, list[torch.Tensor]] = {k: [] for k in sites}
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: seen[k].append(_first_tensor(o))) for k, m in sites.items()]
    bs = batch_size if fam.packed else 1
    out: dict[str, list[np.ndarray]] = {k: [] for k in sites}
    was = model.training
    model.eval()
    try:
        for s in range(0, len(images), bs):
            imgs = list(images[s : s + bs])
            ps = encode_prompts(bundle, imgs, [question] * len(imgs))
            batch = pad_batch([p.ids for p in ps], [p.tokens for p in ps], [p.vision for p in ps], bundle.pad_token_id, "left")
            for k in seen:
                seen[k].clear()
            model(**move_batch(batch, bundle.device, bundle.dtype), use_cache=False)
            for k in ("tower", "projector"):
                t = seen[k][0].float()
                pooled = (
                    t.mean(1) if t.dim() == 3 and t.shape[0] == len(imgs) else t.reshape(-1, t.shape[-1]).mean(0, keepdim=True)
                )
                out[k].append(pooled.cpu().numpy())
            h = seen["lm"][-1].float()
            out["lm"].append(h[:, -1].cpu().numpy())  # left padding: the last position is the prompt's last token
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was)
    return {k: np.concatenate(v) for k, v in out.items()}


def metrics(r) -> tuple[str, ...]:
    return ("probe_tower", "probe_projector", "probe_lm")


def linear_probe(ctx: Context) -> list[M.MetricResult]:
    out = []
    for concept in CONCEPTS_OF[ctx.sets.target]:
        train, test = ctx.sets.probe_train[concept], ctx.sets.probe_test[concept]
        if not test:
            raise ConfigError(
                f"robust.probes: 'probe' on target {ctx.sets.target!r} tests on held-out renders of the forget {concept}s, "
                "and this world has none (world.heldout_renders; a real PEBench folder has one image per pair): drop probe"
            )
        q, d = QUESTIONS[concept], ctx.cfg.robust.probe_depth
        ftr = probe_features(ctx.bundle, [ctx.ds.image(i) for i in train], q, d, ctx.cfg.robust.batch_size)
        fte = probe_features(ctx.bundle, [ctx.ds.image(i) for i in test], q, d, ctx.cfg.robust.batch_size)
        ytr, yte = [label(i, concept) for i in train], [label(i, concept) for i in test]
        for site in ("tower", "projector", "lm"):
            hit = probe_accuracy(ftr[site], ytr, fte[site], yte, ctx.cfg.seed)
            out.append(M.MetricResult(f"probe_{site}", concept, float(hit.mean()), len(test), hit, [i.id for i in test]))
    return out


PROBE = Probe(
    "probe",
    "Linear probes",
    "Can a linear probe still tell the forget people (events) apart inside the model?",
    metrics,
    run=linear_probe,
)
