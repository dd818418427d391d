"""parse_query agrees with urllib.parse.parse_qsl(keep_blank_values=True) on any input."""

from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

from tpd2py.app import parse_query

ALPHABET = st.sampled_from([b"a", b"Z", b"0", b"=", b"&", b"+", b"%", b"%2", b"%41", b"%C3%A9",
                            b"%ff", b"%zz", b"~", b"-", b"."])


@given(st.lists(ALPHABET, max_size=30).map(b"".join))
def test_parse_query_matches_parse_qsl(query: bytes) -> None:
    expected = parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="utf-8",
                         errors="replace")
    assert parse_query(query) == expected


def test_parse_query_examples() -> None:
    assert parse_query(b"name=John&x&y=%C3%A9+b") == [("name", "John"), ("x", ""), ("y", "é b")]
