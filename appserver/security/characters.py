"""The tests of which characters a name or a password may not hold."""
from __future__ import annotations

import unicodedata

#: Controls (NUL, tabs, newlines, escapes), lone surrogates, line and paragraph separators.
_REFUSED = frozenset(("Cc", "Cs", "Zl", "Zp"))


def has_control_characters(text: str) -> bool:
    """Controls and separators break a layout, a log line or a Basic header (and PostgreSQL
    refuses NUL in text); the format characters and spaces real text holds do not: a
    zero-width joiner in an emoji sequence or a Persian name, a no-break space in a
    passphrase. ``str.isprintable`` refuses those too, which is why it is not the test."""
    return any(unicodedata.category(ch) in _REFUSED for ch in text)


#: The explicit embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they
#: reorder how the text after them is drawn, up to the end of the line, so "a\u202eb" can
#: show a name, a date or a column of a page in the wrong order ("Trojan Source").
_BIDI_CONTROLS = frozenset(("LRE", "RLE", "PDF", "LRO", "RLO", "LRI", "RLI", "FSI", "PDI"))


def has_bidi_controls(text: str) -> bool:
    """The marks real right-to-left text uses (LRM, RLM, ALM) pass: only the controls that
    reorder what follows them are refused."""
    return any(unicodedata.bidirectional(ch) in _BIDI_CONTROLS for ch in text)


#: Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt), as ranges:
#: what a renderer draws as nothing. Among them combining marks (the grapheme joiner,
#: variation selectors) and letters (the Hangul fillers), which the username rule's
#: categories would otherwise admit.
_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)


def is_invisible(ch: str) -> bool:
    """A character drawn as nothing: a name holding one can look exactly like another."""
    point = ord(ch)
    return any(low <= point <= high for low, high in _IGNORABLE)


#: Drawn as an empty cell, though not default-ignorable: the braille blank, the usual
#: "blank name" trick.
_BLANK_GLYPHS = frozenset("\u2800")


def looks_blank(text: str) -> bool:
    """Nothing a person would see: spaces and invisible characters only (or nothing)."""
    return all(ch.isspace() or is_invisible(ch) or ch in _BLANK_GLYPHS for ch in text)


#: Alphabets with letters drawn as Latin ones (Cyrillic а е о р с х, Greek ο ρ ν, Armenian
#: օ ս): a name mixing two of them can look exactly like another ("аdmin", "frеd").
_LOOKALIKE_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC", "ARMENIAN")


def lookalike_scripts(text: str) -> set[str]:
    """Which of :data:`_LOOKALIKE_SCRIPTS` the letters of ``text`` come from (by their
    Unicode names: "CYRILLIC SMALL LETTER IE", "FULLWIDTH LATIN CAPITAL LETTER A")."""
    found = set()
    for ch in text:
        words = unicodedata.name(ch, "").split()
        found.update(script for script in _LOOKALIKE_SCRIPTS if script in words)
    return found
