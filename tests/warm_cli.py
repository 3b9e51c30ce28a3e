"""`python -m novelty.cli ARGS` for the tests, forked from a warm interpreter.

A cold `python -m novelty.cli train ...` spends ~3 of its ~4 CPU seconds importing torch (and
torch._dynamo, which the first optimizer imports) before a trial starts; the suite runs dozens.
Here one server process per pytest process imports them once and forks a child for each call:
the child is a process of its own (its own pid, exit status, stdout and stderr, cwd and
environment, atexit handlers at exit) that runs the CLI module as `-m` runs it, from an
interpreter where those imports are done, and skips the teardown of the modules at exit.

A call whose environment changes what an interpreter reads only as it starts (PYTHONPATH,
PYTHONWARNINGS, OpenMP's and torch's variables, ...) runs cold instead (`can_fork`).
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

PRELOAD = ("torch", "torch._dynamo", "pandas", "pyarrow.parquet", "novelty.cli", "novelty.trial.run")
# read by the interpreter or by a preloaded library as it starts, never again
STARTUP_PREFIXES = ("PYTHON", "OMP_", "KMP_", "MKL_", "OPENBLAS_", "CUDA_", "TORCH", "LD_", "MALLOC_")


def startup_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(STARTUP_PREFIXES)}


def _child(request: dict) -> int:
    """In the forked child: become `python -m MODULE ARGS` run in request's cwd and env."""
    import runpy
    import traceback

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                            (2, request["stderr"], os.O_WRONLY)):
        target = os.open(path, flags)
        os.dup2(target, fd)
        os.close(target)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = ["-m", *request["args"]]  # run_module puts the module's path in argv[0], as -m does
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # what the interpreter does with an uncaught exception
        traceback.print_exc()
        code = 1
    return code


def _exit(code: int) -> None:
    """End the child as an interpreter ends (its threads joined, atexit's callbacks, which run
    weakref finalizers too, its output flushed) but without tearing down the modules one by one:
    with torch loaded that takes ~0.8 s, for nothing a test can see (measured)."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def serve() -> None:
    """The server: preload, then for each request line on stdin fork a child; answer its pid, then
    its exit status (subprocess's convention: -N for a signal), one JSON line each."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the children, not the server
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            replies.close()
            sys.stdin.close()
            _exit(_child(request))
        replies.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n")


class WarmCli:
    """The client: one server, started with the environment `env`."""

    def __init__(self, env: dict[str, str]):
        self.env = startup_env(env)
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True, bufsize=1, cwd=str(Path(__file__).parents[1]))

    def can_fork(self, env: dict[str, str]) -> bool:
        """Whether a call with this environment can be forked from the server: the same start-up variables."""
        return startup_env(env) == self.env

    def _reply(self, timeout: float | None) -> dict | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the warm CLI server ended (exit {self.proc.wait()})")
        return json.loads(line)

    def run(self, args: list[str], env: dict[str, str], cwd: str | None, timeout: float,
            module: str = "novelty.cli") -> subprocess.CompletedProcess:
        """`python -m MODULE ARGS` (MODULE: novelty.cli), as subprocess.run(capture_output=True, text=True)."""
        cmd = [sys.executable, "-m", module, *args]
        with tempfile.TemporaryDirectory(prefix="warm-cli-") as d:
            out, err = Path(d) / "stdout", Path(d) / "stderr"
            out.touch()
            err.touch()
            request = {"module": module, "args": args, "env": env, "cwd": str(cwd or os.getcwd()),
                       "stdout": str(out), "stderr": str(err)}
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            pid = self._reply(60)["pid"]
            done = self._reply(timeout)
            if done is None:  # as subprocess.run does on a timeout: kill the child, then raise
                os.kill(pid, signal.SIGKILL)
                self._reply(None)
                raise subprocess.TimeoutExpired(cmd, timeout, out.read_text(), err.read_text())
            return subprocess.CompletedProcess(cmd, done["rc"], out.read_text(), err.read_text())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


if __name__ == "__main__":
    sys.path[0] = ""  # as `python -m` has it: the child's working directory, not this folder
    serve()
