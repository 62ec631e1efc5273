"""pebench_core: the thin core library behind the PEBench book.

One module (or small package) per idea, in layers whose imports run one way: settings
(config); the world (world/, data); pure maths (losses, metrics, scorers); models
(families, models/, encoding, forward, memory, distributed); training (trainer,
vision_pretraining, train, unlearn, evaluate, likelihoods); stages (code_keys, storage,
results, pipeline with its run handle); reading (analysis/, narrate, plots); the surface
(cli, book). The book's page "How the book is built" (book/design.md) describes each.
"""

__version__ = "0.1.0"
