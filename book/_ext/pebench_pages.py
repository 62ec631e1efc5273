"""Sphinx extension for the PEBench book's pages (loaded through _config.yml local_extensions).

- Every script a page loads is loaded once. sphinx-thebe adds its inline configuration
  (``const THEBE_JS_URL = ...``) each time the environment reads documents, so an
  incremental build wrote it twice and every page threw "Identifier 'THEBE_JS_URL' has
  already been declared".
- The book's stylesheet (wide tables and long code lines scroll instead of being cut at the
  text column) is served from ``book/_static``.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "_static"


def _script_identity(script) -> tuple:
    # an inline script's filename is None or "" depending on who added it (both mean none)
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return (str(filename), attributes.get("body", ""))


def _one_of_each_script(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _script_identity(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.config.html_static_path.append(str(STATIC))
    app.add_css_file("pebench.css")
    app.connect("html-page-context", _one_of_each_script, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
