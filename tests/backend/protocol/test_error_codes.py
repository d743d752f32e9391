"""`ErrorCode` is the one list of error codes: the backend, the schema and the page use only it."""

from __future__ import annotations

import ast
import difflib
import json
import re
import typing
from pathlib import Path

import pytest

from backend.cli import main
from backend.paths import FRONTEND_DIR, REPO_ROOT
from backend.pipeline.jpeg import RejectCode
from backend.protocol import generated
from backend.protocol.error_codes import FRAME_ERRORS, ErrorCode
from backend.protocol.server_messages import error_message

CODES = {code.value for code in ErrorCode}
ENUM_FILE = REPO_ROOT / "backend" / "protocol" / "error_codes.py"
# Standard library only, so the start-server Lambda can bundle it alone: its `TokenError` codes
# stay plain strings, checked against the enum below, and become `ErrorCode`s at the boundary.
TOKEN_FILE = REPO_ROOT / "backend" / "security" / "session_token.py"


def code_literals(path: Path) -> list[tuple[int, str]]:
    """(line, value) of every string constant in `path` that is exactly an error code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in CODES
    ]


def test_the_backend_spells_every_error_code_through_the_enum() -> None:
    found = [
        f"{path.relative_to(REPO_ROOT)}:{line}: {value!r} -> ErrorCode.{ErrorCode(value).name}"
        for path in sorted((REPO_ROOT / "backend").rglob("*.py"))
        if path not in {ENUM_FILE, TOKEN_FILE}
        for line, value in code_literals(path)
    ]
    assert not found, "error codes as bare strings; use the enum:\n" + "\n".join(found)


def test_the_session_token_codes_are_exactly_the_enums_token_codes() -> None:
    tree = ast.parse(TOKEN_FILE.read_text())
    raised = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "TokenError"
        and isinstance(node.args[0], ast.Constant)
    }
    assert raised == {code.value for code in ErrorCode if code.value.startswith("token_")}


def test_the_schema_lists_exactly_the_enums_codes() -> None:
    schema = json.loads(generated.SCHEMA_FILE.read_text())
    reference = schema["$defs"]["ErrorMessage"]["properties"]["code"]["$ref"]
    listed = schema["$defs"][reference.rsplit("/", 1)[-1]]["enum"]
    assert listed == [code.value for code in ErrorCode]


@pytest.mark.parametrize("path", list(generated.generated_files()), ids=lambda p: p.name)
def test_the_generated_file_is_up_to_date(path: Path) -> None:
    expected = generated.generated_files()[path]
    actual = path.read_text() if path.is_file() else ""
    diff = "".join(
        difflib.unified_diff(
            actual.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            f"{path.relative_to(REPO_ROOT)} (committed)",
            f"{path.relative_to(REPO_ROOT)} (generated)",
        )
    )
    assert not diff, f"run `{generated.GENERATE_COMMAND}`; it would change:\n{diff}"


def test_the_page_compares_codes_only_through_the_generated_module() -> None:
    quoted = re.compile(r"""["'`]([a-z_]+)["'`]""")
    found = [
        f"{path.name}:{number}: {match.group(0)} -> ErrorCode.{ErrorCode(match.group(1)).name}"
        for path in sorted((FRONTEND_DIR / "js").glob("*.js"))
        if path != generated.ERROR_CODES_FILE
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for match in quoted.finditer(line)
        if match.group(1) in CODES
    ]
    assert not found, "import { ErrorCode } from './error_codes.js' instead:\n" + "\n".join(found)


def test_the_jpeg_checks_reject_with_exactly_the_frame_errors() -> None:
    """The page frees a frame's slot on FRAME_ERRORS (generated); the JPEG checks raise these."""
    assert set(typing.get_args(RejectCode)) == set(FRAME_ERRORS)


def test_an_error_message_carries_the_codes_wire_value() -> None:
    text = json.dumps(error_message(ErrorCode.TOKEN_EXPIRED, "call /start again", fatal=True))
    assert json.loads(text)["code"] == "token_expired"


def test_generate_writes_stale_files_and_check_fails_until_it_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    schema, page = tmp_path / "protocol.schema.json", tmp_path / "error_codes.js"
    monkeypatch.setattr(generated, "SCHEMA_FILE", schema)
    monkeypatch.setattr(generated, "ERROR_CODES_FILE", page)
    monkeypatch.setattr("backend.protocol.cli.REPO_ROOT", tmp_path)
    page.write_text("// edited by hand\n")

    assert main(["protocol", "generate", "--check"]) == 2
    assert "run `cvstack protocol generate`" in capsys.readouterr().err
    assert main(["protocol", "generate"]) == 0
    assert main(["protocol", "generate", "--check"]) == 0
    assert page.read_text() == generated.error_codes_js()
    assert json.loads(schema.read_text()) == json.loads(generated.schema_json())
