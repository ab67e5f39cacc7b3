"""A small, honest subset of JQL (Jira Query Language): tokenizer, recursive-descent parser,
validation and translation to SQLAlchemy.

Supported (keywords and field names are case-insensitive)::

    query    := [where] [ORDER BY sort ("," sort)*]
    where    := clause (AND clause)*
    clause   := project = VALUE          key by name (DEMO), by name ("Demo project") or id
              | key = VALUE              also issuekey / issue; DEMO-7 or an issue id
              | status = VALUE           "In Progress", open (names or ids)
              | text ~ VALUE             every word in the summary or the description
                                         (words that start with it: port finds ports)
              | summary ~ VALUE | description ~ VALUE
    sort     := key | issuekey | created | updated   [ASC | DESC]

VALUE is an unquoted word or a quoted string ("..." or '...', with backslash escapes).
Everything else that is JQL (OR, NOT, parentheses, IN, !=, functions, other fields) is
recognised and rejected with a message that names what is not supported, rather than being
misread: a query that silently means something else would hand out wrong results.
"""
from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, false, func, or_, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, joinedload

from .ids import parse_id
from .models.issue import KEY_PATTERN, STATUSES, Issue, Project


class JQLError(ValueError):
    """The query is not valid JQL, or uses JQL this server does not support."""


def _where(text: str, position: int) -> str:
    """Jira's way of pointing at a place in the query: ``(line 1, character 9)``."""
    before = text[: position - 1]
    line = before.count("\n") + 1
    character = position - (before.rfind("\n") + 1)
    return f"(line {line}, character {character})"


# --- Tokens ---------------------------------------------------------------------------------


class Kind(enum.Enum):
    WORD = "word"  # unquoted: a field name, a keyword or a value
    STRING = "string"  # quoted: always a value (or a quoted field name)
    OPERATOR = "operator"  # = != ~ !~ < <= > >=
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","
    END = "end"


@dataclass(frozen=True)
class Token:
    kind: Kind
    value: str  # unescaped text
    position: int  # 1-based character of the token's start in the query

    def is_keyword(self, *words: str) -> bool:
        return self.kind is Kind.WORD and self.value.lower() in words

    def describe(self) -> str:
        if self.kind is Kind.END:
            return "the end of the query"
        if self.kind is Kind.STRING:
            return f'"{self.value}"'
        return f"'{self.value}'"


#: Words JQL reserves: they cannot be values or field names without quotes.
KEYWORDS = frozenset(
    "and or not order by asc desc in is was changed empty null from to on before after during"
    .split()
)
#: Characters Jira reserves outside quoted strings.
RESERVED_CHARACTERS = set("+.,;?|*/%^$#@[]&{}")
OPERATORS = ("!=", "!~", "<=", ">=", "=", "~", "<", ">")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t", " ": " "}
_WORD_END = set(" \t\r\n\"'=!~<>(),&|")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        position = i + 1
        if ch in "\"'":
            value, i = _quoted(text, i)
            tokens.append(Token(Kind.STRING, value, position))
            continue
        operator = next((op for op in OPERATORS if text.startswith(op, i)), None)
        if operator is not None:
            tokens.append(Token(Kind.OPERATOR, operator, position))
            i += len(operator)
            continue
        if ch in "(),":
            tokens.append(Token(Kind(ch), ch, position))
            i += 1
            continue
        if ch in "&|":  # Jira's spellings of AND and OR (&, &&, |, ||), spaces around or not
            tokens.append(Token(Kind.WORD, "and" if ch == "&" else "or", position))
            i += 2 if text.startswith(ch * 2, i) else 1
            continue
        if ch == "!":
            raise JQLError(
                f"Error in the JQL Query: 'NOT' (written '!') is not supported {_where(text, position)}."
            )
        # A word: escapes as in strings (Jira's grammar), reserved characters only unescaped.
        out: list[str] = []
        while i < n and text[i] not in _WORD_END:
            ch = text[i]
            if ch == "\\":
                decoded, i = _escape(text, i)
                out.append(decoded)
                continue
            if ch in RESERVED_CHARACTERS:
                raise JQLError(
                    f"Error in the JQL Query: The character '{ch}' is a reserved JQL character. "
                    f"You must enclose it in a string or use the escape '\\u{ord(ch):04x}' "
                    f"instead. {_where(text, i + 1)}"
                )
            out.append(ch)
            i += 1
        tokens.append(Token(Kind.WORD, "".join(out), position))
    tokens.append(Token(Kind.END, "", n + 1))
    return tokens


def _quoted(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\":
            decoded, i = _escape(text, i)
            out.append(decoded)
            continue
        out.append(ch)
        i += 1
    raise JQLError(
        "Error in the JQL Query: The quoted string starting at "
        f"{_where(text, start + 1)[1:-1]} is not terminated."
    )


def _unicode_escape(text: str, i: int) -> int | None:
    """The code unit of a ``\\uXXXX`` at ``i``, or None."""
    if text.startswith("\\u", i) and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
        return int(text[i + 2 : i + 6], 16)
    return None


def _escape(text: str, i: int) -> tuple[str, int]:
    """The character the escape at ``i`` (a backslash) stands for, and where the text goes on.

    ``\\uXXXX`` is a UTF-16 code unit, as in Java and JSON: an astral character (an emoji)
    is two of them, joined here; half of a pair alone is no character and a 400, never text
    that no database or encoder accepts."""
    unit = _unicode_escape(text, i)
    if unit is None:
        escape = text[i + 1 : i + 2]
        if escape in _ESCAPES:
            return _ESCAPES[escape], i + 2
        raise JQLError(
            f"Error in the JQL Query: '\\{escape}' is an illegal JQL escape sequence. {_where(text, i + 1)}"
        )
    if 0xD800 <= unit <= 0xDBFF:
        low = _unicode_escape(text, i + 6)
        if low is not None and 0xDC00 <= low <= 0xDFFF:
            return chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)), i + 12
    if 0xD800 <= unit <= 0xDFFF:
        raise JQLError(
            f"Error in the JQL Query: '{text[i : i + 6]}' is half of a UTF-16 surrogate pair without "
            f"its other half: write the character itself, or both halves. {_where(text, i + 1)}"
        )
    return chr(unit), i + 6


# --- The query object -----------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    field: str  # canonical: project, key, status, text, summary, description
    operator: str  # "=" or "~"
    value: str
    position: int


@dataclass(frozen=True)
class Sort:
    field: str  # canonical: key, created, updated
    descending: bool = False


@dataclass(frozen=True)
class Query:
    conditions: tuple[Condition, ...] = ()
    ordering: tuple[Sort, ...] = ()


#: clause name (lower case) -> (canonical field, the one operator it supports)
SEARCH_CLAUSES: dict[str, tuple[str, str]] = {
    "project": ("project", "="),
    "key": ("key", "="),
    "issuekey": ("key", "="),
    "issue": ("key", "="),
    "status": ("status", "="),
    "text": ("text", "~"),
    "summary": ("summary", "~"),
    "description": ("description", "~"),
}
#: clause name (lower case) -> canonical sort field
SORT_CLAUSES: dict[str, str] = {
    "key": "key",
    "issuekey": "key",
    "issue": "key",
    "created": "created",
    "createddate": "created",
    "updated": "updated",
    "updateddate": "updated",
}
SUPPORTED_FIELDS = "project, key (issuekey), status, text, summary and description"
SUPPORTED_SORTS = "key, created and updated"


class Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    # helpers

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not Kind.END:
            self.index += 1
        return token

    def error(self, message: str, token: Token | None = None) -> JQLError:
        token = token or self.current
        return JQLError(f"Error in the JQL Query: {message} {_where(self.text, token.position)}.")

    def unsupported(self, message: str, token: Token) -> JQLError:
        return JQLError(f"{message} {_where(self.text, token.position)}.")

    # grammar

    def parse(self) -> Query:
        conditions: tuple[Condition, ...] = ()
        if self.current.kind is not Kind.END and not self.current.is_keyword("order"):
            conditions = self.where()
        ordering: tuple[Sort, ...] = ()
        if self.current.is_keyword("order"):
            ordering = self.order_by()
        token = self.current
        if token.kind is not Kind.END:
            if token.is_keyword("or"):
                raise self.unsupported(
                    "'OR' is not supported by this server: combine clauses with AND", token
                )
            expected = "a comma, ASC, DESC" if ordering else "'AND', 'ORDER BY'"
            raise self.error(f"Expecting {expected} or the end of the query but got {token.describe()}")
        return Query(conditions, ordering)

    def where(self) -> tuple[Condition, ...]:
        conditions = [self.clause()]
        while self.current.is_keyword("and"):
            self.advance()
            conditions.append(self.clause())
        return tuple(conditions)

    def clause(self) -> Condition:
        token = self.current
        if token.kind is Kind.LPAREN:
            raise self.unsupported(
                "Parentheses are not supported by this server: write clauses joined by AND", token
            )
        if token.is_keyword("not"):
            raise self.unsupported("'NOT' is not supported by this server", token)
        if token.kind is Kind.END:
            raise self.error("Expecting a field name but reached the end of the query")
        if token.kind not in (Kind.WORD, Kind.STRING) or (
            token.kind is Kind.WORD and token.value.lower() in KEYWORDS
        ):
            raise self.error(f"Expecting a field name but got {token.describe()}")
        self.advance()
        name = token.value
        if name.lower() not in SEARCH_CLAUSES:
            raise self.unsupported(
                f"Field '{name}' does not exist or is not supported for searching by this "
                f"server. You can search by {SUPPORTED_FIELDS}",
                token,
            )
        field, supported_operator = SEARCH_CLAUSES[name.lower()]
        operator_token = self.current
        operator = self.operator()
        if operator != supported_operator:
            raise self.unsupported(
                f"The operator '{operator}' is not supported for the field '{name}' by this "
                f"server: use '{supported_operator}'",
                operator_token,
            )
        value_token = self.current
        value = self.value(f"{name} {operator}")
        return Condition(field, operator, value, value_token.position)

    def operator(self) -> str:
        token = self.current
        if token.kind is Kind.OPERATOR:
            self.advance()
            return token.value
        if token.is_keyword("in", "is", "was", "changed"):
            self.advance()
            words = [token.value.upper()]
            if token.is_keyword("is", "was") and self.current.is_keyword("not"):
                words.append(self.advance().value.upper())
            if token.is_keyword("was") and self.current.is_keyword("in"):
                words.append(self.advance().value.upper())
            return " ".join(words)
        if token.is_keyword("not") and self.tokens[self.index + 1].is_keyword("in"):
            self.advance()
            self.advance()
            return "NOT IN"
        raise self.error(
            f"Expecting an operator but got {token.describe()}. The operators this server "
            "supports are '=' and '~'"
        )

    def value(self, after: str) -> str:
        token = self.current
        control = next((c for c in token.value if ord(c) < 32 and c not in "\t\n\r"), None)
        if control is not None:
            raise self.error(f"The control character U+{ord(control):04X} is not allowed in a value")
        if token.kind is Kind.STRING:
            self.advance()
            return token.value
        if token.kind is Kind.WORD and token.value.lower() not in KEYWORDS:
            self.advance()
            if self.current.kind is Kind.LPAREN:
                raise self.unsupported(
                    f"Functions such as '{token.value}()' are not supported by this server", token
                )
            return token.value
        if token.is_keyword("empty", "null"):
            raise self.unsupported(
                f"Searching for {token.value.upper()} values is not supported by this server", token
            )
        if token.kind is Kind.LPAREN:
            raise self.unsupported("Lists of values are not supported by this server", token)
        if token.kind is Kind.END:
            raise self.error(f"Expecting a value after '{after}' but reached the end of the query")
        raise self.error(
            f"Expecting a value after '{after}' but got {token.describe()}; "
            "quote values that are JQL words"
        )

    def order_by(self) -> tuple[Sort, ...]:
        self.advance()  # ORDER
        if not self.current.is_keyword("by"):
            raise self.error(f"Expecting 'BY' after 'ORDER' but got {self.current.describe()}")
        self.advance()
        ordering = [self.sort()]
        while self.current.kind is Kind.COMMA:
            self.advance()
            ordering.append(self.sort())
        return tuple(ordering)

    def sort(self) -> Sort:
        token = self.current
        if token.kind not in (Kind.WORD, Kind.STRING) or (
            token.kind is Kind.WORD and token.value.lower() in KEYWORDS
        ):
            raise self.error(f"Expecting a field name to order by but got {token.describe()}")
        self.advance()
        field = SORT_CLAUSES.get(token.value.lower())
        if field is None:
            raise self.unsupported(
                f"Ordering by '{token.value}' is not supported by this server. You can order "
                f"by {SUPPORTED_SORTS}",
                token,
            )
        descending = False
        if self.current.is_keyword("asc", "desc"):
            descending = self.advance().value.lower() == "desc"
        return Sort(field, descending)


def parse(text: str, *, max_length: int = 10_000, max_terms: int | None = None) -> Query:
    """Parse a JQL query of the supported subset; :class:`JQLError` names what is wrong.

    ``max_length`` (characters) and ``max_terms`` (:func:`count_terms`: each word of a ``~``
    search becomes a pattern match over every issue) bound the work one anonymous request
    can ask of the database: ``appserver.jql.*``."""
    if len(text) > max_length:
        raise JQLError(
            f"The JQL query is too long: {len(text)} characters, and this server accepts at "
            f"most {max_length}. Narrow the search."
        )
    query = Parser(text).parse()
    terms = count_terms(query)
    if max_terms is not None and terms > max_terms:
        raise JQLError(
            f"The JQL query has too many terms: {terms} (clauses, sort keys and each word of a "
            "text search count), "
            f"and this server accepts at most {max_terms}. Narrow the search."
        )
    return query


def count_terms(query: Query) -> int:
    """Clauses and sort keys count one each, a ``~`` clause one per word it searches for."""
    clauses = sum(
        max(1, len(search_words(c.value))) if c.operator == "~" else 1 for c in query.conditions
    )
    return clauses + len(query.ordering)


# --- Validation against the data, and translation to SQLAlchemy -----------------------------

def _word_character(ch: str) -> bool:
    return ch == "_" or unicodedata.category(ch)[0] in "LNM"


def search_words(value: str) -> list[str]:
    """The words a ``~`` clause looks for (JQL's text search matches words, not phrases):
    runs of letters, digits and marks, in NFC. ``\\w`` alone split words at their marks: a
    decomposed "é" searched for "e", a Devanagari vowel sign cut a Hindi word in two."""
    words: list[str] = []
    start = None
    text = unicodedata.normalize("NFC", value)
    for index, ch in enumerate(text):
        if _word_character(ch):
            start = index if start is None else start
        elif start is not None:
            words.append(text[start:index])
            start = None
    if start is not None:
        words.append(text[start:])
    return words


def _status_name(value: str) -> str | None:
    for status in STATUSES.values():
        if value.lower() == status.name.lower() or value == status.jira_id:
            return status.name
    return None


def _project_filter(value: str) -> ColumnElement[bool]:
    matches = [Project.key == value.upper(), func.lower(Project.name) == value.lower()]
    project_id = parse_id(value)
    if project_id is not None:
        matches.append(Project.id == project_id)
    return or_(*matches)


def _parse_key(value: str) -> tuple[str, int] | int | None:
    """``DEMO-7`` -> ("DEMO", 7); an issue id -> int; anything else -> None."""
    issue_id = parse_id(value)
    if issue_id is not None:
        return issue_id
    match = KEY_PATTERN.match(value.strip().upper())
    if match is None:
        return None
    return match.group(1), int(match.group(2))


def check_values(query: Query, db: Session, levels: Sequence[str]) -> list[str]:
    """Problems Jira reports when ``validateQuery`` is on: malformed keys, issues, projects
    and statuses that do not exist, text searches without words. Returned, not raised: with
    ``validateQuery=warn`` they are warnings, with ``false`` they just match nothing. An
    issue the caller may not see (``levels``, as for :func:`run`) "does not exist", as in
    Jira: the answer tells nothing of issues hidden from the caller."""
    problems = []
    for condition in query.conditions:
        field, value = condition.field, condition.value
        if field == "project":
            if db.scalar(select(Project.id).where(_project_filter(value)).limit(1)) is None:
                problems.append(f"The value '{value}' does not exist for the field 'project'.")
        elif field == "key":
            if _parse_key(value) is None:
                problems.append(f"The issue key '{value}' for field 'key' is invalid.")
            elif db.scalar(
                select(Issue.id).where(_condition_filter(condition), Issue.security_level.in_(list(levels)))
            ) is None:
                problems.append(f"An issue with key '{value}' does not exist for field 'key'.")
        elif field == "status":
            if _status_name(value) is None:
                known = ", ".join(STATUSES)
                problems.append(
                    f"The value '{value}' does not exist for the field 'status'. Statuses: {known}."
                )
        elif not search_words(value):
            problems.append(
                f"The text query '{value}' for field '{field}' contains no words to search for."
            )
    return problems


def _contains(column, word: str) -> ColumnElement[bool]:
    """Text with a word that starts with ``word``, in any case: "port" finds "port" and
    "ports", not "export" (Jira matches whole words, stemmed; a substring was far wider).
    One pattern for both databases: PostgreSQL's ``~`` and SQLAlchemy's Python ``REGEXP`` on
    SQLite read ``\\W``, a bracket of letters and ``re.escape``'s escapes alike. Case is
    spelled out letter by letter instead of ``(?i)``, which the two fold differently (Python
    finds "I" for "ı" and "ı" for "I"; PostgreSQL only the first)."""
    return column.regexp_match(r"(^|\W)" + "".join(_any_case(ch) for ch in word))


def _any_case(ch: str) -> str:
    """``ch`` and its one-character upper, lower and title case forms, as a pattern."""
    forms = sorted({form for form in (ch, ch.lower(), ch.upper(), ch.title()) if len(form) == 1})
    return f"[{''.join(forms)}]" if len(forms) > 1 else re.escape(ch)


def _condition_filter(condition: Condition) -> ColumnElement[bool]:
    field, value = condition.field, condition.value
    if field == "project":
        return Issue.project_key.in_(select(Project.key).where(_project_filter(value)))
    if field == "key":
        key = _parse_key(value)
        if key is None:
            return false()
        if isinstance(key, int):
            return Issue.id == key
        return and_(Issue.project_key == key[0], Issue.number == key[1])
    if field == "status":
        name = _status_name(value)
        return Issue.status == name if name is not None else false()
    words = search_words(value)
    if not words:
        return false()
    columns = {"text": (Issue.summary, Issue.description), "summary": (Issue.summary,),
               "description": (Issue.description,)}[field]
    return and_(*(or_(*(_contains(column, word) for column in columns)) for word in words))


def filters(query: Query) -> list[ColumnElement[bool]]:
    """The WHERE clauses of the query (visibility is added by the caller, from the policy)."""
    return [_condition_filter(condition) for condition in query.conditions]


def order_by(query: Query) -> list:
    """ORDER BY columns: issue keys sort by project, then numerically (DEMO-2 before DEMO-10);
    the key is always the last tie-breaker so that pages never overlap or skip."""
    columns: list = []
    for sort in query.ordering or (Sort("key"),):
        keyed = (
            [Issue.project_key, Issue.number]
            if sort.field == "key"
            else [{"created": Issue.created_at, "updated": Issue.updated_at}[sort.field]]
        )
        columns += [column.desc() if sort.descending else column.asc() for column in keyed]
    if not any(sort.field == "key" for sort in query.ordering):
        columns += [Issue.project_key.asc(), Issue.number.asc()]
    return columns



@dataclass(frozen=True)
class SearchResult:
    total: int
    issues: list[Issue]


class SearchTimeout(Exception):
    """The database stopped the search at ``appserver.search.statement_timeout``; the
    transaction is unusable and must be aborted."""


#: PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout.
QUERY_CANCELED = "57014"


def run(
    db: Session,
    query: Query,
    levels: Sequence[str],
    start: int,
    limit: int,
    *,
    statement_timeout: int = 0,
) -> SearchResult:
    """Count and fetch one page of the issues matching ``query`` among the security
    ``levels`` the caller may view (see :func:`appserver.models.issue.viewable_levels`).

    ``statement_timeout`` (milliseconds, 0: none) bounds each statement on PostgreSQL, for
    the rest of this transaction only."""
    try:
        if statement_timeout and db.get_bind().dialect.name == "postgresql":
            # SET LOCAL: this transaction only. No bind parameters in SET: an int, formatted.
            db.execute(text(f"SET LOCAL statement_timeout = {int(statement_timeout)}"))
        return _run(db, query, levels, start, limit)
    except OperationalError as error:
        if getattr(error.orig, "sqlstate", None) == QUERY_CANCELED:
            raise SearchTimeout(statement_timeout) from error
        raise


def _run(db: Session, query: Query, levels: Sequence[str], start: int, limit: int) -> SearchResult:
    where = [Issue.security_level.in_(list(levels)) if levels else false(), *filters(query)]
    total = db.scalar(select(func.count()).select_from(Issue).where(*where)) or 0
    issues: list[Issue] = []
    if limit > 0 and start < total:
        issues = list(
            db.scalars(
                select(Issue)
                .options(joinedload(Issue.project), joinedload(Issue.reporter))
                .where(*where)
                .order_by(*order_by(query))
                .offset(start)
                .limit(limit)
            )
        )
    return SearchResult(total, issues)
