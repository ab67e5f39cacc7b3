"""The JQL subset: tokenizer and parser (no database here; translation is tested against the
demo data in test_issues_rest.py)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appserver.jql import Condition, JQLError, Kind, Query, Sort, parse, search_words, tokenize


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", Query()),
        ("   ", Query()),
        ("project = DEMO", Query((Condition("project", "=", "DEMO", 11),))),
        ("PROJECT=demo", Query((Condition("project", "=", "demo", 9),))),
        ('"project" = "DEMO"', Query((Condition("project", "=", "DEMO", 13),))),
        ("key = DEMO-7", Query((Condition("key", "=", "DEMO-7", 7),))),
        ("issuekey = demo-7", Query((Condition("key", "=", "demo-7", 12),))),
        ("issue = 17", Query((Condition("key", "=", "17", 9),))),
        ('status = "In Progress"', Query((Condition("status", "=", "In Progress", 10),))),
        ("status = 'In Progress'", Query((Condition("status", "=", "In Progress", 10),))),
        ("status = Open", Query((Condition("status", "=", "Open", 10),))),
        ('text ~ "session cookie"', Query((Condition("text", "~", "session cookie", 8),))),
        ("text ~ login", Query((Condition("text", "~", "login", 8),))),
        ('summary ~ "form"', Query((Condition("summary", "~", "form", 11),))),
        ('description ~ "traceback"', Query((Condition("description", "~", "traceback", 15),))),
        (
            'project = DEMO and status = Open AND text ~ "cookie"',
            Query((
                Condition("project", "=", "DEMO", 11),
                Condition("status", "=", "Open", 29),
                Condition("text", "~", "cookie", 45),
            )),
        ),
        ("project = DEMO && status = Open", Query((
            Condition("project", "=", "DEMO", 11), Condition("status", "=", "Open", 28),
        ))),
        # Jira's & and && need no spaces around them (they were reserved characters here)
        ("project=DEMO&&status=Open", Query((
            Condition("project", "=", "DEMO", 9), Condition("status", "=", "Open", 22),
        ))),
        ("project = DEMO & status = Open", Query((
            Condition("project", "=", "DEMO", 11), Condition("status", "=", "Open", 27),
        ))),
        ("ORDER BY key", Query((), (Sort("key"),))),
        ("order by created desc", Query((), (Sort("created", True),))),
        (
            "project = DEMO ORDER BY updated DESC, key asc",
            Query((Condition("project", "=", "DEMO", 11),), (Sort("updated", True), Sort("key"))),
        ),
        ("project = DEMO ORDER BY issuekey", Query((Condition("project", "=", "DEMO", 11),), (Sort("key"),))),
        ("project = DEMO\nORDER BY createdDate ASC", Query(
            (Condition("project", "=", "DEMO", 11),), (Sort("created"),)
        )),
    ],
)
def test_supported_queries_parse(text, expected):
    assert parse(text) == expected


def test_escapes_in_quoted_strings():
    assert parse(r'text ~ "say \"hi\" \u0041\\"').conditions[0].value == 'say "hi" A\\'
    assert parse(r"text ~ 'it\'s'").conditions[0].value == "it's"


def test_escapes_outside_quotes_as_jira_reads_them():
    """Jira's own advice for a reserved character ("use the escape '\u002e'") works."""
    assert parse(r"summary ~ foo\u002ebar").conditions[0].value == "foo.bar"
    assert parse(r"project = DE\u004dO").conditions[0].value == "DEMO"
    assert parse(r"text ~ database\ migrations").conditions[0].value == "database migrations"


def test_a_surrogate_pair_is_one_character_and_half_of_one_an_error():
    assert parse(r"text ~ '\ud83d\ude00'").conditions[0].value == "\U0001f600"
    assert parse(r"text ~ \ud83d\ude00").conditions[0].value == "\U0001f600"
    for text in (r'project = "\ud800"', r"project = \udc00", r'text ~ "\ude00\ud83d"', r'text ~ "\ud83d x"'):
        with pytest.raises(JQLError, match="half of a UTF-16 surrogate pair"):
            parse(text)


@pytest.mark.parametrize(
    "text, fragment",
    [
        # JQL this server recognises but does not support: the message names it
        ("status = Open OR status = Closed", "'OR' is not supported"),
        ("status = Open || status = Closed", "'OR' is not supported"),
        ("NOT status = Open", "'NOT' is not supported"),
        ("!status = Open", "'NOT'"),
        ("(status = Open)", "Parentheses are not supported"),
        ("assignee = fred", "Field 'assignee' does not exist or is not supported"),
        ("reporter = fred", "Field 'reporter'"),
        ("status != Open", "The operator '!=' is not supported for the field 'status'"),
        ("status in (Open, Closed)", "The operator 'IN' is not supported"),
        ("status not in (Open)", "The operator 'NOT IN' is not supported"),
        ("status is EMPTY", "The operator 'IS' is not supported"),
        ("status was Open", "The operator 'WAS' is not supported"),
        ("text = cookie", "The operator '=' is not supported for the field 'text' by this server: use '~'"),
        ("project ~ DEMO", "The operator '~' is not supported for the field 'project' by this server: use '='"),
        ("created > -1d", "Field 'created' does not exist or is not supported for searching"),
        ("key = currentUser()", "Functions such as 'currentUser()' are not supported"),
        ("project = EMPTY", "Searching for EMPTY values is not supported"),
        ("project = DEMO ORDER BY status", "Ordering by 'status' is not supported"),
        ("ORDER BY priority DESC", "Ordering by 'priority' is not supported"),
        # malformed JQL
        ("project =", "Expecting a value after 'project =' but reached the end of the query"),
        ("project", "Expecting an operator but got the end of the query"),
        ("project DEMO", "Expecting an operator but got 'DEMO'"),
        ("project = DEMO AND", "Expecting a field name but reached the end of the query"),
        ("AND project = DEMO", "Expecting a field name but got 'AND'"),
        ("project = DEMO status = Open", "Expecting 'AND', 'ORDER BY' or the end of the query"),
        ("project = and", "quote values that are JQL words"),
        ("ORDER key", "Expecting 'BY' after 'ORDER'"),
        ("ORDER BY", "Expecting a field name to order by"),
        ("ORDER BY key DESC created", "Expecting a comma, ASC, DESC or the end of the query"),
        ('text ~ "unterminated', "The quoted string starting at line 1, character 8 is not terminated"),
        (r'text ~ "bad \q escape"', "illegal JQL escape sequence"),
        ("summary ~ a.b", "The character '.' is a reserved JQL character"),
        ("project = DE*MO", "The character '*' is a reserved JQL character"),
        ('project = "a\x00b"', "The control character U+0000 is not allowed"),
        ('project = "a\\u0000b"', "The control character U+0000 is not allowed"),
        ("project = a\x01b", "The control character U+0001 is not allowed"),
    ],
)
def test_unsupported_or_malformed_queries_are_errors_that_say_why(text, fragment):
    with pytest.raises(JQLError) as raised:
        parse(text)
    assert fragment in str(raised.value)


def test_errors_point_at_line_and_character():
    with pytest.raises(JQLError, match=r"\(line 2, character 1\)"):
        parse("project = DEMO\nOR status = Open")
    with pytest.raises(JQLError, match=r"\(line 1, character 16\)"):
        parse("project = DEMO OR status = Open")


def test_overlong_queries_are_refused():
    with pytest.raises(JQLError, match="too long"):
        parse("text ~ " + "x" * 10_001)


def test_tokenizer_kinds():
    kinds = [token.kind for token in tokenize('a = "b" ~ (c, d) != <=')]
    assert kinds == [
        Kind.WORD, Kind.OPERATOR, Kind.STRING, Kind.OPERATOR, Kind.LPAREN, Kind.WORD, Kind.COMMA,
        Kind.WORD, Kind.RPAREN, Kind.OPERATOR, Kind.OPERATOR, Kind.END,
    ]


def test_search_words():
    assert search_words("session  cookie!") == ["session", "cookie"]
    assert search_words("?!") == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*'abcDEMO-1 =~!<>()",\'\\.*&|\n', "\\u", "d83d", "de00", "d8"]),
                max_size=40).map("".join))
def test_any_text_parses_or_raises_jql_error(text):
    """Whatever a client sends, the answer is a query or a JQLError (a 400), never a crash,
    and every value is text a database can take (no half of a surrogate pair)."""
    try:
        result = parse(text)
    except JQLError as error:
        assert str(error)
    else:
        assert isinstance(result, Query)
        for condition in result.conditions:
            condition.value.encode("utf-8")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30).filter(lambda v: all(ord(c) >= 32 or c in "\t\n\r" for c in v)))
def test_quoted_values_round_trip(value):
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    assert parse(f'text ~ "{escaped}"').conditions[0].value == value
