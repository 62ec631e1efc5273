"""Executing chapters on their own: an override reaches the chapter, a real PEBench folder is
read, a failing chapter stops the build. The whole book, executed and built, is tested in
``tests/test_book_pages.py`` (one module, so that one test process executes it once).
"""

import json

import pytest

from pebench_core.book import CHAPTERS, execute_chapters

pytestmark = pytest.mark.notebooks


def test_an_override_reaches_the_chapter(tmp_path):
    """`pebench book --set K=V` and `papermill -y 'overrides: [K=V]'` take the same route into
    a chapter's configuration, and the chapter shows it."""
    run_dir = tmp_path / "run"
    chapters = execute_chapters(
        profile="smoke",
        seed=0,
        run_dir=str(run_dir),
        out_dir=tmp_path / "chapters",
        log=lambda *_: None,
        only=[CHAPTERS[0].output],
        overrides=["world.n_people=12"],
    )
    nb = json.loads((tmp_path / "chapters" / f"{chapters[0].output}.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
    assert "12 fictitious people" in text
    assert nb["metadata"]["pebench"]["parameters"]["overrides"] == ["world.n_people=12"]


def test_the_world_chapter_reads_a_real_pebench_folder(tmp_path, smoke_world_dir):
    """Chapter 1 on a real folder, sparse on purpose (a third of the images and the profile
    columns gone, as a release may be): every cell runs, the pre-training group is shown."""
    import csv

    from pebench_core.data import load_dataset, write_pebench_folder

    folder = write_pebench_folder(load_dataset(smoke_world_dir), tmp_path / "pebench")
    with (folder / "annotations.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    with (folder / "annotations.csv").open("w", newline="") as f:
        csv.writer(f).writerows([rows[0][:4], *[r[:4] for k, r in enumerate(rows[1:]) if k % 3]])
    chapters = execute_chapters(
        profile="smoke",
        seed=0,
        run_dir=str(tmp_path / "run"),
        out_dir=tmp_path / "chapters",
        log=lambda *_: None,
        only=[CHAPTERS[0].output],
        overrides=[f"world.data_dir={folder}"],
    )
    nb = json.loads((tmp_path / "chapters" / f"{chapters[0].output}.ipynb").read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert "7 fictitious people" in text and "No POPE questions" in text  # 3 of 10 form the pre-training world


def test_a_chapter_failing_side_by_side_stops_the_build(tmp_path, monkeypatch):
    """Two chapters at a time: a failed chapter's error reaches the caller (not a log line
    lost in a thread), its partly executed notebook is kept and named, and nothing is
    written over the executed copy."""
    from papermill.exceptions import PapermillExecutionError

    from pebench_core.config import ConfigError

    seen: list[str] = []
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # a budget of two threads: two kernels (a test process alone has one)
    with pytest.raises(ConfigError, match="kernels=0"):
        execute_chapters(profile="smoke", out_dir=tmp_path, only=["04_ga"], kernels=0, log=seen.append)
    with pytest.raises(PapermillExecutionError, match="no-such-method"):
        execute_chapters(
            profile="smoke",
            run_dir=str(tmp_path / "run"),
            out_dir=tmp_path,
            only=["04_ga", "04_npo"],
            extra={"method": "no-such-method"},
            kernels=2,
            log=seen.append,
        )
    failed = [line for line in seen if "FAILED" in line]
    assert len(failed) == 2 and all(".tmp.ipynb" in line for line in failed)
    assert not list(tmp_path.glob("04_*.ipynb"))  # only the hidden partial copies
    assert len(list(tmp_path.glob(".04_*.tmp.ipynb"))) == 2
