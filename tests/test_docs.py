"""The README and docs/ say what the code does (issue 10, item 15): the settings table is
SCHEMA's, every setting the docs name exists, the README stays a front door, and curl's cookie
jar never lands in the checkout.
"""
from __future__ import annotations

import re

from appserver.settings import INTERNAL_SETTINGS, SCHEMA

from .support import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: The front door and the reference moved out of it. Other pages describe their features'
#: settings, which may land in SCHEMA with the change that adds them.
REFERENCE = [ROOT / "README.md"] + [
    ROOT / "docs" / f"{name}.md"
    for name in ("rest-api", "configuration", "cli", "security", "architecture", "testing")
]

#: The package's modules and packages: `appserver.models.x` names code, not a setting.
MODULES = {path.stem for path in (ROOT / "appserver").iterdir()} | {"main"}

#: `appserver.x` in backticks that are not settings: the cookie names, the SQLite file.
NOT_SETTINGS = {"appserver.session", "appserver.remember", "appserver.sqlite"}

#: Settings of the libraries, documented beside ours.
LIBRARY_SETTINGS = {"sqlalchemy.url": None, "retry.attempts": "3"}


def settings_table() -> dict[str, str]:
    """name -> default, from the table in docs/configuration.md."""
    rows = {}
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        match = re.match(r"^\| `([a-z_.]+)` \| (.+?) \|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def shown(default) -> str:
    return "— (required)" if default is None else f"`{default}`"


def test_the_settings_table_is_the_schema():
    table = settings_table()
    ours = {name: default for name, default in table.items() if name.startswith("appserver.")}
    documented_here = {name: shown(SCHEMA[name][2]) for name in ours if name in SCHEMA}
    assert ours == documented_here, "a setting in the table is not in SCHEMA, or its default differs"
    for name, default in LIBRARY_SETTINGS.items():
        assert table[name] == shown(default)


def settings_named(paths) -> set[str]:
    text = "\n".join(path.read_text() for path in paths)
    return {
        name
        for name in re.findall(r"`(appserver\.[a-z_.]+)[` =]", text)
        if name in SCHEMA or (name not in NOT_SETTINGS and name.split(".")[1] not in MODULES)
    }


def test_every_setting_is_documented_and_every_documented_setting_exists():
    named = settings_named(REFERENCE)
    assert named - set(SCHEMA) - INTERNAL_SETTINGS == set(), "the docs name settings that do not exist"
    assert set(SCHEMA) - settings_named(DOCS) == set(), "settings nobody has documented"


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for promise in ("make run", "make test", "## Demo users", "## Walk-through", "## Read on",
                    "docs/architecture.md", "docs/screenshots/phone-issues.png"):
        assert promise in readme, promise


def test_curl_keeps_its_cookies_outside_the_checkout():
    for path in DOCS:
        for jar in re.findall(r"curl [^\n]*?-[cb] (\S+)", path.read_text()):
            assert jar == "$JAR", f"{path.name}: curl's cookie jar {jar!r} would land in the checkout"
