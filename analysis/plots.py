"""The report's figures, as matplotlib Figures rendered to inline SVG or PNG.

Figures are built with `matplotlib.figure.Figure` directly rather than pyplot: no
global backend switch (so importing `analysis` in a notebook changes nothing), no
figure registry to leak, and rendering uses the Agg/SVG canvases without a display.

Inline SVG gets one <title> tooltip per trial point, ids prefixed per figure (several
SVGs share one HTML document) and no namespace URLs or metadata, so the HTML has no
URL in it at all and opens offline.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator

from analysis.load import Run
from analysis.pareto import Front
from analysis.published import AUTOATTACK, EVALUATIONS, PGD10, PublishedPoint
from trainables import metrics, run_files
from trainables.formats import eps_label, eps_text, params, percent, whole
from trainables.metrics import TEST_N, strong_acc_key

FRONT_COLOR = "#1f5fa8"
COMPLETE_COLOR = "#9dbce3"
STOPPED_COLOR = "#b8b8b8"
KNEE_COLOR = "#e08a00"
PUBLISHED_COLOR = "#222222"
_RC = {
    "svg.fonttype": "none",  # text stays text: small, selectable, no embedded glyphs
    "svg.hashsalt": "wrn-search",  # stable ids: the same run gives the same file
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}



def trial_tooltip(row: pd.Series, epsilons: Sequence[float]) -> str:
    """Everything a reader wants when hovering over one trial's point."""
    train_eps = eps_text(row.get(metrics.TRAIN_EPS))
    steps = row.get(metrics.TRAIN_STEPS)
    steps = f"{int(steps)}" if pd.notna(steps) else "?"
    lines = [
        f"{row.get(metrics.WRN)}: {row.get(metrics.PARAMS):,.0f} parameters",
        f"method {row.get(metrics.METHOD)}, train eps {train_eps}, {steps} steps, "
        f"lr {row.get(metrics.PEAK_LR):g}",
        f"{row.get('status')}: {row.get(metrics.EPOCHS_DONE)}/{row.get(metrics.MAX_EPOCHS)} "
        f"epochs, best epoch {whole(row.get(metrics.BEST_EPOCH))}",
        f"val clean {percent(row.get(metrics.BEST_VAL_CLEAN_ACC))}",
    ]
    lines += [
        f"val robust {eps_label(e)} {percent(row.get(metrics.best_robust_acc_key(e)))}"
        for e in epsilons
    ]
    lines.append(f"trial {row.get('trial_id')}")
    return "\n".join(lines)


def _params_axis(ax: Axes) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: params(v)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("parameters (log scale)")


def _log_axis(axis: object) -> None:
    """Plain numbers (0.5, 2, 100) at 1-2-5 steps on a log axis, no minor labels."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # type: ignore[attr-defined]
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # type: ignore[attr-defined]
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))  # type: ignore[attr-defined]


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center",
            color="#666666")


def _point(ax: Axes, x: float, y: float, gid: str, **style: object) -> None:
    ax.plot([x], [y], linestyle="none", gid=gid, **style)


def front_figure(
    run: Run, front: Front, *, published: Sequence[PublishedPoint] = ()
) -> tuple[Figure, dict[str, str]]:
    """Accuracy vs parameters: the front (labelled, step line), the rest greyed.

    With `published` points (a robust front at their threat model), they are drawn in
    black and each says its evaluation, together with the run's own test-split figures
    from `wrn-search evaluate` where there are some: the run's front is a validation
    PGD-k figure, the anchors are test-set AutoAttack or PGD-10 ones.
    """
    overlay = bool(published) and front.eps is not None
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(8.2, 6.0 if overlay else 4.6), layout="constrained")
        ax = fig.add_subplot()
        tips: dict[str, str] = {}
        trials = run.trials
        col = front.acc_col
        if trials.empty or col not in trials.columns or trials[col].notna().sum() == 0:
            _empty(ax, "no trial has reported this accuracy yet")
            return fig, tips
        on_front = set(front.members["trial_id"])
        knee_id = front.knee["trial_id"] if front.knee is not None else None
        plotted = trials[trials["status"] != "error"].dropna(subset=[metrics.PARAMS, col])
        for i, (_, row) in enumerate(plotted.iterrows()):
            gid = f"tip-{i}"
            tips[gid] = trial_tooltip(row, run.eval_epsilons)
            x, y = row[metrics.PARAMS], 100 * row[col]
            if row["trial_id"] in on_front:
                _point(ax, x, y, gid, marker="o", ms=7, color=FRONT_COLOR, mec="white",
                       zorder=4)
            elif row["full_fidelity"]:
                _point(ax, x, y, gid, marker="o", ms=5, color=COMPLETE_COLOR, zorder=3)
            else:
                _point(ax, x, y, gid, marker="o", ms=5, mfc="none", mec=STOPPED_COLOR,
                       zorder=2)
        members = front.members
        if len(members):
            xs, ys = members[metrics.PARAMS].to_numpy(), 100 * members[col].to_numpy()
            ax.step(xs, ys, where="post", color=FRONT_COLOR, lw=1.4, zorder=3)
            labelled = set()
            for x, y, name in zip(xs, ys, members[metrics.WRN], strict=True):
                if (x, y) in labelled:  # identical points: one label
                    continue
                labelled.add((x, y))
                ax.annotate(str(name), (x, y), xytext=(5, 4), textcoords="offset points",
                            fontsize=8, color=FRONT_COLOR)
        if knee_id is not None:
            knee = front.knee
            ax.plot([knee[metrics.PARAMS]], [100 * knee[col]], marker="o", ms=14, mfc="none",
                    mec=KNEE_COLOR, mew=1.6, linestyle="none", zorder=5)
        _params_axis(ax)
        if not overlay:
            ax.set_ylabel(f"validation {front.label} (%)")
            ax.legend(handles=_front_legend(knee_id is not None), fontsize=8, loc="best")
            return fig, tips
        tested = _test_points(ax, run, front, tips)
        _published_points(ax, published, tips)
        ax.set_ylabel(f"{front.label} (%)")
        search = _search_attack(run)
        handles = _front_legend(knee_id is not None, f", validation split, {search}")
        handles += _overlay_legend(tested, {p.evaluation for p in published})
        fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncol=1)
        return fig, tips


def _search_attack(run: Run) -> str:
    tm = run.spec.get("threat_model") or {}
    restarts = tm.get("restarts", 1)
    return f"PGD-{tm.get('steps', '?')}" + (f"x{restarts}" if restarts and restarts > 1 else "")


def _test_points(ax: Axes, run: Run, front: Front, tips: dict[str, str]) -> str | None:
    """The run's test-split strong figures at this epsilon (crosses); the legend's words."""
    col = strong_acc_key(front.eps) if front.eps is not None else None
    trials = run.trials
    if col is None or col not in trials.columns:
        return None
    tested = trials.dropna(subset=[col, metrics.PARAMS])
    for i, (_, row) in enumerate(tested.iterrows()):
        gid = f"test-{i}"
        n = row.get(TEST_N)
        tips[gid] = (f"{row.get(metrics.WRN)} (trial {row.get('trial_id')}): test strong "
                     f"{percent(row[col])} at {eps_text(front.eps)} on {whole(n)} test images "
                     "(per-example minimum over every attack of wrn-search evaluate)")
        _point(ax, row[metrics.PARAMS], 100 * row[col], gid, marker="X", ms=8, color=FRONT_COLOR,
               mec="white", zorder=5)
    if tested.empty:
        return None
    sizes = sorted({int(v) for v in tested.get(TEST_N, pd.Series(dtype=float)).dropna()})
    images = "/".join(str(v) for v in sizes) or "?"
    return f"this run, test split: strongest attacks, per-example minimum ({images} images)"


def _published_points(ax: Axes, published: Sequence[PublishedPoint], tips: dict[str, str]) -> None:
    """Published anchors in black: AutoAttack filled diamonds, PGD-10 hollow circles on a
    dotted line (one paper's width sweep), every point with its source as a tooltip."""
    for i, point in enumerate(published):
        gid = f"pub-{i}"
        tips[gid] = point.tooltip()
        x, y = point.params, 100 * point.robust_acc
        if point.evaluation == AUTOATTACK:
            _point(ax, x, y, gid, marker="D", ms=5.5, color=PUBLISHED_COLOR, zorder=4)
            ax.annotate(point.name, (x, y), xytext=(5, 3), textcoords="offset points",
                        fontsize=7, color=PUBLISHED_COLOR)
        else:
            _point(ax, x, y, gid, marker="o", ms=4.5, mfc="white", mec=PUBLISHED_COLOR, zorder=3)
    sweep = sorted((p for p in published if p.evaluation == PGD10), key=lambda p: p.params)
    if sweep:
        ax.plot([p.params for p in sweep], [100 * p.robust_acc for p in sweep], ls=":", lw=1,
                color=PUBLISHED_COLOR, zorder=2)
        first = sweep[0]
        ax.annotate(f"Rice 2020, WRN-34-k, k = {first.width}..{sweep[-1].width}",
                    (first.params, 100 * first.robust_acc), xytext=(-6, 2), ha="right",
                    textcoords="offset points", fontsize=7, color="#555555")


def _overlay_legend(tested: str | None, evaluations: set[str]) -> list[Line2D]:
    handles = []
    if tested:
        handles.append(Line2D([], [], marker="X", linestyle="none", color=FRONT_COLOR, mec="white",
                              ms=8, label=tested))
    if AUTOATTACK in evaluations:
        handles.append(Line2D([], [], marker="D", linestyle="none", color=PUBLISHED_COLOR, ms=5.5,
                              label="published: " + EVALUATIONS[AUTOATTACK] + " (no extra data)"))
    if PGD10 in evaluations:
        handles.append(Line2D([], [], marker="o", ls=":", lw=1, mfc="white", mec=PUBLISHED_COLOR,
                              color=PUBLISHED_COLOR, ms=4.5,
                              label="published: Rice et al. 2020 WRN-34-k, " + EVALUATIONS[PGD10]))
    return handles


def _front_legend(knee: bool, where: str = "") -> list[Line2D]:
    handles = [
        Line2D([], [], marker="o", color=FRONT_COLOR, mec="white", ms=7,
               label=f"front (full fidelity){where}"),
        Line2D([], [], marker="o", linestyle="none", color=COMPLETE_COLOR, ms=5,
               label="full fidelity, dominated"),
        Line2D([], [], marker="o", linestyle="none", mfc="none", mec=STOPPED_COLOR, ms=5,
               label="early-stopped / unfinished (not in front)"),
    ]
    if knee:
        handles.append(Line2D([], [], marker="o", linestyle="none", mfc="none", mec=KNEE_COLOR,
                              ms=10, mew=1.6, label="knee"))
    return handles


def clean_robust_figure(run: Run, robust: Front) -> tuple[Figure, dict[str, str]]:
    """Best-checkpoint clean vs robust accuracy, coloured by size: the accuracy trade."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.5, 4.4), layout="constrained")
        ax = fig.add_subplot()
        tips: dict[str, str] = {}
        cols = [metrics.BEST_VAL_CLEAN_ACC, robust.acc_col, metrics.PARAMS]
        trials = run.trials
        usable = (trials[trials["status"] != "error"].dropna(subset=cols)
                  if not trials.empty and set(cols) <= set(trials.columns) else trials.iloc[0:0])
        if usable.empty:
            _empty(ax, "no trial has reported both accuracies yet")
            return fig, tips
        sizes = usable[metrics.PARAMS].to_numpy(dtype=float)
        norm = matplotlib.colors.LogNorm(sizes.min(), max(sizes.max(), sizes.min() * 1.01))
        cmap = matplotlib.colormaps["viridis"]
        on_front = set(robust.members["trial_id"])
        for i, ((_, row), size) in enumerate(zip(usable.iterrows(), sizes, strict=True)):
            gid = f"tip-{i}"
            tips[gid] = trial_tooltip(row, run.eval_epsilons)
            x, y = 100 * row[cols[0]], 100 * row[cols[1]]
            if row["full_fidelity"]:
                edge = "black" if row["trial_id"] in on_front else "white"
                _point(ax, x, y, gid, marker="o", ms=7, color=cmap(norm(size)), mec=edge,
                       zorder=3)
            else:
                _point(ax, x, y, gid, marker="o", ms=5, mfc="none", mec=STOPPED_COLOR,
                       zorder=2)
        bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax)
        bar.ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: params(v)))
        bar.ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        bar.set_label("parameters")
        ax.set_xlabel("validation clean accuracy (%)")
        ax.set_ylabel(f"validation {robust.label} (%)")
        ax.legend(handles=[
            Line2D([], [], marker="o", linestyle="none", color="#777777", mec="black", ms=7,
                   label="on the robust front"),
            Line2D([], [], marker="o", linestyle="none", mfc="none", mec=STOPPED_COLOR, ms=5,
                   label="early-stopped / unfinished"),
        ], fontsize=8, loc="best")
        return fig, tips


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds >= 2 * 3600:
        return 3600.0, "h"
    if seconds >= 120:
        return 60.0, "min"
    return 1.0, "s"


def hypervolume_figure(curves: Mapping[str, pd.DataFrame]) -> Figure:
    """Hypervolume of the front so far against wall time: how fast the search found it."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.5, 3.4), layout="constrained")
        ax = fig.add_subplot()
        longest = max((float(c["time_s"].max()) for c in curves.values() if len(c)), default=0)
        if longest <= 0 and not any(len(c) for c in curves.values()):
            _empty(ax, "no trial has reached full fidelity yet")
            return fig
        scale, unit = _time_unit(longest)
        for label, curve in curves.items():
            if curve.empty:
                continue
            t = np.concatenate([[0.0], curve["time_s"].to_numpy(float), [longest]]) / scale
            hv = np.concatenate([[0.0], curve["hypervolume"].to_numpy(float),
                                 [curve["hypervolume"].iloc[-1]]])
            ax.step(t, hv, where="post", label=label)
            ax.plot(t[1:-1], hv[1:-1], "o", ms=3, color=ax.lines[-1].get_color())
        ax.set_xlabel(f"wall time since the run started ({unit})")
        ax.set_ylabel("hypervolume\n(decades x accuracy)")
        ax.legend(fontsize=8, loc="lower right")
        return fig


def learning_curves_figure(run: Run, front: Front) -> Figure:
    """Validation robust and clean accuracy per epoch of every front member."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(9.5, 3.8), layout="constrained")
        robust_ax, clean_ax = fig.subplots(1, 2, sharex=True)
        history = run.history
        if front.members.empty or history.empty:
            _empty(robust_ax, "no front yet")
            return fig
        eps = front.eps if front.eps is not None else run.eval_epsilons[0]
        robust_col = metrics.robust_acc_key(eps)
        if robust_col not in history.columns:
            robust_col = metrics.VAL_ROBUST_ACC
        for _, member in front.members.iterrows():
            curve = history[history["trial_id"] == member["trial_id"]]
            label = f"{member[metrics.WRN]} ({params(member[metrics.PARAMS])})"
            for ax, col in ((robust_ax, robust_col), (clean_ax, metrics.VAL_CLEAN_ACC)):
                if col not in curve.columns:
                    continue
                line = ax.plot(curve[metrics.EPOCHS_DONE], 100 * curve[col], lw=1.3,
                               label=label)[0]
                best = curve[curve[metrics.EPOCHS_DONE] == member.get(metrics.BEST_EPOCH)]
                ax.plot(best[metrics.EPOCHS_DONE], 100 * best[col], "o", ms=4,
                        color=line.get_color())
        robust_ax.set_ylabel(f"validation robust accuracy at {eps_label(eps)} (%)")
        clean_ax.set_ylabel("validation clean accuracy (%)")
        for ax in (robust_ax, clean_ax):
            ax.set_xlabel("epoch (dot: best-robust checkpoint)")
        clean_ax.legend(fontsize=7, loc="lower right")
        return fig


def to_png(fig: Figure, path: Path) -> Path:
    def save(tmp: Path) -> None:
        with matplotlib.rc_context(_RC):
            fig.savefig(tmp, format="png", dpi=110)

    return run_files.write_atomic(path, save)


def to_inline_svg(fig: Figure, *, prefix: str, tooltips: Mapping[str, str] | None = None) -> str:
    """An <svg> element for an HTML page: tooltips in, metadata and URLs out."""
    buffer = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = svg.replace("xlink:href=", "href=")
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}\1)", svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}\1"', svg)
    for gid, text in (tooltips or {}).items():
        svg = svg.replace(f'<g id="{prefix}{gid}">',
                          f'<g id="{prefix}{gid}"><title>{html.escape(text)}</title>', 1)
    return svg


def evaluation_curves_figure(records: Sequence[Mapping[str, object]]) -> Figure:
    """Test-split accuracy against epsilon for every evaluated model (`wrn-search evaluate`).

    Lines: the curve attack alone at each epsilon; crosses: the strong figure (minimum
    over every attack) at the run's eval epsilons; dashed: chance. L-inf epsilons are in
    1/255 units on a symmetric-log axis, so 1/255 and 128/255 both stay readable.
    """
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(7.2, 4.0), layout="constrained")
        ax = fig.add_subplot()
        usable = [r for r in records if isinstance(r.get("curve"), Mapping)]
        if not usable:
            _empty(ax, "no evaluated model")
            return fig
        linf = all(r.get("norm", "linf") == "linf" for r in usable)
        scale = 255.0 if linf else 1.0
        for record in usable:
            curve = record["curve"]
            xs = np.asarray(curve.get("eps", []), dtype=float) * scale  # type: ignore[union-attr]
            ys = 100 * np.asarray(curve.get("acc", []), dtype=float)  # type: ignore[union-attr]
            label = f"{record.get('wrn')} ({record.get('trial_id')})"
            line = ax.plot(xs, ys, marker="o", ms=3, lw=1.3, label=label)[0]
            per_eps = record.get("per_eps") or {}
            strong = [(float(v["eps"]) * scale, 100 * float(v["robust_acc"]))
                      for v in per_eps.values()]  # type: ignore[union-attr]
            if strong:
                sx, sy = zip(*strong, strict=True)
                ax.plot(sx, sy, "x", ms=8, mew=1.8, color=line.get_color())
        classes = {int(round(1 / float(c["values"]["chance"])))  # the large-eps check keeps it
                   for r in usable for c in r.get("checks", [])  # type: ignore[union-attr]
                   if (c.get("values") or {}).get("chance")}
        if len(classes) == 1:
            ax.axhline(100 / classes.pop(), ls="--", lw=1, color="#777777", label="chance")
        if linf:
            ticks = sorted({round(float(e) * 255, 3) for r in usable
                            for e in r["curve"].get("eps", [])})  # type: ignore[union-attr]
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlim(left=0, right=max(ticks[-1] * 1.15, 1.0) if ticks else None)
            ax.set_xticks(ticks)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
            ax.set_xlabel("epsilon (L-inf, units of 1/255; symmetric log scale)")
        else:
            ax.set_xlabel("epsilon (L2)")
        attack = usable[0]["curve"].get("attack", "PGD")  # type: ignore[union-attr]
        ax.set_ylabel(f"test robust accuracy (%), {attack}")
        ax.set_ylim(-2, 102)
        ax.legend(fontsize=7, loc="upper right")
        return fig


OUTCOME_COLORS = {
    "full fidelity": FRONT_COLOR,
    "stopped at a rung": "#8c8c8c",
    "stopped: could not finish": "#c77c00",
    "cut short": "#c0392b",
    "errored": "#000000",
    "running": "#6aa84f",
}


def spend_figure(run: Run) -> tuple[Figure, dict[str, str]]:
    """Seconds each trial trained against its size, coloured by how it ended: where the budget
    went. Only full-fidelity trials can enter a front; every other second bought none."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(8.2, 4.2), layout="constrained")
        ax = fig.add_subplot()
        tips: dict[str, str] = {}
        trials = run.trials
        usable = (trials.dropna(subset=[metrics.PARAMS, metrics.WALL_TIME_S])
                  if not trials.empty else trials)
        if usable.empty:
            _empty(ax, "no trial has reported yet")
            return fig, tips
        for i, (_, row) in enumerate(usable.iterrows()):
            gid = f"tip-{i}"
            tips[gid] = (f"{trial_tooltip(row, run.eval_epsilons)}\n{row['outcome']}, "
                         f"{row[metrics.WALL_TIME_S]:.0f} s")
            color = OUTCOME_COLORS.get(str(row["outcome"]), "#777777")
            _point(ax, row[metrics.PARAMS], row[metrics.WALL_TIME_S], gid, marker="o", ms=6,
                   color=color, mec="white", zorder=3)
        _params_axis(ax)
        _log_axis(ax.yaxis)
        ax.set_yscale("log")
        ax.set_ylabel("seconds trained (log scale)")
        present = [o for o in OUTCOME_COLORS if (usable["outcome"] == o).any()]
        ax.legend(handles=[Line2D([], [], marker="o", linestyle="none", color=OUTCOME_COLORS[o],
                                  mec="white", ms=6, label=o) for o in present],
                  fontsize=8, loc="best")
        return fig, tips


def cost_figure(run: Run) -> tuple[Figure, dict[str, str]]:
    """Predicted against measured seconds per epoch, per trial: how well the search knew what
    each trial would cost when it chose it."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(5.6, 4.4), layout="constrained")
        ax = fig.add_subplot()
        tips: dict[str, str] = {}
        cols = [metrics.PREDICTED_EPOCH_S, metrics.ACTUAL_EPOCH_S]
        trials = run.trials
        usable = trials.dropna(subset=cols) if not trials.empty else trials
        usable = usable[(usable[cols] > 0).all(axis=1)] if len(usable) else usable
        if usable.empty:
            _empty(ax, "no trial with a prediction and a measured epoch")
            return fig, tips
        for i, (_, row) in enumerate(usable.iterrows()):
            gid = f"tip-{i}"
            tips[gid] = (f"{row[metrics.WRN]}: predicted {row[cols[0]]:.2f} s, measured "
                         f"{row[cols[1]]:.2f} s per epoch\ntrial {row['trial_id']}")
            color = OUTCOME_COLORS.get(str(row["outcome"]), "#777777")
            _point(ax, row[cols[0]], row[cols[1]], gid, marker="o", ms=6, color=color,
                   mec="white", zorder=3)
        low = float(usable[cols].min().min()) / 1.5
        high = float(usable[cols].max().max()) * 1.5
        line = np.array([low, high])
        ax.plot(line, line, color="#444444", lw=1, label="exact")
        for factor, style in ((2.0, ":"),):
            ax.plot(line, line * factor, style, color="#999999", lw=1, label=f"x{factor:g} / x1/{factor:g}")
            ax.plot(line, line / factor, style, color="#999999", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_axis(ax.xaxis)
        _log_axis(ax.yaxis)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_xlabel("predicted seconds per epoch (before the trial started)")
        ax.set_ylabel("measured seconds per epoch")
        ax.legend(fontsize=8, loc="upper left")
        return fig, tips
