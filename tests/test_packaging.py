"""What ``pip install`` of a checkout installs: every file the server reads at run time
(docs/deployment.md installs production this way, not as an editable checkout)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_every_file_of_the_package(tmp_path):
    tracked = subprocess.run(["git", "ls-files", "appserver"], cwd=ROOT, capture_output=True, text=True, check=True)
    expected = {name for name in tracked.stdout.split() if (ROOT / name).is_file()}
    assert "appserver/static/forms.js" in expected and "appserver/templates/base.jinja2" in expected
    # Built from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "*.egg-info", "__pycache__", ".cluster", "*.sqlite*", "loadtest-report"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("appserver-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("appserver/")}
    assert expected - shipped == set()
