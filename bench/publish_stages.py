"""Instructions per publish of each stage of a message-channel publish, counted by callgrind.

Runs the functions the server calls for one publish (N=1), each ``--loops`` times in a row, and
calls ``os.getppid()`` between stages; callgrind dumps its counters before every ``getppid``
call, so each dump holds one stage. An empty loop is measured too and taken off. What this
cannot separate (the session's dispatch, the gateway's callbacks, the event loop, the
writes) is the rest of ``bench/callgrind_publish.py``'s total, as docs/PERFORMANCE.md shows.

    .venv/bin/python bench/publish_stages.py          # runs itself under valgrind
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

LOOPS = 5_000


def stages() -> list[tuple[str, Callable[[], object]]]:
    from rtm2.protocol.codec import decode_client, encode, ws_binary_frame
    from rtm2.protocol.frames import ChannelMessage, Publish
    from rtm2.protocol.names import is_valid_channel_name
    from rtm2.server.checks import check_message
    from rtm2.server.engines.base import UNNUMBERED, BusEvent, BusKind, frame_offset, numbered
    from rtm2.server.engines.memory import Offsets
    from rtm2.server.ratelimit import RateBucket
    from rtm2.server.recovery import Recovery
    from rtm2.server.session import reply_frame
    from rtm2.server.subjects import subject
    from rtm2.types import ChannelType

    app = "be" * 16
    data = bytes(128)
    wire = encode(Publish(12345, "bench", data))
    bucket = RateBucket(1e12, time.monotonic())
    offsets = Offsets(3600.0)
    recovery = Recovery(lambda subj: (32, 60.0))
    subj = subject(app, ChannelType.MESSAGE, "bench")
    push = encode(ChannelMessage("bench", 1, "p", data, 0, "", 1, UNNUMBERED))
    event = BusEvent(BusKind.MESSAGE, "", "p", push)
    counter = [0]

    def number() -> object:
        offset = offsets.next((subj, ""))
        return BusEvent(event.kind, event.topic, event.user, numbered(event.frame, offset))

    def keep() -> None:
        counter[0] += 1
        recovery.receive(subj, "", counter[0], "p", push)

    return [
        ("empty loop", lambda: None),
        ("decode the frame (msgspec)", lambda: decode_client(wire)),
        (
            "checks (message, channel name)",
            lambda: (check_message(data, 0, "", 32768), is_valid_channel_name("bench")),
        ),
        ("rate limit (clock + bucket)", lambda: bucket.allow(time.monotonic(), 1e12)),
        ("subject name", lambda: subject(app, ChannelType.MESSAGE, "bench")),
        (
            "encode the push (time + ChannelMessage + msgspec)",
            lambda: encode(
                ChannelMessage("bench", 1, "p", data, 0, "", int(time.time() * 1000), UNNUMBERED)
            ),
        ),
        ("bus event", lambda: BusEvent(BusKind.MESSAGE, "", "p", push)),
        ("numbering (offset + numbered copy)", number),
        ("recovery buffer", keep),
        ("frame offset + WebSocket framing", lambda: (frame_offset(push), ws_binary_frame(push))),
        ("reply (Reply + msgspec + framing)", lambda: reply_frame(12345)),
    ]


def run_stages() -> None:
    todo = stages()
    for _name, fn in todo:
        os.getppid()
        for _ in range(LOOPS):
            fn()
    os.getppid()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        run_stages()
        return 0
    names = [name for name, _ in stages()]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(
            [
                *("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"),
                *("--dump-before=os_getppid", "--dump-instr=no"),
                *(sys.executable, __file__, "--inside"),
            ],
            check=True,
            capture_output=True,
        )
        dumps = sorted(out.parent.glob("cg.out.*"), key=lambda p: int(p.suffix[1:]))
        totals = []
        for dump in dumps:
            for line in dump.read_text().splitlines():
                if line.startswith(("summary:", "totals:")):
                    totals.append(int(line.split()[1]))
                    break
    if os.environ.get("STAGES_DEBUG"):
        print([(d.name, t) for d, t in zip(dumps, totals, strict=True)])
    # Dump k (k >= 2) holds stage k-2: the first holds the start-up before the first stage.
    per = [t / LOOPS for t in totals[1 : 1 + len(names)]]
    empty = per[0]
    print("| stage | instructions per publish |")
    print("|---|---:|")
    for name, value in zip(names[1:], per[1:], strict=True):
        print(f"| {name} | {value - empty:,.0f} |")
    print(f"| (sum) | {sum(per[1:]) - empty * (len(per) - 1):,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
