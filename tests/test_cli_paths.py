"""Paths on the command line are the current directory's in every `cvflow` command (README: "Paths on the command line
are relative to the current directory in every command"); a notebook's parameters are the project home's."""
import contextlib
import io
from pathlib import Path

import pytest

from cvflow.cli import main as cvflow


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = cvflow(argv)
    return rc, out.getvalue()


@pytest.fixture
def cwd_and_home(tmp_path, monkeypatch):
    "A working directory and a project home that are not the same folder."
    wd, home = tmp_path / "wd", tmp_path / "home"
    wd.mkdir(); home.mkdir()
    monkeypatch.chdir(wd); monkeypatch.setenv("CVFLOW_HOME", str(home))
    return wd, home


def test_sample_out_is_the_working_directorys_and_its_default_the_homes(cwd_and_home):
    wd, home = cwd_and_home
    rc, out = run(["sample", "--out", "rel", "--seconds", "2", "--fps", "10", "--size", "64x48", "--scenes", "1"])
    assert rc == 0, out
    assert (wd / "rel" / "ground_truth.json").is_file() and not (home / "rel").exists()
    rc, out = run(["sample", "--seconds", "2", "--fps", "10", "--size", "64x48", "--scenes", "1"])
    assert rc == 0, out
    assert (home / "data" / "raw" / "sample" / "ground_truth.json").is_file()


@pytest.mark.parametrize("argv", [
    ["deploy", "nopkg", "--local"],
    ["serve", "nopkg", "--port", "1"],
    ["score", "nopkg", "imgs", "--out", "o"],
    ["score-video", "nopkg", "v.mp4", "--out", "o"],
    ["register", "nopkg", "--name", "m"],
    ["export", "nomodel"],
    ["view-dataset", "nods"],
], ids=lambda a: a[0])
def test_a_missing_input_is_named_in_the_working_directory_and_refused(cwd_and_home, argv):
    wd, home = cwd_and_home
    rc, out = run(argv)
    assert rc == 2 or (argv[0] == "serve" and rc != 0), (rc, out)
    assert str(wd / argv[1]) in out or str(wd / argv[2]) in out, out   # the first input the command checks
    assert str(home) not in out, out


def test_default_paths_meet_across_commands(cwd_and_home):
    "Defaults are the project home's: `cvflow sample --actions` writes where `cvflow clips` reads, from any directory."
    wd, home = cwd_and_home
    rc, out = run(["sample", "--actions", "3", "--seconds", "2", "--size", "64x48"])
    assert rc == 0, out
    assert (home / "data" / "raw" / "sample-actions" / "via_project.json").is_file()
    rc, out = run(["clips", "--clip-length", "4", "--stride", "4", "--frame-size", "16", "--val", "0.34"])
    assert rc == 0, out
    assert (home / "data" / "processed" / "cvflow-actions" / "dataset_card.json").is_file() and not (wd / "data").exists()
