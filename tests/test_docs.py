"""The documents: every relative link resolves, every command they show parses (``xmem`` commands with the
real parser, scripts with ``--help``), and the README's first segmentation and Python example run."""

from __future__ import annotations

import re
import runpy
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_video
from xmem.cli import build_parser, main
from xmem.io.masks import write_index_mask

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
DOCS = [d for d in DOCS if d.exists()]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def shell_commands(path: Path) -> list[list[str]]:
    """The commands of a page's ```bash blocks: continuation lines joined, comments dropped."""
    commands = []
    for block in code_blocks(path, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def all_commands() -> list[tuple[str, list[str]]]:
    return [(d.name, words) for d in DOCS for words in shell_commands(d)]


def test_the_pages_exist():
    names = {d.name for d in DOCS}
    assert {"README.md", "segment.md", "python-api.md", "gpu.md", "evaluate.md", "benchmarks.md"} <= names
    assert {"training.md", "default-model.md"} <= names
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{doc.name}: broken link {target}"


def xmem_arguments(words: list[str]) -> list[str] | None:
    """The arguments of an ``xmem`` command line (also under ``torchrun ... -m xmem``), else None."""
    if words[0] == "xmem":
        return words[1:]
    if words[0] == "torchrun" and "-m" in words:
        i = words.index("-m")
        if words[i + 1] in ("xmem", "xmem.cli"):
            return words[i + 2 :]
    return None


def test_every_xmem_command_shown_parses():
    """Each ``xmem`` command of the pages is accepted by the real parser: its subcommand, options and
    choices exist (the command is parsed, not run)."""
    parser = build_parser()
    seen = set()
    for _, words in all_commands():
        args = xmem_arguments(words)
        if args is None:
            continue
        parsed = parser.parse_args(args)
        seen.add(parsed.command)
    assert {"segment", "eval", "bench", "train", "info"} <= seen


def test_every_subcommand_answers_help(capsys):
    for command in ("segment", "eval", "bench", "train", "info"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: xmem" in capsys.readouterr().out


def scripts_shown() -> list[str]:
    found = set()
    for _, words in all_commands():
        for i, word in enumerate(words[:-1]):
            if word in ("python", "python3") and words[i + 1].endswith(".py"):
                found.add(words[i + 1])
    return sorted(found)


def test_pages_show_scripts():
    assert "benchmarks/gpu_check.py" in scripts_shown()


@pytest.mark.parametrize("script", scripts_shown())
def test_every_script_shown_answers_help(script, monkeypatch, capsys):
    path = ROOT / script
    assert path.is_file(), f"{script} is shown in the docs but does not exist"
    monkeypatch.setattr(sys, "argv", [str(path), "--help"])
    monkeypatch.setattr(sys, "path", list(sys.path))  # scripts put their own folder first
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(path), run_name="__main__")
    assert exit_info.value.code in (0, None)
    assert "usage:" in capsys.readouterr().out


def test_readme_first_segmentation_runs(tmp_path, monkeypatch):
    """The README's shortest path, word for word, on a small generated clip and its first-frame mask."""
    command = next(w for _, w in all_commands() if w[:2] == ["xmem", "segment"] and "--overlay" in w)
    assert command[2] == "clip.mp4" and command[command.index("--mask") + 1] == "first.png"
    frames = np.zeros((6, 64, 96, 3), np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    mask[20:40, 30:60] = 1
    for t in range(6):
        frames[t, 20:40, 30 + 2 * t : 60 + 2 * t] = (220, 60, 40)
    monkeypatch.chdir(tmp_path)
    write_video(tmp_path / "clip.mp4", frames)
    write_index_mask(tmp_path / "first.png", mask)
    assert main([*command[1:], "--quiet"]) == 0
    assert len(list((tmp_path / "masks").glob("*.png"))) == 6
    assert (tmp_path / "masks" / "summary.json").is_file()
    assert (tmp_path / command[command.index("--overlay") + 1]).stat().st_size > 0


def test_readme_python_example_runs(monkeypatch):
    """The README's Python block, as printed, on the demo clip (the default model at its size 240)."""
    block = next(b for b in code_blocks(ROOT / "README.md", "python") if "VideoSegmenter(" in b)
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["segmenter"].objects == [1]
    assert namespace["mask"].shape == (480, 640) and (namespace["mask"] == 1).mean() > 0.02


def test_interactive_example_runs(tmp_path, monkeypatch):
    """docs/interactive.md's example, as printed: two clicks on the demo clip's first frame give the cup
    (checked against its first-frame mask), written as a mask xmem segment reads."""
    block = next(b for b in code_blocks(ROOT / "docs" / "interactive.md", "python") if "Prompt(" in b)
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(
        compile(block.replace('"first.png"', repr(str(tmp_path / "first.png"))), "interactive.md", "exec"),
        namespace,
    )
    from xmem.io.masks import read_index_mask

    cup = read_index_mask(ROOT / "demo" / "cup-mask.png") == 1
    mask = namespace["mask"]
    assert (mask & cup).sum() / (mask | cup).sum() > 0.8
    assert (read_index_mask(tmp_path / "first.png") == 1).sum() == mask.sum()


def test_interactive_session_example_runs(monkeypatch):
    """docs/interactive.md's session example, as printed, on the demo clip: clicks on frame 100, both ways,
    a correction on frame 175; the cup is found on the hand-checked frames."""
    block = next(b for b in code_blocks(ROOT / "docs" / "interactive.md", "python") if "VideoSession(" in b)
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(block, "interactive.md", "exec"), namespace)
    from xmem.io.masks import read_index_mask

    session = namespace["session"]
    assert session.key_frames == [100, 175]
    for t in (25, 125, 216):
        cup = read_index_mask(ROOT / "demo" / "cup-annotations" / f"{t:05d}.png") == 1
        pred = session.mask(t) == 1
        assert (pred & cup).sum() / (pred | cup).sum() > 0.6, t


def test_readme_interactive_example_runs(tmp_path, monkeypatch):
    """The README's interactive block, as printed (run in a scratch folder, so its workspace lands there):
    the workspace on disk reopens with the same key frames and masks."""
    block = next(b for b in code_blocks(ROOT / "README.md", "python") if "VideoSession(" in b)
    assert '"demo/cup.mp4"' in block
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(
        compile(block.replace('"demo/cup.mp4"', repr(str(ROOT / "demo" / "cup.mp4"))), "README.md", "exec"),
        namespace,
    )
    session = namespace["session"]
    assert session.key_frames == [100, 175]
    from xmem.interactive import VideoSession

    again = VideoSession(ROOT / "demo" / "cup.mp4", workspace=tmp_path / "cup-work")
    assert again.key_frames == [100, 175]
    assert all((again.mask(t) == session.mask(t)).all() for t in (0, 100, 175, 216))
