"""Reports: the paper's table and figures, from a results store, beside the published numbers.

    build_report("results.sqlite", "report/")  ->  report/index.html, report/report.md, report/*.png

The published rows come from the CSV files of Kuratov et al. shipped in cramming/reference (Table 1 and
Figure 4). Their information gain is in nats; ours is reported in bits with nats beside it.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import statistics
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# Figures are drawn on matplotlib.figure.Figure objects, never through pyplot: importing this module in a notebook
# or an application changes neither matplotlib's backend nor its current figure.
from matplotlib.figure import Figure as MplFigure
from matplotlib.patches import Patch

from cramming.core.atomic import atomic_output
from cramming.core.errors import CrammingError
from cramming.core.recipes import stored, superseded
from cramming.experiments.capacity import PAPER_CRITERION, decoding_capacity
from cramming.files.database import Store
from cramming.reports import horizons as horizon_report
from cramming.reports.horizons import HorizonGroup

HISTORY_SAMPLES = 4  # samples drawn in the loss/accuracy-over-steps figure
MARKERS = "osD^vP*X"
PUBLISHED_SOURCES = {"pg19": "PG-19 (books)", "random": "random words"}


@dataclass
class Figure:
    name: str  # file stem
    title: str
    caption: str
    figure: MplFigure


@dataclass
class Report:
    table: list[dict]  # ours, one entry per (model, source, vectors, recipe as run), horizon searches apart
    published: list[dict]  # paper_models.csv, one entry per (model, source)
    horizons: list[HorizonGroup]  # the horizon searches (horizons.py)
    findings: list[str]  # the paper's three findings, checked on the horizons, then on the paper's own numbers
    made_by: list[str]  # the runs that wrote the file (made_by)
    figures: list[Figure]
    html: Path
    markdown: Path


def reference(name: str) -> list[dict]:
    """A published CSV shipped with the package, its numbers as floats (empty cells as None)."""
    text = resources.files("cramming").joinpath("reference", name).read_text(encoding="utf-8")
    return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(text.splitlines())]


def _number(value: str) -> float | str | None:
    if value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return value


def recipe_labels(rows: list[dict]) -> dict[str, str]:
    """recipe digest -> its label in tables and legends: the recipe as run (its registry entry and changes, after
    its own name where it has one; recipes.Recipe.label) and its budget: "default@6, 1500 steps". Where that still
    does not tell two digests apart (the same recipe from two encoders), a short digest does."""
    labels = {r["recipe_digest"]: f"{stored(r['settings']).label()}, {r['budget']} steps" for r in rows}
    twins = {label for label in labels.values() if list(labels.values()).count(label) > 1}
    return {digest: label + (f" ({digest[:6]})" if label in twins else "") for digest, label in labels.items()}


def retired_recipes(rows: list[dict]) -> set[str]:
    """The recipe digests of rows whose registry entry is no longer its name's latest version (an earlier
    default, say): their rows stay in the tables, under their version, and out of the figures and findings of
    what the recipes do today."""
    return {r["recipe_digest"] for r in rows if (base := stored(r["settings"]).base) is not None and superseded(base)}


def group_rows(rows: list[dict]) -> dict[tuple, list[dict]]:
    """(model, model fingerprint, source, vectors, recipe digest) -> its rows: what is never averaged across."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["model_fingerprint"], r["source"], r["vectors"], r["recipe_digest"]),
                          []).append(r)
    return groups


def summarize(rows: list[dict]) -> list[dict]:
    """Per (model, source, vectors, recipe as run): the paper's decoding capacity, our exact capacity, the gains.

    Rows of different recipes, budgets or models are never averaged together; a group's samples are its distinct
    (text seed, sample) passages, and several seeds in one group are said in its `seeds` count.
    decoding capacity: capacity.decoding_capacity (the paper's criterion) over the group's lengths. exact
    capacity: per passage and seed, the largest length whose round trip was exact, averaged. Gains are means
    over the rows at the decoding-capacity length.
    """
    labels, groups = recipe_labels(rows), group_rows(rows)
    out = []
    for (model, _, source, vectors, digest), rs in sorted(groups.items(), key=lambda g: (*g[0][:4], labels[g[0][4]])):
        by_length: dict[int, list[dict]] = {}
        for r in rs:
            by_length.setdefault(r["length"], []).append(r)
        decoding = decoding_capacity({L: [r["accuracy_with"] for r in g] for L, g in by_length.items()})
        runs = sorted({(r["text_seed"], r["sample"], r["seed"]) for r in rs})
        exact = [max((r["length"] for r in rs if (r["text_seed"], r["sample"], r["seed"]) == run and r["exact"]),
                     default=0) for run in runs]
        at = by_length.get(decoding, [])
        mean = (lambda key: statistics.mean(r[key] for r in at)) if at else (lambda key: None)
        top = max(by_length)
        out.append({
            # at the top of the lengths run: the text may hold more, so the number is a lower bound
            "decoding_lower_bound": decoding == top, "exact_lower_bound": top in exact,
            "model": model, "source": source, "vectors": vectors, "recipe": labels[digest],
            "recipe_name": rs[0]["recipe"], "samples": len({run[:2] for run in runs}),
            "seeds": len({run[2] for run in runs}), "lengths": sorted(by_length), "decoding_capacity": decoding,
            "exact_capacity": statistics.mean(exact), "token_gain": mean("token_gain"),
            "information_gain_bits": mean("information_gain_bits"),
            "information_gain_nats": mean("information_gain_nats"),
            "theoretical_capacity": rs[0]["theoretical_capacity"], "utilization": mean("utilization"),
        })
    return out


def published_rows() -> list[dict]:
    """paper_models.csv as one row per (model, source), gains in nats and bits."""
    out = []
    for m in reference("paper_models.csv"):
        for key, source in PUBLISHED_SOURCES.items():
            nats = m[f"{key}_information_gain"]
            out.append({"model": m["model"], "source": source, "vectors": 1,
                        "decoding_capacity": m[f"{key}_max_tokens"], "token_gain": m[f"{key}_token_gain"],
                        "information_gain_nats": nats, "information_gain_bits": nats / math.log(2),
                        "theoretical_capacity": m["theoretical_capacity_tokens"],
                        "utilization": m[f"{key}_utilization"]})
    return out


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}f}" if abs(value) >= 1 else f"{value:.3f}"
    return f"{int(value)}" if isinstance(value, float) else str(value)


TABLE_COLUMNS = ("model", "source", "vectors", "recipe", "decoding_capacity", "exact_capacity", "token_gain",
                 "information_gain_bits", "information_gain_nats", "theoretical_capacity", "utilization", "samples",
                 "seeds")
TABLE_HEADERS = ("model", "source", "vectors", "recipe", "decoding capacity (tokens)", "exact capacity (tokens)",
                 "token gain", "information gain (bits)", "information gain (nats)", "theoretical capacity (tokens)",
                 "utilization", "samples", "seeds")


def table_cells(ours: list[dict], published: list[dict]) -> list[list[str]]:
    """The table's body: our rows first, then the published ones, marked as such."""
    cells = [[("≥ " if r.get(f"{c[:-len('_capacity')]}_lower_bound") else "") + _fmt(r[c]) for c in TABLE_COLUMNS]
             for r in ours]
    for r in published:
        row = [_fmt(r.get(c)) for c in TABLE_COLUMNS]
        row[0] = f"{r['model']} (published)"
        row[TABLE_COLUMNS.index("recipe")] = "Kuratov et al., first token given"
        row[TABLE_COLUMNS.index("exact_capacity")] = "–"
        row[TABLE_COLUMNS.index("samples")] = "50"
        row[TABLE_COLUMNS.index("seeds")] = "1"
        cells.append(row)
    return cells


def _label(ax, title: str, xlabel: str, ylabel: str, legend_size: int = 8) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=legend_size)


def short_source(source: str) -> str:
    """A `file:` source by its file's name, for an axis label; other sources as they are."""
    return f"file:{Path(source[5:]).name}" if source.startswith("file:") else source


def figure_tokens_per_vector(ours: list[dict], published: list[dict]) -> Figure:
    # Constrained layout makes room for the legend beside the axes, where it covers no bar and no tick.
    fig = MplFigure(figsize=(11, 4.8), layout="constrained")
    ax = fig.subplots()
    names = [f"{Path(r['model']).name}\n{short_source(r['source'])}, {r['recipe']}" for r in ours]  # no folders
    names += [f"{r['model']}\n{r['source']} (pub.)" for r in published]
    values = [r["decoding_capacity"] / r["vectors"] for r in ours] + [r["decoding_capacity"] for r in published]
    theory = [r["theoretical_capacity"] / r["vectors"] for r in ours] + [r["theoretical_capacity"] for r in published]
    x = list(range(len(names)))
    bars = ax.bar(x[: len(ours)], values[: len(ours)], color="tab:orange")
    for bar, r in zip(bars, ours):
        if r["decoding_lower_bound"]:  # open: the longest length run passed, so the model may hold more
            bar.set(facecolor="white", edgecolor="tab:orange", hatch="//")
    ax.bar(x[len(ours):], values[len(ours):], color="tab:blue", alpha=0.7)
    ticks = ax.scatter(x, theory, marker="_", s=300, color="black", label="theoretical capacity", zorder=3)
    ax.set_yscale("log")
    ax.set_xticks(x, names, rotation=90, fontsize=7)
    _label(ax, "Tokens per vector by model: ours and published", "model and text source",
           "tokens per vector (log scale)")
    handles = [Patch(color="tab:orange", label="ours (decoding capacity / N)"),
               Patch(facecolor="white", edgecolor="tab:orange", hatch="//",
                     label="ours, a lower bound (the longest length run passed)"),
               Patch(color="tab:blue", alpha=0.7, label="published (Kuratov et al.)"), ticks]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    samples = "/".join(str(n) for n in sorted({r["samples"] for r in ours}))
    return Figure("tokens_per_vector", "Tokens per vector by model", (
        f"Decoding capacity (largest length with mean teacher-forced accuracy >= {PAPER_CRITERION}) divided by the "
        f"number of vectors, for our {len(ours)} (model, source, vectors, recipe) groups ({samples} samples each) and "
        "the published 1-vector figures (50 samples each); open hatched bars: lower bounds; black ticks: "
        "theoretical capacity d*16/log2(V)."), fig)


def figure_cross_entropy(rows: list[dict]) -> Figure:
    fig = MplFigure(figsize=(6, 5))
    ax = fig.subplots()
    for source in sorted({r["source"] for r in rows}):
        rs = [r for r in rows if r["source"] == source]
        ax.scatter([r["ce_without_bits"] for r in rs], [r["ce_with_bits"] for r in rs], label=source, alpha=0.7)
    top = max([r["ce_without_bits"] for r in rows] + [1.0])
    ax.plot([0, top], [0, top], color="gray", linestyle="--", linewidth=1, label="no gain (y = x)")
    _label(ax, "Cross-entropy without vs with trained vectors",
           "cross-entropy without vectors (bits, summed over the text)", "cross-entropy with vectors (bits, summed)")
    fig.tight_layout()
    return Figure("cross_entropy", "Cross-entropy without vs with vectors", (
        f"One point per stored sample ({len(rows)} in all), coloured by text source; the distance below the "
        "diagonal is the information gain (the shape of the paper's Figure 3)."), fig)


def figure_vectors_scaling(ours: list[dict]) -> Figure:
    fig = MplFigure(figsize=(6, 5))
    ax = fig.subplots()
    published = reference("paper_vectors_scaling.csv")
    for model in sorted({r["model"] for r in published}):
        rs = [r for r in published if r["model"] == model and r["pg19_max_tokens"] is not None]
        ax.plot([r["n_vectors"] for r in rs], [r["pg19_max_tokens"] for r in rs], marker="s", linestyle="--",
                label=f"{model}, PG-19 (published)")
    series = sorted({(r["model"], r["source"], r["recipe"]) for r in ours})
    for k, (model, source, recipe) in enumerate(series):
        rs = sorted((r for r in ours if (r["model"], r["source"], r["recipe"]) == (model, source, recipe)
                     and r["decoding_capacity"] > 0), key=lambda r: r["vectors"])  # 0 has no place on a log axis
        # Series that coincide would hide one another: each is nudged along x (a few percent on the log axis)
        # and has its own marker; a lower bound (the longest length run passed) is drawn hollow.
        x = [r["vectors"] * 1.06 ** (k - (len(series) - 1) / 2) for r in rs]
        line, = ax.plot(x, [r["decoding_capacity"] for r in rs], marker=MARKERS[k % len(MARKERS)],
                        label=f"{model}, {source}, {recipe} (ours)")
        for xi, r in zip(x, rs):
            if r["decoding_lower_bound"]:
                ax.plot([xi], [r["decoding_capacity"]], marker=line.get_marker(), markersize=11, linestyle="none",
                        markerfacecolor="white", markeredgecolor=line.get_color())
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _label(ax, "Capacity vs number of vectors", "number of trained vectors N (log scale)",
           "decoding capacity (tokens, log scale)", 7)
    fig.tight_layout()
    return Figure("vectors_scaling", "Capacity vs number of vectors", (
        "Decoding capacity (paper criterion) for each number of vectors: ours per (model, source, recipe), and the "
        "published Figure 4 values. A hollow marker is a lower bound: the longest length run passed, so the text "
        "may hold more. Our series are nudged apart along x so that none hides another; groups where no length "
        "met the criterion are left out."), fig)


def figure_accuracy_vs_length(rows: list[dict]) -> Figure:
    fig = MplFigure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    labels = recipe_labels(rows)
    group = lambda r: (r["model"], r["source"], r["vectors"], labels[r["recipe_digest"]])  # noqa: E731
    for i, key in enumerate(sorted({group(r) for r in rows})):
        rs = [r for r in rows if group(r) == key]
        lengths = sorted({r["length"] for r in rs})
        acc = [statistics.mean(r["accuracy_with"] for r in rs if r["length"] == L) for L in lengths]
        exact = [statistics.mean(float(r["exact"]) for r in rs if r["length"] == L) for L in lengths]
        color = f"C{i % 10}"
        label = f"{key[0]}, {key[1]}, N={key[2]}, {key[3]}"
        ax.plot(lengths, acc, marker="o", color=color, label=f"{label}: teacher-forced accuracy")
        ax.plot(lengths, exact, marker="x", linestyle=":", color=color, label=f"{label}: exact round trip")
    ax.axhline(PAPER_CRITERION, color="gray", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.05, 1.05)
    _label(ax, "Teacher-forced accuracy and exact round trip vs length", "text length (tokens, log scale)",
           "mean accuracy / fraction exact", 6)
    fig.tight_layout()
    return Figure("accuracy_vs_length", "Accuracy and exact round trip vs length", (
        f"Per length, the mean teacher-forced accuracy with the vectors (solid) and the fraction of samples whose "
        f"greedy round trip is exact (dotted), over {len(rows)} stored samples; the gray line is the paper's "
        f"{PAPER_CRITERION} criterion. Where the lines part, teacher forcing overstates what decodes."), fig)


def figure_history(histories: list[tuple[dict, list]]) -> Figure:
    fig = MplFigure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for key, history in histories:
        label = f"{key['source']} #{key['sample']}, {key['length']} tok, N={key['vectors']}, {key['recipe']}"
        steps = [h[0] for h in history]
        ax_loss.plot(steps, [h[1] for h in history], label=label)
        ax_acc.plot(steps, [h[2] for h in history], label=label)
    ax_loss.set_yscale("log")
    _label(ax_loss, "Loss over optimizer steps", "optimizer step", "cross-entropy (nats per token, log scale)", 7)
    _label(ax_acc, "Accuracy over optimizer steps", "optimizer step", "teacher-forced accuracy", 7)
    fig.tight_layout()
    return Figure("history", "Loss and accuracy over optimizer steps", (
        f"The stored per-step history (thinned to at most 200 points) of {len(histories)} samples: the longest "
        "text of each source, first sample."), fig)


def pick_histories(store: Store, rows: list[dict]) -> list[tuple[dict, list]]:
    """A few samples worth watching: per source, sample 0 at its longest length and fewest vectors."""
    picked = []
    for source in sorted({r["source"] for r in rows}):
        rs = [r for r in rows if r["source"] == source]
        r = max(rs, key=lambda r: (r["length"], -r["vectors"], -r["sample"]))
        picked.append((r, store.history(r)))
    return picked[:HISTORY_SAMPLES]


def made_by(store: Store) -> list[str]:
    """What wrote a results file, from its runs table: when, the command, the source commit, the libraries."""
    return [f"{r['started_at']} UTC: `{r['command']}` (source commit {r['source_commit'] or 'unknown'}; "
            f"cramming {r['cramming']}, torch {r['torch']}, transformers {r['transformers']})"
            for r in store.runs()] or ["not recorded: the file was written before cramming recorded its runs"]


def build_report(db: str | Path, out_dir: str | Path) -> Report:
    """Write index.html, report.md and one PNG per figure into out_dir -> what was written."""
    if not Path(db).exists():
        raise CrammingError(f"no such results database: {db}")
    store = Store(db)
    rows = store.rows()
    if not rows:
        raise CrammingError(f"{db} holds no results yet; run a spec into it first")
    groups, labels = group_rows(rows), recipe_labels(rows)
    searched = {k: rs for k, rs in groups.items() if horizon_report.is_horizon(rs)}
    plain = [r for k, rs in groups.items() if k not in searched for r in rs]
    ours, published = summarize(plain) if plain else [], published_rows()
    horizons = horizon_report.horizon_groups(searched, labels, retired_recipes(rows))
    today = [g for g in horizons if not g.retired] or horizons  # figures and findings: what the recipes do today
    findings = (horizon_report.findings(today) or ["(not enough groups to check any on our horizons yet)"]) \
        + horizon_report.published_findings(today, reference("paper_models.csv"),
                                            reference("paper_vectors_scaling.csv"))
    figures = [figure_tokens_per_vector(ours, published), figure_vectors_scaling(ours),
               figure_accuracy_vs_length(plain)] if plain else []
    if horizons:
        figures += horizon_figures(today, published)
    figures += [figure_cross_entropy(rows), figure_history(pick_histories(store, rows))]
    written = made_by(store)
    store.close()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs = {}
    for f in figures:
        buffer = io.BytesIO()  # rendered once: written beside the page and embedded in it
        f.figure.savefig(buffer, dpi=110, format="png")
        pngs[f.name] = buffer.getvalue()
        with atomic_output(out / f"{f.name}.png") as tmp:
            tmp.write_bytes(pngs[f.name])
    cells = table_cells(ours, published)
    recipes = sorted({stored(r["settings"]).describe() for r in rows})
    intro = (f"{len(rows)} results from {db}: {len(ours)} (model, source, vectors, recipe) groups in the table "
             f"below, {len(horizons)} horizon searches in the next; rows of different "
             "recipes, budgets or models are never averaged together. Decoding capacity is the paper's (largest length "
             f"whose mean teacher-forced accuracy is >= {PAPER_CRITERION}); exact capacity is ours (per sample and "
             "seed, the largest length whose greedy round trip is exact, averaged); ≥ marks a lower bound, where the "
             "longest length run passed and the text may hold more. Gains are means at the "
             "decoding-capacity length. Recipes: " + "; ".join(recipes)
             + ". Published rows: Kuratov et al. (2025), Table 1, 50 PG-19 samples per model, base models, "
             "teacher-forced with the first token given; information gain published in nats.")
    horizon_part = (f"{HORIZON_INTRO} {horizon_report.totals(horizons)}", [g.cells() for g in horizons],
                    findings, horizon_report.passage_cells(horizons)) if horizons else None
    md = Path(out / "report.md")
    with atomic_output(md) as tmp:
        tmp.write_text(_markdown(intro, written, cells, figures, horizon_part), encoding="utf-8")
    page = Path(out / "index.html")
    with atomic_output(page) as tmp:
        tmp.write_text(_html(intro, written, cells, figures, pngs, horizon_part), encoding="utf-8")
    return Report(ours, published, horizons, findings, written, figures, page, md)


HORIZON_INTRO = (
    "Exact horizons (horizon search: per passage, the longest prefix whose greedy round trip is exact, growing "
    "with warm starts and bisected to within 10%): per (model, source, N, recipe as run and its per-try step "
    "budget), the mean, min and max over the passages; ≥ marks a lower bound (a search still open, or the whole "
    "passage decoded). Information gain is the mean over the same passages as the horizon, each at its horizon "
    "(0 for a passage with no exact prefix). Steps run count every try's steps to its end (its exact round trip or "
    "its budget), not the step of its best vectors. Wall hours count each batch once. "
    "The findings and figures use the groups whose recipe ran as its name means today; a group labelled \"ran "
    "with ...\" (an earlier default) stays in this table only.")


PASSAGES_INTRO = (
    "Per passage: its horizon, the shortest longer length that failed from the recipe's own start (a failed "
    "warm-started try is retried from there first), and whether its search is over: closed (the two within "
    "10%), open (the length it tries next), or the whole passage decoded (a lower bound).")


def horizon_figures(groups: list[HorizonGroup], published: list[dict]) -> list[Figure]:
    return [
        Figure("horizon_vs_cross_entropy", "Horizon vs the text's cross-entropy", (
            "Left: each passage's exact horizon against its cross-entropy without vectors per token over the "
            "horizon (how predictable the text is). Right: the information gain at the horizon against the "
            "cross-entropy without vectors there (bits; the dashed line: all of it gained)."),
            horizon_report.figure_horizon_vs_ce(groups)),
        Figure("horizon_scaling", "Horizon and information gain vs N", (
            "Log-log: our mean exact horizon (bars: min-max over passages; faint lines: each passage across the N "
            "it ran at, since the groups of a series need not hold the same passages) and information gain per N, "
            "beside Kuratov et al.'s Figure 4 (paper_vectors_scaling.csv: PG-19, teacher-forced max tokens; gain "
            "converted from nats to bits)."), horizon_report.figure_horizon_scaling(
                groups, reference("paper_vectors_scaling.csv"))),
        Figure("horizon_per_model", "Tokens and information gain per vector by model", (
            "One vector: our mean exact horizon and information gain per (model, source, recipe), beside the "
            "published Table 1 (paper_models.csv; max tokens teacher-forced with the first token given, gain "
            "converted from nats to bits)."), horizon_report.figure_per_model(groups, published)),
    ]


def md_table(headers: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines."""
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + ["| " + " | ".join(r) + " |"
                                                                              for r in rows]


def _markdown(intro: str, made_by: list[str], cells: list[list[str]], figures: list[Figure],
              horizon_part: tuple | None) -> str:
    lines = ["# Cramming report", "", intro, "", "Written by:", ""] + [f"- {m}" for m in made_by]
    lines += [""] + md_table(TABLE_HEADERS, cells)
    if horizon_part:
        text, rows, findings, passages = horizon_part
        lines += ["", "## Exact horizons", "", text, ""] + md_table(horizon_report.HEADERS, rows)
        lines += ["", "The paper's findings, on these horizons:", ""] + [f"- {f}" for f in findings]
        lines += ["", "### Each passage's search", "", PASSAGES_INTRO, ""]
        lines += md_table(horizon_report.PASSAGE_HEADERS, passages)
    for f in figures:
        lines += ["", f"## {f.title}", "", f"![{f.title}]({f.name}.png)", "", f.caption]
    return "\n".join(lines) + "\n"


def _html_table(headers: tuple[str, ...], rows: list[list[str]]) -> str:
    esc = html.escape
    return ("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
            + "</tbody></table>")


def _html(intro: str, made_by: list[str], cells: list[list[str]], figures: list[Figure], pngs: dict[str, bytes],
          horizon_part: tuple | None) -> str:
    """One self-contained page: the figures are embedded, so it opens anywhere without a network."""
    esc = html.escape
    horizons = ""
    if horizon_part:
        text, rows, findings, passages = horizon_part
        horizons = (f"<h2>Exact horizons</h2><p>{esc(text)}</p>" + _html_table(horizon_report.HEADERS, rows)
                    + "<ul>" + "".join(f"<li>{esc(f)}</li>" for f in findings) + "</ul>"
                    + f"<h3>Each passage's search</h3><p>{esc(PASSAGES_INTRO)}</p>"
                    + _html_table(horizon_report.PASSAGE_HEADERS, passages))
    head = "".join(f"<th>{esc(h)}</th>" for h in TABLE_HEADERS)
    body = "".join("<tr" + (' class="published"' if "(published)" in row[0] else "") + ">"
                   + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in cells)
    figs = "".join(
        f'<figure id="{f.name}"><h2>{esc(f.title)}</h2><img alt="{esc(f.title)}" '
        f'src="data:image/png;base64,{base64.b64encode(pngs[f.name]).decode()}">'
        f"<figcaption>{esc(f.caption)}</figcaption></figure>" for f in figures)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Cramming report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }}
td:first-child, td:nth-child(2) {{ text-align: left; }}
tr.published {{ color: #345; background: #eef3f8; font-style: italic; }}
img {{ max-width: 100%; }} figcaption {{ color: #444; font-size: 0.9em; }}
</style></head><body>
<h1>Cramming report</h1><p>{esc(intro)}</p>
<p>Written by:</p><ul>{"".join(f"<li>{esc(m)}</li>" for m in made_by)}</ul>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{horizons}
{figs}
</body></html>
"""
