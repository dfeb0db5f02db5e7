"""Schemathesis hooks for Momentum.

Cursors are opaque tokens the server issues for one list (any other string is refused
with 400 `cursor`, which tests/ covers); a fuzzer cannot mint a valid one, so generated
cases go without. Everything else is generated from the schema as is.
"""

import schemathesis


@schemathesis.hook
def map_case(context, case):
    if case.query:
        case.query.pop("cursor", None)
    return case
