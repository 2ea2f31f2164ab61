"""Every reidlib docstring must be valid reStructuredText after Napoleon's Google-style conversion.

The API reference is built with warnings as errors (``make book``); this test finds the same problems in
a second and names the object, so a bad docstring is fixed where it was written.
"""

from __future__ import annotations

import importlib
import inspect
import io
import re
import sys
from pathlib import Path

import pytest
from docutils import nodes
from docutils.core import publish_doctree
from docutils.parsers.rst import roles

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "book" / "tools"))

from build_book import reidlib_modules  # noqa: E402

SPHINX_ROLES = (
    "func",
    "class",
    "meth",
    "mod",
    "attr",
    "data",
    "exc",
    "obj",
    "const",
    "ref",
    "doc",
    "cite",
    "py:func",
    "py:class",
    "py:meth",
    "py:mod",
    "py:attr",
    "py:data",
    "py:exc",
    "py:obj",
    "term",
    "eq",
    "numref",
    "any",
    "download",
    "file",
    "envvar",
    "cite:p",
    "cite:t",
)


def _objects(module):
    yield module.__name__, module
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj):
            yield f"{module.__name__}.{name}", obj
            for attr, member in vars(obj).items():
                if (not attr.startswith("_") or attr == "__init__") and (
                    inspect.isfunction(member) or isinstance(member, property)
                ):
                    yield f"{module.__name__}.{name}.{attr}", member
        elif inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj


def _problems(text: str) -> list[str]:
    """docutils warnings and errors, each with the docstring line it points at."""
    stream = io.StringIO()
    publish_doctree(text, settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": stream})
    lines = text.splitlines()
    found = []
    for message in stream.getvalue().splitlines():
        match = re.match(r"<string>:(\d+): \((WARNING/2|ERROR/3)\) (.*)", message)
        # Sphinx lowers dangling references (``lambda_``) to info level, so they do not fail the build.
        if match and not match.group(3).startswith("Unknown target name"):
            number = int(match.group(1))
            where = lines[number - 1].strip() if 0 < number <= len(lines) else ""
            found.append(f"{match.group(3)} near {where!r}")
    return found


@pytest.fixture(scope="module", autouse=True)
def sphinx_roles():
    for role in SPHINX_ROLES:
        roles.register_generic_role(role, nodes.literal)


@pytest.mark.parametrize("module_name", reidlib_modules())
def test_docstrings_are_valid_rst(module_name):
    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import GoogleDocstring

    config = Config(napoleon_use_ivar=True, napoleon_numpy_docstring=False)
    module = importlib.import_module(module_name)
    bad = []
    for qualname, obj in _objects(module):
        doc = inspect.getdoc(obj)
        if not doc:
            continue
        text = str(GoogleDocstring(doc, config, what="module" if obj is module else "function"))
        bad += [f"{qualname}: {problem}" for problem in _problems(text)]
    assert not bad, "docstrings that break the API reference build:\n" + "\n".join(bad)
