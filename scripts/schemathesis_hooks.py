"""Schemathesis hooks for Momentum.

Cursors are opaque tokens the server issues for one list (any other string is refused
with 400 `cursor`, which tests/ covers); a fuzzer cannot mint a valid one, so generated
cases go without. The change feed's `since` is a cursor too: a `seq` the server handed out,
and one beyond the head of the log is refused with 400 `since` (tests/tests/visibility.rs
covers it). A fuzzer cannot know the head, so generated positive values become 0 (read
from the start); negative ones stay, as schema-invalid input. Everything else is generated
from the schema as is, except webhook URLs: a generated `url` that could be accepted is
pointed at the discard port on loopback, so fuzzing never sends a delivery anywhere else
(the shim accepts loopback targets only because the run sets
MOMENTUM_WEBHOOKS_ALLOW_PRIVATE=1). Schema-invalid ones (not a string, empty, too long)
stay, as negative cases.
"""

import schemathesis


def _positive(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0
    return isinstance(value, str) and value.isdigit() and int(value) > 0


SAFE_WEBHOOK_URL = "http://127.0.0.1:9/hook"


@schemathesis.hook
def map_case(context, case):
    body = case.body if isinstance(case.body, dict) else None
    url = body.get("url") if body is not None else None
    if case.path.startswith("/webhooks") and isinstance(url, str) and 0 < len(url) <= 2048:
        body["url"] = SAFE_WEBHOOK_URL
    if case.query:
        case.query.pop("cursor", None)
        if _positive(case.query.get("since")):
            case.query["since"] = 0
    return case
