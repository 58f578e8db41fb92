"""Every Sphinx-style reference in the package's text names something that exists.

Rule 1: a ``:mod:``, ``:func:``, ``:class:``, ``:data:``, ``:meth:``, ``:attr:`` or ``:exc:``
target in a module of :mod:`cvmlaunch`, ``bench`` or ``tests`` (docstrings and comments), in
``docs/*.md`` or in ``README.md`` resolves by importing: the longest importable module prefix,
then attributes (a dataclass field or an annotated attribute counts). A name without its
module is looked up as Sphinx looks it up: in the class the text is written in, in the module,
then under ``cvmlaunch``.

Rule 2: a dotted name in backticks in the Markdown files and in the package's docstrings whose
first word is ``cvmlaunch`` or one of its modules (``cvmlaunch.plan.snp``, ``measure.snp``,
``kvm_map.PortBus``; in the Markdown files also ``tests.vectors.…``) resolves the same way, so
that the README's tables and the docs name modules and functions that exist. A file name
(``files.py``, ``launch.jsonl``) is no name.

Rule 3: a path in the checkout that the text names (``cvmlaunch/plan/pvh.py``,
``tests/test_fw_cfg.py``, ``tests/vectors/snp/``) exists, and a test named as pytest names it
(``tests/test_snp.py::test_worked_trace``) is a function of that file. Paths in other projects
that share a first directory with ours are listed in :data:`_ELSEWHERE`.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import cvmlaunch

ROOT = Path(__file__).resolve().parent.parent

_ROLE = re.compile(r":(mod|func|class|data|meth|attr|exc):`([^`]+)`")
# A dotted name in single or double backticks, optionally called: `a.b`, ``a.b()``.
_DOTTED = re.compile(r"`{1,2}([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?:\(\))?`{1,2}")
_FILE_SUFFIXES = {
    "py", "md", "json", "jsonl", "toml", "txt", "bin", "pem", "pub", "fd", "img", "elf",
    "c", "h", "S", "so", "rst", "dsse", "yaml", "yml", "sh", "ld",
}  # fmt: skip
_TOP = {m.name for m in pkgutil.iter_modules(cvmlaunch.__path__)}
_PATH = re.compile(
    r"(?<![\w/.-])((?:cvmlaunch|tests|bench|docs|examples)/[\w./-]*[\w/])(?:::(\w+))?"
)
#: Paths of other projects that the text names: virtee/sev's test data, QEMU's fw_cfg spec.
_ELSEWHERE = {"tests/certs_data/", "docs/specs/fw_cfg.rst"}
#: Dotted text that is no Python name: a C struct's fields (``struct kvm_tdx_init_vm``).
_NOT_NAMES = {"cpuid.nent"}


def _python_files() -> list[Path]:
    files = sorted((ROOT / "cvmlaunch").rglob("*.py"))
    files += sorted((ROOT / "bench").glob("*.py"))
    files += sorted((ROOT / "tests").glob("*.py"))
    return files


def _markdown_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted((ROOT / "bench").glob("*.md"))
    files += sorted((ROOT / "tests" / "vectors").rglob("README.md"))
    return files


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _attribute(obj: object, name: str) -> tuple[bool, object]:
    """``(found, value)``; a dataclass field or annotated attribute is found with no value."""
    try:
        return True, getattr(obj, name)
    except AttributeError:
        pass
    if isinstance(obj, type):
        for klass in obj.__mro__:
            if name in getattr(klass, "__dataclass_fields__", {}) or name in vars(klass).get(
                "__annotations__", {}
            ):
                return True, None
            if name in getattr(klass, "__slots__", ()) or name in _self_attributes(klass):
                return True, None
    return False, None


def _self_attributes(klass: type) -> set[str]:
    """The names a class's methods assign as ``self.NAME`` (an exception's fields)."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):
        return set()
    return {
        target.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
    }


def resolves(dotted: str) -> bool:
    """True if ``dotted`` is a module, or attributes of the longest module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        if parts[cut - 1] == "__main__":  # importing it would run the program
            return cut == len(parts) and (ROOT / f"{name.replace('.', '/')}.py").is_file()
        try:
            obj: object = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
                continue
            raise
        for attr in parts[cut:]:
            if obj is None:
                return False
            found, obj = _attribute(obj, attr)
            if not found:
                return False
        return True
    return False


def _target(text: str) -> str:
    if text.endswith(">") and "<" in text:
        text = text[text.rindex("<") + 1 : -1]
    text = "".join(text.split())  # a target wrapped over lines
    text = text.lstrip("~!").lstrip(".")
    return text.removesuffix("()")


def _classes_at(tree: ast.Module) -> list[tuple[int, int, str]]:
    spans: list[tuple[int, int, str]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                name = f"{prefix}{child.name}"
                spans.append((child.lineno, child.end_lineno or child.lineno, name))
                walk(child, name + ".")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                walk(child, prefix)

    walk(tree, "")
    return spans


def _imports(tree: ast.Module, module: str, is_package: bool) -> dict[str, str]:
    """Every name the module imports, anywhere (``TYPE_CHECKING`` and function bodies too),
    mapped to what it names: the reader sees the import, so ``Plan`` in its text is that."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname is not None:
                    names[alias.asname] = alias.name
                else:
                    first = alias.name.split(".")[0]
                    names[first] = first
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join([*parts[:keep], *([base] if base else [])])
            for alias in node.names:
                names[alias.asname or alias.name] = f"{base}.{alias.name}"
    return names


def _candidates(
    target: str, module: str | None, klass: str | None, imported: dict[str, str]
) -> list[str]:
    out: list[str] = []
    if module is not None:
        if klass is not None:
            out.append(f"{module}.{klass}.{target}")
        out.append(f"{module}.{target}")
    first, _, rest = target.partition(".")
    if first in imported:
        out.append(imported[first] + (f".{rest}" if rest else ""))
    out += [target, f"cvmlaunch.{target}", f"builtins.{target}"]
    return out


def references() -> Iterator[tuple[str, int, str, list[str]]]:
    """``(file, line, text as written, candidate names)`` for every reference."""
    for path in _python_files():
        source = path.read_text()
        module = _module_name(path)
        tree = ast.parse(source)
        spans = _classes_at(tree)
        imported = _imports(tree, module, path.name == "__init__.py")
        rel = str(path.relative_to(ROOT))
        for match in _ROLE.finditer(source):
            line = source.count("\n", 0, match.start()) + 1
            inside = [name for first, last, name in spans if first <= line <= last]
            klass = max(inside, key=len) if inside else None
            target = _target(match.group(2))
            yield rel, line, match.group(0), _candidates(target, module, klass, imported)
        for match in _DOTTED.finditer(source):
            dotted = match.group(1)
            if dotted in _NOT_NAMES or dotted.rsplit(".", 1)[1] in _FILE_SUFFIXES:
                continue
            if dotted.split(".")[0] in _TOP:
                line = source.count("\n", 0, match.start()) + 1
                yield rel, line, match.group(0), [f"cvmlaunch.{dotted}"]
    for path in _markdown_files():
        text = path.read_text()
        rel = str(path.relative_to(ROOT))
        for match in _ROLE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            yield rel, line, match.group(0), _candidates(_target(match.group(2)), None, None, {})
        for match in _DOTTED.finditer(text):
            dotted = match.group(1)
            first, last = dotted.split(".")[0], dotted.rsplit(".", 1)[1]
            if last in _FILE_SUFFIXES:
                continue
            if first == "cvmlaunch":
                yield rel, text.count("\n", 0, match.start()) + 1, match.group(0), [dotted]
            elif first in _TOP:
                line = text.count("\n", 0, match.start()) + 1
                yield rel, line, match.group(0), [f"cvmlaunch.{dotted}"]
            elif first == "tests":
                yield rel, text.count("\n", 0, match.start()) + 1, match.group(0), [dotted]


def paths() -> Iterator[tuple[str, int, str, str, str | None]]:
    """``(file, line, text as written, path, test name or None)`` for every path named."""
    for path in [*_python_files(), *_markdown_files(), *sorted((ROOT / "examples").rglob("*"))]:
        if not path.is_file() or path.suffix in {".elf", ".img"}:
            continue
        text = path.read_text()
        rel = str(path.relative_to(ROOT))
        for match in _PATH.finditer(text):
            named = match.group(1)
            if named in _ELSEWHERE:
                continue
            line = text.count("\n", 0, match.start()) + 1
            yield rel, line, match.group(0), named, match.group(2)


def _path_exists(named: str, test: str | None) -> bool:
    target = ROOT / named
    if not target.exists():
        return False
    if test is None:
        return True
    tree = ast.parse(target.read_text())
    return any(
        isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == test
        for node in tree.body
    )


def broken() -> list[str]:
    return [
        f"{rel}:{line}: {text}"
        for rel, line, text, names in references()
        if not any(resolves(name) for name in names)
    ]


def missing_paths() -> list[str]:
    return [
        f"{rel}:{line}: {text}"
        for rel, line, text, named, test in paths()
        if not _path_exists(named, test)
    ]


def test_references_resolve() -> None:
    found = list(references())
    assert len(found) > 500  # the scan reads the text (a pattern that matches nothing fails)
    assert broken() == []


def test_paths_exist() -> None:
    found = list(paths())
    assert len(found) > 50
    assert missing_paths() == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cvmlaunch.plan.snp.snp_plan", True),
        ("cvmlaunch.plan", True),
        ("cvmlaunch.layout.Plan", True),
        ("cvmlaunch.measure.snp.snp_layout", False),
        ("cvmlaunch.measure.pages", False),
        ("cvmlaunch.no_such_module.x", False),
        ("cvmlaunch.__main__", True),
        ("cvmlaunch.errors.ConfigError.setting", True),  # assigned in __init__
        ("cvmlaunch.plan.snp.SnpSettings.vcpus", True),  # a dataclass field
        ("cvmlaunch.plan.snp.SnpSettings.no_such_field", False),
    ],
)
def test_resolves(name: str, expected: bool) -> None:
    assert resolves(name) is expected


if __name__ == "__main__":
    print("\n".join([*broken(), *missing_paths()]))
