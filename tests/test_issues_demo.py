"""The demo issue tracker's data: what ``initdb --demo`` seeds, and that seeding is
idempotent and deterministic."""
from __future__ import annotations

import base64
from collections import Counter
from datetime import timedelta

from pyramid.request import Request
from pyramid.scripting import prepare
from sqlalchemy import create_engine, func, select

from appserver.demo import DEMO_ISSUE_COUNT, demo_issue_fields, seed_demo, seed_issues
from appserver.models import Issue, Project
from appserver.models.issue import STATUSES, viewable_levels
from appserver.scripts import cli

from .support import ROOT, SECRET


def seed(request) -> list[str]:
    lines = list(seed_demo(request))
    request.dbsession.flush()
    return lines


def test_seed_creates_200_issues_of_which_5_public(app_request):
    lines = seed(app_request)
    assert "demo project DEMO: 200 issues created (5 of 200 public)" in lines
    db = app_request.dbsession
    issues = db.scalars(select(Issue).order_by(Issue.number)).all()
    assert [i.key for i in issues] == [f"DEMO-{n}" for n in range(1, DEMO_ISSUE_COUNT + 1)]
    levels = Counter(i.security_level for i in issues)
    assert levels == {"public": 5, "users": 195}
    assert set(Counter(i.status for i in issues)) == set(STATUSES)
    assert len({i.summary for i in issues}) > 50
    assert len({i.reporter_id for i in issues}) == 3
    assert all(i.created_at <= i.updated_at for i in issues)
    assert issues[-1].created_at - issues[0].created_at > timedelta(days=200)
    assert db.scalar(select(Project.name).where(Project.key == "DEMO")) == "Demo project"


def test_seed_is_deterministic(app_request):
    seed(app_request)
    issue = app_request.dbsession.scalar(select(Issue).where(Issue.key == "DEMO-7"))
    fields = demo_issue_fields(7)
    assert (issue.summary, issue.description, issue.status, issue.created_at, issue.updated_at) == (
        fields["summary"], fields["description"], fields["status"],
        fields["created_at"], fields["updated_at"],
    )
    assert [n for n in range(1, 201) if demo_issue_fields(n)["security_level"] == "public"] == [
        1, 41, 81, 121, 161
    ]


def test_seed_is_idempotent_and_fills_gaps(app_request):
    seed(app_request)
    assert seed(app_request)[-1] == "demo project DEMO: 200 issues already there"
    db = app_request.dbsession
    db.execute(Issue.__table__.delete().where(Issue.number.in_([3, 150])))
    assert list(seed_issues(app_request))[-1].startswith("demo project DEMO: 2 issues created")
    db.flush()
    assert db.scalar(select(func.count()).select_from(Issue)) == 200


def test_viewable_levels_come_from_the_policy(app_request, users):
    """Anonymous requests may view the public level; logged-in ones both levels."""
    assert viewable_levels(app_request) == ["public"]
    credentials = base64.b64encode(b"fred:fred-password").decode()
    request = Request.blank("/", headers={"Authorization": f"Basic {credentials}"})
    env = prepare(request=request, registry=app_request.registry)
    try:
        request.environ["app.dbsession"] = app_request.dbsession
        assert viewable_levels(request) == ["public", "users"]
    finally:
        env["closer"]()


def test_initdb_demo_seeds_the_tracker(tmp_path, capsys):
    """The two-command set-up: ``appserver CONFIG initdb --demo`` (run twice: idempotent)."""
    database = tmp_path / "demo.sqlite"
    ini = tmp_path / "demo.ini"
    ini.write_text(
        "[app:main]\nuse = egg:appserver\n"
        f"sqlalchemy.url = sqlite:///{database}\nappserver.secret = {SECRET}\n"
        "appserver.session.secure = false\n\n"
        f"[alembic]\nscript_location = {ROOT / 'migrations'}\n"
    )
    assert cli.main([str(ini), "initdb", "--demo"]) == 0
    assert "demo project DEMO: 200 issues created (5 of 200 public)" in capsys.readouterr().out
    assert cli.main([str(ini), "initdb", "--demo"]) == 0
    assert "demo project DEMO: 200 issues already there" in capsys.readouterr().out
    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        counts = dict(connection.execute(
            select(Issue.security_level, func.count()).group_by(Issue.security_level)
        ).all())
    engine.dispose()
    assert counts == {"public": 5, "users": 195}
