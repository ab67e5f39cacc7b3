"""Administration of accounts: list, create, (de)activate, unlock, set a password, log out
everywhere, revoke personal access tokens. Every view here needs WebSudo (``websudo=True``)."""
from __future__ import annotations

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.renderers import render_to_response
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config
from sqlalchemy import select

from ..demo import ensure_user
from ..ids import parse_id
from ..models import User
from ..security import accounts, audit, personal_tokens, websudo
from ..security.accounts import AccountError
from ..security.audit import Event
from ..security.login import locked_for
from .notices import notice_for


def users_page(request: Request, **extra) -> dict:
    users = list(request.dbsession.scalars(select(User).order_by(User.username_key)))
    return {
        "users": users,
        "locked_for": lambda user: locked_for(request, user),
        "events": audit.recent(request, limit=30),
        "describe": audit.describe,
        "usernames": {user.id: user.username for user in users},
        "notice": notice_for(request),
        "form": {"username": "", "display_name": "", "email": "", "admin": False},
        "form_error": None,
        "confirm": CONFIRM,
        "actions_for": lambda user: actions_for(request, user),
        "token_counts": request.token_store.usable_counts(),
        "websudo_remaining": websudo.remaining(request),
        "websudo_timeout": request.appserver_settings.websudo_timeout,
        **extra,
    }


def actions_for(request: Request, user: User) -> list[tuple[str, str]]:
    """The actions a row offers: only those that can do something. An administrator's own
    row has no "Deactivate" (refused, after a confirmation page that said it would happen),
    and "Unlock" is for an account with failed logins counting or a lock-out."""
    actions = []
    if not user.active:
        actions.append(("activate", "Activate"))
    elif user.id != request.user.id:
        actions.append(("deactivate", "Deactivate"))
    if user.current_failed_logins or user.locked_until is not None:
        actions.append(("unlock", "Unlock"))
    if user.id != request.user.id:  # your own: the account page, which asks for the current one
        actions.append(("password", "Set password"))
    return actions + [("revoke-sessions", "Log out everywhere"), ("revoke-tokens", "Revoke tokens")]


@view_config(route_name="admin.users", request_method="GET",
             renderer="appserver:templates/admin_users.jinja2", permission="admin", websudo=True)
def list_users(request: Request) -> dict:
    return users_page(request)


@view_config(route_name="admin.users", request_method="POST",
             renderer="appserver:templates/admin_users.jinja2", permission="admin", websudo=True)
def create_user(request: Request):
    form = {
        "username": request.POST.get("username", "").strip(),
        "display_name": request.POST.get("display_name", "").strip(),
        "email": request.POST.get("email", "").strip(),
        "admin": request.POST.get("admin") == "true",
    }
    password = request.POST.get("password", "")
    try:
        accounts.refuse_tokens(request, "create accounts")
        username = accounts.validate_username(form["username"])
        display_name, email = accounts.validate_profile(form["display_name"], form["email"])
        # It looks the name up before it checks or hashes the password, and a name taken
        # while it hashed (a double submit) comes back as not created too.
        user, created = ensure_user(
            request, username, password, display_name or username, email, form["admin"],
        )
        if not created:
            raise AccountError(f"A user named {username!r} already exists.")
    except AccountError as error:
        request.response.status = error.status
        return users_page(request, form=form, form_error=str(error))
    audit.record(request, Event.USER_CREATED, user, f"by {request.user.username}")
    return HTTPSeeOther(request.route_url("admin.users", _query={"notice": "user-created"}))


#: Actions that take something away from a person: a second step says what will happen and
#: asks (a page with its own form, so it works without JavaScript).
CONFIRM = {
    "deactivate": (
        "Deactivate {name}?",
        "{name} is logged out everywhere and cannot log in, over the web or REST, until an "
        "administrator activates the account again.",
        "Deactivate {name}",
    ),
    "revoke-sessions": (
        "Log {name} out everywhere?",
        "Every session and remembered login of {name} ends now, and their personal access "
        "tokens are revoked: each browser and REST client has to log in again.",
        "Log {name} out everywhere",
    ),
    "revoke-tokens": (
        "Revoke the tokens of {name}?",
        "Every personal access token of {name} stops working now; programs that use one get "
        "a 401. Their sessions are kept.",
        "Revoke the tokens of {name}",
    ),
}


@view_config(route_name="admin", request_method="GET", permission="admin")
def admin_home(request: Request):
    """``/admin``: administration is the users page."""
    return HTTPSeeOther(request.route_url("admin.users"))


def confirm_page(request: Request, user: User) -> Response:
    action = request.matchdict["action"]
    title, consequence, button = (text.format(name=user.username) for text in CONFIRM[action])
    return render_to_response(
        "appserver:templates/admin_confirm.jinja2",
        {"user": user, "action": action, "title": title, "consequence": consequence, "button": button},
        request=request,
    )


def _account(request: Request) -> User | None:
    """The account the URL names, or None (a link to an account deleted meanwhile, a typed id)."""
    user_id = parse_id(request.matchdict["id"])
    return request.dbsession.get(User, user_id) if user_id is not None else None


def _gone(request: Request) -> dict:
    request.response.status = 404
    return users_page(request, form_error="That account no longer exists.")


@view_config(route_name="admin.set_password", request_method=("GET", "POST"),
             renderer="appserver:templates/admin_password.jinja2", permission="admin", websudo=True)
def set_user_password(request: Request):
    """Someone else's password, for a person who forgot theirs (Jira's "Set password"): they
    are logged out everywhere; their personal access tokens keep working."""
    user = _account(request)
    if user is None:  # the users page, saying so
        response = render_to_response("appserver:templates/admin_users.jinja2", _gone(request), request=request)
        response.status = 404
        return response
    if user.id == request.user.id:
        return HTTPSeeOther(request.route_url("account", _anchor="password-card"))
    page = {"user": user, "error": None}
    if request.method == "GET":
        return page
    password = request.POST.get("new_password", "")
    try:
        accounts.refuse_tokens(request, "set passwords")
        accounts.validate_new_password(request, password, request.POST.get("confirm_password", ""), account=user)
        accounts.reset_password(request, user, password, by=request.user)
    except AccountError as error:
        request.response.status = error.status
        return {**page, "error": str(error)}
    return HTTPSeeOther(request.route_url("admin.users", _query={"notice": "password-set"}))


@view_config(route_name="admin.confirm", request_method="GET",
             renderer="appserver:templates/admin_users.jinja2", permission="admin", websudo=True)
def confirm_user_action(request: Request):
    user = _account(request)
    if user is None:  # as the POST answers
        return _gone(request)
    if request.matchdict["action"] not in {action for action, _ in actions_for(request, user)}:
        # Nothing to confirm (deactivating yourself, a typed address): said before the page
        # that asks "are you sure?", not after it.
        request.response.status = 400
        return users_page(request, form_error=_not_offered(request, user))
    return confirm_page(request, user)


def _not_offered(request: Request, user: User) -> str:
    if request.matchdict["action"] == "deactivate" and user.id == request.user.id:
        return "You cannot deactivate your own account."
    return f"That action does not apply to {user.username} now."


@view_config(route_name="admin.user_action", request_method="POST",
             renderer="appserver:templates/admin_users.jinja2", permission="admin", websudo=True)
def user_action(request: Request):
    user = _account(request)
    if user is None:
        return _gone(request)
    action, admin = request.matchdict["action"], request.user
    if action in CONFIRM and request.POST.get("confirm") != "yes":
        return confirm_page(request, user)  # nothing happens without the second step
    try:
        if action in ("activate", "unlock"):
            # An account brought back, or guessing started again: a token's holder could
            # unlock after every third guess and find a password that outlives the token.
            accounts.refuse_tokens(request, f"{action} accounts")
        if action in ("activate", "deactivate"):
            accounts.set_active(request, user, action == "activate", by=admin)
        elif action == "unlock":
            accounts.unlock(request, user, by=admin)
        elif action == "revoke-tokens":
            personal_tokens.revoke_all(request, user, by=admin.username)
        else:
            accounts.revoke_sessions(request, user, everywhere=True, by=admin.username)
    except AccountError as error:
        request.response.status = error.status
        return users_page(request, form_error=str(error))
    return HTTPSeeOther(request.route_url("admin.users", _query={"notice": "user-updated"}))
