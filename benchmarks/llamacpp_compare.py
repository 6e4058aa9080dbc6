"""A cached intrinsic call and a prefill: our Session vs llama.cpp's server, same model, same ids.

llama.cpp's server is the peer a local user would pick for aLoRA: it loads aLoRA adapters
(``--lora FILE --lora-init-without-apply``, per-request ``"lora": [{"id": 0, "scale": 1}]``)
and keeps its prompt cache from base to adapter. This benchmark builds it and compares, in one
interleaved run on one thread:

- **cached intrinsic call** at 1k / 4k / 8k tokens: the conversation is already in the cache;
  the call runs the invocation + adapted input of the shipped uncertainty adapter with the
  adapter and returns one token. Ours: ``Session.invoke`` (f32 KV, the default, and the
  ``kv_dtype="float16"`` option). llama.cpp: ``POST /completion`` with the same token ids,
  ``n_predict=1``, f16 KV cache (``-ctk f16 -ctv f16``), flash attention off (``-fa off``): its
  best configuration for this call on CPU.
- **prefill** of the conversation from an empty cache (ours: ``Session.extend``; llama.cpp: the
  same ids with the adapter off, on an erased slot).

Same token ids on both sides: the conversation is rendered by our tokenizer and sent to
llama.cpp as a list of token ids. One difference that stays: llama.cpp activates an aLoRA one
token *before* its invocation (``alora_invocation_start - 1``), so its call runs the adapter on
one more position (and recomputes that cached position), where ours runs it as PEFT trained it.
The table states the tokens each side evaluated (``timings.prompt_n`` for llama.cpp).

Reset between llama.cpp calls: a repeated identical request would find its whole tail cached, so
after each timed call an untimed request with the conversation plus one other token brings the
slot's cache back to the conversation (checked: every timed call reports the same
``prompt_n``).

The build (only the ``llama-server`` target, from the llama.cpp source vendored in the
``llama-cpp-python`` sdist on PyPI) is cached under ``~/.cache/alora-flows/llamacpp``; a rerun
skips it. The model (f32) and the adapter are converted with llama.cpp's own scripts. Where
anything cannot be built, converted or started, the benchmark says why and exits 0.

Usage:
    python benchmarks/llamacpp_compare.py --build-only          # ~25+ min on 2 shared cores
    python benchmarks/llamacpp_compare.py                       # the comparison, ~6 min
    python benchmarks/llamacpp_compare.py --lengths 512 --reps 2 --out /tmp/bench   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, CpuMonitor, conversation, environment, quiet_cpu, write_results

VERSION = "0.3.36"
CACHE = Path(
    os.environ.get("ALORA_FLOWS_LLAMACPP_CACHE", Path.home() / ".cache" / "alora-flows" / "llamacpp")
)
DEFAULT_LENGTHS = [1024, 4096, 8000]
ADAPTER = "uncertainty"
CMAKE_OPTIONS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # it would download the web UI
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DBUILD_SHARED_LIBS=OFF",
]


class Skip(Exception):
    """Something the comparison needs is not available here; the message says what."""


# ----------------------------------------------------------------------------------- build
def source_dir(cache: Path) -> Path:
    """The llama.cpp source vendored in the llama-cpp-python sdist (downloaded once)."""
    src = cache / f"llama_cpp_python-{VERSION}" / "vendor" / "llama.cpp"
    if (src / "CMakeLists.txt").is_file():
        return src
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"llama_cpp_python-{VERSION}.tar.gz"
    if not sdist.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
        cmd += [f"llama-cpp-python=={VERSION}", "-d", str(cache)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not sdist.is_file():
            raise Skip(f"cannot download the llama-cpp-python {VERSION} sdist: {done.stderr.strip()[-300:]}")
    with tarfile.open(sdist) as tar:
        tar.extractall(cache, filter="data")
    if not (src / "CMakeLists.txt").is_file():
        raise Skip(f"the sdist has no vendored llama.cpp at {src}")
    return src


def build_server(cache: Path = CACHE, jobs: int = 1) -> Path:
    """Build (once) and return the ``llama-server`` binary; :class:`Skip` with the reason if not."""
    binary = cache / "build" / "bin" / "llama-server"
    if binary.is_file():
        return binary
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        raise Skip("cmake and a C++ compiler are needed to build llama-server")
    src = source_dir(cache)
    build = cache / "build"
    log = cache / "build.log"
    nice = ["nice", "-n", "19"] if shutil.which("nice") else []
    with log.open("w") as out:
        for cmd in (
            ["cmake", "-S", str(src), "-B", str(build), *CMAKE_OPTIONS],
            [*nice, "cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs)],
        ):
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            started = time.time()
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
            out.write(f"# exit {done.returncode} after {time.time() - started:.0f} s\n")
            out.flush()
            if done.returncode != 0:
                tail = log.read_text(errors="replace").splitlines()[-15:]
                raise Skip(f"building llama-server failed (log: {log}):\n" + "\n".join(tail))
    if not binary.is_file():
        raise Skip(f"the build finished but {binary} is missing (log: {log})")
    return binary


# ----------------------------------------------------------------------------------- convert
#: Python packages llama.cpp's converters import that this project does not need itself (they
#: use the ``gguf`` package vendored beside them).
CONVERTER_REQUIREMENTS = ("sentencepiece",)


def ensure_converter_requirements() -> None:
    import importlib.util

    missing = [p for p in CONVERTER_REQUIREMENTS if importlib.util.find_spec(p) is None]
    if missing:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", *missing], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise Skip(
                f"cannot pip-install the converters' requirements {missing}: {done.stderr.strip()[-300:]}"
            )


def convert(cache: Path, src: Path, model_dir: Path, adapter_dir: Path) -> tuple[Path, Path]:
    """The embedded model (f32) and the adapter as GGUF, with llama.cpp's own converters.

    The converters import the ``gguf`` package vendored next to them (``gguf-py``), so the GGUF
    they write matches the server built from the same source.
    """
    ensure_converter_requirements()
    out = cache / "gguf"
    out.mkdir(parents=True, exist_ok=True)
    model_gguf = out / "smollm2-135m-f32.gguf"
    adapter_gguf = out / f"{adapter_dir.name}-f32.gguf"
    env = {**os.environ, "PYTHONPATH": str(src / "gguf-py"), "OMP_NUM_THREADS": "1"}
    jobs = [
        (model_gguf, [str(src / "convert_hf_to_gguf.py"), str(model_dir), "--outtype", "f32"]),
        (
            adapter_gguf,
            [str(src / "convert_lora_to_gguf.py"), str(adapter_dir), "--base", str(model_dir)]
            + ["--outtype", "f32"],
        ),
    ]
    for target, args in jobs:
        if target.is_file():
            continue
        done = subprocess.run(
            [sys.executable, *args, "--outfile", str(target)], capture_output=True, text=True, env=env
        )
        if done.returncode != 0 or not target.is_file():
            raise Skip(f"converting to {target.name} failed: {(done.stderr or done.stdout).strip()[-600:]}")
    return model_gguf, adapter_gguf


# ----------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A running ``llama-server`` on localhost, one slot, one thread."""

    def __init__(self, binary: Path, model: Path, adapter: Path, ctx: int, threads: int, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [str(binary), "-m", str(model), "--lora", str(adapter), "--lora-init-without-apply"]
        cmd += ["-c", str(ctx), "-t", str(threads), "-tb", str(threads), "-np", "1"]
        cmd += ["-ctk", "f16", "-ctv", "f16", "-fa", "off", "--host", "127.0.0.1", "--port", str(self.port)]
        # slot actions (erase) need a slot save path; no RAM prompt cache
        cmd += ["--slots", "--slot-save-path", str(log.parent), "--cache-ram", "0", "--no-warmup"]
        self.command = cmd
        self.log = log.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise Skip(f"llama-server exited with {self.proc.returncode} at start (log: {log})")
            try:
                if self.get("/health").get("status") == "ok":
                    return
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError, TimeoutError):
                pass
            time.sleep(0.5)
        self.close()
        raise Skip(f"llama-server did not become healthy in 120 s (log: {log})")

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict, timeout: float = 900) -> dict:
        req = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def complete(self, ids: list[int], *, adapter: bool, n_predict: int = 1) -> tuple[float, dict]:
        """(wall seconds, response) of one greedy completion of ``ids``."""
        body = {
            "prompt": ids,
            "n_predict": n_predict,
            "cache_prompt": True,
            "temperature": 0.0,
            "top_k": 1,
            "samplers": ["top_k"],
            "lora": [{"id": 0, "scale": 1.0 if adapter else 0.0}],
            "return_tokens": True,
        }
        start = time.perf_counter()
        out = self.post("/completion", body)
        return time.perf_counter() - start, out

    def erase(self) -> None:
        try:
            self.post("/slots/0?action=erase", {})
        except urllib.error.HTTPError as exc:  # slot actions disabled: an unrelated prompt instead
            raise Skip(f"llama-server refused to erase its slot ({exc})") from exc

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


# ----------------------------------------------------------------------------------- compare
def ours(kv_dtype: str, threads: int):
    from alora_flows.app import use_cpu
    from alora_flows.core.backend import Backend

    use_cpu(threads)
    return Backend.load("embedded", device="cpu", progress=False, kv_dtype=kv_dtype)


def compare(args: argparse.Namespace, binary: Path) -> int:
    quiet_cpu(args.threads)
    from alora_flows.core import models
    from alora_flows.core.session import Session
    from intrinsics.registry import load_intrinsic

    started = time.perf_counter()
    backends = {"ours (f32 KV)": ours("auto", args.threads), "ours (f16 KV)": ours("float16", args.threads)}
    first = next(iter(backends.values()))
    tok = first.tokenizer
    resolved = load_intrinsic(ADAPTER, "builtin", first.model_id, tokenizer=tok)
    for backend in backends.values():
        backend.add_adapter(ADAPTER, resolved.path)
    spec = resolved.spec
    model_dir = Path(models.resolve_model("embedded", progress=False).path)
    src = source_dir(args.cache)
    model_gguf, adapter_gguf = convert(args.cache, src, model_dir, Path(resolved.path))
    info = first.adapters[ADAPTER]
    probe = Session(first, messages=conversation(tok, 256))
    tail_len = len(info.invocation_tokens) + len(spec.prepare(probe, ADAPTER, {}).call.adapted_input)
    server = Server(
        binary, model_gguf, adapter_gguf, max(args.lengths) + 256, args.threads, args.cache / "server.log"
    )
    rows = []
    try:
        for length in args.lengths:
            messages = conversation(tok, length, extra_tokens=tail_len)
            sessions, prefill = {}, {}
            for key, backend in backends.items():
                t0 = time.perf_counter()
                sessions[key] = Session(backend, messages=messages)
                prefill[key] = time.perf_counter() - t0
            conv_ids = sessions["ours (f32 KV)"].ids
            call = spec.prepare(sessions["ours (f32 KV)"], ADAPTER, {}).call
            assert not call.messages  # uncertainty: invocation + adapted input after the conversation
            full = conv_ids + info.invocation_tokens + list(call.adapted_input)
            reset = conv_ids + [tok.convert_tokens_to_ids("a")]
            assert reset[-1] != full[len(conv_ids)]

            server.erase()
            wall, out = server.complete(conv_ids, adapter=False)
            prefill["llama.cpp (f16 KV)"] = wall
            llama_prefill_n = out["timings"]["prompt_n"]
            server.complete(reset, adapter=True)

            def call_ours(session):
                return session.invoke(
                    ADAPTER,
                    adapted_input=call.adapted_input,
                    max_new_tokens=1,
                    allowed_token_ids=call.allowed_token_ids,
                    return_logits=True,
                )

            evaluated: list[int] = []
            llama_tokens: list[int] = []

            def call_llama():
                wall, out = server.complete(full, adapter=True)
                evaluated.append(out["timings"]["prompt_n"])
                llama_tokens.append(out["tokens"][0] if out.get("tokens") else -1)
                server.complete(reset, adapter=True)  # untimed: the cache holds the conversation again
                return wall, out["timings"]

            fns = {k: (lambda s=s: call_ours(s)) for k, s in sessions.items()}
            for fn in fns.values():
                fn()
            call_llama()
            monitor = CpuMonitor()
            times: dict[str, list[float]] = {k: [] for k in [*fns, "llama.cpp (f16 KV)"]}
            server_ms: list[float] = []
            order = list(times)
            for i in range(args.reps):
                for key in order[i % 3 :] + order[: i % 3]:
                    if key in fns:
                        t0 = time.perf_counter()
                        fns[key]()
                        times[key].append(time.perf_counter() - t0)
                    else:
                        wall, timings = call_llama()
                        times[key].append(wall)
                        server_ms.append(timings["prompt_ms"] + timings.get("predicted_ms", 0.0))
            other = monitor.other_cores()
            ours_result = call_ours(sessions["ours (f32 KV)"])
            med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
            row = {
                "tokens": len(full),
                "conversation_tokens": len(conv_ids),
                "tail_tokens": len(full) - len(conv_ids),
                "call_ms": med,
                "call_min_ms": {k: 1e3 * min(v) for k, v in times.items()},
                "llama_server_reported_ms": statistics.median(server_ms),
                "llama_evaluated_tokens": sorted(set(evaluated)),
                "ours_evaluated_tokens": ours_result.stats.prefill_tokens,
                "ours_over_llama": {k: med[k] / med["llama.cpp (f16 KV)"] for k in fns},
                "prefill_s": prefill,
                "llama_prefill_evaluated_tokens": llama_prefill_n,
                "prefill_llama_over_ours": prefill["llama.cpp (f16 KV)"] / prefill["ours (f32 KV)"],
                "first_token": {
                    "ours (constrained to digits)": ours_result.token_ids[0],
                    "ours (unconstrained argmax)": int(ours_result.logits.argmax()),
                    "llama.cpp (unconstrained)": sorted(set(llama_tokens)),
                },
                "other_processes_cores_busy": other,
                "times": times,
            }
            rows.append(row)
            print({k: v for k, v in row.items() if k != "times"}, flush=True)
            del sessions
    finally:
        server.close()

    result = {
        "benchmark": "llamacpp_compare",
        "model": first.model_id,
        "adapter": f"shipped {ADAPTER}",
        "llama_cpp": f"vendored in llama-cpp-python {VERSION} (sdist)",
        "server_command": server.command,
        "environment": environment(),
        "total_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    md = [
        f"Cached intrinsic call (shipped {ADAPTER} adapter: invocation + adapted input, one token out) "
        f"and prefill, {first.model_id} (f32 weights on both sides), {args.threads} thread(s), same "
        f"token ids; medians of {args.reps} calls per system, interleaved call by call. llama.cpp "
        f"{VERSION} (vendored in the llama-cpp-python sdist), `llama-server -ctk f16 -ctv f16 -fa off "
        f"-t {args.threads}`, timed over HTTP (wall; its own reported time in brackets).",
        "",
        "| tokens | ours f32 KV ms | ours f16 KV ms | llama.cpp f16 KV ms (server-reported) | ours f32 / llama | "
        "ours f16 / llama | tokens evaluated: ours / llama.cpp | other cores busy |",
        "|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    md += [
        f"| {r['tokens']} | {r['call_ms']['ours (f32 KV)']:.1f} | {r['call_ms']['ours (f16 KV)']:.1f} | "
        f"{r['call_ms']['llama.cpp (f16 KV)']:.1f} ({r['llama_server_reported_ms']:.1f}) | "
        f"{r['ours_over_llama']['ours (f32 KV)']:.2f} | {r['ours_over_llama']['ours (f16 KV)']:.2f} | "
        f"{r['ours_evaluated_tokens']} / {', '.join(map(str, r['llama_evaluated_tokens']))} | "
        f"{r['other_processes_cores_busy']} |"
        for r in rows
    ]
    md += [
        "",
        "llama.cpp activates an aLoRA one token before its invocation (`alora_invocation_start - 1`), "
        "so it runs the adapter on one more position than PEFT trained it on (and re-evaluates that "
        "cached position); ours applies it from the invocation on. Tokens evaluated: ours = the call's "
        "tail; llama.cpp = `timings.prompt_n`.",
        "",
        "Prefill of the conversation from an empty cache (one run each):",
        "",
        "| conversation tokens | ours f32 KV s | ours f16 KV s | llama.cpp s | llama.cpp / ours f32 |",
        "|---:|---:|---:|---:|---:|",
    ]
    md += [
        f"| {r['conversation_tokens']} | {r['prefill_s']['ours (f32 KV)']:.2f} | "
        f"{r['prefill_s']['ours (f16 KV)']:.2f} | {r['prefill_s']['llama.cpp (f16 KV)']:.2f} | "
        f"{r['prefill_llama_over_ours']:.2f} |"
        for r in rows
    ]
    md += ["", "First token (greedy): " + "; ".join(f"{r['tokens']}: {r['first_token']}" for r in rows)]
    write_results(args.out, args.name, result, md)
    return 0


# ----------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=DEFAULT_LENGTHS)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="parallel compile jobs for the build")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="llamacpp_compare")
    args = parser.parse_args()
    try:
        binary = build_server(args.cache, args.jobs)
        print(f"llama-server: {binary}", flush=True)
        if args.build_only:
            return 0
        return compare(args, binary)
    except Skip as exc:
        print(f"SKIPPED: llama.cpp comparison not run: {exc}", flush=True)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
