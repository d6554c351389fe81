"""A Spark standalone cluster on this machine (one master, N workers) from pyspark's own ``spark-class``.

For tests and trials of the cluster code path (``spark://`` master, executors in their own JVMs and
Python workers, shuffles between them) without a real cluster::

    with standalone_cluster(workers=2, cores=1, memory="1g") as cluster:
        engine = EngineSettings(kind="spark", master=cluster.master)

or from a shell: ``python -m recsys_assets.engines.standalone --workers 2`` (runs until Ctrl-C).
On a real cluster the same two classes run on the master and worker hosts (``docs/scale.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from recsys_assets.engines.spark import SparkEngineError, check_java, check_pyspark


@dataclass
class Cluster:
    """A running localhost cluster: its ``spark://`` URL, the master's web UI and the processes."""

    master: str
    ui: str
    log_dir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def alive_workers(self) -> int:
        """Workers the master lists as ALIVE (from its ``/json`` page)."""
        with urllib.request.urlopen(f"{self.ui}/json", timeout=5) as page:
            state = json.load(page)
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")

    def stop(self) -> None:
        """Terminate workers, then the master (each by its own process id), waiting for each."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_class() -> Path:
    """pyspark's ``bin/spark-class`` launcher."""
    check_pyspark()
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-class"


def start_cluster(
    workers: int = 2,
    cores: int = 1,
    memory: str = "1g",
    log_dir: str | Path | None = None,
    timeout: float = 90,
) -> Cluster:
    """Start a master on 127.0.0.1 and ``workers`` workers of ``cores`` cores and ``memory`` each; wait
    until all have registered (``SparkEngineError`` naming the log folder if not within ``timeout`` s)."""
    check_java()
    launcher = spark_class()
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="spark-standalone-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARK_HOME": str(launcher.parent.parent), "SPARK_LOCAL_IP": "127.0.0.1"}
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    port, ui_port = _free_port(), _free_port()
    cluster = Cluster(master=f"spark://127.0.0.1:{port}", ui=f"http://127.0.0.1:{ui_port}", log_dir=log_dir)

    def launch(name: str, *args: str) -> None:
        log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it
        cluster.processes.append(
            subprocess.Popen([str(launcher), *args], stdout=log, stderr=subprocess.STDOUT, env=env)
        )

    try:
        launch(
            "master",
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)),
        )
        for i in range(workers):
            work = log_dir / f"worker-{i}"
            launch(
                f"worker-{i}",
                "org.apache.spark.deploy.worker.Worker",
                *("--host", "127.0.0.1", "--cores", str(cores), "--memory", memory),
                *("--work-dir", str(work), "--webui-port", str(_free_port()), cluster.master),
            )
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, ValueError):
                if cluster.alive_workers() == workers:
                    return cluster
            dead = [p.args[1] for p in cluster.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = (
                    f"{dead[0]} exited"
                    if dead
                    else f"not all {workers} workers registered in {timeout:.0f} s"
                )
                raise SparkEngineError(f"standalone cluster did not start ({why}); logs in {log_dir}")
            time.sleep(0.5)
    except BaseException:
        cluster.stop()
        raise


@contextlib.contextmanager
def standalone_cluster(**kwargs: object) -> Iterator[Cluster]:
    """:func:`start_cluster` for the duration of a ``with`` block, stopped on exit."""
    cluster = start_cluster(**kwargs)  # type: ignore[arg-type]
    try:
        yield cluster
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--memory", default="1g")
    args = parser.parse_args(argv)
    with standalone_cluster(workers=args.workers, cores=args.cores, memory=args.memory) as cluster:
        print(
            f"master {cluster.master}  ui {cluster.ui}  logs {cluster.log_dir}  (Ctrl-C stops it)", flush=True
        )
        with contextlib.suppress(KeyboardInterrupt):
            while all(p.poll() is None for p in cluster.processes):
                time.sleep(1)


if __name__ == "__main__":
    main()
