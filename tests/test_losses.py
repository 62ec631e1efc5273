"""Unlearning losses: hand-computed values on tiny tensors, sign conventions, registry, BGD."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from pebench_core import config, methods
from pebench_core.config import ConfigError
from pebench_core.losses import LossInputs
from pebench_core.methods.bgd import bgd_weights
from pebench_core.statistics import (
    adjusted_logits,
    answer_logprobs,
    dual_masked_kl_per_sequence,
    kl_per_sequence,
    mse_per_sequence,
    packed_answer_logprobs,
    packed_kl_per_sequence,
    shifted_answer_mask,
)

T = torch.tensor


def close(a, b, tol=1e-6):
    f = lambda x: float(x.detach()) if isinstance(x, torch.Tensor) else float(x)  # noqa: E731
    return abs(f(a) - f(b)) < tol


# Forget set, true answers:   logp_sum = [-2, -6], n = [4, 3]  ->  NLL_i = [0.5, 2.0], NLL_f = 1.25
# (a token-weighted mean would be 8/7 = 1.142857: the per-sequence mean is what we want.)
F_LOGP, F_N = [-2.0, -6.0], [4.0, 3.0]
F_REF = [-1.5, -4.0]
# Refusals on the same forget images: logp_sum = [-1.0, -0.6], n = [5, 3] -> NLL = [0.2, 0.2], mean 0.2
R_LOGP, R_N, R_REF = [-1.0, -0.6], [5.0, 3.0], [-2.0, -1.0]
# Retain set: logp_sum = [-1, -3, -0.5], n = [2, 2, 1] -> NLL = [0.5, 1.5, 0.5], NLL_r = 2.5/3
K_LOGP, K_N = [-1.0, -3.0, -0.5], [2.0, 2.0, 1.0]
NLL_R = (0.5 + 1.5 + 0.5) / 3
RETAIN_KL = [0.1, 0.3, 0.5]


def full_inputs(**over) -> LossInputs:
    base = dict(
        forget_logp_sum=T(F_LOGP),
        forget_n_tokens=T(F_N),
        forget_ref_logp_sum=T(F_REF),
        refusal_logp_sum=T(R_LOGP),
        refusal_n_tokens=T(R_N),
        refusal_ref_logp_sum=T(R_REF),
        retain_logp_sum=T(K_LOGP),
        retain_n_tokens=T(K_N),
        retain_kl=T(RETAIN_KL),
        forget_adjusted_kl=T([0.2, 0.4]),
        forget_rmu_mse=T([2.0, 4.0]),
        retain_rmu_mse=T([0.1, 0.2, 0.6]),
        refusal_dual_masked_kl=T([0.3, 0.5]),
        forget_concepts=["person", "event"],
        retain_concepts=["person", "event", "event"],
    )
    base.update(over)
    return LossInputs(**base)


# ---------------------------------------------------------------------------------------
# Hand values


def test_ga_hand_value():
    out = methods.get("ga")(full_inputs())
    # -(0.5 + 2.0) / 2 = -1.25
    assert close(out.loss, -1.25)
    assert close(out.parts["forget_nll"], 1.25)


def test_gd_hand_value():
    out = methods.get("gd")(full_inputs(), retain_weight=2.0)
    # -1.25 + 2 * (2.5 / 3) = 0.416666...
    assert close(out.loss, -1.25 + 2 * 2.5 / 3)
    assert close(out.parts["retain_loss"], NLL_R)
    assert close(out.parts["forget_loss"], -1.25)


def test_kl_hand_value():
    out = methods.get("kl")(full_inputs(), retain_weight=0.5)
    # -1.25 + 0.5 * mean(0.1, 0.3, 0.5) = -1.25 + 0.5 * 0.3 = -1.10
    assert close(out.loss, -1.10)


def test_po_hand_value():
    out = methods.get("po")(full_inputs(), retain_weight=1.0)
    # NLL(refusal) = mean(1.0/5, 0.6/3) = 0.2 ; + 1 * 2.5/3
    assert close(out.loss, 0.2 + 2.5 / 3)


def test_dpo_hand_value():
    beta = 0.5
    out = methods.get("dpo")(full_inputs(), retain_weight=0.0, beta=beta)
    # margin_1 = (-1.0 - -2.0) - (-2.0 - -1.5) = 1.0 + 0.5 = 1.5
    # margin_2 = (-0.6 - -1.0) - (-6.0 - -4.0) = 0.4 + 2.0 = 2.4
    # -log sigmoid(x) = log(1 + exp(-x))
    expected = (math.log(1 + math.exp(-0.5 * 1.5)) + math.log(1 + math.exp(-0.5 * 2.4))) / 2
    assert close(out.loss, expected)
    out2 = methods.get("dpo")(full_inputs(), retain_weight=1.0, beta=beta)
    assert close(out2.loss, expected + 2.5 / 3)


def test_npo_hand_value():
    beta = 0.5
    out = methods.get("npo")(full_inputs(), retain_weight=1.0, beta=beta)
    # log-ratios: -2 - -1.5 = -0.5 ; -6 - -4 = -2.0
    # (2/β) log(1 + exp(β r)) = 4 log(1 + exp(-0.25)), 4 log(1 + exp(-1.0))
    forget = (4 * math.log(1 + math.exp(-0.25)) + 4 * math.log(1 + math.exp(-1.0))) / 2
    assert close(out.loss, forget + 2.5 / 3)


def test_simnpo_hand_value():
    # length-normalised NLL: 2/4 = 0.5 and 6/3 = 2.0; β = 0.5, γ = 0.25
    # (2/β)·softplus(γ − β·NLL) = 4·softplus(0) = 4 ln 2 and 4·softplus(−0.75) = 4 ln(1 + e^−0.75)
    out = methods.get("simnpo")(full_inputs(), retain_weight=1.0, beta=0.5, gamma=0.25)
    forget = (4 * math.log(2) + 4 * math.log(1 + math.exp(-0.75))) / 2
    assert close(out.loss, forget + 2.5 / 3)
    # no reference pass; the margin only shifts where the weight fades
    assert methods.get("simnpo").required_inputs(0.0) == ("forget_logp_sum", "forget_n_tokens")
    assert close(
        methods.get("simnpo")(full_inputs(), retain_weight=0.0, beta=0.5).loss,
        2 * (math.log(1 + math.exp(-0.25)) + math.log(1 + math.exp(-1.0))),
    )


def test_simnpo_pushes_every_answer_down_and_fades_when_unlikely():
    lp = T([-0.5, -40.0]).requires_grad_(True)
    out = methods.get("simnpo")(LossInputs(forget_logp_sum=lp, forget_n_tokens=T([1.0, 1.0])), retain_weight=0.0, beta=1.0)
    out.loss.backward()
    # d/dlp of softplus(γ + β·lp)·2/β /2 = σ(β·lp + γ): positive (minimising lowers lp), near 0 once unlikely
    assert lp.grad[0] > 0.3 and 0 < lp.grad[1] < 1e-15


def test_dpo_at_reference_is_log2():
    x = T([-3.0, -1.0, -7.5])
    y = T([-2.0, -4.0, -0.5])
    inp = LossInputs(forget_logp_sum=x, forget_ref_logp_sum=x.clone(), refusal_logp_sum=y, refusal_ref_logp_sum=y.clone())
    for beta in (0.1, 1.0, 5.0):
        assert close(methods.get("dpo")(inp, retain_weight=0.0, beta=beta).loss, math.log(2))


def test_npo_at_reference_is_2_over_beta_log2():
    x = T([-3.0, -1.0, -7.5])
    inp = LossInputs(forget_logp_sum=x, forget_ref_logp_sum=x.clone())
    for beta in (0.1, 1.0, 5.0):
        assert close(methods.get("npo")(inp, retain_weight=0.0, beta=beta).loss, 2 / beta * math.log(2), 1e-5)


def test_dpo_npo_numerically_stable_for_extreme_ratios():
    big = T([5000.0, -5000.0])
    z = T([0.0, 0.0])
    inp = LossInputs(forget_logp_sum=big, forget_ref_logp_sum=z, refusal_logp_sum=z, refusal_ref_logp_sum=z)
    for m in ("dpo", "npo"):
        out = methods.get(m)(inp, retain_weight=0.0, beta=1.0)
        assert torch.isfinite(out.loss)
    # npo: (2/1)·softplus(5000) ≈ 10000 and softplus(-5000) ≈ 0 -> mean ≈ 5000
    assert close(methods.get("npo")(inp, retain_weight=0.0, beta=1.0).loss, 5000.0, 1e-2)


def test_reference_gets_no_gradient():
    x = T([-3.0, -1.0], requires_grad=True)
    ref = T([-2.0, -2.0], requires_grad=True)
    out = methods.get("npo")(LossInputs(forget_logp_sum=x, forget_ref_logp_sum=ref), retain_weight=0.0)
    out.loss.backward()
    assert x.grad is not None and ref.grad is None


def test_parts_are_detached_floats():
    out = methods.get("gd")(full_inputs())
    assert all(isinstance(v, float) for v in out.parts.values())
    assert out.loss.dim() == 0


# ---------------------------------------------------------------------------------------
# Sign conventions with a real gradient step


def _step_nll(method: str, which: str) -> tuple[float, float]:
    """One SGD step on a tiny parameter that *is* the logits; NLL of `which` before and after."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(2, 4, 5))  # [B=2, T=4, V=5]
    true_labels = T([[-100, 1, 2, 3], [-100, -100, 4, 0]])
    refusal_labels = T([[-100, 0, 0, 0], [-100, -100, 1, 1]])
    opt = torch.optim.SGD([w], lr=0.05)

    def nll(labels):
        s, n, _ = answer_logprobs(w, labels)
        return float((-s / n).mean().detach())

    before = nll(true_labels if which == "true" else refusal_labels)
    s_f, n_f, _ = answer_logprobs(w, true_labels)
    s_r, n_r, _ = answer_logprobs(w, refusal_labels)
    inp = LossInputs(forget_logp_sum=s_f, forget_n_tokens=n_f, refusal_logp_sum=s_r, refusal_n_tokens=n_r)
    out = methods.get(method)(inp, retain_weight=0.0)
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    return before, nll(true_labels if which == "true" else refusal_labels)


def test_ga_step_raises_forget_nll():
    before, after = _step_nll("ga", "true")
    assert after > before


def test_po_step_lowers_refusal_nll():
    before, after = _step_nll("po", "refusal")
    assert after < before


# ---------------------------------------------------------------------------------------
# answer_logprobs and kl_per_sequence


def test_answer_logprobs_hand_value():
    # position 0 predicts labels[1] = 0 with p = 0.5 ; position 1 predicts labels[2] = 2 with p = 0.7
    logits = torch.log(T([[[0.5, 0.25, 0.25], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]]]))
    labels = T([[-100, 0, 2]])
    s, n, tok = answer_logprobs(logits, labels)
    assert close(s[0], math.log(0.5) + math.log(0.7))
    assert float(n[0]) == 2
    assert tok.shape == (1, 3)
    assert close(tok[0, 0], 0.0) and close(tok[0, 1], math.log(0.5)) and close(tok[0, 2], math.log(0.7))


def test_answer_logprobs_independent_of_padding_side():
    torch.manual_seed(1)
    V = 7
    lengths = [5, 3, 4]
    contents = [(torch.randn(L, V), torch.randint(0, V, (L,))) for L in lengths]
    # the first token of every sequence is prompt (ignored), the rest is the answer
    for i, (_, lab) in enumerate(contents):
        lab[0] = -100
    Tmax = 6
    garbage = lambda k: 100 * torch.randn(k, V)  # noqa: E731 - padding logits must not matter
    right_l, right_y, left_l, left_y = [], [], [], []
    for lg, lab in contents:
        pad = Tmax - lg.shape[0]
        right_l.append(torch.cat([lg, garbage(pad)]))
        right_y.append(torch.cat([lab, torch.full((pad,), -100)]))
        left_l.append(torch.cat([garbage(pad), lg]))
        left_y.append(torch.cat([torch.full((pad,), -100), lab]))
    sr, nr, tr = answer_logprobs(torch.stack(right_l), torch.stack(right_y))
    sl, nl, tl = answer_logprobs(torch.stack(left_l), torch.stack(left_y))
    assert torch.allclose(sr, sl, atol=1e-6) and torch.equal(nr, nl)
    assert nr.tolist() == [4.0, 2.0, 3.0]
    # each sequence alone (no padding at all) gives the same value
    for i, (lg, lab) in enumerate(contents):
        s1, _, _ = answer_logprobs(lg[None], lab[None])
        assert close(s1[0], sr[i], 1e-5)


def test_kl_per_sequence_zero_when_equal():
    torch.manual_seed(2)
    lg = torch.randn(3, 4, 6)
    mask = torch.ones(3, 4, dtype=torch.bool)
    assert torch.allclose(kl_per_sequence(lg, lg.clone(), mask), torch.zeros(3), atol=1e-6)


def test_kl_per_sequence_hand_value_and_padding():
    # 2 answer tokens, vocabulary of 3. Logits are log-probs (log_softmax leaves them unchanged).
    ref = torch.log(T([[[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]]))
    theta = torch.log(T([[[1 / 3, 1 / 3, 1 / 3], [0.5, 0.25, 0.25]]]))
    kl1 = 0.5 * math.log(0.5 / (1 / 3)) + 2 * 0.25 * math.log(0.25 / (1 / 3))
    kl2 = 0.2 * math.log(0.2 / 0.5) + 0.3 * math.log(0.3 / 0.25) + 0.5 * math.log(0.5 / 0.25)
    mask = torch.ones(1, 2, dtype=torch.bool)
    assert close(kl_per_sequence(theta, ref, mask)[0], (kl1 + kl2) / 2)
    # add a padding position with wild logits, masked out: nothing changes
    pad_t = torch.cat([theta, 50 * torch.randn(1, 1, 3)], dim=1)
    pad_r = torch.cat([ref, -50 * torch.randn(1, 1, 3)], dim=1)
    pmask = T([[True, True, False]])
    assert close(kl_per_sequence(pad_t, pad_r, pmask)[0], (kl1 + kl2) / 2)


def test_shifted_answer_mask_matches_answer_logprobs():
    labels = T([[-100, -100, 5, 6], [-100, 3, -100, -100]])
    m = shifted_answer_mask(labels)
    assert m.tolist() == [[False, True, True, False], [True, False, False, False]]
    _, n, _ = answer_logprobs(torch.zeros(2, 4, 8), labels)
    assert m.sum(1).float().tolist() == n.tolist()


# ---------------------------------------------------------------------------------------
# Registry and validation


def test_the_registry_is_the_one_list_of_methods():
    assert config.load_config("smoke").unlearn.methods == tuple(methods.METHODS) == methods.BUILT_IN
    for name, spec in methods.METHODS.items():
        assert spec.name == name and spec.formula and spec.summary and spec.title and callable(spec.fn)
        assert spec.citation and spec.about and set(spec.targets) <= set(config.TARGETS)
        assert spec.settings is None or set(methods.settings_of(name, config.UnlearnConfig()).__dataclass_fields__)


def test_unknown_method_lists_allowed_names():
    with pytest.raises(ConfigError) as e:
        methods.get("sgd")
    for n in ("ga", "gd", "kl", "po", "dpo", "npo", "gd+bgd", "kl+bgd"):
        assert n in str(e.value)


def test_missing_input_is_named():
    inp = dataclasses.replace(full_inputs(), retain_logp_sum=None)
    with pytest.raises(ValueError, match="retain_logp_sum"):
        methods.get("gd")(inp)
    with pytest.raises(ValueError, match="forget_ref_logp_sum"):
        methods.get("npo")(dataclasses.replace(full_inputs(), forget_ref_logp_sum=None))
    with pytest.raises(ValueError, match="retain_kl"):
        methods.get("kl")(dataclasses.replace(full_inputs(), retain_kl=None))
    with pytest.raises(ValueError, match="forget_concepts"):
        methods.get("gd+bgd")(dataclasses.replace(full_inputs(), forget_concepts=None))


@pytest.mark.parametrize("name", sorted(methods.BUILT_IN))
@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_required_inputs_are_sufficient(name, lam):
    spec = methods.get(name)
    full = full_inputs()
    only = LossInputs(**{f: getattr(full, f) for f in spec.required_inputs(lam)})
    extra = {"grad_norm": lambda t: 1.0} if spec.needs_grad_norm else {}
    out = spec(only, retain_weight=lam, beta=0.5, **extra)
    assert torch.isfinite(out.loss)


def test_zero_token_sequence_is_an_error():
    with pytest.raises(ValueError, match="answer token"):
        methods.get("ga")(full_inputs(forget_n_tokens=T([4.0, 0.0])))


# ---------------------------------------------------------------------------------------
# BGD


def bgd_inputs() -> LossInputs:
    # person forget NLL = mean(20/2, 30/3) = 10 ; event forget NLL = 1/1 = 1  (10x apart)
    return LossInputs(
        forget_logp_sum=T([-20.0, -30.0, -1.0], requires_grad=True),
        forget_n_tokens=T([2.0, 3.0, 1.0]),
        forget_concepts=["person", "person", "event"],
        retain_logp_sum=T(K_LOGP),
        retain_n_tokens=T(K_N),
        retain_kl=T(RETAIN_KL),
        retain_concepts=["person", "event", "event"],
    )


def test_adjusted_logits_by_hand():
    ref = T([[0.0, 0.0, 1.0], [2.0, 0.0, 0.0]])
    got = adjusted_logits(ref, torch.tensor([2, 0]), strength=1.5)
    assert torch.equal(got, T([[0.0, 0.0, -0.5], [0.5, 0.0, 0.0]]))
    assert torch.equal(ref, T([[0.0, 0.0, 1.0], [2.0, 0.0, 0.0]]))  # the reference is not modified
    assert torch.equal(adjusted_logits(ref, torch.tensor([2, 0]), 0.0), ref)
    with pytest.raises(ValueError, match="strength"):
        adjusted_logits(ref, torch.tensor([2, 0]), -1.0)
    with pytest.raises(ValueError, match=r"\[N, V\]"):
        adjusted_logits(ref[0], torch.tensor([2]), 1.0)


def test_undial_by_hand():
    # V = 2, reference logits [0, 0], true token 0, strength ln 3: the target is [1/4, 3/4].
    # theta at [0, 0] (p = [1/2, 1/2]): KL = 1/4 ln(1/2) + 3/4 ln(3/2)
    target = adjusted_logits(T([[0.0, 0.0]]), torch.tensor([0]), math.log(3.0))
    assert torch.allclose(torch.softmax(target, -1), T([[0.25, 0.75]]))
    theta = T([[0.0, 0.0]], requires_grad=True)
    kl = packed_kl_per_sequence(theta, target, torch.tensor([0]), 1)
    want = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert close(kl[0], want)
    out = methods.get("undial")(LossInputs(forget_adjusted_kl=kl))
    assert close(out.loss, want) and close(out.parts["forget_loss"], want)
    # the gradient of KL(q || softmax(theta)) w.r.t. theta is softmax(theta) - q: [1/4, -1/4]
    out.loss.backward()
    assert torch.allclose(theta.grad, T([[0.25, -0.25]]))
    # the mean over sequences, with the forget NLL logged when it is there
    out = methods.get("undial")(
        LossInputs(forget_adjusted_kl=T([0.2, 0.4]), forget_logp_sum=T([-2.0, -6.0]), forget_n_tokens=T([4.0, 3.0]))
    )
    assert close(out.loss, 0.3) and close(out.parts["forget_nll"], 1.25)
    with pytest.raises(ValueError, match="forget_adjusted_kl"):
        methods.get("undial")(full_inputs(forget_adjusted_kl=None))


def test_mse_per_sequence_by_hand():
    # two sequences: rows 0, 0, 1 ; H = 2
    h = T([[1.0, 3.0], [0.0, 0.0], [2.0, 2.0]])
    u = T([1.0, 1.0])  # one control vector for every position
    # per token: mean((0, 2)^2) = 2 ; mean((-1, -1)^2) = 1 ; mean((1, 1)^2) = 1 -> sequences (2+1)/2, 1
    got = mse_per_sequence(h, u, torch.tensor([0, 0, 1]), 2)
    assert torch.allclose(got, T([1.5, 1.0]))
    ref = h.clone()
    assert torch.equal(mse_per_sequence(h, ref, torch.tensor([0, 0, 1]), 2), T([0.0, 0.0]))
    with pytest.raises(ValueError, match="no answer positions"):
        mse_per_sequence(h, u, torch.tensor([0, 0, 1]), 3)
    with pytest.raises(ValueError, match="disagree"):
        mse_per_sequence(h, T([1.0, 1.0, 1.0]), torch.tensor([0, 0, 1]), 2)


def test_rmu_by_hand():
    # forget MSE [2, 4] -> 3 ; retain MSE [0.1, 0.2, 0.6] -> 0.3 ; lambda 2 -> 3 + 0.6
    out = methods.get("rmu")(full_inputs(), retain_weight=2.0)
    assert close(out.loss, 3.6) and close(out.parts["forget_loss"], 3.0) and close(out.parts["retain_loss"], 0.3)
    assert close(out.parts["forget_nll"], 1.25)
    out = methods.get("rmu")(full_inputs(retain_rmu_mse=None), retain_weight=0.0)
    assert close(out.loss, 3.0)
    with pytest.raises(ValueError, match="retain_rmu_mse"):
        methods.get("rmu")(full_inputs(retain_rmu_mse=None))


def test_dual_masked_kl_by_hand():
    """V = 3. Position 0 of sequence 0 predicts token 2, the concept token: masked. Position 1
    (token 0) is kept, with token 2 out of both distributions: ref [1/2, 1/2] against theta
    [e/(e+1), 1/(e+1)]. Sequence 1 has no concept tokens: a plain KL."""
    ref = torch.log(T([[0.2, 0.2, 0.6], [0.25, 0.25, 0.5], [0.5, 0.25, 0.25]]))
    theta = T([[0.0, 0.0, 0.0], [1.0, 0.0, 5.0], [0.0, 0.0, 0.0]], requires_grad=True)
    targets, rows = torch.tensor([2, 0, 1]), torch.tensor([0, 0, 1])
    got = dual_masked_kl_per_sequence(theta, ref, targets, rows, 2, [[2], []])
    e = math.e
    p1 = [e / (e + 1), 1 / (e + 1)]
    want0 = 0.5 * math.log(0.5 / p1[0]) + 0.5 * math.log(0.5 / p1[1])
    want1 = 0.5 * math.log(0.5 / (1 / 3)) + 0.25 * math.log(0.25 / (1 / 3)) * 2
    assert torch.allclose(got, T([want0, want1]), atol=1e-6)
    # without masks it is the packed KL
    plain = dual_masked_kl_per_sequence(theta, ref, targets, rows, 2, [[], []])
    assert torch.allclose(plain, packed_kl_per_sequence(theta, ref, rows, 2), atol=1e-6)
    # a sequence whose every position is masked contributes 0
    assert float(dual_masked_kl_per_sequence(theta[:1], ref[:1], targets[:1], rows[:1], 1, [[2]])[0].detach()) == 0.0
    # the concept token gets no gradient from the KL: it may go wherever the refusal takes it
    got[0].backward()
    assert float(theta.grad[1, 2]) == 0.0 and float(theta.grad[0].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="concept token sets"):
        dual_masked_kl_per_sequence(theta, ref, targets, rows, 2, [[2]])


def test_siu_by_hand():
    # refusal NLL = [0.2, 0.2] -> 0.2 ; DMK [0.3, 0.5] -> 0.4 ; lambda 0.5 -> 0.2 + 0.2
    out = methods.get("siu")(full_inputs(), retain_weight=0.5)
    assert close(out.loss, 0.4) and close(out.parts["refusal_nll"], 0.2) and close(out.parts["retain_loss"], 0.4)
    assert close(methods.get("siu")(full_inputs(refusal_dual_masked_kl=None), retain_weight=0.0).loss, 0.2)
    with pytest.raises(ValueError, match="refusal_dual_masked_kl"):
        methods.get("siu")(full_inputs(refusal_dual_masked_kl=None))


def test_task_vector_descends_on_the_forget_set():
    out = methods.get("task_vector")(full_inputs())
    assert close(out.loss, 1.25) and close(out.parts["forget_nll"], 1.25)  # +NLL_f, where GA has -NLL_f
    assert close(methods.get("ga")(full_inputs()).loss, -1.25)


def leaf_grad_norm(leaf: torch.Tensor):
    """BGD's grad_norm for a test: the norm of a term's gradient with respect to one leaf tensor."""
    return lambda t: float(torch.autograd.grad(t, [leaf], retain_graph=True)[0].norm())


def test_bgd_weights_by_hand():
    # mean norm 2: person 2/3, event 2; each weighted gradient then has norm 2
    w = bgd_weights({"person": 3.0, "event": 1.0}, max_weight=4.0)
    assert close(w["person"], 2 / 3) and close(w["event"], 2.0)
    # a vanishing gradient: 0.5005 / 0.001 = 500.5 is clipped to rho = 4
    w = bgd_weights({"person": 1.0, "event": 0.001}, max_weight=4.0)
    assert close(w["event"], 4.0) and close(w["person"], 0.5005)
    assert bgd_weights({"person": 1.0, "event": 0.0}, max_weight=4.0)["event"] == 4.0
    assert bgd_weights({"person": 3.0, "event": 1.0}, max_weight=1.0) == {"person": 1.0, "event": 1.0}
    assert bgd_weights({"event": 0.2}, max_weight=4.0) == {"event": 1.0}  # one concept: nothing to balance
    with pytest.raises(ValueError, match="max_weight"):
        bgd_weights({"person": 1.0}, max_weight=0.5)
    with pytest.raises(ValueError, match="finite and non-negative"):
        bgd_weights({"person": float("nan")}, max_weight=4.0)


def test_bgd_equalises_the_concepts_gradients():
    inp = bgd_inputs()
    leaf = inp.forget_logp_sum
    out = methods.get("gd+bgd")(inp, retain_weight=0.0, grad_norm=leaf_grad_norm(leaf), max_weight=4.0)
    # t_person = mean(logp_i / n_i) over rows 0, 1: d/dlogp = (1/4, 1/6), norm sqrt(13)/12
    # t_event = logp_2: d/dlogp = 1, norm 1 ; mean norm (sqrt(13)/12 + 1)/2
    g_p, g_e = math.sqrt(13) / 12, 1.0
    g = (g_p + g_e) / 2
    assert close(out.parts["grad_norm/person"], g_p) and close(out.parts["grad_norm/event"], g_e)
    assert close(out.parts["weight/person"], g / g_p) and close(out.parts["weight/event"], g / g_e)
    assert close(out.parts["grad_norm_ratio"], g_e / g_p) and close(out.parts["balanced_ratio"], 1.0)
    # forget = (w_p * -10 + w_e * -1) / 2
    assert close(out.loss, (g / g_p * -10 + g / g_e * -1) / 2)
    # the gradient: d/dlogp_i = (w_c / K) * 1 / (|c| n_i)
    out.loss.backward()
    want = [g / g_p / 2 / 4, g / g_p / 2 / 6, g / g_e / 2]
    assert torch.allclose(leaf.grad, torch.tensor(want), atol=1e-6)
    # and the two concepts' parts of it have the same norm
    assert close(leaf.grad[:2].norm(), leaf.grad[2:].norm())
    # unbalanced, plain GD's forget term is dominated by people: -(10 + 10 + 1)/3 = -7
    assert close(methods.get("ga")(inp).loss, -7.0)


def test_bgd_weights_stay_bounded_when_a_concept_is_already_certain():
    """The events' NLL after fine-tuning is ~1e-4: its gradient all but vanishes. The weight
    must stop at rho, not grow as 1/NLL (the old magnitude normalisation gave ~5,000)."""
    logits = torch.tensor([[1.0, 0.5, -0.3], [0.2, 0.9, 0.1], [30.0, 0.0, 0.0]], requires_grad=True)
    targets = torch.tensor([0, 1, 0])
    logp = torch.log_softmax(logits, -1)[torch.arange(3), targets]
    inp = LossInputs(forget_logp_sum=logp, forget_n_tokens=T([1.0, 1.0, 1.0]), forget_concepts=["person", "person", "event"])
    out = methods.get("gd+bgd")(inp, retain_weight=0.0, grad_norm=leaf_grad_norm(logits), max_weight=4.0)
    assert -out.parts["forget_term/event"] < 1e-12  # NLL ~ 2e-13
    assert out.parts["weight/event"] == 4.0
    assert 0.25 <= out.parts["weight/person"] <= 4.0 and close(out.parts["weight/person"], 0.5, 1e-6)
    # bounded for every rho: the weight ratio is at most rho**2
    for rho in (1.0, 2.0, 10.0):
        o = methods.get("kl+bgd")(inp, retain_weight=0.0, grad_norm=leaf_grad_norm(logits), max_weight=rho)
        assert 1 / rho <= o.parts["weight/event"] <= rho and 1 / rho <= o.parts["weight/person"] <= rho


def test_bgd_needs_the_loops_gradient_norms():
    with pytest.raises(ValueError, match="grad_norm"):
        methods.get("gd+bgd")(bgd_inputs())


def test_bgd_retain_is_balanced_across_concepts_and_in_force():
    # retain NLL = [0.5 (person), 1.5 (event), 0.5 (event)] -> mean(0.5, 1.0) = 0.75 (not 2.5/3)
    inp = bgd_inputs()
    gn = leaf_grad_norm(inp.forget_logp_sum)
    forget = methods.get("gd+bgd")(inp, retain_weight=0.0, grad_norm=gn).loss.detach()
    out = methods.get("gd+bgd")(inp, retain_weight=1.0, grad_norm=gn)
    assert close(out.parts["retain_loss"], 0.75)
    assert close(out.loss, float(forget) + 0.75)  # the retain term is added unweighted by BGD
    # KL = [0.1 (person), 0.3, 0.5 (event)] -> mean(0.1, 0.4) = 0.25
    out = methods.get("kl+bgd")(inp, retain_weight=2.0, grad_norm=gn)
    assert close(out.parts["retain_loss"], 0.25)
    assert close(out.loss, float(forget) + 2 * 0.25)


def test_bgd_label_length_mismatch():
    inp = dataclasses.replace(bgd_inputs(), forget_concepts=["person"])
    with pytest.raises(ValueError, match="forget_concepts"):
        methods.get("gd+bgd")(inp, grad_norm=lambda t: 1.0)


# packed (answer-positions-only) statistics equal the padded ones


def _padded_and_packed(seed: int = 3):
    torch.manual_seed(seed)
    V, Tmax = 5, 6
    logits = torch.randn(3, Tmax, V)
    labels = torch.full((3, Tmax), -100)
    labels[0, 2:5] = torch.tensor([1, 4, 0])  # 3 answer tokens
    labels[1, 1:3] = torch.tensor([2, 2])  # 2
    labels[2, 4:6] = torch.tensor([3, 1])  # 2, ending at the last position
    target = labels[:, 1:]
    sel = target != -100
    return logits, labels, logits[:, :-1][sel], target[sel], sel.nonzero(as_tuple=True)[0]


def test_packed_answer_logprobs_equals_padded():
    logits, labels, flat, targets, rows = _padded_and_packed()
    s, n, _ = answer_logprobs(logits, labels)
    ps, pn = packed_answer_logprobs(flat, targets, rows, 3)
    assert torch.allclose(ps, s, atol=1e-6) and torch.equal(pn, n)
    assert pn.tolist() == [3.0, 2.0, 2.0]
    # by hand for the second sequence: positions 0 and 1 predict token 2
    lp = torch.log_softmax(logits[1], -1)
    assert close(ps[1], float(lp[0, 2] + lp[1, 2]), 1e-6)


def test_packed_kl_equals_padded():
    logits, labels, flat, targets, rows = _padded_and_packed()
    torch.manual_seed(4)
    ref = logits + 0.5 * torch.randn_like(logits)
    target = labels[:, 1:]
    sel = target != -100
    kl = kl_per_sequence(logits, ref, shifted_answer_mask(labels))
    pk = packed_kl_per_sequence(flat, ref[:, :-1][sel], rows, 3)
    assert torch.allclose(pk, kl, atol=1e-6)
    with pytest.raises(ValueError, match="no answer positions"):
        packed_kl_per_sequence(flat, ref[:, :-1][sel], rows, 4)
    with pytest.raises(ValueError, match="disagree"):
        packed_kl_per_sequence(flat, flat[:-1], rows, 3)


def test_packed_token_logprobs_by_hand():
    from pebench_core.statistics import packed_token_logprobs

    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    got = packed_token_logprobs(logits, torch.tensor([1, 0]))
    assert torch.allclose(got, torch.tensor([math.log(0.75), math.log(0.5)]))


def test_the_table_of_inputs_covers_every_loss_input_and_sizes_a_step():
    """One table says where each loss input comes from; the loop, the memory plan and the step
    costs read it, so they cannot disagree about a method (RMU runs its retain set too)."""
    from pebench_core.inputs import INPUTS, encoded_sets, step_sets, step_size
    from pebench_core.losses import LossInputs

    assert set(INPUTS) == {f.name for f in dataclasses.fields(LossInputs)}
    rmu = methods.get("rmu").required_inputs(1.0)
    assert step_sets(rmu) == ("forget", "retain") and step_size(rmu, 4) == (8, 8)
    dpo = methods.get("dpo").required_inputs(1.0)
    assert step_size(dpo, 4) == (8, 12)  # the refusal shares its prompt with the true answer
    siu = methods.get("siu").required_inputs(1.0)
    assert step_sets(siu) == ("refusal",) and encoded_sets(siu) == ("refusal",)
    assert step_sets(methods.get("gd").required_inputs(0.0)) == ("forget",)  # λ = 0: no retain pass
