"""
Twisted's own IRC server (twisted.words) for the benchmark, on an ssl: port.

C{twistd words --group=...} fails on Python 3 (its option handler calls
C{str.decode}), so this sets the group directly. bench/fanout.py passes the
port, certificate, key and number of users in the environment; the load
generator logs in as c0, c1, ... with the password "bench".
"""

import os

from twisted.application import service
from twisted.words import tap

port = os.environ["BENCH_PORT"]
cert = os.environ["BENCH_CERT"]
key = os.environ["BENCH_KEY"]
users = int(os.environ["BENCH_USERS"])

options = tap.Options()
options.parseOptions(
    [
        "--hostname=bench",
        f"--irc-port=ssl:{port}:interface=127.0.0.1:certKey={cert}:privateKey={key}",
        "--auth=memory:" + ":".join(f"c{i}:bench" for i in range(users)),
    ]
)
options["groups"] = ["bench"]
application = service.Application("words-bench")
tap.makeService(options).setServiceParent(application)
