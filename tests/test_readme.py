"""The README is exercised: every command in its `bash` blocks is checked, the cheap ones are run.

* every `make TARGET` the README mentions (code blocks or inline code) exists: `make -n TARGET` succeeds;
* every `cvflow COMMAND` it mentions exists: `cvflow COMMAND --help` exits 0;
* the cheap commands of its `bash` blocks (`cvflow --help`, `cvflow config`, `cvflow sample ...`) are run as
  written in a fresh temporary project home (`CVFLOW_HOME`), and what they claim to write is there;
* a `pip install -e ".[EXTRA]"` names an extra that `setup.py` defines.
The test reads whatever README.md says today: nothing here is a copy of it.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = Path(os.environ.get("CVFLOW_README") or REPO / "README.md")  # CVFLOW_README: check a draft
BIN = Path(sys.executable).parent
CHEAP = {"--help", "-h", "help", "--version", "-V", "config", "sample"}  # cvflow commands run as written
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^```", re.M | re.S)


def bash_blocks(text: str) -> list[str]:
    "The bodies of the fenced code blocks marked bash/sh/shell/console."
    return [m["body"] for m in FENCE.finditer(text) if m["lang"].lower() in ("bash", "sh", "shell", "console")]


def command_lines(block: str) -> list[list[str]]:
    "Each command of a block as argv: comments dropped, `\\` continuations joined, `&&`/`;` split, `$ ` prompts removed."
    text = re.sub(r"\\\n", " ", block)
    out = []
    for line in text.splitlines():
        line = re.sub(r"^\s*\$\s+", "", line)
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        cmd: list[str] = []
        for w in words + ["&&"]:
            if w in ("&&", ";", "||"):
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(w)
    return out


def make_targets(argv: list[str]) -> list[str]:
    "`make run ARGS=\"--from frames\"` → ['run'] (variables and options are not targets)."
    return [a for a in argv[1:] if "=" not in a and not a.startswith("-")]


def is_cvflow(word: str) -> bool:
    return word == "cvflow" or word.endswith("/cvflow")


def mentioned(text: str) -> tuple[set[str], set[str]]:
    "Every make target and cvflow command the README mentions, in code blocks and inline code."
    targets, commands = set(), set()
    for argv in (a for b in bash_blocks(text) for a in command_lines(b)):
        if argv[0] == "make":
            targets.update(make_targets(argv))
        elif is_cvflow(argv[0]) and len(argv) > 1 and not argv[1].startswith("-"):
            commands.add(argv[1])
    for span in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", text):
        try:
            argv = shlex.split(span)
        except ValueError:
            continue
        if argv and argv[0] == "make":
            targets.update(make_targets(argv))
        elif argv and is_cvflow(argv[0]) and len(argv) > 1 and re.fullmatch(r"[a-z][\w-]*", argv[1]):
            commands.add(argv[1])
    return targets, commands


def cvflow_exe() -> str:
    exe = BIN / "cvflow"
    if not exe.exists():
        pytest.skip(f"{exe} is missing: install the package (`pip install -e .`)")
    return str(exe)


def run(argv, home: Path, timeout=300, cwd=REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "CVFLOW_HOME": str(home), "MPLBACKEND": "Agg"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def setup_extras() -> set[str]:
    "The extras `setup.py` defines, read by running it with `setuptools.setup` replaced."
    code = ("import json, setuptools, runpy, sys; seen = {}\n"
            "setuptools.setup = lambda **kw: seen.update(kw)\n"
            "runpy.run_path('setup.py', run_name='__main__')\n"
            "print(json.dumps(sorted(seen.get('extras_require', {}))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    import json
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------------------ the parser
def test_parser_reads_blocks_and_mentions():
    text = ('x `make docs` and `cvflow frames --help`, not `cvflow/` nor `cvflow[azure]`\n'
            '```bash\nmake run ARGS="--from frames"   # restart\n.venv/bin/cvflow sample --out d \\\n  --seconds 2\n'
            'cd x && make test\n```\n```python\nmake = 1\n```\n')
    assert bash_blocks(text) == ['make run ARGS="--from frames"   # restart\n.venv/bin/cvflow sample --out d \\\n  --seconds 2\ncd x && make test\n']
    assert command_lines(bash_blocks(text)[0]) == [["make", "run", "ARGS=--from frames"],
                                                   [".venv/bin/cvflow", "sample", "--out", "d", "--seconds", "2"],
                                                   ["cd", "x"], ["make", "test"]]
    assert mentioned(text) == ({"run", "test", "docs"}, {"sample", "frames"})


# ------------------------------------------------------------------------------------------------ the README
@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_shows_the_two_commands(readme):
    targets, _ = mentioned(readme)
    assert bash_blocks(readme), "README.md has no ```bash block"
    assert {"run", "test"} <= targets, f"README.md must show `make run` and `make test`; it mentions make {sorted(targets)}"


def test_every_make_target_exists(readme):
    targets, _ = mentioned(readme)
    for t in sorted(targets):
        r = subprocess.run(["make", "-n", t], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"README mentions `make {t}` but `make -n {t}` fails:\n{r.stderr}"


@pytest.mark.slow
def test_every_cvflow_command_exists(readme, tmp_path):
    _, commands = mentioned(readme)
    exe = cvflow_exe()
    for c in sorted(commands):
        r = run([exe, c, "--help"], tmp_path, timeout=120)
        assert r.returncode == 0, f"README mentions `cvflow {c}` but `cvflow {c} --help` exits {r.returncode}:\n{r.stdout}{r.stderr}"
        assert "usage" in (r.stdout + r.stderr).lower(), f"`cvflow {c} --help` printed no usage:\n{r.stdout}"


def test_cheap_commands_run_as_written(readme, tmp_path):
    "The README's cheap cvflow commands, run as written in a fresh project home."
    exe = cvflow_exe()
    ran = []
    for argv in (a for b in bash_blocks(readme) for a in command_lines(b)):
        if not is_cvflow(argv[0]) or len(argv) < 2 or argv[1] not in CHEAP:
            continue
        home = tmp_path / f"home{len(ran)}"
        home.mkdir()
        r = run([exe, *argv[1:]], home)
        assert r.returncode == 0, f"`{shlex.join(argv)}` exits {r.returncode}:\n{r.stdout}{r.stderr}"
        if argv[1] == "sample":
            out = argv[argv.index("--out") + 1] if "--out" in argv else "data/raw/sample"
            written = sorted(p.name for p in (home / out).iterdir()) if (home / out).is_dir() else []
            assert written, f"`{shlex.join(argv)}` wrote nothing into {home / out}"
        if argv[1] == "config":
            assert str(home) in r.stdout, f"`cvflow config` does not report the project home {home}:\n{r.stdout}"
        ran.append(shlex.join(argv))
    if not ran:
        pytest.skip("README.md's bash blocks have no cheap cvflow command to run")


def test_pip_extras_exist(readme):
    wanted = set()
    for argv in (a for b in bash_blocks(readme) for a in command_lines(b)):
        if Path(argv[0]).name.startswith("pip") and "install" in argv:
            for w in argv:
                m = re.fullmatch(r"\.?\[(?P<extras>[\w,-]+)\]", w) or re.fullmatch(r"[.\w/-]*\[(?P<extras>[\w,-]+)\]", w)
                if m:
                    wanted.update(m["extras"].split(","))
    missing = wanted - setup_extras()
    assert not missing, f"README installs extras {sorted(missing)} that setup.py does not define"


def test_index_notebook_says_what_the_readme_says():
    "nbs/index.ipynb (nbdev's readme_nb, the docs site's home page) is the README, section by section."
    sys.path.insert(0, str(REPO / "docs"))
    try:
        from cvflow_docs import index_from_readme
    finally:
        sys.path.remove(str(REPO / "docs"))
    import json
    index = json.loads((REPO / "nbs" / "index.ipynb").read_text(encoding="utf-8"))
    want = index_from_readme((REPO / "README.md").read_text(encoding="utf-8"))
    got_text = ["".join(c["source"]) for c in index["cells"]]
    assert got_text == ["".join(c["source"]) for c in want["cells"]], "nbs/index.ipynb differs from README.md: run `make index`"
    assert all(c["cell_type"] == "markdown" for c in index["cells"])
    joined = "\n\n".join(got_text)   # sections are separated by one blank line
    assert joined.replace("](../docs/_static/", "](docs/_static/") == (REPO / "README.md").read_text(encoding="utf-8").strip("\n")
    for img in re.findall(r"\]\(\.\./docs/_static/([\w.-]+)\)", joined):   # the images resolve from nbs/
        assert (REPO / "docs" / "_static" / img).is_file(), img

