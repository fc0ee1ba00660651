"""Where one measurement's CPU time goes: a worker run under Linux ``perf``.

    python benchmarks/perf_profile.py WAY CORPUS FILE [key=value ...] [--top 20]

WAY, CORPUS and the keys are _worker.py's; FILE is ``F16``, ``Q8_0``,
``Q4_K_M`` (the real-shape model) or a GGUF path. Prints the worker's figure,
then the functions (with their library) that took the most CPU samples:
for llama.cpp these name the kernel (``ggml_gemm_q4_K_8x8_q8_K`` is a
repacked Q4_K GEMM, ``tinyBLAS`` llamafile's F16/Q8_0 one, ``ggml_vec_dot_*``
the plain dot products, ``ggml_compute_forward_soft_max`` attention...).
The whole process is sampled, model loading and warm-up included, so read
the shares of the compute kernels against each other. Needs ``perf``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import GGUF_DTYPES, QUANTIZER_DTYPES, real_shape_model  # noqa: E402


def profile(way: str, corpus_name: str, model: Path, extra: list[str], top: int) -> str:
    perf = shutil.which("perf")
    if perf is None:
        raise SystemExit("perf is not installed (apt-get install linux-perf)")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        run = subprocess.run(
            [perf, "record", "-F", "499", "-e", "cpu-clock", "-o", str(data), "--",
             sys.executable, str(HERE / "_worker.py"), way, corpus_name, str(model), *extra],
            capture_output=True, text=True, check=True,
        )
        figure = run.stdout.strip().splitlines()[-1]
        report = subprocess.run(
            [perf, "report", "-i", str(data), "--stdio", "--sort", "dso,symbol",
             "--percent-limit", "0.5"],
            capture_output=True, text=True, check=True,
        ).stdout
    rows = [line for line in report.splitlines() if line.strip() and not line.startswith("#")]
    return "\n".join([figure, *rows[:top]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("way")
    parser.add_argument("corpus")
    parser.add_argument("file")
    parser.add_argument("extra", nargs="*", help="key=value options for the worker")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    if args.file in GGUF_DTYPES + QUANTIZER_DTYPES:
        model = real_shape_model(args.file)
    else:
        model = Path(args.file)
    print(profile(args.way, args.corpus, model, args.extra, args.top))


if __name__ == "__main__":
    main()
