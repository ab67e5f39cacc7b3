"""The account page: profile, login information, sessions, personal access tokens, password,
recent activity."""
from __future__ import annotations

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.view import view_config

from ..ids import parse_id
from ..models import UserSession
from ..security import accounts, audit, personal_tokens, websudo
from ..security.personal_tokens import TokenRequestError
from ..security.accounts import AccountError, TooManyAttempts, rotated_session
from ..security.login import log_out
from .notices import notice_for
from .rest import login_info


def account_page(request: Request, **extra) -> dict:
    user = request.user
    identity = request.authentication.identity
    return {
        "user": user,
        "login_info": login_info(user),
        "sessions": request.session_store.active_sessions(user.id),
        "current": identity.session if identity else None,
        "events": audit.recent(request, user_id=user.id, limit=15),
        "describe": audit.describe,
        "notice": notice_for(request),
        "password_error": None,
        "tokens": request.token_store.listed(user.id),
        "now": request.now,
        "new_token": None,
        "token_error": None,
        "token_form": {"name": "", "days": 90},
        "newest_token_id": request.token_store.newest_id(user.id),
        "token_limits": _token_limits(request),
        **extra,
    }


def _token_limits(request: Request) -> dict:
    settings = request.appserver_settings
    return {
        "name_max_length": settings.token_name_max_length,
        "max_expiry_days": settings.token_max_expiry_days,
        "without_expiry": settings.tokens_without_expiry,
    }


def _back(request: Request, notice: str, headers=None) -> HTTPSeeOther:
    return HTTPSeeOther(request.route_url("account", _query={"notice": notice}), headers=headers)


@view_config(route_name="account", request_method="GET", renderer="appserver:templates/account.jinja2",
             permission="account")
def account(request: Request) -> dict:
    return account_page(request)


@view_config(
    route_name="account.password",
    request_method="POST",
    renderer="appserver:templates/account.jinja2",
    permission="account",
)
def change_password(request: Request):
    user = request.user
    try:
        accounts.change_own_password(
            request,
            user,
            request.POST.get("current_password", ""),
            request.POST.get("new_password", ""),
            request.POST.get("confirm_password", ""),
        )
    except TooManyAttempts as error:
        request.response.status = 403
        request.response.headers["Retry-After"] = str(error.retry_after)
        return account_page(request, password_error=str(error))
    except AccountError as error:
        request.response.status = 400
        return account_page(request, password_error=str(error))
    return _back(request, "password-changed", rotated_session(request, password_checked=True))


@view_config(route_name="account.revoke_session", request_method="POST", permission="account")
def revoke_session(request: Request):
    user = request.user
    session_id = parse_id(request.matchdict["id"])
    session = request.dbsession.get(UserSession, session_id) if session_id is not None else None
    if session is None or session.user_id != user.id:
        # The same answer whether the id is another user's or nobody's: nothing is revealed.
        return _back(request, "session-not-found")
    identity = request.authentication.identity
    if identity.session is not None and identity.session.id == session.id:
        headers = log_out(request).headers
        return HTTPSeeOther(request.route_url("home", _query={"notice": "logged-out"}), headers=headers)
    if identity.session is not None and identity.session.id in accounts.revoke_session(request, user, session):
        # An older id of this very browser, which a rotation replaced (a page from before
        # it): this browser was logged out, and is told so (an outside review).
        headers = log_out(request).headers
        return HTTPSeeOther(request.route_url("home", _query={"notice": "logged-out"}), headers=headers)
    return _back(request, "session-revoked")


@view_config(route_name="account.revoke_others", request_method="POST", permission="account")
def revoke_others(request: Request):
    identity = request.authentication.identity
    accounts.revoke_sessions(request, request.user, keep=identity.session, by="you")
    # This browser under new cookies too: a copy of its session or remember-me cookie is one
    # of the "other sessions" as much as another browser is.
    return _back(request, "others-revoked", rotated_session(request))


@view_config(
    route_name="account.tokens",
    request_method="POST",
    renderer="appserver:templates/account.jinja2",
    permission="account",
)
def create_token(request: Request):
    """Answers with the account page itself (no redirect): the raw token is shown in this
    response only, and ``Cache-Control: no-store`` keeps it out of caches."""
    refused = websudo.require(request, recent_password=True)  # to the prompt, and back to the form
    if refused is not None:
        return refused
    name = request.POST.get("name", "")
    days_text = request.POST.get("expiration_days", "").strip()
    form = {"name": name[:255], "days": days_text[:12]}
    try:
        if days_text and not (days_text.isascii() and days_text.isdigit() and len(days_text) <= 6):
            raise TokenRequestError("Enter the number of days as a whole number.", "expirationDuration")
        days = int(days_text) if days_text else None
        issued = personal_tokens.create(request, request.user, name, days, sent_after=_sent_after(request))
    except TokenRequestError as error:  # MintedByToken: a 403
        request.response.status = error.status
        return account_page(request, token_error=str(error), token_form=form)
    request.response.headers["Cache-Control"] = "no-store"
    return account_page(request, new_token=issued)


def _sent_after(request: Request) -> int | None:
    """The form's ``sent_after`` (0: the user had no token then); None when absent."""
    text = request.POST.get("sent_after", "")
    return 0 if text == "0" else parse_id(text)


@view_config(route_name="account.tokens", request_method="GET", permission="account")
@view_config(route_name="account.password", request_method="GET", permission="account")
def form_address(request: Request):
    """The address a form's answer left in the address bar, asked again (Back, a bookmark,
    Enter): the form itself, on the account page, instead of a 405 dead end."""
    anchor = "tokens-card" if request.matched_route.name == "account.tokens" else "password-card"
    return HTTPSeeOther(request.route_url("account", _anchor=anchor))


@view_config(route_name="account.revoke_token", request_method="POST", permission="account")
def revoke_token(request: Request):
    user = request.user
    token_id = parse_id(request.matchdict["id"])
    token = request.token_store.get(token_id) if token_id is not None else None
    if token is not None and token.user_id == user.id:
        personal_tokens.revoke(request, token, user)  # revoked before: the same answer
        return _back(request, "token-revoked")
    return _back(request, "token-not-found")  # whether it is another user's is not revealed
