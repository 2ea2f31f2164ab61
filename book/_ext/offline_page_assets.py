"""Sphinx extension: keep the book's pages free of assets it does not use.

Jupyter Book 1 always loads sphinx-thebe (live code cells via a kernel on a remote server). This book is
read offline and static, so its scripts are dropped: they point at unpkg.com and, added twice by
Jupyter Book, throw "Identifier 'THEBE_JS_URL' has already been declared" on every page.
"""

from __future__ import annotations


def _is_thebe(asset: object) -> bool:
    filename = str(getattr(asset, "filename", "") or "")
    body = str((getattr(asset, "attributes", None) or {}).get("body", ""))
    return "thebe" in filename or "THEBE_JS_URL" in body


def _drop_thebe(app, pagename, templatename, context, doctree) -> None:
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [asset for asset in context[key] if not _is_thebe(asset)]


def setup(app):
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
