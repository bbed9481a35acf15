"""shared/core/codes.py is the one list of codes: every code the code base emits is in it, and the README's
table of codes is generated from it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from shared.core.codes import (
    CODES,
    HTTP_STATUS,
    README_END,
    README_START,
    WHO_TEXT,
    codes_table,
    main,
    page_table,
    readme_with_table,
)
from tests.support import REPO

SOURCES = REPO / "shared"
CODE = re.compile(r"[a-z][a-z0-9_]*")


def _strings(node: ast.expr | None) -> list[str]:
    """The code strings an expression can give: a literal, or either branch of `a if c else b` / `a or b`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.fullmatch(node.value):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    if isinstance(node, ast.BoolOp):
        return [s for value in node.values for s in _strings(value)]
    return []


def _code_positions(trees: dict[Path, ast.Module]) -> dict[tuple[Path | None, str], int]:
    """Where `code` sits among the positional arguments of each function or class that takes one.

    Keyed by (module, name) and by (None, name) when the name means one thing in the whole code base.
    """
    found: dict[tuple[Path | None, str], int] = {}
    everywhere: dict[str, set[int]] = {}
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        names = [a.arg for a in item.args.posonlyargs + item.args.args][1:]  # without self
                        if "code" in names:
                            found[(path, node.name)] = names.index("code")
                            everywhere.setdefault(node.name, set()).add(names.index("code"))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name != "__init__":
                names = [a.arg for a in node.args.posonlyargs + node.args.args]
                if "code" in names:
                    found[(path, node.name)] = names.index("code")
                    everywhere.setdefault(node.name, set()).add(names.index("code"))
    for name, positions in everywhere.items():
        if len(positions) == 1:
            found[(None, name)] = positions.pop()
    return found


# Calls that pass their first argument's arguments on: `asyncio.to_thread(f, a, b)` calls f(a, b).
_FORWARDERS = {"to_thread", "partial", "run_in_executor"}


def emitted_codes(root: Path = SOURCES) -> dict[str, list[str]]:
    """Every code string the sources under `root` give a `code`, with where: `code=` arguments, `code`
    parameters' defaults and positional arguments, `"code": ...` entries, and assignments to `code`."""
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(root.rglob("*.py"))}
    positions = _code_positions(trees)
    found: dict[str, list[str]] = {}

    def add(values: list[str], path: Path, node: ast.AST) -> None:
        for value in values:
            found.setdefault(value, []).append(f"{path.relative_to(root.parent)}:{getattr(node, 'lineno', '?')}")

    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "code":
                        add(_strings(keyword.value), path, node)
                func, args = node.func, node.args
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name in _FORWARDERS and args:
                    shift = 1 if name == "run_in_executor" else 0  # loop.run_in_executor(executor, f, ...)
                    func, args = args[shift], args[shift + 1 :]
                    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                index = positions.get((path, name), positions.get((None, name)))
                if index is not None and index < len(args):
                    add(_strings(args[index]), path, node)
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "code":
                        add(_strings(value), path, node)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names = [a.arg for a in node.args.posonlyargs + node.args.args]
                positional = names[len(names) - len(node.args.defaults) :]
                defaults = dict(zip(positional, node.args.defaults, strict=True))
                only_keyword = zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True)
                defaults.update({a.arg: d for a, d in only_keyword if d is not None})
                add(_strings(defaults.get("code")), path, node)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if (isinstance(target, ast.Name) and target.id == "code") or (
                        isinstance(target, ast.Attribute) and target.attr == "code"
                    ):
                        add(_strings(node.value), path, node)
                    elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        for element, value in zip(target.elts, node.value.elts, strict=False):
                            if isinstance(element, ast.Name) and element.id == "code":
                                add(_strings(value), path, node)
    return found


def test_every_code_the_code_base_emits_is_in_the_one_table() -> None:
    emitted = emitted_codes()
    # The collector sees the ways codes are given (a sanity check that it still finds them).
    assert {"upload_too_large", "cross_origin_refused", "storage_full", "job_not_found", "image_missing"} <= set(
        emitted
    ), sorted(emitted)
    missing = {code: where for code, where in emitted.items() if code not in CODES}
    assert not missing, f"codes emitted but not in shared/core/codes.py CODES: {missing}"


def test_the_collector_finds_each_way_a_code_is_given(tmp_path: Path) -> None:
    (tmp_path / "errors.py").write_text(
        "import asyncio\n"
        "class Refused(Exception):\n"
        "    code = 'by_class_attribute'\n"
        "    def __init__(self, message, code='by_default'):\n"
        "        self.code = code\n"
        "def answer(status, message, code='invalid_request'):\n"
        "    return {'error': message, 'code': 'by_dict_entry'}\n"
        "async def run(flag):\n"
        "    answer(400, 'no', 'by_position')\n"
        "    answer(400, 'no', code='by_keyword' if flag else 'by_other_branch')\n"
        "    Refused('no', 'by_class_call')\n"
        "    await asyncio.to_thread(answer, 400, 'no', 'by_forwarded_call')\n"
        "    status, code, message = 'failed', 'by_tuple', 'text'\n"
        "    return answer(400, f'{code}: not a code', code)\n"
    )
    assert set(emitted_codes(tmp_path)) == {
        "by_class_attribute", "by_default", "invalid_request", "by_dict_entry", "by_position", "by_keyword",
        "by_other_branch", "by_class_call", "by_forwarded_call", "by_tuple",
    }  # fmt: skip


def test_each_code_says_what_it_means_what_to_do_and_who_acts() -> None:
    for name, code in CODES.items():
        assert CODE.fullmatch(name) and code.name == name
        assert code.meaning.endswith(".") and code.advice.endswith("."), name
        assert code.who in WHO_TEXT
    assert set(HTTP_STATUS) <= set(CODES)
    assert all(400 <= status <= 599 for status in HTTP_STATUS.values())


def test_the_page_table_is_every_code_with_its_advice_and_who() -> None:
    table = page_table()
    assert list(table) == list(CODES)
    assert table["minor_edit_refused"] == {"advice": CODES["minor_edit_refused"].advice, "who": "user"}


def test_the_readme_lists_every_code_generated_from_the_table() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme_with_table(readme) == readme, "run `python -m shared.core.codes --write`"
    section = readme.split(README_START)[1].split(README_END)[0]
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| (\d*) \| (.*?) \| (.*?) \| (.*?) \|$", section, flags=re.M)
    assert [row[0] for row in rows] == list(CODES)
    for name, status, meaning, advice, who in rows:
        assert status == str(HTTP_STATUS.get(name, "")), name
        assert (meaning, advice, who) == (CODES[name].meaning, CODES[name].advice, WHO_TEXT[CODES[name].who])


def test_the_generator_rewrites_only_the_table(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(f"intro\n{README_START}\nold table\n{README_END}\nrest\n")
    readme = readme_with_table((tmp_path / "README.md").read_text())
    assert readme == f"intro\n{README_START}\n{codes_table()}\n{README_END}\nrest\n"
    written: list[Path] = []
    assert main(["--write"], write=written.append) == 0 and written == [REPO]
    assert main([], write=written.append) == 2 and written == [REPO]


@pytest.mark.parametrize("code", ["not_an_image", "resource_blocked", "storage_full", "invalid_image"])
def test_each_row_is_one_line_of_the_table(code: str) -> None:
    assert sum(line.startswith(f"| `{code}` |") for line in codes_table().splitlines()) == 1
