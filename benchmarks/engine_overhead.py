"""Flow-engine overhead per step: our Runner vs LangGraph, on flows of trivial Python steps.

No model runs: each step only updates a counter, so what is timed is the engine (choosing the
node, rendering/validating its inputs and outputs, evaluating the branch condition, recording the
step). Two flows, built equivalently in both engines and run in the same process, interleaved:

- ``loop``: ``init`` then one ``inc`` node in a loop bounded by a condition (``n < limit``):
  1,000 steps a run.
- ``branching``: 100 nodes in 50 levels of two (``a_k``, ``b_k``); every node increments ``n`` and
  branches on a condition of the state (``n % 3 == 0`` -> ``a_{k+1}``, else ``b_{k+1}``): 50 steps
  a run through a 100-node graph.

Ours in two styles (each run by the Runner on the flow compiled once, and the YAML style also
through ``flow.run``, which validates on every call): as YAML writes it (``set`` with a Jinja template, string ``when``
expressions evaluated safely), and the Python style closest to LangGraph's (``tool`` nodes calling
a Python function, Python callables as conditions). LangGraph: ``StateGraph`` over a TypedDict,
plain function nodes, ``add_conditional_edges`` with a Python router, ``invoke`` with a recursion
limit above the step count. Ours runs on a real ``Session`` of the tiny in-process model (pure
Python steps never call it). Goal: ours <= 1/3 of LangGraph's time per step.

Usage:
    python benchmarks/engine_overhead.py                          # ~1-2 min
    python benchmarks/engine_overhead.py --reps 2 --loop-steps 100 --out /tmp/bench   # smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import TypedDict

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, CpuMonitor, environment, write_results

LEVELS = 50  # branching flow: 2 nodes a level -> 100 nodes


# ---------------------------------------------------------------------------- our engine
def inc(n: int) -> int:
    return n + 1


def ours_loop(steps: int, style: str):
    from alora_flows.flow import END, START, Flow

    flow = Flow("loop", inputs={"limit": int}, max_steps=steps + 10)
    flow.set("init", n=0)
    if style == "yaml":
        flow.set("inc", n="{{ n + 1 }}")
        flow.edge(START, "init").edge("init", "inc")
        flow.branch("inc", [("n < limit", "inc")], default=END)
    else:
        flow.tool("inc", inc, args={"n": "{{ n }}"}, output="n")
        flow.edge(START, "init").edge("init", "inc")
        flow.branch("inc", [(lambda s: s.n < s.limit, "inc")], default=END)
    return flow, {"limit": steps - 1}  # init + (steps - 1) incs


def ours_branching(style: str):
    from alora_flows.flow import END, START, Flow

    flow = Flow("branching", max_steps=LEVELS + 10)
    flow.set("init", n=0)
    flow.edge(START, "init")
    flow.branch(
        "init", [("n % 3 == 0" if style == "yaml" else (lambda s: s.n % 3 == 0), "a_0")], default="b_0"
    )
    for k in range(LEVELS):
        for side in "ab":
            name = f"{side}_{k}"
            if style == "yaml":
                flow.set(name, n="{{ n + 1 }}")
            else:
                flow.tool(name, inc, args={"n": "{{ n }}"}, output="n")
            if k == LEVELS - 1:
                flow.edge(name, END)
            elif style == "yaml":
                flow.branch(name, [("n % 3 == 0", f"a_{k + 1}")], default=f"b_{k + 1}")
            else:
                flow.branch(name, [(lambda s: s.n % 3 == 0, f"a_{k + 1}")], default=f"b_{k + 1}")
    return flow, {}


# ---------------------------------------------------------------------------- LangGraph
class LoopState(TypedDict):
    n: int
    limit: int


def lg_loop():
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(LoopState)
    g.add_node("init", lambda s: {"n": 0})
    g.add_node("inc", lambda s: {"n": s["n"] + 1})
    g.add_edge(START, "init")
    g.add_edge("init", "inc")
    g.add_conditional_edges("inc", lambda s: "inc" if s["n"] < s["limit"] else END, ["inc", END])
    return g.compile()


class BranchState(TypedDict):
    n: int


def lg_branching():
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(BranchState)
    g.add_node("init", lambda s: {"n": 0})
    g.add_edge(START, "init")

    def router(k: int):
        return lambda s: f"a_{k}" if s["n"] % 3 == 0 else f"b_{k}"

    g.add_conditional_edges("init", router(0), ["a_0", "b_0"])
    for k in range(LEVELS):
        for side in "ab":
            name = f"{side}_{k}"
            g.add_node(name, lambda s: {"n": s["n"] + 1})
            if k == LEVELS - 1:
                g.add_edge(name, END)
            else:
                g.add_conditional_edges(name, router(k + 1), [f"a_{k + 1}", f"b_{k + 1}"])
    return g.compile()


# ---------------------------------------------------------------------------- harness
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loop-steps", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=7, help="timed runs of each flow per engine")
    parser.add_argument(
        "--branch-runs", type=int, default=20, help="runs of the branching flow in one timed rep"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="engine_overhead")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    started = time.perf_counter()

    import importlib.metadata as md_meta

    from alora_flows.core.session import Session
    from alora_flows.testing import tiny_backend

    tmp = tempfile.TemporaryDirectory()
    session = Session(tiny_backend(tmp.name, {}))

    # build + compile (one-time costs), then check both engines compute the same thing
    def timed(fn):
        t0 = time.perf_counter()
        value = fn()
        return value, time.perf_counter() - t0

    compile_s = {}
    flows = {}
    for _ in range(2):  # the first round pays imports (jinja, langgraph); keep the second
        for style in ("yaml", "python"):
            (flow, inputs), t_build = timed(lambda: ours_loop(args.loop_steps, style))
            _, t_val = timed(flow.validate)
            flows[("loop", style)] = (flow, inputs)
            compile_s[f"loop/ours-{style}"] = t_build + t_val
            (flow, inputs), t_build = timed(lambda: ours_branching(style))
            _, t_val = timed(flow.validate)
            flows[("branching", style)] = (flow, inputs)
            compile_s[f"branching/ours-{style}"] = t_build + t_val
        graphs = {}
        graphs["loop"], compile_s["loop/langgraph"] = timed(lg_loop)
        graphs["branching"], compile_s["branching/langgraph"] = timed(lg_branching)

    lg_inputs = {"loop": {"n": 0, "limit": args.loop_steps - 1}, "branching": {"n": 0}}
    lg_config = {
        "loop": {"recursion_limit": args.loop_steps + 10},
        "branching": {"recursion_limit": LEVELS + 10},
    }

    from alora_flows.flow import Runner

    compiled = {key: flow.validate() for key, (flow, _) in flows.items()}

    def run_ours(kind: str, style: str):
        """The runner on the flow compiled once (as LangGraph's graph is compiled once)."""
        result = Runner(compiled[(kind, style)], session).run(flows[(kind, style)][1])
        return result.state.n, len(result.trace.steps)

    def run_ours_flow_run(kind: str):
        """The one-call API: ``flow.run`` (validation cached while the flow is unchanged), then runs it."""
        flow, inputs = flows[(kind, "yaml")]
        result = flow.run(session, inputs)
        return result.state.n, len(result.trace.steps)

    def run_lg(kind: str):
        out = graphs[kind].invoke(lg_inputs[kind], config=lg_config[kind])
        return out["n"], None

    # equivalence: same final counter, and the step counts we divide by
    steps = {}
    for kind in ("loop", "branching"):
        n_y, steps_y = run_ours(kind, "yaml")
        n_p, steps_p = run_ours(kind, "python")
        n_l, _ = run_lg(kind)
        n_f, _ = run_ours_flow_run(kind)
        assert n_y == n_p == n_l == n_f and steps_y == steps_p, (kind, n_y, n_p, n_l, steps_y, steps_p)
        steps[kind] = steps_y
    assert steps["loop"] == args.loop_steps, steps

    contenders = {
        "ours-yaml": lambda k: run_ours(k, "yaml"),
        "ours-python": lambda k: run_ours(k, "python"),
        "ours-yaml-flow.run": run_ours_flow_run,
        "langgraph": run_lg,
    }
    rows = []
    for kind in ("loop", "branching"):
        runs = 1 if kind == "loop" else args.branch_runs
        times = {name: [] for name in contenders}
        monitor = CpuMonitor()
        for rep in range(args.reps):
            names = list(contenders)
            names = names[rep % len(names) :] + names[: rep % len(names)]
            for name in names:
                fn = contenders[name]
                t0 = time.perf_counter()
                for _ in range(runs):
                    fn(kind)
                times[name].append((time.perf_counter() - t0) / (runs * steps[kind]))
        med = {name: statistics.median(t) for name, t in times.items()}
        row = {
            "flow": kind,
            "nodes": 2 if kind == "loop" else 2 * LEVELS + 1,
            "steps_per_run": steps[kind],
            "runs_per_rep": runs,
            "us_per_step": {k: 1e6 * v for k, v in med.items()},
            "us_per_step_min": {k: 1e6 * min(t) for k, t in times.items()},
            "ours_yaml_over_langgraph": med["ours-yaml"] / med["langgraph"],
            "ours_python_over_langgraph": med["ours-python"] / med["langgraph"],
            "ours_flow_run_over_langgraph": med["ours-yaml-flow.run"] / med["langgraph"],
            "other_processes_cores_busy": monitor.other_cores(),
            "times_s_per_step": times,
        }
        rows.append(row)
        print({k: v for k, v in row.items() if k != "times_s_per_step"}, flush=True)

    goal = all(
        r["ours_yaml_over_langgraph"] <= 1 / 3 and r["ours_python_over_langgraph"] <= 1 / 3 for r in rows
    )
    result = {
        "benchmark": "engine_overhead",
        "langgraph": md_meta.version("langgraph"),
        "environment": environment(),
        "reps": args.reps,
        "compile_seconds": compile_s,
        "rows": rows,
        "goal_ours_le_one_third_of_langgraph": goal,
        "total_seconds": time.perf_counter() - started,
    }
    md = [
        f"Engine overhead per step (trivial Python steps, no model), medians of {args.reps} reps, "
        f"LangGraph {result['langgraph']}, Python {result['environment']['python']}.",
        "",
        "| flow | ours, YAML style (us/step) | ours, Python style (us/step) | "
        "ours, YAML style via `flow.run` (us/step) | LangGraph (us/step) | ours YAML / LG | "
        "ours Python / LG | `flow.run` / LG | other cores busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        u = r["us_per_step"]
        label = (
            f"loop (1 node in a loop, {r['steps_per_run']} steps)"
            if r["flow"] == "loop"
            else f"branching ({2 * LEVELS} nodes, {r['steps_per_run']} steps a run)"
        )
        md.append(
            f"| {label} | {u['ours-yaml']:.1f} | {u['ours-python']:.1f} | "
            f"{u['ours-yaml-flow.run']:.1f} | {u['langgraph']:.1f} | "
            f"{r['ours_yaml_over_langgraph']:.2f} | {r['ours_python_over_langgraph']:.2f} | "
            f"{r['ours_flow_run_over_langgraph']:.2f} | {r['other_processes_cores_busy']} |"
        )
    md += [
        "",
        "YAML style: `set` nodes with Jinja templates, `when` expressions. Python style: `tool` "
        "nodes calling a function, Python callables as conditions. Both run as "
        "`Runner(compiled, session).run(inputs)` on a flow validated once (LangGraph's graph is "
        "compiled once too); the `flow.run` column is the one-call API (it caches the validation while "
        "the flow is unchanged).",
        "",
        "One-time build + validate/compile (ms): "
        + ", ".join(f"{k} {1e3 * v:.1f}" for k, v in compile_s.items()),
        "",
        f"Goal (ours <= 1/3 of LangGraph per step, both styles, both flows): {goal}",
    ]
    write_results(args.out, args.name, result, md)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
