"""Learning curves (Pass@1 vs rollouts used), one PNG per
configuration (task, budget and every other config value that differs between the sweep's cells),
from the cells of the sweep's latest plan only.

Each method's curve is its checkpoints averaged over seeds; the band is the mean of the cells' Pass@1 CIs. A
method that used no rollouts (the reference) is a line across the plot, in every budget's plot of
its configuration, and the x-axis spans 0 to the budget.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

from harness.engine.records import write_bytes


def plot_sweep(summary: pd.DataFrame, out_dir, varying: list[str] | None = None) -> list:
    """One PNG per configuration and budget; a method that used no rollouts (the reference) is a
    line across every budget's plot of its configuration."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    extra = [k for k in (varying or []) if not k.startswith("method.")]
    used = summary.groupby("method")["rollouts_used"].max()
    idle = summary["method"].isin(used[used == 0].index)
    for values, config in summary.groupby(["task", *extra], dropna=False):
        task, rest = values[0], dict(zip(extra, values[1:], strict=True))
        learners, refs = config[~idle.loc[config.index]], config[idle.loc[config.index]]
        for budget in sorted((learners if len(learners) else refs)["budget"].unique()):
            fig, ax = curve_axes(learners[learners["budget"] == budget], refs, int(budget))
            suffix = "".join(f"_{k.split('.')[-1]}-{v}" for k, v in rest.items())
            title = ", ".join([f"{task}, budget {budget}"] + [f"{k}={v}" for k, v in rest.items()])
            written.append(save_curve_figure(fig, ax, "Pass@1 (held-out)", title,
                                             out_dir / f"learning_curve_{task}_B{budget}{suffix}.png"))
    return written


def curve_axes(learners: pd.DataFrame, refs: pd.DataFrame, budget: int) -> tuple[Any, Any]:
    """Each learning method's checkpoints averaged over seeds (band: the mean bootstrap CI); each
    no-learning method's final Pass@1 as a line across the x-axis, which spans 0 to the budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    cols = ["pass@1", "pass@1_lo", "pass@1_hi"]
    for method, m in learners.groupby("method"):
        curve = m.groupby("rollouts_used")[cols].mean().sort_index()
        x = curve.index.to_numpy()
        ax.plot(x, curve["pass@1"], marker="o", label=method)
        ax.fill_between(x, curve["pass@1_lo"], curve["pass@1_hi"], alpha=0.15)
    for i, (method, m) in enumerate(refs.groupby("method"), start=learners["method"].nunique()):
        level = m[m["final"].astype(bool)] if "final" in m else m
        mean, lo, hi = (float(level[c].mean()) for c in cols)
        ax.axhline(mean, ls="-.", lw=1.5, color=f"C{i % 10}", label=f"{method} (no learning)")
        ax.axhspan(lo, hi, color=f"C{i % 10}", alpha=0.1)
    base = pd.concat([learners, refs])
    if "baseline_majority_answer" in base and base["baseline_majority_answer"].notna().any():
        ax.axhline(base["baseline_majority_answer"].dropna().iloc[0], color="grey", ls="--", lw=1,
                   label="majority answer")
    ax.set_xlim(0, max(budget, 1))
    return fig, ax


def save_curve_figure(fig, ax, ylabel: str, title: str, path: Path) -> Path:
    """Shared look of every learning-curve PNG: rollouts on x, a 0-1 score on y."""
    import textwrap

    import matplotlib.pyplot as plt

    ax.set_xlabel("rollouts used")
    ax.set_ylabel(ylabel)
    ax.set_title("\n".join(textwrap.wrap(title, 55)), fontsize=11)  # a 6-inch figure clips longer lines
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=120, format="png")
    write_bytes(png.getvalue(), path)
    plt.close(fig)
    return path


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
        if "budget" in df and df["budget"].notna().any():
            ax.set_xlim(0, max(float(df["budget"].max()), 1.0))
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
