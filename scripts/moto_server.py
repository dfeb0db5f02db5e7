"""moto's server for the test suite, with requests handled one at a time.

moto evaluates a DynamoDB transaction's conditions and applies its writes without isolation
from concurrent requests, so two racing transactions can both pass their checks; real
DynamoDB transactions are serializable. Serialising requests restores that, so the
concurrency tests exercise Momentum's logic rather than moto's races.

usage: python scripts/moto_server.py HOST PORT
"""

import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

host, port = sys.argv[1], int(sys.argv[2])
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def serialised(environ, start_response):
    with lock:
        return list(app(environ, start_response))


run_simple(host, port, serialised, threaded=True, request_handler=MotoRequestHandler)
