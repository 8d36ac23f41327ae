"""The paper table (`make paper-table PAPER=core`): for each row of a paper's layout, our mean
over seeds and, beside it, the paper's reported value from `conf/paper/<reference>.csv` (`n/s`
where the paper does not state one), then the relative improvement over a reference column, the
prompt tokens each method adds per test problem, and learning-curve PNGs (held-out Pass@1
against rollouts used, one per task; harness/report/plot.py draws them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from harness.config.paper import config_value, load_paper, scale_of, sweep_name
from harness.core.errors import UserError
from harness.engine.records import write_text
from harness.report.plot import plot_curves
from harness.report.results import load, sweep_dir_of


def load_results(sweep: str, results_dir: str, keys: Sequence[str] = ()) -> pd.DataFrame:
    """The latest plan's summaries (harness.results.load; empty where the block has no finished
    cell) plus any row key that is a cell-config path (e.g. task.benchmark)."""
    try:
        results = load(sweep, results_dir)
    except UserError:
        return pd.DataFrame()
    summary = results.summary.copy()
    for key in [k for k in keys if k not in summary.columns]:
        summary[key] = summary["cell_id"].map({cid: config_value(results.config(cid), key)
                                               for cid in summary["cell_id"].unique()})
    return at_every_training_size(summary)


def at_every_training_size(summary: pd.DataFrame) -> pd.DataFrame:
    """A method that spends no rollouts never sees the training set, so a sweep runs it once for
    every training size (harness/engine/cell.py); its rows stand in at each training size its
    task has in the sweep."""
    if "train_size" not in summary or summary.empty:
        return summary
    idle = summary.groupby("cell_id")["rollouts_used"].transform("max") == 0
    extra = []
    for task, sizes in summary.groupby("task")["train_size"].unique().items():
        rows = summary[idle & (summary["task"] == task)]
        for _, own in rows.groupby("method"):
            for size in sizes:
                if size in set(own["train_size"]):
                    continue
                budgets = summary[~idle & (summary["task"] == task) & (summary["train_size"] == size)]["budget"]
                budget = budgets.iloc[0] if budgets.nunique() == 1 else own["budget"]  # the row's budget
                extra.append(own.assign(train_size=size, budget=budget))
    return pd.concat([summary, *extra], ignore_index=True) if extra else summary


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


def scales_with_results(paper: dict[str, Any], results_dir: str) -> list[str]:
    block = paper["table"]["block"]
    return [s for s in paper["scales"] if not load_results(sweep_name(paper, s, block), results_dir).empty]


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
    results = load_results(sdir.name, results_dir, layout["rows"])
    if results.empty:
        raise UserError(f"no results for paper {name!r} at scale {scale_name!r} (no finished cell in {sdir})")
    text, _ = build_paper_table(paper, scale, results, reference_table(paper), scale_name)
    if layout.get("curves"):
        spec = layout["curves"]
        curves = (load_results(sweep_name(paper, scale_name, spec["block"]), results_dir)
                  if spec["block"] in scale["blocks"] else pd.DataFrame())
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
