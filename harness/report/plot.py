"""The sweep's plots, from the cells of its latest plan only (`plot_results`), one PNG of each kind
per configuration (task, budget and every other config value that differs between the cells):

- `learning_curve_*`: Pass@1 vs rollouts used. Each method's curve is its checkpoints averaged over
  seeds; the band is the mean of the cells' Pass@1 CIs. A method that used no rollouts (the
  reference) is a line across the plot, in every budget's plot of its configuration; the x-axis
  spans 0 to the budget.
- `pass1_*`: Pass@1 of each method with its 95% CI (the table's), the reference as a line across.
- `delta_*`: a forest plot of Δ vs the reference with its CI; `*` where the table stars it, a hollow
  marker where one seed supports a claim about that trained model only.
- `cost_*`: Pass@1 against the tokens a method spent: learning (policy + aux) plus the context it
  added to every evaluation prompt (tokens added per problem x test problems x samples).

Every plot's title names the sweep and the configuration; file names are slugs of the
configuration's values and stay inside the plots folder (`harness.core.paths.child`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from harness.core.paths import child, slug
from harness.engine.records import write_bytes

if TYPE_CHECKING:
    from harness.report.compare import Unit
    from harness.report.results import SweepResults


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
                                             child(out_dir, slug(f"learning_curve_{task}_B{budget}{suffix}") + ".png")))
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
    ax.set_xlabel("rollouts used (training generations scored by the verifier)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return _save(fig, ax, title, path, wrap=55, fontsize=11)  # a 6-inch figure clips longer lines


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
        written.append(save_curve_figure(fig, ax, f"held-out {metric}", title,
                                         child(out_dir, f"paper_curve_{slug(task)}.png")))
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


def plot_results(results: SweepResults) -> list[Path]:
    """Every plot of the sweep (see the module docstring) under results/<sweep>/plots/."""
    out_dir = results.dir / "plots"
    written = plot_sweep(results.summary, out_dir, results.cells.varying)
    configs: dict[tuple[str, ...], list[Unit]] = {}
    for unit in results.comparer.units:
        configs.setdefault(tuple(f"{k}={unit.key[k]}" for k in sorted(unit.key)), []).append(unit)
    for config, units in configs.items():
        label = ", ".join(config)
        key = units[0].key
        name = slug(f"{key.get('task', '')}_B{key.get('budget', '')}" + "".join(
            f"_{k.split('.')[-1]}-{v}" for k, v in sorted(key.items()) if k not in ("task", "budget")))
        written += [pass1_bars(results, units, label, child(out_dir, f"pass1_{name}.png")),
                    cost_plot(results, units, label, child(out_dir, f"cost_{name}.png"))]
        forest = delta_forest(results, units, label, child(out_dir, f"delta_{name}.png"))
        written += [forest] if forest else []
    return written


def _figure(height: float = 4.0) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, height))


def _save(fig: Any, ax: Any, title: str, path: Path, wrap: int = 70, fontsize: int = 10) -> Path:
    """Every PNG's look and write: the title wrapped to the figure, a light grid, atomic bytes."""
    import textwrap

    import matplotlib.pyplot as plt

    ax.set_title("\n".join(textwrap.wrap(title, wrap)), fontsize=fontsize)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=120, format="png")
    write_bytes(png.getvalue(), path)
    plt.close(fig)
    return path


def pass1_bars(results: SweepResults, units: list[Unit], label: str, path: Path) -> Path:
    """Pass@1 per method with its 95% CI; the reference's Pass@1 as a dashed line across."""
    fig, ax = _figure()
    est = [results.comparer.pass1(u) for u in units]
    x = range(len(units))
    ax.bar(x, [e.mean for e in est], color=["grey" if u.method == results.reference else "C0" for u in units],
           yerr=[[e.mean - e.lo for e in est], [e.hi - e.mean for e in est]], capsize=4)
    for u, e in zip(units, est, strict=True):
        if u.method == results.reference:
            ax.axhline(e.mean, ls="--", color="grey", lw=1, label=f"{u.label} (reference)")
    ax.set_xticks(list(x), [f"{u.label}\n{len(u.seeds)} seed{'s' * (len(u.seeds) != 1)}" for u in units],
                  fontsize=8)
    ax.set_ylabel("Pass@1 on held-out problems (mean, 95% CI)")
    ax.set_ylim(0, 1)
    if results.reference:
        ax.legend(fontsize=8)
    return _save(fig, ax, f"sweep {results.name}: Pass@1 by method, {label}", path)


def delta_forest(results: SweepResults, units: list[Unit], label: str, path: Path) -> Path | None:
    """Δ Pass@1 vs the reference per method, with its CI; `*` where significant (Holm), a hollow
    marker where the claim is about one trained model only. None without a reference here."""
    ref = next((u for u in units if u.method == results.reference), None)
    others = [u for u in units if ref is not None and u.label != ref.label]
    if ref is None or not others:
        return None
    fig, ax = _figure(1.2 + 0.5 * len(others))
    for i, u in enumerate(others):
        d = results.comparer.versus(u, ref)
        pair = results.comparer.pair(u, ref)
        model_only = pair is not None and pair["claim"] == "model"
        ax.errorbar([d.mean], [i], xerr=[[d.mean - d.lo], [d.hi - d.mean]], fmt="o", capsize=4, color="C0",
                    mfc="white" if model_only else "C0")
        if pair is not None and bool(pair["significant"]):
            ax.annotate("*", (d.hi, i), xytext=(6, -4), textcoords="offset points", fontsize=14)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(range(len(others)), [f"{u.label} ({len(u.seeds)} seed{'s' * (len(u.seeds) != 1)})"
                                       for u in others], fontsize=8)
    ax.set_ylim(-0.7, len(others) - 0.3)
    ax.set_xlabel(f"Δ Pass@1 vs {ref.label} (paired, 95% CI); * significant after Holm; hollow: 1 seed", fontsize=9)
    return _save(fig, ax, f"sweep {results.name}: Δ vs {ref.label}, {label}", path)


def cost_plot(results: SweepResults, units: list[Unit], label: str, path: Path) -> Path:
    """Pass@1 against tokens spent: learning (policy + aux) plus the context added to evaluation."""
    fig, ax = _figure()
    for i, u in enumerate(units):
        r, e = u.rows, results.comparer.pass1(u)
        tokens = float((r["learn_policy_tokens"] + r["learn_aux_tokens"]
                        + r["context_tokens_added"] * r["n_test"] * r["n_samples"]).mean())
        ax.errorbar([max(tokens, 1.0)], [e.mean], yerr=[[e.mean - e.lo], [e.hi - e.mean]], fmt="o", capsize=4,
                    color=f"C{i % 10}", label=u.label)
    ax.set_xscale("log")
    ax.set_xlabel("tokens: learning (policy + aux) + context added over the evaluation (log scale)")
    ax.set_ylabel("Pass@1 on held-out problems (95% CI)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return _save(fig, ax, f"sweep {results.name}: Pass@1 vs tokens, {label}", path)
