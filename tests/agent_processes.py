"""Start `flytewasm serve` and `flytewasm sandbox` as processes and read the
addresses they print."""

import os
import re
import signal
import subprocess
import tempfile
import time

from conftest import ROOT


class Process:
    """A flytewasm process whose output goes to a file (a pipe nobody reads
    would fill up and stall it); `found` holds what `wait_for` matched."""

    def __init__(self, args, env=None, wait_for=()):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="flytewasm-", suffix=".log")
        self.proc = subprocess.Popen(
            [str(a) for a in args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "FLYTEWASM_CACHE_DIR": str(ROOT / "target/flytewasm-cache"), **(env or {})},
        )
        self.found = {}
        deadline = time.monotonic() + 120
        while len(self.found) < len(wait_for):
            output = self.output()
            for pattern in wait_for:
                match = re.search(pattern, output)
                if match:
                    self.found[pattern] = match.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"{args[1]} exited early:\n{output}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[1]} did not print {wait_for!r}:\n{output}")
            time.sleep(0.05)

    def output(self):
        with open(self.log.name) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Send `sig`; returns the exit code and the whole output."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.output()


GRPC = r"agent gRPC on (\S+?)[;\s]"
HTTP = r"metrics on (http://\S+)"
SANDBOX = r"sandbox cluster \(a test double\) (?:at|serving at) (http://\S+)"


def serve(flytewasm_bin, plugins_dir, *args, env=None):
    """`flytewasm serve` on free loopback ports; found[GRPC], found[HTTP]."""
    cmd = [flytewasm_bin, "serve", "--plugins", plugins_dir, "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", *args]
    wait_for = ([SANDBOX] if "--sandbox" in args else []) + [GRPC, HTTP]
    return Process(cmd, env=env, wait_for=wait_for)


def sandbox(flytewasm_bin, plugins_dir, kubeconfig):
    """`flytewasm sandbox` alone, serving the plugins' kinds."""
    cmd = [flytewasm_bin, "sandbox", "--port", "0", "--plugins", plugins_dir, "--kubeconfig", kubeconfig, "--step-ms", "100"]
    return Process(cmd, wait_for=[SANDBOX])
