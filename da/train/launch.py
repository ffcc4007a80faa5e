"""``da train --nproc N``: the same ``da train`` under torchrun on this machine, with a readable stderr.

torchrun prints a report of its own when a rank fails (a Python traceback included) and each rank
prints the same error line; a user of ``da train`` gets one line, as from one process. Everything
else (rank 0's progress bar, warnings) passes through as it comes.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from typing import IO

#: The failure report torchrun writes when a rank fails, from its first line to its last.
_REPORT = re.compile(r"^(Traceback|torch\.distributed\.elastic|\s*raise ChildFailedError|\[\d+\]:|\s+(time|host|rank|"
                     r"exitcode|error_file|traceback)\s+:|=+$|-+$|\S+ FAILED$|Failures:|Root Cause|\s+File \"|  )")


def launch_ranks(argv: list[str], nproc: int) -> int:
    """Run ``python -m da <argv>`` on ``nproc`` local ranks; returns torchrun's exit code."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "-m", "da", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           # DDP notes once per rank that find_unused_parameters found every parameter used: noise here.
           "TORCH_CPP_LOG_LEVEL": os.environ.get("TORCH_CPP_LOG_LEVEL", "ERROR")}
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    # SIGTERM or Ctrl-C to this process goes on to torchrun, which passes it to the ranks: each
    # checkpoints and stops, as one process does.
    previous = {s: signal.signal(s, lambda signum, _: proc.send_signal(signum)) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        errors = forward_stderr(proc.stderr, sys.stderr)
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code != 0 and errors:
        print(errors[0], file=sys.stderr)
        return 2
    return code


def forward_stderr(source: IO[bytes], sink: IO[str]) -> list[str]:
    """Copy ``source`` to ``sink`` as it comes (progress bars redraw with carriage returns), except
    the ranks' ``da: error`` lines (returned, to print once) and torchrun's failure report."""
    errors: list[str] = []
    buffer = b""
    while True:
        chunk = os.read(source.fileno(), 4096)
        if not chunk:
            break
        buffer += chunk
        while True:
            cut = max(buffer.rfind(b"\r"), -1)
            newline = buffer.find(b"\n")
            if newline >= 0:
                line, buffer = buffer[: newline + 1], buffer[newline + 1 :]
                text = line.decode(errors="replace")
                bare = text.rstrip("\n").split("\r")[-1]
                if bare.startswith("da: error") or bare.startswith("da: interrupted"):
                    if bare not in errors:
                        errors.append(bare)
                elif not _REPORT.match(bare) and "torch.distributed" not in bare and bare.strip():
                    sink.write(text)
                    sink.flush()
                continue
            if cut >= 0:  # a progress-bar redraw without a newline yet: show it now
                sink.write(buffer[: cut + 1].decode(errors="replace"))
                sink.flush()
                buffer = buffer[cut + 1 :]
            break
    return errors
