"""Sphinx extension for the PEBench book's pages (loaded through _config.yml local_extensions).

- Every script a page loads is loaded once. sphinx-thebe adds its inline configuration
  (``const THEBE_JS_URL = ...``) each time the environment reads documents, so an
  incremental build wrote it twice and every page threw "Identifier 'THEBE_JS_URL' has
  already been declared".
- The book's stylesheet (wide tables and long code lines scroll instead of being cut at the
  text column) is served from ``book/_static``.
- The ipywidgets explorers' widget manager (``@jupyter-widgets/html-manager``'s ``embed.js``,
  which replays a chapter's stored widget state and its ``jslink`` links with no kernel) is
  served from ``_static/widgets``, not from a CDN: the tarball of the pinned version is fetched
  once from the npm registry, checked against the registry's sha512, and cached. It typesets
  labels with MathJax 2's API; ``widgets-mathjax.js`` maps that onto the book's MathJax 3.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from sphinx.errors import ExtensionError

STATIC = Path(__file__).resolve().parent.parent / "_static"

# The widget manager: ipywidgets 8's HTML manager. Its integrity is the registry's own
# (`npm view @jupyter-widgets/html-manager@1.0.15 dist.integrity`).
WIDGETS_VERSION = "1.0.15"
WIDGETS_URL = f"https://registry.npmjs.org/@jupyter-widgets/html-manager/-/html-manager-{WIDGETS_VERSION}.tgz"
WIDGETS_SHA512 = "5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA=="
# What a page needs of the package: the self-contained bundle (every core control), its
# licences, and the icon fonts it loads from beside itself (browsers take woff2, else woff).
WIDGETS_FILES = ("embed.js", "embed.js.LICENSE.txt", ".woff2", ".woff")


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pebench-book"


def _widget_tarball() -> bytes:
    local = os.environ.get("PEBENCH_WIDGETS_TGZ")
    source = local or WIDGETS_URL
    try:
        if local:
            data = Path(local).read_bytes()
        else:
            with urllib.request.urlopen(WIDGETS_URL, timeout=60) as response:
                data = response.read()
    except OSError as err:
        raise ExtensionError(
            f"the book's ipywidgets pages need @jupyter-widgets/html-manager {WIDGETS_VERSION} and it could not be read "
            f"from {source} ({err}). Download that tarball where the npm registry is reachable and point "
            "PEBENCH_WIDGETS_TGZ at it."
        ) from err
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != WIDGETS_SHA512:
        raise ExtensionError(f"{source}: sha512 {digest} is not the registry's {WIDGETS_SHA512} for html-manager {WIDGETS_VERSION}")
    return data


def widget_manager_static() -> Path:
    """A folder holding ``widgets/`` (the widget manager's files), fetched and verified on first
    use and unpacked atomically, so that parallel builds never see half a folder."""
    home = _cache_root() / f"html-manager-{WIDGETS_VERSION}"
    if (home / "widgets" / "embed.js").is_file():
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=home.parent, prefix=".html-manager-"))
    out = tmp / "widgets"
    out.mkdir()
    with tarfile.open(fileobj=io.BytesIO(_widget_tarball()), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("package/")
            flat = name.startswith("dist/") and "/" not in name.removeprefix("dist/")
            if member.isfile() and flat and name.endswith(WIDGETS_FILES):
                with tar.extractfile(member) as src, open(out / Path(name).name, "wb") as dst:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, dst)
    try:
        os.replace(tmp, home)
    except OSError:  # another build unpacked it first
        shutil.rmtree(tmp, ignore_errors=True)
    return home


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
    app.config.html_static_path.append(str(widget_manager_static()))
    app.add_css_file("pebench.css")
    # before the widget manager (myst-nb adds it at the default priority, 500)
    app.add_js_file("widgets-mathjax.js", priority=400)
    app.connect("html-page-context", _one_of_each_script, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
