"""pebench_core: the thin core library behind the PEBench book.

One module per idea: config (run configuration), world (the synthetic PEBench world),
data (datasets, splits, QA), models (the model adapter), train (knowledge injection),
losses (unlearning objectives), unlearn (the unlearning loop), metrics (the six metrics),
evaluate (the evaluation harness), results (results table and caching), plots (figures),
pipeline and cli (stages and the `pebench` command).
"""

__version__ = "0.1.0"
