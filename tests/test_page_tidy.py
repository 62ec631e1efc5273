"""What `pebench book` does to an executed notebook before the page is built: papermill's
injected cell hidden, the parameters cell showing what ran, the build machine's paths gone,
and the syllabus's run-time table written from the notebooks' metadata."""

from __future__ import annotations

import json
from pathlib import Path

from pebench_core.book import RUN_TIMES, STAGES_FIRST, Chapter, tidy_for_the_page, write_run_times


def _nb(root: Path) -> dict:
    return {
        "metadata": {},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "# Gradient ascent"},
            {
                "cell_type": "code",
                "metadata": {"tags": ["parameters"]},
                "source": 'method = "ga"      # a registered method\nseed = 0\nrun_dir = ""       # stage cache\n',
                "outputs": [],
            },
            {
                "cell_type": "code",
                "metadata": {"tags": ["injected-parameters"]},
                "source": f'method = "gd"\nrun_dir = "{root}/runs/tiny-s0"\n',
                "outputs": [],
            },
            {
                "cell_type": "code",
                "metadata": {},
                "source": "print(run.folder)",
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": f"[world] written -> {root}/runs/tiny-s0/world\n"},
                    {"output_type": "execute_result", "data": {"text/plain": f"PosixPath('{root}')"}, "metadata": {}},
                ],
            },
        ],
    }


def test_the_page_shows_what_ran_and_not_where(tmp_path: Path):
    root = tmp_path / "checkout"
    nb = _nb(root)
    tidy_for_the_page(nb, {"method": "gd", "seed": 3, "run_dir": f"{root}/runs/tiny-s0"}, root=root)
    params, injected, out = nb["cells"][1], nb["cells"][2], nb["cells"][3]
    assert "remove-cell" in injected["metadata"]["tags"]  # kept in the notebook, not shown
    src = params["source"]
    assert 'method = "gd"' in src and "# a registered method" in src and "seed = 3" in src
    assert 'run_dir = ""' in src  # where the build cached its stages is the build machine's business
    text = out["outputs"][0]["text"]
    assert str(root) not in text and "runs/tiny-s0/world" in text
    assert str(root) not in out["outputs"][1]["data"]["text/plain"]


def test_run_times_come_from_the_notebooks(tmp_path: Path):
    chapters = tmp_path / "book" / "chapters"
    chapters.mkdir(parents=True)
    nb = _nb(tmp_path)
    nb["metadata"]["pebench"] = {"seconds": 90.0, "cores": 2, "parameters": {"profile": "tiny"}}
    (chapters / "04_ga.ipynb").write_text(json.dumps(nb))
    chs = [Chapter("04_method.ipynb", "04_ga", "Methods", title="Gradient ascent (GA)"), Chapter("x.ipynb", "x", "Methods")]
    out = write_run_times(chs, tmp_path)
    assert out == tmp_path / RUN_TIMES
    rows = [ln for ln in out.read_text().splitlines() if ln.startswith("| ") and "Chapter" not in ln]
    assert rows == ["| Gradient ascent (GA) | 1.5 min | tiny | 2 |"]  # a chapter not executed has no row
    assert "parallel processes" not in out.read_text()
    # a build that made the run's stages first (pebench_core.book.build_stages_first) shows that time as its first row
    (tmp_path / STAGES_FIRST).write_text(json.dumps({"seconds": 300.0, "workers": 2, "profile": "tiny", "cores": 2}))
    text = write_run_times(chs, tmp_path).read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "Chapter" not in ln]
    assert rows[0] == "| The run's stages, built before the chapters (2 processes) | 5.0 min | tiny | 2 |" and len(rows) == 2
    assert "only read them" in text


def test_a_run_folder_outside_the_checkout_reads_by_its_name(tmp_path: Path):
    root, run = tmp_path / "checkout", tmp_path / "elsewhere" / "run0"
    nb = _nb(root)
    nb["cells"][3]["outputs"][0]["text"] = f"300 images in {run}/world/f4cc\nrun folder {run}\n"
    tidy_for_the_page(nb, {"method": "gd", "run_dir": str(run)}, root=root)
    text = nb["cells"][3]["outputs"][0]["text"]
    assert str(tmp_path) not in text
    assert text == "300 images in run0/world/f4cc\nrun folder run0\n"


def test_progress_widgets_and_their_state_leave_the_page(tmp_path: Path):
    nb = _nb(tmp_path)
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    bar = {
        "output_type": "display_data",
        "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "finetune:  57%"},
        "metadata": {},
    }
    nb["cells"][3]["outputs"].insert(0, bar)
    tidy_for_the_page(nb, {"method": "gd"}, root=tmp_path)
    assert "widgets" not in nb["metadata"]
    assert [o["output_type"] for o in nb["cells"][3]["outputs"]] == ["stream", "execute_result"]
