"""`python -m harness.paper run|table NAME [--scale S]`: a paper's experiments as sweeps, and its
table filled from our results (`make paper PAPER=core SCALE=cpu`, `make paper-table PAPER=core`).

`conf/paper/NAME.yaml` holds, per scale, the blocks of the paper (each a grid of Hydra overrides
times a list of per-cell override sets, plus overrides that apply only to some grid values), and
one table layout. Every cell of every block is composed and validated before the first one runs;
block B of scale S writes to `results/paper-NAME-S-B/`, so runs resume like any sweep.

The table prints, for each row of the layout, our mean over seeds and, beside it, the paper's
reported value from `conf/paper/<reference>.csv` (`n/s` where the paper does not state one), then
the relative improvement over a reference column, the prompt tokens each method adds per test
problem, and learning-curve PNGs (held-out Pass@1 against rollouts used, one per task).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import product
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from harness.config import REPO, UserError
from harness.plot import save_curve_figure
from harness.records import collect_summaries, write_text
from harness.sweep import exit_process, plan, run_locked
from harness.table import sweep_dir_of

PAPER_DIR = REPO / "conf" / "paper"


# ---------------------------------------------------------------- configuration

def load_paper(name: str) -> dict[str, Any]:
    """conf/paper/NAME.yaml, or a paper file of your own given by its path."""
    path = Path(name) if name.endswith(".yaml") else PAPER_DIR / f"{name}.yaml"
    if not path.is_file():
        valid = sorted(p.stem for p in PAPER_DIR.glob("*.yaml"))
        raise UserError(f"unknown paper {name!r}; valid: {', '.join(valid)} (or a path to a paper .yaml)")
    paper = yaml.safe_load(path.read_text())
    paper["_dir"], paper["_name"] = path.parent, path.stem
    return paper


def scale_of(paper: dict[str, Any], scale: str) -> dict[str, Any]:
    if scale not in paper["scales"]:
        raise UserError(f"unknown scale {scale!r}; valid: {', '.join(paper['scales'])}")
    return paper["scales"][scale]


def sweep_name(paper: dict[str, Any], scale: str, block: str) -> str:
    return f"paper-{paper['_name']}-{scale}-{block}"


def merge_overrides(*lists: list[str]) -> list[str]:
    """Concatenate override lists; a later value for the same key replaces an earlier one."""
    merged: dict[str, str] = {}
    for overrides in lists:
        for o in overrides:
            merged[o.split("=", 1)[0].lstrip("+")] = str(o)
    return list(merged.values())


def block_groups(scale: dict[str, Any], block: dict[str, Any], sweep: str) -> list[tuple[int, list[str]]]:
    """(per-cell override set index, override list) for one block: grid keys with per-value
    overrides are split, the rest stay comma lists; each per-cell override set gives one list per
    split combination."""
    per_value = {k: dict(v) for k, v in (scale.get("per_value") or {}).items()}
    for key, values in (block.get("per_value") or {}).items():
        per_value.setdefault(key, {}).update(values)
    grid = block["grid"]
    split = [k for k in grid if k in per_value]
    joined = [f"{k}={','.join(str(v) for v in vals)}" for k, vals in grid.items() if k not in split]
    groups = []
    for combo in product(*(grid[k] for k in split)):
        chosen = [f"{k}={v}" for k, v in zip(split, combo, strict=True)]
        extra = [o for k, v in zip(split, combo, strict=True)
                 for o in per_value[k].get(v, per_value[k].get(str(v))) or []]
        for entry, cell in enumerate(block["cells"]):
            groups.append((entry, merge_overrides(scale.get("common", []), joined, chosen, cell, extra,
                                                  [f"sweep={sweep}"])))
    return groups


# ---------------------------------------------------------------- run

def config_value(config: dict[str, Any], key: str) -> Any:
    """The grid value of `key` in a composed cell config (`task` -> its name, `task.x` -> its x)."""
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node.get("name") if isinstance(node, dict) else node


def run_order(config: dict[str, Any], entry: int, grid: dict[str, list[Any]]) -> tuple:
    """Row by row: the per-cell override set, then the grid keys in order with `method` last, so
    an interrupted run leaves whole rows of the table."""
    keys = [k for k in grid if k != "method"] + [k for k in grid if k == "method"]
    return (entry, *(grid[k].index(v) if (v := config_value(config, k)) in grid[k] else len(grid[k]) for k in keys))


def run(name: str, scale_name: str, results_dir: str = "results", dry_run: bool = False) -> int:
    paper = load_paper(name)
    scale = scale_of(paper, scale_name)
    planned = []
    for block_name, block in scale["blocks"].items():
        sweep = sweep_name(paper, scale_name, block_name)
        keyed, seen, first, sdir = [], set(), None, None
        for entry, group in block_groups(scale, block, sweep):
            sdir, group_specs, group_first = plan(group + [f"results_dir={results_dir}"])
            first = first or group_first
            for spec in group_specs:
                if spec.cell_id not in seen:
                    seen.add(spec.cell_id)
                    keyed.append((run_order(spec.config, entry, block["grid"]), spec))
        planned.append((block_name, sdir, [spec for _, spec in sorted(keyed, key=lambda x: x[0])], first))
    total = sum(len(p[2]) for p in planned)
    print(f"paper {paper['_name']}, scale {scale_name}: {paper.get('title', '')}\n  {scale.get('note', '')}\n  "
          + ", ".join(f"{b}: {len(s)} cells" for b, _, s, _ in planned) + f" ({total} in all)", flush=True)
    if dry_run:
        for block_name, sdir, specs, _ in planned:
            print(f"  {block_name} -> {sdir}: {sum(not s.done for s in specs)} to run")
        return 0
    t0, worst = time.perf_counter(), 0
    for _, sdir, specs, first in planned:
        assert sdir is not None and first is not None  # every block plans at least one group
        code = run_locked(sdir, specs, first)
        if code in (2, 130):  # refused (sweep in use) or interrupted: stop here, a rerun resumes
            return code
        worst = max(worst, code)
    print(f"paper {paper['_name']}, scale {scale_name}: finished in {time.perf_counter() - t0:.0f}s; "
          f"`make paper-table PAPER={name} SCALE={scale_name}` prints the table", flush=True)
    return worst


# ---------------------------------------------------------------- table

def load_results(sdir: Path, keys: list[str]) -> pd.DataFrame:
    """The latest plan's summaries plus any row key that is a cell-config path (e.g. task.benchmark)."""
    summary = collect_summaries(sdir)
    configs = {cell_id: json.loads((sdir / "cells" / cell_id / "config.json").read_text())["config"]
               for cell_id in summary["cell_id"].unique()}
    for key in [k for k in keys if k not in summary.columns]:
        summary[key] = summary["cell_id"].map({cell_id: config_value(c, key) for cell_id, c in configs.items()})
    return summary


def stage_rows(df: pd.DataFrame, stage: str) -> pd.DataFrame:
    """final: each cell's last evaluation; first: each cell's earliest one."""
    if stage == "final":
        return df[df["final"].astype(bool)]
    return df.sort_values("rollouts_used").groupby("cell_id", as_index=False).head(1)


def metric_values(df: pd.DataFrame, metric: str) -> pd.Series:
    """A summary column; `pass@k` is each cell's largest reported k (eval.k, else n_samples)."""
    if metric != "pass@k":
        return df[metric] if metric in df.columns else pd.Series(float("nan"), index=df.index)
    ks = df["report_k"] if "report_k" in df.columns else df["n_samples"]
    return pd.Series([row.get(f"pass@{int(k)}") for (_, row), k in zip(df.iterrows(), ks, strict=True)],
                     index=df.index, dtype=float)


def reference_table(paper: dict[str, Any]) -> pd.DataFrame:
    path = paper["_dir"] / paper["reference"] if paper.get("reference") else None
    if path is None or not path.exists():
        return pd.DataFrame(columns=["section", "row", "column", "value", "source"])
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _ref(ref: pd.DataFrame, section: str, row: str, column: str) -> str:
    hit = ref[(ref["section"] == section) & (ref["row"] == row) & (ref["column"] == column)]
    return hit["value"].iloc[0] if len(hit) else "n/s"


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and pd.isna(v))


def _fmt(v: float | None) -> str:
    return "–" if v is None or pd.isna(v) else f"{v:.3f}"


def best_label(ours: dict[str, float], labels: list[str]) -> str:
    """The highest column of a row, every one of them on a tie (small test sets tie often), and how
    many columns had run when the row is partial."""
    ran = [lbl for lbl in labels if lbl in ours]
    if not ran:
        return "–"
    top = max(ours[lbl] for lbl in ran)
    winners = [lbl for lbl in ran if ours[lbl] >= top - 1e-12]
    text = f"all {len(ran)} tie" if len(winners) == len(ran) > 1 else " = ".join(winners)
    return text + (f" ({len(ran)} of {len(labels)} run)" if len(ran) < len(labels) else "")


def build_paper_table(paper: dict[str, Any], scale: dict[str, Any], results: pd.DataFrame,
                      ref: pd.DataFrame, scale_name: str) -> tuple[str, pd.DataFrame]:
    layout = paper["table"]
    keys, columns = layout["rows"], layout["columns"]
    names = layout.get("row_names", {})
    ref_map = scale.get("reference_rows") or {}
    seeds = int(results["seed"].nunique()) if len(results) else 0
    model = ", ".join(sorted(results["model"].unique())) if len(results) else "?"

    values: dict[tuple, dict[str, float]] = {}
    for col in columns:
        part = stage_rows(results[results["method"] == col["method"]], col.get("stage", "final")).copy()
        part["_value"] = metric_values(part, col["metric"])
        for group, df in part.dropna(subset=["_value"]).groupby(keys, sort=False, dropna=False):
            row = group if isinstance(group, tuple) else (group,)
            values.setdefault(row, {})[col["label"]] = float(df["_value"].mean())
    budgets = {(row if isinstance(row, tuple) else (row,)): set(df["budget"])
               for row, df in results.groupby(keys, sort=False, dropna=False)}
    block_grid = scale["blocks"][layout["block"]]["grid"]

    def order(row: tuple) -> tuple:
        return tuple(block_grid[k].index(v) if k in block_grid and v in block_grid[k] else v
                     for k, v in zip(keys, row, strict=True))

    labels = [c["label"] for c in columns]
    lines, records = [], []
    header = keys + ["line"] + labels + (["best"] if layout.get("best") else [])
    for row in sorted(values, key=order):
        ours = values[row]
        ref_row = "/".join("" if _missing(v) else str(ref_map.get(k, {}).get(v, v))
                           for k, v in zip(keys, row, strict=True))
        shown = ["" if _missing(v) else names.get(v, v) for v in row]
        best = best_label(ours, labels)
        budget = "/".join(str(b) for b in sorted(budgets.get(row, ())))
        ours_line = shown + [f"ours (B={budget}, {model}, {seeds} seed{'s' * (seeds != 1)})"]
        ours_line += [_fmt(ours.get(lbl)) for lbl in labels]
        paper_line = [""] * len(keys) + [f"paper ({ref_row})"] + [_ref(ref, "table", ref_row, lbl) for lbl in labels]
        if layout.get("best"):
            ours_line.append(best)
            paper_line.append(_ref(ref, "table", ref_row, "best"))
        lines += [ours_line, paper_line]
        records.append({**dict(zip(keys, row, strict=True)), **ours, "best": best})
    text = f"## {paper.get('title', '')}\n\nscale **{scale_name}**: {scale.get('note', '')}\n\n"
    text += pd.DataFrame(lines, columns=header).to_markdown(index=False) + "\n"

    if layout.get("improvement") and records:
        imp = layout["improvement"]
        base, by = imp["over"], imp["by"]
        frame = pd.DataFrame(records)
        rows = []
        for value, df in frame.groupby(by, sort=True):
            ref_by = str(ref_map.get(by, {}).get(value, value))
            line = [value]
            for lbl in labels:
                if lbl == base:
                    continue
                if lbl not in df or base not in df:  # a column not run yet
                    line.append("–")
                    continue
                ok = df[base] > 0
                gain = ((df[lbl] - df[base]) / df[base])[ok].mean() if ok.any() else float("nan")
                shown_gain = "–" if pd.isna(gain) else f"{gain:+.1%}"
                line.append(f"{shown_gain} (paper {_ref(ref, 'improvement', ref_by, lbl)})")
            rows.append(line)
        frame = pd.DataFrame(rows, columns=[by] + [lbl for lbl in labels if lbl != base])
        text += (f"\nRelative improvement over {base} (mean over rows with {base} > 0; paper value in brackets):"
                 f"\n\n{frame.to_markdown(index=False)}\n")

    if layout.get("context_tokens"):
        rows = []
        final = stage_rows(results, "final")
        for col in columns:
            added = final[final["method"] == col["method"]]["context_tokens_added"].mean()
            rows.append([col["label"], "–" if pd.isna(added) else f"{added:.0f}",
                         _ref(ref, "context_tokens", "", col["label"])])
        text += ("\nPrompt tokens added per test problem (mean over the table's cells):\n\n"
                 + pd.DataFrame(rows, columns=["method", "ours", "paper"]).to_markdown(index=False) + "\n")
    curve_refs = ref[ref["section"] == "curves"]
    if len(curve_refs):
        facts = "; ".join(f"{r.column} at {r.row}: {r.value}" for r in curve_refs.itertuples())
        text += f"\nPaper curve facts: {facts}\n"
    sources = sorted(set(ref["source"])) if len(ref) else []
    if sources:
        text += "\nReference sources: " + " | ".join(sources) + "\n"
    return text, pd.DataFrame(records)


def plot_curves(results: pd.DataFrame, columns: list[dict[str, Any]], out_dir: Path,
                metric: str = "pass@1", names: dict[str, str] | None = None) -> list[Path]:
    """One PNG per task: each method's held-out metric against rollouts used (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for task, df in results.groupby("task"):
        fig, ax = plt.subplots(figsize=(6, 4))
        start = df[df["rollouts_used"] == 0][metric].mean()  # a no-learning method's score is every curve's rollout 0
        for col in columns:
            m = df[df["method"] == col["method"]]
            if m.empty:
                continue
            curve = m.groupby("rollouts_used")[metric].mean().sort_index()
            if len(curve) == 1 and curve.index[0] == 0:
                ax.axhline(curve.iloc[0], ls="--", lw=1, color="grey", label=col["label"])
                continue
            if 0 not in curve.index and pd.notna(start):
                curve = pd.concat([pd.Series([start], index=[0]), curve])
            ax.plot(curve.index, curve.to_numpy(), marker="o", label=col["label"])
        title = curve_title((names or {}).get(str(task), str(task)), df)
        written.append(save_curve_figure(fig, ax, f"held-out {metric}", title, out_dir / f"paper_curve_{task}.png"))
    return written


def curve_title(row_name: str, df: pd.DataFrame) -> str:
    """'MathGAP: smollm2-135m, 10 training problems, 1 seed': what a curve was measured on."""
    parts = [f"{row_name}: {'/'.join(sorted(df['model'].unique()))}"]
    if "train_size" in df and df["train_size"].notna().any():
        sizes = sorted(int(s) for s in df["train_size"].dropna().unique())
        parts.append(f"{'/'.join(map(str, sizes))} training problems")
    seeds = df["seed"].nunique()
    parts.append(f"{seeds} seed{'s' if seeds != 1 else ''}")
    return ", ".join(parts)


def scales_with_results(paper: dict[str, Any], results_dir: str) -> list[str]:
    block = paper["table"]["block"]
    return [s for s in paper["scales"]
            if not collect_summaries(sweep_dir_of(sweep_name(paper, s, block), results_dir)).empty]


def table(name: str, scale_name: str | None, results_dir: str = "results") -> int:
    paper = load_paper(name)
    if scale_name is None:
        have = scales_with_results(paper, results_dir)
        if not have:
            raise UserError(f"no results for paper {name!r} yet; run `make paper PAPER={name} SCALE=<scale>` "
                            f"(scales: {', '.join(paper['scales'])})")
        scale_name = have[0]
    scale = scale_of(paper, scale_name)
    layout = paper["table"]
    sdir = sweep_dir_of(sweep_name(paper, scale_name, layout["block"]), results_dir)
    results = load_results(sdir, layout["rows"])
    if results.empty:
        raise UserError(f"no results for paper {name!r} at scale {scale_name!r} (no finished cell in {sdir})")
    text, _ = build_paper_table(paper, scale, results, reference_table(paper), scale_name)
    if layout.get("curves"):
        spec = layout["curves"]
        cdir = sweep_dir_of(sweep_name(paper, scale_name, spec["block"]), results_dir)
        curves = collect_summaries(cdir) if spec["block"] in scale["blocks"] else pd.DataFrame()
        if curves.empty:
            curves = results
            for key, value in (spec.get("where") or {}).items():
                curves = curves[curves[key] == value]
        for path in plot_curves(curves, layout["columns"], sdir / "plots", names=layout.get("row_names")):
            text += f"\nlearning curve: {path}"
        text += "\n"
    print(text)
    write_text(text, sdir / "paper_table.md")
    print(f"wrote {sdir / 'paper_table.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["run", "table"])
    ap.add_argument("paper", help=f"a file of {PAPER_DIR.relative_to(REPO)}/ without .yaml")
    ap.add_argument("--scale", default=None, help="run: default full; table: default the scale with results")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--dry-run", action="store_true", help="run: compose and validate every cell, run none")
    args = ap.parse_args(argv)
    try:
        if args.action == "run":
            return run(args.paper, args.scale or "full", args.results_dir, args.dry_run)
        return table(args.paper, args.scale, args.results_dir)
    except UserError as exc:
        print(f"sibench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    exit_process(main())
