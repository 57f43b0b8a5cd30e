"""The package's module list (taulib/__init__.py) names every module, and only modules that exist."""

import re
from pathlib import Path

import taulib

PACKAGE = Path(taulib.__file__).parent


def test_the_package_docstring_lists_every_module_once():
    on_disk = {
        ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for path in PACKAGE.rglob("*.py")
        if path.name not in {"__init__.py", "__main__.py"}
    }
    listed = re.findall(r"^([a-z_]+(?:\.[a-z_]+)?) {2,}\S", taulib.__doc__, re.M)
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert set(listed) == on_disk


def test_every_subpackage_says_what_it_holds():
    for init in PACKAGE.glob("*/__init__.py"):
        text = init.read_text()
        assert text.startswith('"""') and len(text.split('"""')[1].strip()) > 20, init
