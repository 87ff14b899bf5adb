"""The documentation cannot rot quietly: the site builds with --strict, and every ``mgr``
subcommand and option, params key, module, file and DVC stage the pages and the README name exists.

Conventions the checks rely on (docs/development.md, "These pages"):

- a code line or code span starting with ``mgr`` (also after ``$ ``, ``uv run ``) is an ``mgr``
  command line: its subcommand and every option are checked against that subcommand;
- a code span that is only an option (``--min-confidence``, ``--window S``) is an ``mgr`` option
  and must exist in some subcommand; options of other tools are written with their tool;
- a dotted word starting with a params section (``train.seed``, ``ml.fusion.cv``) is a params key,
  unless it ends in a file extension (``split.csv``); ``<model>`` / ``*`` placeholders are skipped.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SECTIONS = ("data", "split", "audio", "spectrogram", "features", "ml", "train", "dl", "evaluate", "distributed", "tempo")
FILE_EXTS = {"md", "csv", "json", "h5", "parquet", "yaml", "yml", "py", "onnx", "keras", "skops", "ubj", "png",
             "txt", "zip", "gz", "shards", "wav", "flac", "ogg", "mp3", "jsonl"}
KEY_RE = re.compile(r"(?<![\w./<>*-])(?:%s)(?:\.[A-Za-z_]\w*)+" % "|".join(SECTIONS))
OPTION_SPAN_RE = re.compile(r"^(--?[A-Za-z][\w-]*)(?:[ =]\S+)?$")


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@cache
def hooks():
    return _load("mgr_docs_hooks", DOCS / "hooks.py")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


# ------------------------------------------------------------------------------------ parsing
def code_pieces(text: str) -> list[str]:
    """Every line of a fenced code block and every inline code span, in order."""
    out: list[str] = []
    prose: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            out.append(line.strip())
        else:
            prose.append(line)
    # a span may continue on the next line (not past a blank line)
    for para in "\n".join(prose).split("\n\n"):
        out += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", para)]
    return out


def _mgr_tokens(piece: str) -> list[str] | None:
    s = piece.strip()
    for prefix in ("$ ", "uv run ", ".venv/bin/"):
        s = s.removeprefix(prefix)
    if not (s == "mgr" or s.startswith("mgr ")):
        return None
    s = re.split(r"\s#|\s\||\s>|&&|;", s)[0]
    try:
        return shlex.split(s)
    except ValueError:
        return s.split()


def check_mgr_options(text: str, options: dict[str, set[str]]) -> list[str]:
    """Problems: unknown ``mgr`` subcommands and options named in ``text`` (see the module doc)."""
    problems: list[str] = []
    every = set().union(*options.values())
    for piece in code_pieces(text):
        tokens = _mgr_tokens(piece)
        if tokens is not None:
            rest = tokens[1:]
            cmd = ""
            if rest and not rest[0].startswith("-"):
                cmd = rest.pop(0)
                if cmd == "..." or cmd.isupper():  # a placeholder (`mgr COMMAND --help`): any subcommand
                    bad = [t for t in rest if t.startswith("-") and t.split("=", 1)[0] not in every]
                    problems += [f"`{piece}`: no mgr command has the option {t}" for t in bad]
                    continue
                if cmd not in options or cmd == "":
                    problems.append(f"`{piece}`: no subcommand `mgr {cmd}`")
                    continue
            for tok in rest:
                if tok.startswith("-") and not re.fullmatch(r"-[\d.]+", tok) and tok != "-":
                    flag = tok.split("=", 1)[0]
                    if flag not in options[cmd] and flag not in options[""]:
                        problems.append(f"`{piece}`: `mgr {cmd}` has no option {flag}")
            continue
        m = OPTION_SPAN_RE.match(piece.strip())
        if m and m.group(1) not in every:
            problems.append(f"`{piece}`: no mgr command has the option {m.group(1)}")
    return problems


def check_params_keys(text: str, keys: set[str], mappings: set[str]) -> list[str]:
    """Problems: dotted params keys named in ``text`` that the params schema does not define."""
    problems = []
    for m in KEY_RE.finditer(text):
        key = m.group(0)
        if text[m.end():m.end() + 1] in ("*", "<"):
            continue  # a family: ml.embedding_*, ml.search*
        if key.rsplit(".", 1)[1].lower() in FILE_EXTS:
            continue  # a file name such as split.csv or tempo.md
        if key in keys or any(key.startswith(mk + ".") for mk in mappings):
            continue
        problems.append(f"params key {key!r} does not exist")
    return problems


# ----------------------------------------------------------------------------- the site builds
def test_site_builds_strict_with_generated_reference(tmp_path: Path) -> None:
    """``mkdocs build --strict``: a broken link or anchor, a page missing from nav, a missing
    include fails; the CLI and params references are generated into the pages."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env={**_env(), "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert time.perf_counter() - t0 < 120
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    for name, opts in hooks().cli_options().items():
        if name:
            assert f"mgr {name}" in cli
        for opt in opts:
            assert opt in cli, opt
    pipeline = (tmp_path / "site" / "pipeline" / "index.html").read_text()
    assert "ml.fusion.cv" in pipeline and "tempo.prior_median_bpm" in pipeline
    assert (tmp_path / "site" / "reports" / "synthetic_genres.png").is_file()


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


# ------------------------------------------------------------------- options, keys, modules
def test_every_mgr_option_named_in_the_docs_exists() -> None:
    options = hooks().cli_options()
    assert {"predict", "models", "compare", "params"} <= set(options)
    problems = [f"{p.relative_to(ROOT)}: {msg}" for p in doc_files()
                for msg in check_mgr_options(p.read_text(encoding="utf-8"), options)]
    assert not problems, "\n".join(problems)


def test_every_params_key_named_in_the_docs_exists() -> None:
    keys, mappings = hooks().params_schema()
    assert {"train.seed", "ml.fusion.cv", "data.gtzan.tempo"} <= keys and "ml.svm.grid" in mappings
    problems = [f"{p.relative_to(ROOT)}: {msg}" for p in doc_files()
                for msg in check_params_keys(p.read_text(encoding="utf-8"), keys, mappings)]
    assert not problems, "\n".join(problems)


def test_the_checks_catch_a_renamed_option_subcommand_or_key() -> None:
    """What a documented flag's rename looks like to the checks: each variant is reported."""
    options = hooks().cli_options()
    keys, mappings = hooks().params_schema()
    good = ("`mgr predict x.wav --top-k 5 -r --no-music-gate`, `--min-confidence`, `--window S`, "
            "`dvc exp run --queue -S ml.svm.C=3`, `split.csv`, `ml.svm.grid.C`\n"
            "```bash\nuv run mgr compare main HEAD --format md   # --not-checked in a comment\n```\n")
    assert check_mgr_options(good, options) == []
    assert check_params_keys(good, keys, mappings) == []
    for bad in ("`mgr predict x.wav --topk 5`", "`--min-confidnce`", "`mgr predcit song.mp3`",
                "```\n$ mgr models --jsn\n```", "`mgr compare --format md --seed-x 1`"):
        assert check_mgr_options(bad, options), bad
    for bad in ("`train.seeed`", "`dvc exp run -S ml.fusion.cvv=3`", "ml.svm.gama"):
        assert check_params_keys(bad, keys, mappings), bad


def _layout_modules(text: str) -> list[str]:
    """Module paths (relative to src/mgr) of the layout block in ARCHITECTURE.md: columns 2-14 a
    directory (or a top-level file), 15-34 comma-separated modules, then the description."""
    block = text.split("\nsrc/mgr/", 1)[1].split("```", 1)[0].splitlines()[1:]
    out, current = [], ""
    for line in block:
        d, mods = line[2:15].strip(), line[15:35].strip()
        if d.endswith(".py"):
            out.append(d)
            continue
        if d:
            current = d
        for m in filter(None, (x.strip() for x in mods.split(","))):
            out.append(current + (m if m.endswith("/") else m + ".py"))
    return out


def test_architecture_layout_names_existing_modules() -> None:
    text = (DOCS / "ARCHITECTURE.md").read_text(encoding="utf-8")
    mods = _layout_modules(text)
    missing = [m for m in mods if not (ROOT / "src" / "mgr" / m).exists()]
    assert not missing, missing
    for required in ("dsp/portable.py", "tfsetup.py", "inference/gate.py", "inference/abstain.py",
                     "inference/nonmusic.py", "models/distribution.py", "models/stacking.py", "tempo/calibration.py"):
        assert required in mods, required
    assert "train-ml-stacked" in text and "Same bytes on every machine" in text
    assert "Training noise is part of the noise" in text and "Real audio decides" in text
    # every module of the package is in the layout (a new module gets its line)
    on_disk = {str(p.relative_to(ROOT / "src" / "mgr")) for p in (ROOT / "src" / "mgr").glob("**/*.py")
               if p.name != "__init__.py" and p.parent.name not in ("sources", "validation")}
    on_disk |= {p.name for p in (ROOT / "src" / "mgr").glob("*.py") if p.name != "__init__.py"}
    assert on_disk <= set(mods), on_disk - set(mods)


def _resolve_dotted(parts: list[str]) -> str | None:
    """None if ``mgr.a.b.name`` exists (a package, a module, or a name in the module's source)."""
    path = ROOT / "src" / "mgr"
    for i, part in enumerate(parts[1:], start=1):
        if (path / part).is_dir():
            path = path / part
            continue
        if (path / f"{part}.py").is_file():
            path = path / f"{part}.py"
            attrs = parts[i + 1:]
            break
        attrs = parts[i:]
        path = path / "__init__.py"
        break
    else:
        return None
    if attrs and not re.search(rf"\b{re.escape(attrs[0])}\b", path.read_text(encoding="utf-8")):
        return f"{'.'.join(parts)}: no {attrs[0]!r} in {path.relative_to(ROOT)}"
    return None


def test_every_module_file_and_test_named_in_the_docs_exists() -> None:
    problems = []
    for p in doc_files():
        text = p.read_text(encoding="utf-8")
        for m in re.finditer(r"(?<![\w./-])mgr(?:\.[A-Za-z_]\w*)+", text):
            err = _resolve_dotted(m.group(0).split("."))
            if err:
                problems.append(f"{p.name}: {err}")
        for m in re.finditer(r"(?<![\w./-])((?:src/mgr|stages|benchmarks|scripts|tests|\.github/workflows|\.ci)/[\w./-]*)"
                             r"(?:::(\w+))?", text):
            path, test = m.group(1).rstrip("."), m.group(2)
            if not (ROOT / path).exists() and "." in path.rsplit("/", 1)[-1]:  # stages/_common._pin_machine
                path, test = path.rsplit(".", 1)[0] + ".py", path.rsplit(".", 1)[1]
            if not (ROOT / path).exists():
                problems.append(f"{p.name}: {path} does not exist")
            elif test and not re.search(rf"\b{test}\b", (ROOT / path).read_text(encoding="utf-8")):
                problems.append(f"{p.name}: {path} has no {test}")
    assert not problems, "\n".join(problems)


def test_pipeline_page_lists_every_dvc_stage() -> None:
    stages = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    text = (DOCS / "pipeline.md").read_text(encoding="utf-8")
    table = text.split("| stage | writes | params |", 1)[1].split("\n\n", 1)[0]
    listed = {row.split("|")[1].strip().split("@")[0] for row in table.strip().splitlines()[1:]}
    assert listed == stages


# ------------------------------------------------------------------------------------- README
def test_readme_is_short_and_links_the_five_things() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    next_block = text.split("## What next", 1)[1].split("\n## ", 1)[0]
    for cmd in ("dvc repro", "dvc metrics diff", "mgr compare", "dvc exp run -S", "mgr predict", "mgr models"):
        assert cmd in next_block, cmd
    for target, anchor in re.findall(r"\]\((docs/[\w.-]+\.md)(?:#([\w-]+))?\)", text):
        page = ROOT / target
        assert page.is_file(), target
        if anchor:
            slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                     for h in re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)}
            assert anchor in slugs, f"{target}#{anchor}"


def test_readme_leaderboard_is_reports_leaderboard() -> None:
    mod = _load("readme_leaderboard", ROOT / "scripts" / "readme_leaderboard.py")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    board = (ROOT / "reports" / "leaderboard.md").read_text(encoding="utf-8")
    assert mod.render(readme, board) == readme, "run: uv run python scripts/readme_leaderboard.py"
    assert mod.render(readme, board.replace("| 1 |", "| 0 |", 1)) != readme  # the check can fail


def test_every_number_in_the_readme_is_on_a_docs_page() -> None:
    """The README summarises the pages: a figure it gives must be backed by a page."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"<!-- leaderboard:.*?<!-- /leaderboard -->", "", text, flags=re.S)
    pages = "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")))
    num = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
    on_pages = set(num.findall(pages))
    missing = sorted(set(num.findall(text)) - on_pages)
    assert not missing, missing
