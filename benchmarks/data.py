"""The benchmark's database: migrated, with the demo users; and the credentials to send."""
from __future__ import annotations

import base64
from dataclasses import dataclass

import requests
from pyramid.scripting import prepare

import appserver
from appserver.demo import seed_demo
from appserver.models import get_engine
from tests.support import base_settings, migrate, reset_database

USERNAME, PASSWORD = "fred", "fred-password"


def prepare_database(url: str) -> None:
    """Start from an empty, migrated database holding the demo users and issues."""
    engine = get_engine({"sqlalchemy.url": url})
    reset_database(engine)
    migrate(engine)
    settings = base_settings(url)
    settings["appserver.dbengine"] = engine
    app = appserver.main({}, **settings)
    env = prepare(registry=app.registry)
    try:
        with env["request"].tm:
            for _ in seed_demo(env["request"]):
                pass
    finally:
        env["closer"]()
        engine.dispose()


@dataclass(frozen=True)
class Credentials:
    cookie_name: str
    cookie_value: str
    basic: str

    @property
    def cookie_header(self) -> dict[str, str]:
        return {"Cookie": f"{self.cookie_name}={self.cookie_value}"}

    @property
    def basic_header(self) -> dict[str, str]:
        return {"Authorization": self.basic}


def log_in(base_url: str) -> Credentials:
    """A real login through the project's REST session resource."""
    response = requests.post(
        base_url + "/rest/auth/1/session", json={"username": USERNAME, "password": PASSWORD}, timeout=30
    )
    response.raise_for_status()
    session = response.json()["session"]
    basic = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    return Credentials(session["name"], session["value"], basic)
