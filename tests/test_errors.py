"""The one-line messages' helpers."""

from ferkit import errors


def test_a_long_value_is_shown_cut_short_with_its_own_length():
    assert errors.shown("0.1") == "'0.1'"
    assert errors.shown(10**400) == f"{str(10**400)[:20]}… (401 characters)"
    # Its own characters, not repr's quotes: 300 nines were "(302 characters)".
    assert errors.shown("9" * 300) == "'9999999999999999999'… (300 characters)"
    # Cut between escapes, not inside one ('\x0…'), and only when something was cut.
    shown = errors.shown("\x01" * 15)
    assert shown.startswith("'\\x01") and shown.endswith("'… (15 characters)")
    assert len(shown) < len(repr("\x01" * 15))
