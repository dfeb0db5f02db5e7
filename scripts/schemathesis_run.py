"""Seeds a running shim with one of everything, writes a schemathesis config that points
every path and query id at those records, and runs schemathesis with all checks and all
phases on a bounded number of cases with a fixed seed.

    python scripts/schemathesis_run.py http://127.0.0.1:8000 target/schemathesis

Run by scripts/schemathesis.sh (which starts the shim); exits with schemathesis' status.
"""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

BASE, OUT = sys.argv[1].rstrip("/"), sys.argv[2]
EMAIL = f"fuzz-{uuid.uuid4().hex[:8]}@example.com"
PASSWORD = "schemathesis password"
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "12")
SEED = os.environ.get("SCHEMATHESIS_SEED", "20261123")


def call(method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if body is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req) as resp:
            return json.load(resp)["data"]
    except urllib.error.HTTPError as e:
        sys.exit(f"seeding failed: {method} {path} -> {e.code} {e.read().decode()}")


def sign_up(email, username):
    call("POST", "/auth/register", {"email": email, "username": username, "password": PASSWORD})
    login = call("POST", "/auth/login", {"email": email, "password": PASSWORD})
    return login["access_token"], login["user"]["id"]


token, me = sign_up(EMAIL, "fuzzer")
other_token, other = sign_up(f"other-{uuid.uuid4().hex[:8]}@example.com", "bystander")
post = lambda path, body: call("POST", path, body, token)  # noqa: E731


def workspace(name):
    return post("/workspaces", {"name": name})["id"]


ws = workspace("Fuzzing")
spare_ws = workspace("Fuzzing members")  # where member roles and leaving are fuzzed
doomed_ws = workspace("Fuzzing delete")  # DELETE /workspaces/{id}
post("/workspaces/switch", {"workspace_id": ws})
team = call("GET", f"/teams?workspace_id={ws}", token=token)["items"][0]["id"]
doomed_team = post("/teams", {"workspace_id": ws, "key": "DOOM", "name": "Doomed"})["id"]
workflow = call("GET", f"/workflows?team_id={team}", token=token)[0]
states = {s["category"]: s["id"] for s in workflow["states"]}
doomed_state = post(
    f"/workflows/{workflow['id']}/states",
    {"name": "Doomed", "category": "started", "color": "#123456"},
)
doomed_state = doomed_state["id"]


def issue(title):
    return post("/issues", {"team_id": team, "title": title})["id"]


iss, doomed_issue = issue("Fuzzed issue"), issue("Doomed issue")
child = post("/issues", {"team_id": team, "title": "Child", "parent_id": iss})["id"]
label, doomed_label = (
    post("/labels", {"workspace_id": ws, "name": n, "color": "#aa0000"})["id"]
    for n in ("fuzz", "doomed")
)
project, doomed_project = (
    post("/projects", {"workspace_id": ws, "name": n, "project_key": k})["id"]
    for n, k in (("Fuzz", "FUZ"), ("Doomed", "DMD"))
)
status, doomed_status = (
    post(
        "/project-statuses",
        {"workspace_id": ws, "name": n, "category": "in_progress", "color": "#00aa00"},
    )["id"]
    for n in ("Fuzzing", "Doomed")
)
cycle, doomed_cycle = (
    post("/cycles", {"team_id": team, "name": n, "starts_on": s, "ends_on": e})["id"]
    for n, s, e in (("C1", "2030-01-01", "2030-01-14"), ("C2", "2030-02-01", "2030-02-14"))
)
post(f"/cycles/{cycle}/issues", {"issue_ids": [iss]})
comment, doomed_comment = (post("/comments", {"issue_id": iss, "body": b})["id"] for b in ("hi", "bye"))
invitation = post("/invitations", {"workspace_id": ws, "email": "invitee@example.com"})["id"]
code = post(f"/workspaces/{ws}/invite-codes", {})["code"]
# The bystander joins both workspaces, so member and team-member routes have someone to act on.
for w in (ws, spare_ws):
    joined = post(f"/workspaces/{w}/invite-codes", {})["code"]
    call("POST", f"/invite-codes/{joined}/join", None, other_token)

# Webhooks point at the discard port on loopback (the shim runs with
# MOMENTUM_WEBHOOKS_ALLOW_PRIVATE=1; the hooks keep every generated URL there too).
hook, doomed_hook = (
    post("/webhooks", {"workspace_id": ws, "url": "http://127.0.0.1:9/hook", "enabled": False})["id"]
    for _ in range(2)
)
delivery = post(f"/webhooks/{hook}/test", {})["id"]

# Path ids per operation; DELETEs get records of their own so the rest keep theirs.
paths = {
    "/workspaces/{id}": ws,
    "/teams/{id}": team,
    "/workflows/{id}": workflow["id"],
    "/projects/{id}": project,
    "/project-statuses/{id}": status,
    "/issues/{id}": iss,
    "/cycles/{id}": cycle,
    "/labels/{id}": label,
    "/comments/{id}": comment,
    "/invitations/{id}": invitation,
    "/webhooks/{id}": hook,
}
doomed = {
    "/workspaces/{id}": doomed_ws,
    "/teams/{id}": doomed_team,
    "/projects/{id}": doomed_project,
    "/project-statuses/{id}": doomed_status,
    "/issues/{id}": doomed_issue,
    "/cycles/{id}": doomed_cycle,
    "/labels/{id}": doomed_label,
    "/comments/{id}": doomed_comment,
    "/webhooks/{id}": doomed_hook,
}


def toml_str(v):
    return json.dumps(v)


lines = [
    f"seed = {SEED}",
    "max-failures = 50",
    "request-timeout = 30.0",
    "workers = 1",
    "[generation]",
    f"max-examples = {MAX_EXAMPLES}",
    "[checks]",
    "# A version that does not match (412) or a change cursor past retention (410) is a",
    "# valid request refused by the state it meets, like a 409.",
    "positive_data_acceptance.expected-statuses = "
    '["2xx", "3xx", "401", "403", "404", "409", "410", "412", "422", "429", "5xx"]',
    "# A stale version is refused (412) before the body is looked at.",
    "negative_data_rejection.expected-statuses = "
    '["400", "401", "403", "404", "405", "406", "409", "412", "415", "422", "428", "429", "5xx"]',
    "[phases.stateful]",
    "# Follow the links the document declares (create -> /things/{id}), not guessed ones.",
    "inference.algorithms = []",
    "[parameters]",
    f'"query.workspace_id" = {toml_str(ws)}',
    f'"query.team_id" = {toml_str(team)}',
    f'"query.issue_id" = {toml_str(iss)}',
    f'"path.user_id" = {toml_str(other)}',
    f'"path.issue_id" = {toml_str(child)}',
    f'"path.state_id" = {toml_str(doomed_state)}',
    f'"path.code" = {toml_str(code)}',
    f'"path.delivery_id" = {toml_str(delivery)}',
    "[auth.dynamic.openapi.bearer]",
    'path = "/auth/login"',
    f"payload = {{ email = {toml_str(EMAIL)}, password = {toml_str(PASSWORD)} }}",
    'extract_selector = "/data/access_token"',
]
# The first matching entry wins: the specific ones go first.
for prefix, ident in doomed.items():
    lines += [
        "[[operations]]",
        f"include-path = {toml_str(prefix)}",
        'include-method = "DELETE"',
        f'parameters = {{ "path.id" = {toml_str(ident)} }}',
    ]
lines += [
    "[[operations]]",
    'include-path-regex = "^/workspaces/\\\\{id\\\\}/members/"',
    f'parameters = {{ "path.id" = {toml_str(spare_ws)} }}',
]
for prefix, ident in paths.items():
    regex = "^" + prefix.replace("{id}", r"\{id\}") + r"(/.*)?$"
    lines += [
        "[[operations]]",
        f"include-path-regex = {toml_str(regex)}",
        f'parameters = {{ "path.id" = {toml_str(ident)} }}',
    ]
os.makedirs(OUT, exist_ok=True)


def run(name, config_lines, phases):
    """One schemathesis run; returns its exit status."""
    config = os.path.join(OUT, f"{name}.toml")
    with open(config, "w") as f:
        f.write("\n".join(config_lines) + "\n")
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "schemathesis"),
        "--config-file",
        config,
        "run",
        f"{BASE}/openapi.json",
        "--checks",
        "all",
        "--phases",
        phases,
        "--report",
        "junit",
        "--report-junit-path",
        os.path.join(OUT, f"{name}.xml"),
    ]
    env = dict(os.environ, SCHEMATHESIS_HOOKS=os.path.join(os.path.dirname(__file__), "schemathesis_hooks.py"))
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, env=env)


# Generated cases run against the seeded records (path ids fixed per operation); the
# stateful phase follows the document's links from what it creates itself, so fixed path
# ids would only get in its way.
common = lines[: lines.index("[[operations]]")]
generated = run("generated", lines, "examples,coverage,fuzzing")
stateful = run("stateful", common, "stateful")
sys.exit(generated or stateful)
