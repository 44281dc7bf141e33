"""The horizon campaign in a report: per (model, source, N, recipe as run) the exact horizons of its passages,
their figures beside the published tables, and the paper's three findings checked on our numbers.

A horizon group is a horizon search's tries (experiments/search.py): rows with warm-started tries among
them. Per passage, its horizon is its longest exact try; a search still open (a campaign under way) or one
that decoded the whole passage gives a lower bound, marked as such. Information gain and cross-entropy are
the row's at the horizon.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from matplotlib.figure import Figure as MplFigure

from cramming.experiments.search import Horizon

# The findings hold "about" when the compared numbers are within this fraction of each other (stated in the text).
ABOUT = 0.25


@dataclass
class Passage:
    """One passage's search as its stored tries leave it."""

    key: tuple[int, int]  # (text seed, sample): which passage, the same at every N of a campaign
    horizon: int  # its longest exact try
    failure: int | None  # the shortest length above it that failed from the recipe's own start
    next_try: int | None  # the length the search tries next; None: the search is over
    tries: int
    gain: float | None  # information gain (bits) at the horizon
    ce_without: float | None  # the text's cross-entropy without vectors (bits) at the horizon

    @property
    def sample(self) -> int:
        return self.key[1]

    @property
    def lower_bound(self) -> bool:
        """The search did not close with a bracket: still open, or the whole passage decoded."""
        return self.next_try is not None or self.failure is None

    def status(self) -> str:
        if self.next_try is not None:
            return f"open: {self.next_try} next"
        return "closed" if self.failure is not None else "the whole passage"


def passage(tries: list[dict]) -> Passage:
    """A passage's tries -> where its search stands, replayed as search.Horizon would: a failed warm-started try
    counts as a failure only once its retry from the recipe's own start failed too."""
    best = max((r for r in tries if r["exact"]), key=lambda r: r["length"], default=None)
    lo = best["length"] if best else 0
    scratch = {r["length"] for r in tries if r["warm_from"] == 0}
    failed = [r["length"] for r in tries if not r["exact"] and r["length"] > lo]
    hi = min((L for L in failed if L in scratch), default=None)
    pending = min((L for L in failed if L not in scratch), default=None)  # awaiting its retry from scratch
    first = tries[0]
    search = Horizon(first["sample"], first["passage_tokens"], lo, hi, fresh=pending)
    return Passage((first["text_seed"], first["sample"]), lo, hi, search.next_length(), len(tries),
                   best["information_gain_bits"] if best else None, best["ce_without_bits"] if best else None)


@dataclass
class HorizonGroup:
    model: str
    source: str
    vectors: int
    recipe: str  # label: name and budget
    passages: list[Passage]
    tries: int
    steps: int  # steps run by all its tries (each row's history's last step), not the steps of their best vectors
    seconds: float  # wall time of its batches
    retired: bool = False  # its recipe is an earlier version of its name (report.retired_recipes: an earlier version)

    @property
    def horizons(self) -> list[int]:
        return [p.horizon for p in self.passages]

    @property
    def lower_bounds(self) -> list[bool]:
        return [p.lower_bound for p in self.passages]

    @property
    def gains(self) -> list[float]:
        """Per passage with a horizon, the information gain (bits) at it."""
        return [p.gain for p in self.passages if p.gain is not None]

    @property
    def ce_without(self) -> list[float]:
        """Per passage with a horizon, the text's cross-entropy without vectors (bits) at it."""
        return [p.ce_without for p in self.passages if p.ce_without is not None]

    @property
    def mean(self) -> float:
        return statistics.mean(self.horizons)

    @property
    def gain(self) -> float:
        """The mean information gain (bits) over all its passages: one with no exact prefix gains 0, so the mean
        has the horizon mean's denominator."""
        return statistics.mean(p.gain or 0.0 for p in self.passages)

    def cells(self) -> list[str]:
        bound = lambda flag: "≥ " if flag else ""  # noqa: E731
        # of tied passages, the min is a certain one where there is one, the max an open one (it may hold more)
        ranked = sorted(range(len(self.horizons)), key=lambda i: (self.horizons[i], self.lower_bounds[i]))
        low, high = ranked[0], ranked[-1]
        return [self.model, self.source, str(self.vectors), self.recipe,
                f"{bound(any(self.lower_bounds))}{self.mean:.1f}",
                f"{bound(self.lower_bounds[low])}{self.horizons[low]}",
                f"{bound(self.lower_bounds[high])}{self.horizons[high]}", str(len(self.horizons)),
                f"{self.gain:.0f}", f"{self.gain / self.vectors:.0f}", str(self.tries), str(self.steps),
                f"{self.seconds / 3600:.2f}"]


HEADERS = ("model", "source", "N", "recipe", "horizon mean", "min", "max", "passages", "information gain (bits)",
           "gain per vector (bits)", "tries", "steps run", "wall hours")


def is_horizon(rows: list[dict]) -> bool:
    return any(r["warm_from"] > 0 for r in rows)


def horizon_groups(groups: dict[tuple, list[dict]], labels: dict[str, str],
                   retired: set[str] = frozenset()) -> list[HorizonGroup]:
    """(model, fingerprint, source, vectors, recipe digest) -> rows, for the horizon groups among them; retired:
    the digests of recipes that ran with settings their names no longer mean."""
    out = []
    for (model, _, source, vectors, digest), rows in sorted(groups.items(), key=lambda g: g[0]):
        keys = sorted({(r["text_seed"], r["sample"], r["seed"]) for r in rows})
        passages = [passage([r for r in rows if (r["text_seed"], r["sample"], r["seed"]) == k]) for k in keys]
        # a row's seconds run from the start of its batch; a batch's rows are stored together, at one finished_at
        batches: dict[str, float] = {}
        for r in rows:
            batches[r["finished_at"]] = max(batches.get(r["finished_at"], 0.0), r["seconds"])
        out.append(HorizonGroup(model, source, vectors, labels[digest], passages, len(rows),
                                sum(r["steps_run"] for r in rows), sum(batches.values()), digest in retired))
    return out


PASSAGE_HEADERS = ("model", "source", "N", "recipe", "passage", "horizon", "first failure above it", "search",
                   "tries", "information gain (bits)")


def passage_cells(groups: list[HorizonGroup]) -> list[list[str]]:
    """One row per passage: its horizon, the failure that brackets it, whether its search is over."""
    return [[g.model, g.source, str(g.vectors), g.recipe, str(p.sample), str(p.horizon),
             "–" if p.failure is None else str(p.failure), p.status(), str(p.tries),
             "–" if p.gain is None else f"{p.gain:.0f}"] for g in groups for p in g.passages]


def totals(groups: list[HorizonGroup]) -> str:
    """What the searches cost in all, in one sentence."""
    return (f"In all, {sum(len(g.horizons) for g in groups)} passage searches: {sum(g.tries for g in groups)} tries, "
            f"{sum(g.steps for g in groups):,} steps run, {sum(g.seconds for g in groups) / 3600:.2f} wall hours.")


def findings(groups: list[HorizonGroup]) -> list[str]:
    """The paper's three findings, each checked where our groups can check it, in one sentence each."""
    out = []
    books = sorted((g for g in groups if g.source == "books"), key=lambda g: (g.model, g.recipe, g.vectors))
    for model, recipe in sorted({(g.model, g.recipe) for g in books}):
        series = [g for g in books if (g.model, g.recipe) == (model, recipe)]
        # the same passages at every N: passages differ in difficulty more than a slope's worth
        common = set.intersection(*({p.key for p in g.passages} for g in series))
        if len(series) < 2 or not common:
            continue
        means = [statistics.mean(p.horizon for p in g.passages if p.key in common) for g in series]
        slope = _slope([math.log(g.vectors) for g in series], [math.log(max(m, 1)) for m in means])
        holds = abs(slope - 1) <= ABOUT
        shared = [p for p in series[0].passages if p.key in common]
        subset = "" if all(len(g.passages) == len(common) for g in series) else \
            f" on the {len(common)} passages every N ran (samples {', '.join(str(p.sample) for p in shared)})"
        out.append(f"(a) Capacity grows about linearly with N ({model}, books, {recipe}): the mean horizon{subset} "
                   "goes " + ", ".join(f"{m:.0f}" for m in means) + " tokens at N = "
                   + ", ".join(str(g.vectors) for g in series) + f", a log-log slope of {slope:.2f}: "
                   + _verdict(holds, series, f"linear is 1, within {ABOUT:.0%}"))
    for model, recipe in sorted({(g.model, g.recipe) for g in groups}):
        one = {g.source: g for g in groups if (g.model, g.recipe, g.vectors) == (model, recipe, 1)}
        if "books" in one and "random" in one and one["books"].gain and one["random"].gain:
            b, r = one["books"], one["random"]
            tokens, gain = r.mean / b.mean, r.gain / b.gain
            holds = tokens < 1 and abs(gain - 1) <= ABOUT
            out.append(f"(b) Random text holds fewer tokens than books but about the same information gain "
                       f"({model}, 1 vector, {recipe}): random words hold {r.mean:.0f} tokens against {b.mean:.0f} "
                       f"({tokens:.2f}x), with {r.gain:.0f} against {b.gain:.0f} bits of gain ({gain:.2f}x): "
                       + _verdict(holds, [b, r], f"gains within {ABOUT:.0%}"))
        gains = {s: g.gain for s, g in one.items() if g.gain}
        if len(gains) >= 2:
            mean = statistics.mean(gains.values())
            spread = max(abs(v - mean) / mean for v in gains.values())
            out.append(f"(c) The information gain per vector is about constant across sources ({model}, 1 vector, "
                       f"{recipe}): " + ", ".join(f"{s} {v:.0f}" for s, v in sorted(gains.items()))
                       + f" bits, at most {spread:.0%} from their mean: "
                       + _verdict(spread <= ABOUT, list(one.values()), f"within {ABOUT:.0%}"))
    return out


def published_findings(groups: list[HorizonGroup], models: list[dict], scaling: list[dict]) -> list[str]:
    """The same tests on the paper's own numbers, so that a finding that fails here can be told apart from one
    the paper's table does not show either. models: paper_models.csv's rows (gains in nats: only their ratio is
    read); scaling: paper_vectors_scaling.csv's rows. (a) is tested over the N our book groups span, and only
    where they span two or more."""
    out = []
    ns = sorted({g.vectors for g in groups if g.source == "books"})
    if len(ns) >= 2:
        slopes = {}
        for model in sorted({r["model"] for r in scaling}):
            rs = [r for r in scaling if r["model"] == model and r["n_vectors"] in ns and r["pg19_max_tokens"]]
            if len(rs) == len(ns):
                slopes[model] = _slope([math.log(r["n_vectors"]) for r in rs],
                                       [math.log(r["pg19_max_tokens"]) for r in rs])
        if slopes:
            out.append("(a) On the paper's own numbers (Kuratov et al., Figure 4, PG-19, N = "
                       + ", ".join(map(str, ns)) + "): a log-log slope of "
                       + ", ".join(f"{v:.2f} for {m}" for m, v in slopes.items())
                       + f": linear within {ABOUT:.0%} for {sum(abs(v - 1) <= ABOUT for v in slopes.values())} "
                       f"of {len(slopes)} models.")
    if models:
        ratios = [(m["model"], m["random_information_gain"] / m["pg19_information_gain"]) for m in models]
        fewer = sum(m["random_max_tokens"] < m["pg19_max_tokens"] for m in models)
        out.append("(b, c) On the paper's own numbers (Kuratov et al., Table 1, one vector): random words' gain "
                   "against books' is " + ", ".join(f"{v:.2f}x for {m}" for m, v in ratios)
                   + f": within {ABOUT:.0%} for {sum(abs(v - 1) <= ABOUT for _, v in ratios)} of {len(ratios)} "
                   f"models; random words hold fewer tokens for {fewer} of {len(models)}.")
    return out


def _verdict(holds: bool, groups: list[HorizonGroup], test: str) -> str:
    """"holds (the test)." or "does not hold (the test)."; "so far" and why where a search is still open."""
    still_open = any(any(g.lower_bounds) for g in groups)
    return (f"{'holds' if holds else 'does not hold'}{' so far' if still_open else ''} ({test})"
            + ("; some searches are still open, so their horizons are lower bounds." if still_open else "."))


def _slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.mean(xs), statistics.mean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def _series(groups: list[HorizonGroup]) -> list[tuple[str, list[HorizonGroup]]]:
    keys = sorted({(g.model, g.source, g.recipe) for g in groups})
    return [(f"{m}, {s}, {r}", sorted((g for g in groups if (g.model, g.source, g.recipe) == (m, s, r)),
                                      key=lambda g: g.vectors)) for m, s, r in keys]


def _legend_below(ax) -> None:
    """The legend under its axes: the labels (model, source, recipe) are long and would cover the points."""
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)


def figure_horizon_vs_ce(groups: list[HorizonGroup]) -> MplFigure:
    fig = MplFigure(figsize=(11, 6), layout="constrained")
    left, right = fig.subplots(1, 2)
    for i, g in enumerate(groups):
        with_h = [h for h in g.horizons if h > 0]
        label = f"{g.model}, {g.source}, N={g.vectors}, {g.recipe}"
        left.scatter([ce / h for ce, h in zip(g.ce_without, with_h)], with_h, color=f"C{i % 10}", label=label)
        right.scatter(g.ce_without, g.gains, color=f"C{i % 10}", label=label)
    top = max((ce for g in groups for ce in g.ce_without), default=1.0)
    right.plot([0, top], [0, top], color="gray", linestyle="--", linewidth=1, label="gain = cross-entropy")
    for ax, title, x, y in ((left, "Horizon vs how predictable the text is", "cross-entropy without vectors "
                             "(bits per token, over the horizon)", "exact horizon (tokens)"),
                            (right, "Information at the horizon", "cross-entropy without vectors (bits, summed "
                             "over the horizon)", "information gain at the horizon (bits)")):
        ax.set_title(title)
        ax.set_xlabel(x, fontsize=8)
        ax.set_ylabel(y)
        _legend_below(ax)
    return fig


def figure_horizon_scaling(groups: list[HorizonGroup], published: list[dict]) -> MplFigure:
    """published: paper_vectors_scaling.csv's rows."""
    fig = MplFigure(figsize=(11, 6.5), layout="constrained")
    tokens, gain = fig.subplots(1, 2)
    for model in sorted({r["model"] for r in published}):
        rs = [r for r in published if r["model"] == model]
        tokens.plot([r["n_vectors"] for r in rs if r["pg19_max_tokens"]],
                    [r["pg19_max_tokens"] for r in rs if r["pg19_max_tokens"]], marker="s", linestyle="--",
                    label=f"{model}, PG-19 (published, teacher-forced)")
        gain.plot([r["n_vectors"] for r in rs if r["pg19_information_gain"]],
                  [r["pg19_information_gain"] / math.log(2) for r in rs if r["pg19_information_gain"]], marker="s",
                  linestyle="--", label=f"{model}, PG-19 (published)")
    papers = len({r["model"] for r in published})  # their lines took the first colours
    for k, (label, series) in enumerate(_series(groups)):
        x = [g.vectors * 1.05 ** k for g in series]  # nudged apart so that no series hides another
        color = f"C{(papers + k) % 10}"
        # each passage across the N it ran at, faint: the mean of a group is over its own passages, and
        # groups of one series may hold different ones (a larger N may cram only the first few)
        for key in sorted({p.key for g in series for p in g.passages}):
            ran = [(xi, p.horizon) for xi, g in zip(x, series) for p in g.passages if p.key == key and p.horizon]
            tokens.plot([r[0] for r in ran], [r[1] for r in ran], color=color, alpha=0.3, linewidth=0.8,
                        marker=".", label="_passage")
        tokens.errorbar(x, [g.mean for g in series], yerr=[[g.mean - min(g.horizons) for g in series],
                                                            [max(g.horizons) - g.mean for g in series]],
                        marker="o", capsize=3, color=color, label=f"{label} (ours, min-max)")
        gained = [(xi, g.gain) for xi, g in zip(x, series) if g.gain]
        gain.plot([p[0] for p in gained], [p[1] for p in gained], marker="o", color=color, label=f"{label} (ours)")
    for ax, y in ((tokens, "tokens (horizon; published: max tokens)"), (gain, "information gain (bits)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("number of vectors N (log scale)")
        ax.set_ylabel(y + ", log scale", fontsize=8)
        _legend_below(ax)
    tokens.set_title("Tokens vs N")
    gain.set_title("Information gain vs N")
    return fig


def figure_per_model(groups: list[HorizonGroup], published: list[dict]) -> MplFigure:
    # horizontal bars: the (model, source, recipe) labels are long and read best on their own lines
    ours = [g for g in groups if g.vectors == 1]
    names = [f"{g.model}, {g.source}, {g.recipe}" for g in ours] + [f"{r['model']}, {r['source']} (published)"
                                                                     for r in published]
    fig = MplFigure(figsize=(12.5, 1.2 + 0.18 * len(names)), layout="constrained")  # room for the labels
    tokens, gain = fig.subplots(1, 2, sharey=True)
    y = list(range(len(names)))
    tokens.barh(y[: len(ours)], [g.mean for g in ours], color="tab:orange", label="ours: mean exact horizon")
    tokens.barh(y[len(ours):], [r["decoding_capacity"] for r in published], color="tab:blue", alpha=0.7,
                label="published: max tokens (teacher-forced)")
    gain.barh(y[: len(ours)], [g.gain or 0 for g in ours], color="tab:orange", label="ours, at the horizon")
    gain.barh(y[len(ours):], [r["information_gain_bits"] or 0 for r in published], color="tab:blue", alpha=0.7,
              label="published")
    tokens.set_yticks(y, names, fontsize=6)
    tokens.invert_yaxis()
    for ax, title, x in ((tokens, "Tokens per vector by model", "tokens (log scale)"),
                         (gain, "Information gain per vector by model", "bits (log scale)")):
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel(x)
        ax.legend(fontsize=7, loc="upper right")  # our bars come first and are short: the top right is free
    return fig
