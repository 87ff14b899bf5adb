"""Project-level contracts: the README's commands, CI, DVC config, light CLI start-up."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HEAVY = ("tensorflow", "keras", "librosa", "sklearn", "xgboost", "great_expectations", "h5py", "pandas", "matplotlib", "dvc")


def _quick_start_commands(root: Path) -> list[str]:
    text = (root / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_readme_has_exactly_two_quick_start_commands_and_ci_runs_the_second(project_root: Path) -> None:
    cmds = _quick_start_commands(project_root)
    assert len(cmds) == 2
    assert cmds[0].endswith("dvc repro") and "pytest" in cmds[1]
    ci = (project_root / ".ci" / "run").read_text().splitlines()
    assert cmds[1] in [ln.strip() for ln in ci]


def test_dvc_config_disables_analytics_and_update_checks(project_root: Path) -> None:
    cfg = (project_root / ".dvc" / "config").read_text()
    assert re.search(r"analytics\s*=\s*false", cfg)
    assert re.search(r"check_update\s*=\s*false", cfg)


def test_cli_start_up_imports_nothing_heavy() -> None:
    code = "import sys, mgr.cli; print(','.join(sorted(m for m in sys.modules if '.' not in m)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.strip().split(","))
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_mgr_help_lists_commands() -> None:
    mgr = Path(sys.executable).parent / "mgr"
    r = subprocess.run([str(mgr), "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("params", "synth"):
        assert cmd in r.stdout
