"""Request ids the gateway makes up are ``gw-`` + 16 hex digits, never repeated: not
within a process, and not by a forked child (which must not replay its parent's ids)."""

from __future__ import annotations

import os
import re

from sipp.gateway.server.request_ids import new_request_id


def test_ids_are_unique_and_well_formed() -> None:
    ids = [new_request_id() for _ in range(3000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"gw-[0-9a-f]{16}", rid) for rid in ids)


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    new_request_id()  # the parent holds unused ids now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first id and leave at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    parent = [new_request_id() for _ in range(600)]
    assert re.fullmatch(r"gw-[0-9a-f]{16}", child)
    assert child not in parent
