"""`cvstack models prepare|show`: exit codes and one-line errors."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from backend.model_prep.cli import register
from tests.model_prep.conftest import OnnxFactory


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="cvstack")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    return lines[0]


def test_missing_detector_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.pt"
    code = run("models", "prepare", "--models-dir", str(tmp_path), "--detector", str(missing))
    assert code == 2
    assert _one_error_line(capsys) == f"error: --detector file {missing} does not exist"


def test_unreadable_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\xff" * 64)
    code = run("models", "prepare", "--models-dir", str(tmp_path), "--detector", str(broken))
    assert code == 2
    assert "is not a readable ONNX file" in _one_error_line(capsys)


@pytest.mark.parametrize("imgsz", ["300", "0", "-32", "big"])
def test_imgsz_must_be_a_positive_multiple_of_32(
    imgsz: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run("models", "prepare", "--imgsz", imgsz)
    assert exit_info.value.code == 2
    assert "positive multiple of 32" in capsys.readouterr().err


def test_prepare_then_show(
    yolo_onnx: OnnxFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    detector = yolo_onnx("detector.onnx", out_tail=(7, 2100))
    pose = yolo_onnx("pose.onnx", out_tail=(56, 2100))
    models_dir = str(tmp_path / "models")
    argv = ("--models-dir", models_dir, "--detector", str(detector), "--pose", str(pose))
    assert run("models", "prepare", *argv, "--no-ocr") == 0
    capsys.readouterr()
    assert run("models", "show", "--models-dir", models_dir) == 0
    shown = capsys.readouterr().out
    assert "yolo_pose" in shown
    assert "Nx7x2100" in shown


def test_show_without_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("models", "show", "--models-dir", str(tmp_path)) == 2
    assert "no model manifest" in _one_error_line(capsys)
