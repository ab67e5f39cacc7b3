"""Authentication and authorization: the security policy, sessions, passwords, CSRF and the
tweens that apply the seed's rules. Views only ever see ``request.user`` and permissions."""
from __future__ import annotations

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.tweens import EXCVIEW, INGRESS

from ..models import User
from .account import Account
from .cookies import TolerantRequestCookies
from .personal_tokens import TokenStore
from .policy import AppSecurityPolicy
from .remember import RememberStore
from .sessions import SessionStore


def _cookies(request: Request) -> TolerantRequestCookies:
    return TolerantRequestCookies(request.environ)


def _user(request: Request) -> User | None:
    return request.authentication.user


def _account(request: Request) -> User | Account | None:
    """Who the request is served as, for an answer that only shows it: no ORM object is made
    for a cookie's session (``request.user`` is the object, to change the account)."""
    return request.authentication.account


def _session_store(request: Request) -> SessionStore:
    return SessionStore.of(request)


def _remember_store(request: Request) -> RememberStore:
    return RememberStore.of(request)


def _token_store(request: Request) -> TokenStore:
    return TokenStore.of(request)


def includeme(config: Configurator) -> None:
    from .csrf import TOKEN_FIELD, TOKEN_HEADER, SessionBoundCSRFStoragePolicy

    config.include(".passwords")
    policy = AppSecurityPolicy()
    config.registry.security_policy = policy
    config.set_security_policy(policy)
    config.set_csrf_storage_policy(SessionBoundCSRFStoragePolicy(config.registry.appserver_settings))
    config.set_default_csrf_options(require_csrf=True, token=TOKEN_FIELD, header=TOKEN_HEADER)

    # Replaces WebOb's strict cookie jar, for everything that reads cookies (the policy and
    # Pyramid's CSRF cookie alike): see TolerantRequestCookies.
    config.add_request_method(_cookies, "cookies", reify=True)
    # Reified under the very key the policy caches it at (request.__dict__["authentication"]):
    # after the first read, every read is a plain attribute lookup, and the policy's later
    # replacements (refuse, unauthenticated, log_in) are what the attribute returns.
    config.add_request_method(policy.authentication, "authentication", reify=True)
    config.add_request_method(_user, "user", property=True)
    config.add_request_method(_account, "account", property=True)
    config.add_request_method(_session_store, "session_store", reify=True)
    config.add_request_method(_remember_store, "remember_store", reify=True)
    config.add_request_method(_token_store, "token_store", reify=True)
    config.include(".websudo")

    tm = "pyramid_tm.tm_tween_factory"
    headers = "appserver.security.perimeter.security_headers_tween_factory"
    status = "appserver.health.status_tween_factory"
    config.add_tween(
        headers, under=[INGRESS, "appserver.process_header.process_header_tween_factory"], over=[status, tm]
    )
    config.add_tween(
        "appserver.security.perimeter.allowed_host_tween_factory",
        # GET /status (load balancers, by address) builds no URL and reads no credential.
        under=[headers, status],
        # Above the debug toolbar when it is included (development), else above pyramid_tm.
        over=["pyramid_debugtoolbar.toolbar_tween_factory", tm],
    )
    config.add_tween("appserver.security.tweens.authentication_tween_factory", under=tm, over=EXCVIEW)
    config.add_tween(
        "appserver.security.tweens.unreadable_request_tween_factory",
        under="appserver.security.perimeter.allowed_host_tween_factory",
        # Above the debug toolbar too, which reads the path, query and form first (development).
        over=["pyramid_debugtoolbar.toolbar_tween_factory", tm],
    )
    config.add_tween(
        "appserver.security.tweens.os_authtype_tween_factory",
        under="appserver.security.tweens.authentication_tween_factory",
        over=EXCVIEW,
    )
    config.add_tween(
        "appserver.security.tweens.rest_cookie_rule_tween_factory",
        under="appserver.security.tweens.os_authtype_tween_factory",
        over=EXCVIEW,
    )
    config.add_tween(
        "appserver.security.tweens.rest_xsrf_tween_factory",
        under="appserver.security.tweens.rest_cookie_rule_tween_factory",
        over=EXCVIEW,
    )
