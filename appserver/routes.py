"""Every URL. REST routes live under ``appserver.rest_prefix`` (default ``/rest``) and accept
``latest`` wherever Jira accepts it.

Pyramid tries routes in the order they are added, one pattern after another. The REST routes
come first: REST clients send most requests (every call of a script or an integration, where
a person loads a page now and then), and no pattern below matches a path under the REST
prefix or the other way round, so the order changes nothing but the cost."""
from __future__ import annotations

from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    rest = config.registry.appserver_settings.rest_prefix

    # REST: the Jira API subset
    config.add_route("rest.server_info", rest + "/api/{version:2|latest}/serverInfo")
    config.add_route("rest.myself", rest + "/api/{version:2|latest}/myself")
    config.add_route("rest.myself.password", rest + "/api/{version:2|latest}/myself/password")
    config.add_route("rest.user", rest + "/api/{version:2|latest}/user")
    config.add_route("rest.user.password", rest + "/api/{version:2|latest}/user/password")
    # REST: the demo issue tracker's resources real clients use
    config.add_route("rest.search", rest + "/api/{version:2|latest}/search")
    config.add_route("rest.issue", rest + "/api/{version:2|latest}/issue/{id_or_key}")
    config.add_route("rest.field", rest + "/api/{version:2|latest}/field")
    config.add_route("rest.projects", rest + "/api/{version:2|latest}/project")
    config.add_route("rest.project", rest + "/api/{version:2|latest}/project/{id_or_key}")
    config.add_route("rest.statuses", rest + "/api/{version:2|latest}/status")
    config.add_route("rest.status", rest + "/api/{version:2|latest}/status/{id_or_name}")
    config.add_route("rest.issuetypes", rest + "/api/{version:2|latest}/issuetype")
    config.add_route("rest.issuetype", rest + "/api/{version:2|latest}/issuetype/{id}")

    # REST: authentication (Jira's /rest/auth/1/session)
    config.add_route("rest.session", rest + "/auth/{version:1|latest}/session")
    config.add_route("rest.websudo", rest + "/auth/{version:1|latest}/websudo")

    # REST: personal access tokens (Jira's /rest/pat/latest/tokens)
    config.add_route("rest.tokens", rest + "/pat/{version:1|latest}/tokens")
    config.add_route("rest.token", rest + "/pat/{version:1|latest}/tokens/{id}")

    # HTML pages
    config.add_route("home", "/")
    config.add_route("login", "/login")
    config.add_route("logout", "/logout")
    config.add_route("account", "/account")
    config.add_route("account.password", "/account/password")
    config.add_route("account.revoke_session", "/account/sessions/{id:\\d+}/revoke")
    config.add_route("account.revoke_others", "/account/sessions/revoke-others")
    config.add_route("account.tokens", "/account/tokens")
    config.add_route("account.revoke_token", "/account/tokens/{id:\\d+}/revoke")
    config.add_route("admin", "/admin")
    config.add_route("admin.users", "/admin/users")
    # GET: the page that asks before an action that takes something away (POST does it).
    config.add_route(
        "admin.confirm",
        "/admin/users/{id:\\d+}/{action:deactivate|revoke-sessions|revoke-tokens}",
        request_method="GET",
    )
    config.add_route(
        "admin.user_action",
        "/admin/users/{id:\\d+}/{action:activate|deactivate|unlock|revoke-sessions|revoke-tokens}",
    )
    # GET: the form that sets someone else's password (POST sets it).
    config.add_route("admin.set_password", "/admin/users/{id:\\d+}/password")
    config.add_route("websudo", "/websudo")  # WebSudo: confirm your password for admin work
    config.add_route("websudo.drop", "/websudo/drop")

    # The demo issue tracker's pages
    config.add_route("issues", "/issues")
    config.add_route("issue", "/issues/{key}")
