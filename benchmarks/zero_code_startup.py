"""Start-up of ``opentelemetry-instrument python -c pass`` against plain ``python -c pass`` (zero-code cost).

Each repetition starts fresh processes of both commands in rotating order (so drift hits both alike) and reports
the paired difference; median and IQR over the repetitions. Runs with the environment's entry points (ragotel's
``ragotel_*`` instrumentors, distro, configurator and post-instrument hook, and whatever else is installed);
exporters are ``none`` so nothing waits on a network.

    python benchmarks/zero_code_startup.py                    # 15 paired repetitions
    python benchmarks/zero_code_startup.py --reps 5 --python /tmp/venv/bin/python
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import render_table, summarize  # the benchmarks directory is not a package


def _instrument_command(python: str) -> list[str]:
    """``opentelemetry-instrument`` of ``python``'s environment (a pyenv shim would switch interpreters)."""
    script = Path(python).parent / "opentelemetry-instrument"
    if script.is_file() and "pyenv" not in script.read_text(errors="replace")[:200]:
        return [str(script)]
    return [python, "-c", "import sys; from opentelemetry.instrumentation.auto_instrumentation import run; run()"]


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--python", default=sys.executable, help="interpreter whose environment is measured")
    args = parser.parse_args()
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    commands = {
        "python -c pass": [args.python, "-c", "pass"],
        "opentelemetry-instrument python -c pass": [*_instrument_command(args.python), args.python, "-c", "pass"],
    }
    for argv in commands.values():  # warm-up: page cache, .pyc files
        _time(argv, env)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for rep in range(args.reps):
        for name in names[rep % 2 :] + names[: rep % 2]:
            samples[name].append(_time(commands[name], env))
    plain, instrumented = samples[names[0]], samples[names[1]]
    paired = [i - p for i, p in zip(instrumented, plain, strict=True)]
    rows = []
    for label, values in (*samples.items(), ("difference (paired)", paired)):
        s = summarize(values)
        rows.append([label, f"{s.median:.3f}", f"{s.q1:.3f}-{s.q3:.3f}", str(s.n)])
    print(render_table(["command", "median s", "IQR s", "n"], rows))


if __name__ == "__main__":
    main()
