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
    # a metric family's folder is listed once: its declaration, its work and its computation
    family_folders = {name for name in listed if (PACKAGE / name.replace(".", "/") / "settings.py").is_file()}
    in_folders = {f"{folder}.{part}" for folder in family_folders for part in ("settings", "family", "metric")}
    assert in_folders <= on_disk, f"a family folder lacks one of settings.py, family.py, metric.py: {in_folders - on_disk}"
    assert set(listed) - family_folders == on_disk - in_folders


def test_every_subpackage_says_what_it_holds():
    for init in PACKAGE.glob("*/__init__.py"):
        text = init.read_text()
        assert text.startswith('"""') and len(text.split('"""')[1].strip()) > 20, init
