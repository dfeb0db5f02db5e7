"""Schemathesis hooks for Momentum.

Cursors are opaque tokens the server issues for one list (any other string is refused
with 400 `cursor`, which tests/ covers); a fuzzer cannot mint a valid one, so generated
cases go without. The change feed's `since` is a cursor too: a `seq` the server handed out,
and one beyond the head of the log is refused with 400 `since` (tests/tests/visibility.rs
covers it). A fuzzer cannot know the head, so generated positive values become 0 (read
from the start); negative ones stay, as schema-invalid input. Everything else is generated
from the schema as is.
"""

import schemathesis


def _positive(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0
    return isinstance(value, str) and value.isdigit() and int(value) > 0


@schemathesis.hook
def map_case(context, case):
    if case.query:
        case.query.pop("cursor", None)
        if _positive(case.query.get("since")):
            case.query["since"] = 0
    return case
