"""What the hostile-input suites (``tests/test_fuzz_*.py``) share: their Hypothesis settings and the damage
they do to real files."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(
    derandomize=True,  # the same inputs on every run, so CI is deterministic; the budgets are in each test
    database=None,
    deadline=5000,  # ms an input may take: only a hang trips it on a busy core
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def damage(data: bytes, edits: tuple) -> bytes:
    """`data` after ``(op, position, argument)`` edits: ``truncate``, ``flip`` (bit `argument`), ``overwrite``
    and ``insert`` (bytes `argument`), ``delete`` (`argument` bytes). Positions are taken modulo the length."""
    out = bytearray(data)
    for op, position, argument in edits:
        at = position % (len(out) + 1)
        if op == "truncate":
            del out[at:]
        elif op == "flip" and at < len(out):
            out[at] ^= 1 << (argument % 8)
        elif op == "overwrite":
            out[at : at + len(argument)] = argument
        elif op == "insert":
            out[at:at] = argument
        elif op == "delete":
            del out[at : at + argument]
    return bytes(out)


def damage_edits(header_bytes: int = 64, max_position: int = 1 << 16, max_edits: int = 4) -> st.SearchStrategy[tuple]:
    """1 to `max_edits` edits for `damage`, half of their positions in the first `header_bytes` bytes (headers
    are where parsers trip)."""
    position = st.one_of(st.integers(0, header_bytes - 1), st.integers(0, max_position))
    edit = st.one_of(
        st.tuples(st.just("truncate"), position, st.just(0)),
        st.tuples(st.just("flip"), position, st.integers(0, 7)),
        st.tuples(st.just("overwrite"), position, st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("overwrite"), position, st.sampled_from([b"\xff" * 4, b"\x00" * 4, b"\xff" * 8])),
        st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("delete"), position, st.integers(1, 256)),
    )
    return st.lists(edit, min_size=1, max_size=max_edits).map(tuple)
