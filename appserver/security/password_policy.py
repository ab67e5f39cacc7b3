"""What a new password must be: long enough, and not easy to guess.

OWASP ASVS 4.0.3 asks for at least 12 characters (2.1.1), no composition rules (2.1.9) and a
check against common and breached passwords (2.1.7); NIST SP 800-63B (5.1.1.2) adds words
from the context: the service's name, the username and their derivatives. No list of breached
passwords can be asked for here (the server talks to no other host), so the check is local,
as Warehouse's is: `zxcvbn <https://github.com/dwolfhub/zxcvbn-python>`_ estimates how many
guesses a password needs against its lists of the most common passwords (30,000), names and
words, keyboard patterns, repeats, sequences and dates, and the account's own words. Its
score runs from 0 (too guessable) to 4; Warehouse, like this default, refuses below 2.
"""
from __future__ import annotations

from collections.abc import Iterable

from zxcvbn import zxcvbn

#: zxcvbn refuses longer input. Only the start is estimated: a longer password whose first
#: 72 characters are guessable (a repeat) is refused, and any other passes.
ESTIMATED_LENGTH = 72

#: Words of this service that a password must not lean on, beside the account's own.
SERVICE_WORDS = ("appserver", "jira", "atlassian")


def context_words(username: str, display_name: str = "", email: str = "") -> list[str]:
    """The account's own words: its name, each word of its display name, its address and the
    address's parts."""
    local, _, domain = email.partition("@")
    words = [username, display_name, *display_name.split(), email, local, domain.split(".")[0]]
    return [word for word in dict.fromkeys(words) if word] + list(SERVICE_WORDS)


def weakness(password: str, context: Iterable[str] = (), *, min_score: int = 2) -> str | None:
    """Why ``password`` is too easy to guess, in words a person can act on; None when it is
    not (or ``min_score`` is 0, the estimate switched off)."""
    if min_score <= 0:
        return None
    result = zxcvbn(password[:ESTIMATED_LENGTH], user_inputs=list(context), max_length=ESTIMATED_LENGTH)
    if result["score"] >= min_score:
        return None
    feedback = result["feedback"]
    advice = [feedback.get("warning") or "It is made of words or patterns that are easy to guess, "
              "such as your name or this service's.", *feedback.get("suggestions", ())]
    return "This password is too easy to guess. " + " ".join(advice)
