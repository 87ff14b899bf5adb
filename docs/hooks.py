"""MkDocs hooks: the parts of the documentation site that are generated from the code.

- ``<!-- generated: cli-reference -->`` in a page becomes the reference of every ``mgr`` command,
  argument and option, read from the Typer app (:data:`mgr.cli.app`) through its click command
  objects: the same help records ``mgr COMMAND --help`` prints, never a hand-kept copy.
- ``<!-- generated: params-reference -->`` becomes every ``params.yaml`` key with its default and
  what it allows, read from the typed sections of :mod:`mgr.params` (the one reader of the file).
- Repository files that pages show (``REPO_FILES``, e.g. a figure under ``reports/``) are added to
  the site, and a page's ``../reports/...`` link (what GitHub resolves from ``docs/``) is pointed
  at that copy, so one Markdown source works on GitHub and on the site.

``tests/test_docs.py`` uses :func:`cli_options` and :func:`params_schema` to check that every
``mgr`` option and params key the pages and the README name exists. Run from the project root
(``uv run mkdocs build --strict`` / ``serve``).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI_MARKER = "<!-- generated: cli-reference -->"
PARAMS_MARKER = "<!-- generated: params-reference -->"
# repository files outside docs/ that pages display: (path in the repository, link prefix in pages)
REPO_FILES = ("reports/synthetic_genres.png",)


# ------------------------------------------------------------------------------------- the CLI
def _click_app():
    import typer.main

    from mgr.cli import app

    return typer.main.get_command(app)


def _contexts():
    """(group, group context, [(name, command, command context)]) of the ``mgr`` app."""
    group = _click_app()
    gctx = group.make_context("mgr", [], resilient_parsing=True)
    cmds = []
    for name, cmd in group.commands.items():
        if not cmd.hidden:
            cmds.append((name, cmd, cmd.make_context(name, [], parent=gctx, resilient_parsing=True)))
    return group, gctx, cmds


def cli_options() -> dict[str, set[str]]:
    """Every subcommand of ``mgr`` and the option strings it accepts (``--top-k``, ``-k``,
    ``--no-music-gate``, ``--help``); the key ``""`` holds the options of ``mgr`` itself."""
    group, gctx, cmds = _contexts()

    def opts(cmd, ctx) -> set[str]:
        out: set[str] = set()
        for p in cmd.get_params(ctx):
            if p.param_type_name == "option":
                out.update(p.opts)
                out.update(p.secondary_opts)
        return out

    result = {"": opts(group, gctx)}
    for name, cmd, ctx in cmds:
        result[name] = opts(cmd, ctx)
    return result


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def cli_reference_markdown() -> str:
    """The ``mgr`` commands as Markdown: usage, description, arguments and options (with their
    defaults and ranges, as ``--help`` prints them)."""
    group, gctx, cmds = _contexts()
    lines = [
        "| command | what it does |",
        "|---|---|",
        *(f"| [`mgr {n}`](#mgr-{n}) | {_cell(c.get_short_help_str(limit=200))} |" for n, c, _ in cmds),
        "",
    ]
    for name, cmd, ctx in cmds:
        lines += [f"## mgr {name}", "", "```", cmd.get_usage(ctx).strip(), "```", ""]
        doc = (cmd.help or "").strip()
        if doc:
            lines += [typing.cast(str, doc), ""]
        for kind, title in (("argument", "argument"), ("option", "option")):
            rows = [p for p in cmd.get_params(ctx) if p.param_type_name == kind]
            if not rows:
                continue
            lines += [f"| {title} | description |", "|---|---|"]
            for p in rows:
                rec = p.get_help_record(ctx)
                if rec is None:
                    continue
                flags, text = rec
                lines.append(f"| `{_cell(flags)}` | {_cell(text)} |")
            lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- the params
def _walk(cls: type, prefix: str):
    """(dotted key, field, type, default) for every leaf of a params dataclass, depth first."""
    hints = typing.get_type_hints(cls)
    instance = cls()
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(tp):
            yield key, f, tp, None
            yield from _walk(type(value), key + ".")
        else:
            yield key, f, tp, value


def params_schema() -> tuple[set[str], set[str]]:
    """(every params key, the keys whose value is a free mapping such as ``ml.svm.grid``) from
    :class:`mgr.params.Params`. A section key (``ml.fusion``) is a key too."""
    from mgr.params import Params

    keys, mappings = set(), set()
    for key, _f, tp, _v in _walk(Params, ""):
        keys.add(key)
        if typing.get_origin(tp) is dict:
            mappings.add(key)
    return keys, mappings


def _range_text(meta: dict) -> str:
    if "range" not in meta:
        return ""
    lo, hi, lo_open, hi_open = meta["range"]
    if lo is not None and hi is not None:
        return f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return ""


def params_reference_markdown() -> str:
    """Every key of ``params.yaml``: default and allowed values, one table per section."""
    import json

    from mgr.params import Params, _type_name

    lines: list[str] = []
    for section in dataclasses.fields(Params):
        lines += [f"#### `{section.name}`", "", "| key | default | allowed |", "|---|---|---|"]
        for key, f, tp, value in _walk(type(getattr(Params(), section.name)), section.name + "."):
            if dataclasses.is_dataclass(tp):
                continue
            default = json.dumps(value) if not isinstance(value, str) else value
            allowed = " ".join(x for x in (_type_name(tp), _range_text(dict(f.metadata))) if x)
            lines.append(f"| `{key}` | `{_cell(default)}` | {_cell(allowed)} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ the hooks
def on_files(files, config):
    from mkdocs.structure.files import File

    for rel in REPO_FILES:
        files.append(File(rel, src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference_markdown())
    if PARAMS_MARKER in markdown:
        markdown = markdown.replace(PARAMS_MARKER, params_reference_markdown())
    for rel in REPO_FILES:  # ../reports/x.png (right on GitHub, from docs/) -> the site's copy
        markdown = markdown.replace(f"](../{rel})", f"]({rel})")
    return markdown
