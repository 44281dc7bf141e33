"""The `cram` command: parses arguments, calls the library, prints. No logic of its own."""

from __future__ import annotations

import csv
import json
import logging
import os
import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cramming.core.atomic import atomic_output
from cramming.core.errors import CrammingError, NotExact
from cramming.core.forms import parse_form
from cramming.core.inputs import check_options
from cramming.core.progress import PlainProgress, step_words
from cramming.core.recipes import RECIPES, get_recipe
from cramming.core.version import __version__
from cramming.experiments.encoder_plan import Training
from cramming.model.aliases import ALIASES, DEFAULT_MODEL, SYNONYMS, alias_status
from cramming.model.texts import SOURCE_USAGE, check_source, load_samples, write_samples

if TYPE_CHECKING:
    from cramming.api import Compressed
    from cramming.core.loop import StepInfo

# Only what parsing needs is imported here: torch and transformers load inside the commands that use them, so
# `cram --help`, `cram models` and a bad argument answer at once (tests/test_cli_subprocess.py checks it).
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Cram texts into a few input vectors of a frozen language model, and decode them back.")
err = Console(stderr=True)
log = logging.getLogger("cramming")  # the library's (api.log), without importing it

EXIT_NOT_EXACT = 1  # the budget ran out, or a sample diverged: work was done, and its best vectors are saved
EXIT_BAD_INPUT = 2
ROUND_TRIP = {"exact": "[green]exact[/]", "not_exact": "[red]not exact[/]", "diverged": "[red]diverged[/]"}


def command_line() -> str:
    """This invocation, as a results file records what wrote it."""
    return shlex.join(["cram", *sys.argv[1:]])


def status_words(metrics: dict) -> str:
    """A stored row's outcome, in the words progress lines use."""
    return "exact" if metrics["exact"] else "diverged" if metrics["diverged"] else "not exact"

ModelOpt = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Alias, Hugging Face id or local directory.")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu or cuda[:i].")
TextArg = typer.Argument(None, help="The text to cram; after -f FILE, more files (so -f DIR/*.txt works).",
                         show_default=False)
FilesOpt = typer.Option([], "--file", "-f", help="Text file(s), crammed as one batch; - reads standard input.")
VectorsOpt = typer.Option(1, "--vectors", "-n", help="Memory vectors per text.")
TokensOpt = typer.Option(None, "--tokens", "-t", help="Keep the first T tokens of each text.")
RecipeOpt = typer.Option("default", "--recipe", help=f"One of: {', '.join(RECIPES)} (its latest version), or "
                                                    "NAME@VERSION for an earlier one (default@6).")
SetOpt = typer.Option([], "--set", help="Change a field of the recipe, FIELD=VALUE (repeatable): --set lr=0.1.")
PrecisionOpt = typer.Option(None, "--precision",
                            help="auto, fp32 or bf16: the model's compute type while cramming (--set precision=...; "
                                 "auto: bf16 on CUDA, fp32 on CPU). The round trip is checked as decompress runs.")
MaxStepsOpt = typer.Option(None, "--max-steps", help="Step budget (default: the recipe's).")
SeedOpt = typer.Option(0, "--seed")
JsonOpt = typer.Option(False, "--json", help="One JSON object per text on stdout.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress on stderr.")
ThreadsOpt = typer.Option(None, "--threads", help="CPU threads (default: the cores not busy, by the load average).")
PLAIN_EVERY = 5.0  # seconds between plain progress lines when stderr is not a terminal


def show(*items: RenderableType) -> None:
    """Print to stdout: fitted to a terminal; to a file or pipe, never wrapped (a path or a sentence stays one
    line)."""
    console = Console() if sys.stdout.isatty() else Console(width=100_000, soft_wrap=True)
    console.print(*items)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def rounded(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def read_text_file(path: Path) -> str:
    if str(path) == "-":
        data = sys.stdin.buffer.read()
    elif not path.is_file():
        raise CrammingError(f"no such file: {path}")
    else:
        data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CrammingError(f"{path} is not UTF-8 text (invalid byte at offset {e.start})") from None


def gather_texts(args: list[str], files: list[Path]) -> tuple[list[Path | None], list[str]]:
    """-> (each text's file, None for a TEXT argument; the texts). With -f, further arguments are files too, so a
    shell glob after it (`-f DIR/*.txt`) is one batch; without, one TEXT, refused when it names a file here."""
    if files:
        paths = [*files, *map(Path, args)]
        return paths, [read_text_file(p) for p in paths]
    if not args:
        raise CrammingError("no text given: pass TEXT or -f FILE")
    if len(args) > 1:
        raise CrammingError(f"{len(args)} TEXT arguments: quote the text as one argument, or give files with "
                            "-f FILE ...")
    if "\n" not in args[0] and os.path.isfile(args[0]):
        raise CrammingError(f"{args[0]!r} is a file here: to cram its text, use -f {shlex.quote(args[0])}")
    return [None], args


def output_paths(sources: list[Path | None], out: Path | None) -> list[Path]:
    """One vector file per text, never two texts to one file: -o is the file for one text, the directory for
    several; without -o each file's vectors go beside it (FILE.cram.safetensors), a TEXT's to
    text.cram.safetensors here and standard input's to stdin.cram.safetensors."""
    if out is not None and len(sources) == 1:
        return [out]
    def target(source: Path | None) -> Path:
        if source is None or str(source) == "-":
            return (out or Path()) / f"{'text' if source is None else 'stdin'}.cram.safetensors"
        return (out or source.parent) / f"{source.name}.cram.safetensors"

    paths = [target(s) for s in sources]
    seen: dict[Path, Path | None] = {}
    for source, path in zip(sources, paths):
        if path.resolve() in seen:
            first = seen[path.resolve()]
            raise CrammingError(f"{first} and {source} would both write {path}: give the inputs distinct names"
                                + (", or leave out -o to write each beside its file" if out is not None else ""))
        seen[path.resolve()] = source
    return paths


class Reporter:
    """Progress on stderr: a live bar on a terminal; elsewhere (a pipe, a log file) plain lines (api.PlainProgress:
    the first at once, then every PLAIN_EVERY seconds, the last one always); nothing with --quiet."""

    def __init__(self, label: str, quiet: bool, total: int | None = None, transient: bool = True):
        self.quiet, self.total, self.completed = quiet, total, 0
        self.live = err.is_terminal and not quiet
        self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                            TimeElapsedColumn(), console=err, transient=transient, disable=not self.live)
        self.task = self.bar.add_task("", total=total)
        self.plain = PlainProgress(label, PLAIN_EVERY)

    def __enter__(self) -> Reporter:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)
        if not self.live and not self.quiet:
            self.plain.flush()

    def update(self, completed: int, description: str, total: int | None = None) -> None:
        self.completed = completed
        self.total = total if total is not None else self.total
        self.bar.update(self.task, completed=completed, total=self.total, description=description)
        if not self.live and not self.quiet:
            self.plain.line(completed, self.total, description)

    def on_step(self, s: StepInfo) -> None:
        """For the engine's steps; the total is the budget it runs with, whatever set it."""
        self.update(s.step, step_words(s), total=s.max_steps)


def cram_with_progress(texts: list[str], model, quiet: bool, **options) -> list[Compressed]:
    from cramming import api

    with Reporter("cramming", quiet) as reporter:
        return api.compress(texts, model, on_step=reporter.on_step, **options)


@app.command()
def compress(
    text: Optional[list[str]] = TextArg,
    files: list[Path] = FilesOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Vector file (a directory for several texts; "
                                                                 "default: beside each file)."),
    model: str = ModelOpt,
    vectors: int = VectorsOpt,
    tokens: Optional[int] = TokensOpt,
    recipe: str = RecipeOpt,
    settings: list[str] = SetOpt,
    max_steps: Optional[int] = MaxStepsOpt,
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
    threads: Optional[int] = ThreadsOpt,
    precision: Optional[str] = PrecisionOpt,
    margin: Optional[float] = typer.Option(None, "--margin", help="Keep cramming until every token of the greedy "
                                           "path leads the runner-up by at least this many logits (default 0)."),
    storage_form: Optional[str] = typer.Option(None, "--storage", help="fp32 (default), fp16, bf16, int8, int4, or "
                                               "a bit count (2-16); the round trip is checked as stored."),
    decoder: Optional[str] = typer.Option(None, "--decoder", help="greedy (default: token by token) or one-step "
                                          "(every token from one forward pass; needs --vectors 2 or more)."),
    shared: bool = typer.Option(False, "--shared-copy", help="one-step with the model's shared copied vector: the "
                                "file holds only the text's own vectors (--vectors 1 will do)."),
    rank: Optional[int] = typer.Option(None, "--rank", help="Cram and store only K coefficients in the model's "
                                       "shared basis (built once per model and vector count, shipped for the "
                                       "default model's one vector)."),
) -> None:
    """Cram text(s) into memory vectors and verify the round trip. Exit 0 only when every text is exact."""
    sources, texts = gather_texts(text or [], files)
    paths = output_paths(sources, out)
    chosen = get_recipe(recipe, settings + ([f"precision={precision}"] if precision else [])
                        + ([f"decoder={decoder}"] if decoder else [])
                        + (["decoder=one-step", "shared_copy=true"] if shared else [])
                        + ([f"rank={rank}"] if rank is not None else []))
    check_options(texts, n_vectors=vectors, max_tokens=tokens, decoder=chosen.decoder, shared_copy=chosen.shared_copy)
    storage_form = parse_form(storage_form) if storage_form is not None else None
    from cramming.core.threads import use_threads  # torch: once the input is known to be good

    use_threads(threads)
    say_what_runs(quiet)
    results = cram_with_progress(texts, model, quiet, n_vectors=vectors, recipe=chosen, max_steps=max_steps,
                                 max_tokens=tokens, seed=seed, device=device, min_margin=margin,
                                 storage_form=storage_form)
    for result, path in zip(results, paths):
        result.save(path)
    if as_json:
        for result in results:
            print(json.dumps(result.summary()))
    else:
        table = Table("tokens", "vectors", "steps", "seconds", "accuracy", "round trip")
        table.add_column("path", overflow="fold")
        for r in results:
            s = r.summary()
            table.add_row(str(s["tokens"]), str(s["vectors"]), str(s["steps"]), f"{s['seconds']:.1f}",
                          f"{s['accuracy']:.4f}", ROUND_TRIP[s["status"]], s["path"])
        show(table)
    diverged = sum(r.status == "diverged" for r in results)
    if diverged:
        print(f"{diverged} text(s) diverged (the loss turned NaN or infinite); their best vectors before that are "
              "saved (try a recipe with a lower learning rate)", file=sys.stderr)
    lost = sum(r.status == "not_exact" and r.path_margin is not None for r in results)  # exact until stored
    if lost:
        print(f"{lost} text(s) exact in float32 but not as stored in {results[0].storage}: try --margin or more "
              "bits", file=sys.stderr)
    if any(r.status == "not_exact" and r.path_margin is None for r in results):
        print(f"{sum(r.status == 'not_exact' and r.path_margin is None for r in results)} text(s) not exact within "
              f"{results[0].recipe.max_steps} steps; best vectors saved (try --max-steps or more --vectors)",
              file=sys.stderr)
    if not all(r.exact for r in results):
        raise typer.Exit(EXIT_NOT_EXACT)


@app.command()
def measure(
    text: Optional[list[str]] = TextArg,
    files: list[Path] = FilesOpt,
    vec: list[Path] = typer.Option([], "--vec", help="Measure this vector file's vectors (repeatable): its text "
                                                     "is read back from them, nothing is crammed."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also save the crammed vectors here (a directory "
                                                                 "for several texts)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Alias, Hugging Face id or local directory "
                                        f"(default: {DEFAULT_MODEL}; with --vec, the model the file names)."),
    vectors: int = VectorsOpt,
    tokens: Optional[int] = TokensOpt,
    recipe: str = RecipeOpt,
    settings: list[str] = SetOpt,
    max_steps: Optional[int] = MaxStepsOpt,
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
    threads: Optional[int] = ThreadsOpt,
) -> None:
    """The paper's metrics: cross-entropy with and without vectors, gains, utilization; of texts crammed now, or
    of vector files (--vec)."""
    from cramming import api
    from cramming.core.metrics import measure as measure_text
    from cramming.core.threads import use_threads

    use_threads(threads)
    if vec:
        if text or files or out:
            raise CrammingError("--vec measures vector files: give no TEXT, -f or -o with it")
        rows = [api.measure_file(path, model=model, device=device).to_dict() for path in vec]
    else:
        sources, texts = gather_texts(text or [], files)
        paths = output_paths(sources, out) if out is not None else None
        api.check_options(texts, n_vectors=vectors, max_tokens=tokens)
        chosen = get_recipe(recipe, settings)
        say_what_runs(quiet)
        lm = api.as_model(model or DEFAULT_MODEL, device=device)
        results = cram_with_progress(texts, lm, quiet, n_vectors=vectors, recipe=chosen, max_steps=max_steps,
                                     max_tokens=tokens, seed=seed)
        for result, path in zip(results, paths or []):
            result.save(path)
            print(f"vectors saved to {path}", file=sys.stderr)
        rows = [measure_text(r, lm).to_dict() for r in results]
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table("metric", *[f"text {i + 1}" for i in range(len(rows))])
    for key in rows[0]:
        table.add_row(key, *[f"{row[key]:.4g}" if isinstance(row[key], float) else str(row[key]) for row in rows])
    show(table)
    if not rows[0]["first_token_scored"]:
        show("The tokenizer adds no BOS: the first token has no score without vectors and is left out of both "
             "cross-entropies and both hit counts.")


@app.command()
def decompress(
    vec: Path = typer.Argument(..., help="A vector file written by `cram compress`."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Default: the model named in the file."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the text here instead of stdout."),
    device: str = DeviceOpt,
    inexact: bool = typer.Option(False, "--inexact", help="Write the best decode of a file that is not exact, "
                                                          "with a warning (exit status 1)."),
) -> None:
    """Greedy-decode the text from the vectors alone; it is checked against the file's hashes."""
    from cramming import api

    if inexact:
        decoded = api.decode(vec, model=model, device=device)
        text = decoded.text
    else:
        try:
            text = api.decompress(vec, model=model, device=device)
        except NotExact as err:
            raise CrammingError(f"{err}; --inexact writes its best decode") from None
    data = text.encode("utf-8")
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        with atomic_output(out) as tmp:
            tmp.write_bytes(data)
    if inexact and not decoded.exact:
        where = (f"from token {decoded.first_mismatch} of {decoded.n_tokens} on"
                 if decoded.first_mismatch is not None else "somewhere")
        print(f"warning: not exact: this decode differs from the crammed text {where}", file=sys.stderr)
        raise typer.Exit(EXIT_NOT_EXACT)


@app.command()
def info(
    vec: Path = typer.Argument(..., help="A vector file."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show a vector file's metadata."""
    from cramming import api

    meta = api.info(vec)
    if as_json:
        print(json.dumps(meta, indent=2))
        return
    table = Table("key", "value", show_header=False)
    for key, value in sorted(meta.items()):
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    show(table)


@app.command()
def certify(
    vec: Path = typer.Argument(..., help="A vector file."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Default: the model named in the file."),
    device: str = DeviceOpt,
    as_json: bool = typer.Option(False, "--json"),
    threads: Optional[int] = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """How robust a vector file is: greedy-path margins, the dtypes and bit widths it survives, its noise radius."""
    from cramming.core.threads import use_threads
    from cramming.experiments.certify import CHECKS
    from cramming.experiments.certify import certify as make_certificate
    from cramming.files.vector_file import load_vectors

    load_vectors(vec)  # a bad file fails before the model loads
    use_threads(threads)
    with Reporter("checks", quiet, CHECKS, transient=False) as reporter:
        c = make_certificate(vec, model=model, device=device,
                             on_check=lambda done, what: reporter.update(done, what))
    if as_json:
        print(json.dumps(c.to_dict()))
        return
    table = Table("check", "result", show_header=False)
    stored = f"{c.rank} coefficients in the model's basis, " if c.rank else ""
    table.add_row("tokens, vectors x d", f"{c.tokens}, {c.n_vectors} x {c.d_model} (stored as {stored}{c.storage})")
    table.add_row("smallest margin", f"{c.min_margin:.3f} logits (top-1 minus top-2 along the greedy path)")
    for check, ok in c.exact.items():
        table.add_row(f"exact: {check}", "[green]yes[/]" if ok else "[red]no[/]")
    table.add_row("effective bits", str(c.effective_bits) if c.effective_bits else "more than 16")
    table.add_row("noise radius", f"{c.noise_radius:g}" if c.noise_radius else "below the smallest tried")
    payload = ", ".join(f"{form} {size} B" for form, size in c.payload_bytes.items())
    table.add_row("payload", f"{payload}; the text: {c.text_bytes} B" if c.text_bytes else payload)
    show(table)


@app.command()
def texts(
    source: str = typer.Argument(..., help=f"One of: {SOURCE_USAGE}."),
    n: int = typer.Option(3, "--n", help="Number of samples."),
    tokens: Optional[int] = typer.Option(None, "--tokens", "-t", help="Tokens per sample (default: whole texts)."),
    seed: int = typer.Option(0, "--seed"),
    model: str = ModelOpt,
    as_json: bool = typer.Option(False, "--json"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write each passage to a .txt file in this "
                                       "directory (their paths are printed), for `cram compress -f`."),
) -> None:
    """Show samples of a text source, cut to a number of the model's tokens."""
    from cramming import api

    check_source(source, n)
    lm = api.as_model(model, device="cpu")
    samples = load_samples(source, n, tokens, lm.tokenizer, seed)
    if out is not None:
        for path in write_samples(samples, out, seed):
            print(path)
        return
    if as_json:
        for sample in samples:
            print(json.dumps(asdict(sample)))
        return
    table = Table("#", "tokens", "text")
    for sample in samples:
        table.add_row(str(sample.index), str(sample.n_tokens), sample.text)
    show(table)


@app.command()
def capacity(
    source: str = typer.Option("books", "--source", help=f"One of: {SOURCE_USAGE}."),
    samples: int = typer.Option(5, "--samples", help="Number of passages."),
    vectors: str = typer.Option("1", "--vectors", "-n", help="Comma-separated vector counts, e.g. 1,2,4."),
    strategy: str = typer.Option("bisect", "--strategy", help="grid (paper), bisect, progressive or horizon."),
    max_tokens: int = typer.Option(128, "--max-tokens", help="Passage length: the most tokens searched."),
    model: str = ModelOpt,
    recipe: str = RecipeOpt,
    settings: list[str] = SetOpt,
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Step budget per try."),
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per vector count."),
    quiet: bool = QuietOpt,
    threads: Optional[int] = ThreadsOpt,
    db: Path = typer.Option(Path("capacity.sqlite"), "--db", help="The results file every try is stored in, so a "
                                                                   "rerun resumes."),
) -> None:
    """Search how many tokens N vectors hold, on passages of a text source."""
    try:
        counts = [int(v) for v in vectors.split(",")]
    except ValueError:
        raise CrammingError(f"--vectors takes comma-separated integers, got {vectors!r}") from None
    strategies = {"grid": "paper-grid", "bisect": "bisect", "progressive": "progressive", "horizon": "horizon"}
    if strategy not in strategies:
        raise CrammingError(f"unknown strategy {strategy!r}; choose one of: {', '.join(strategies)}")
    if any(n < 1 for n in counts):
        raise CrammingError(f"the number of vectors must be at least 1, got {vectors}")
    check_source(source, samples)
    get_recipe(recipe, settings)
    from cramming.core.threads import use_threads  # torch: once the input is known to be good
    from cramming.experiments.runner import capacity as search_capacity

    use_threads(threads)
    with Reporter("tries", quiet, transient=False) as reporter:
        def on_task(key, m) -> None:
            reporter.update(reporter.completed + 1, f"n={key.vectors} #{key.sample} L={key.length}: "
                            f"{status_words(m)} in {int(m['steps'])} steps")
        found_all = [c.summary() for c in search_capacity(
            model, source, strategy=strategies[strategy], vectors=counts, recipe=recipe, settings=settings,
            samples=samples, max_tokens=max_tokens, max_steps=max_steps, seed=seed, db=db, device=device,
            on_task=on_task, command=command_line())]
    for n, found in zip(counts, found_all):
        if as_json:
            print(json.dumps(found), flush=True)
        else:
            at_least = lambda key: "≥ " if found[f"{key}_is_lower_bound"] else ""  # noqa: E731
            show(
                f"{n} vector(s), {strategy}: capacity mean {at_least('mean')}{found['capacity_mean']:.1f} (min "
                f"{at_least('min')}{found['capacity_min']}, max {at_least('max')}{found['capacity_max']}) over "
                f"{plural(samples, 'sample')}; token gain {rounded(found['token_gain'])}, information gain "
                f"{rounded(found['information_gain_bits'])} bits"
                + (f"; decoding capacity (paper) {at_least('decoding')}{found['decoding_capacity']}"
                   if "decoding_capacity" in found else "")
                + ("; ≥: the search reached its top (--max-tokens), so the text may hold more"
                   if found["mean_is_lower_bound"] else ""))


@app.command()
def run(
    spec_path: Path = typer.Argument(..., metavar="SPEC.toml", help="The experiment grid."),
    db: Path = typer.Option(Path("results.sqlite"), "--db", help="SQLite results file (created if missing)."),
    device: str = DeviceOpt,
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: a new local one)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Ray workers (default: one per GPU, else per CPU)."),
    cpus_per_worker: int = typer.Option(1, "--cpus-per-worker", help="CPUs (threads) per Ray CPU worker."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="Samples crammed together (same source/length/N); default: from free GPU "
                                   "memory, or the CPU default."),
    quiet: bool = QuietOpt,
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads of the local executor (default: "
                                                                  "the cores not busy); Ray: --cpus-per-worker."),
) -> None:
    """Run an experiment grid; finished rows are skipped, so rerunning resumes."""
    from cramming.core.threads import use_threads
    from cramming.experiments.runner import Spec, run_local, run_ray
    from cramming.files.database import Store

    if executor not in ("local", "ray"):
        raise CrammingError(f"unknown executor {executor!r}; use local or ray")
    if cpus_per_worker < 1 or any(x is not None and x < 1 for x in (batch_size, workers)):
        raise CrammingError("--batch-size, --workers and --cpus-per-worker must be at least 1")
    spec = Spec.from_toml(spec_path)
    if executor == "local":
        use_threads(threads)
    store = Store(db)
    store.record_run(command_line())
    total, skipped = spec.size(), []
    reporter = Reporter("tasks", quiet, total, transient=False)

    def on_skipped(n: int) -> None:  # rows already stored for a model, known once it is loaded
        skipped.append(n)
        reporter.update(reporter.completed + n, f"{sum(skipped)} done before")

    def on_task(key, metrics) -> None:
        reporter.update(reporter.completed + 1, f"{key.source} L={key.length} n={key.vectors} #{key.sample}: "
                                                f"{status_words(metrics)} in {int(metrics['steps'])} steps")

    def on_step(s: StepInfo) -> None:  # within a batch: the grid's count stays, the step shows
        reporter.update(reporter.completed, f"a batch at step {s.step}/{s.max_steps}: {step_words(s)}")

    def on_workers(found: list[dict]) -> None:
        hosts = sorted({w["host"] for w in found})
        print(f"{len(found)} Ray worker(s) on {', '.join(hosts)}, device {found[0]['device']}", file=sys.stderr)

    with reporter:
        options = dict(device=device, on_task=on_task, batch_size=batch_size, on_skipped=on_skipped)
        if executor == "ray":
            added = run_ray(spec, store, address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                            on_workers=on_workers, **options)
        else:
            added = run_local(spec, store, on_step=on_step, **options)
    store.close()
    print(f"{added} row(s) added, {sum(skipped)} already done, {total or added + sum(skipped)} in the "
          f"{'grid' if total else 'horizon search'}; results in {db}", file=sys.stderr)


@app.command()
def results(
    db: Path = typer.Option(Path("results.sqlite"), "--db", help="SQLite results file."),
    fmt: str = typer.Option("csv", "--format", help="csv or json."),
) -> None:
    """Export the stored rows: the task key, every metric, the recipe as run, the run conditions, the text and the
    step history (step, loss, accuracy; thinned) of each. The vectors stay in the database."""
    from cramming.files.database import ROW, Store

    if not db.is_file():
        raise CrammingError(f"no such results file: {db}")
    if fmt not in ("csv", "json"):
        raise CrammingError(f"unknown format {fmt!r}; use csv or json")
    rows = Store(db).rows(full=True)
    if fmt == "json":
        print(json.dumps(rows, indent=1))
        return
    as_json = ("settings", "conditions", "history")
    writer = csv.DictWriter(sys.stdout, fieldnames=[*ROW, "steps_run", *as_json, "text"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({**r, **{k: json.dumps(r[k]) for k in as_json}} for r in rows)


@app.command()
def remeasure(
    db: Path = typer.Option(..., "--db", help="SQLite results file."),
    model: list[str] = typer.Option([], "--model", "-m", help="Only this model's rows (repeatable); default: every "
                                                              "model in the file."),
    device: str = DeviceOpt,
    threads: Optional[int] = ThreadsOpt,
) -> None:
    """Measure stored rows again with today's metrics, from the text and vectors each row keeps; keys, steps and
    exactness stay as they ran."""
    from cramming import api
    from cramming.core.threads import use_threads
    from cramming.experiments.remeasure import models_in
    from cramming.experiments.remeasure import remeasure as remeasure_rows
    from cramming.files.database import Store

    if not db.is_file():
        raise CrammingError(f"no such results file: {db}")
    store = Store(db)
    stored = models_in(store)
    names = model or stored
    missing = sorted(set(names) - set(stored))
    if missing:
        raise CrammingError(f"no rows of {', '.join(missing)} in {db}")
    use_threads(threads)
    store.record_run(command_line())
    for name in names:
        done = remeasure_rows(store, api.as_model(name, device=device))
        print(f"{done.model}: {done.rows} row(s) measured again, information gain changed on {done.changed} "
              f"(by {done.mean_gain_change:+.1f} bits on the mean)")
    store.close()


@app.command()
def report(
    db: Path = typer.Option(Path("results.sqlite"), "--db", help="SQLite results file."),
    out: Path = typer.Option(Path("report"), "-o", "--out", help="Directory for index.html, report.md and PNGs."),
) -> None:
    """Write the paper's table and figures from stored results, beside the published numbers."""
    from cramming.reports.report import build_report  # matplotlib loads only when a report is asked for

    written = build_report(db, out)
    print(f"wrote {written.html} and {written.markdown} with {len(written.figures)} figures")


encoder_app = typer.Typer(no_args_is_help=True, help="Encoders: starts predicted from the text (recipe field "
                                                      "`encoder`).")
app.add_typer(encoder_app, name="encoder")


@encoder_app.command("train")
def encoder_train(
    model: str = ModelOpt,
    vectors: int = VectorsOpt,
    sources: str = typer.Option(",".join(Training.sources), "--sources",
                                help="Comma-separated text sources to train on."),
    lengths: str = typer.Option(",".join(map(str, Training.lengths)), "--lengths",
                                help="Comma-separated passage lengths (tokens)."),
    passages: int = typer.Option(Training.passages, "--passages", help="Passages per source and length."),
    max_steps: int = typer.Option(Training.max_steps, "--max-steps", help="Cramming budget per training passage."),
    layer: int = typer.Option(Training.layer, "--layer",
                              help="The hidden state the head reads: after this many blocks."),
    end_to_end: int = typer.Option(0, "--end-to-end-steps", help="Then train the head through the model on the "
                                                                 "cramming loss for this many steps (0: ridge only)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Encoder file (default: the cache, where the "
                                                                 "`encoder` recipe field finds it)."),
    device: str = DeviceOpt,
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: the cores not busy)."),
    quiet: bool = QuietOpt,
) -> None:
    """Train a model's encoder: cram training passages (resumable: rerun after a kill), then fit the head."""
    from cramming import api
    from cramming.core.threads import use_threads
    from cramming.experiments.encoder_training import train_encoder, training_store

    try:
        training = Training(sources=tuple(sources.split(",")), lengths=tuple(int(t) for t in lengths.split(",")),
                            passages=passages, max_steps=max_steps, layer=layer, end_to_end_steps=end_to_end)
    except ValueError:
        raise CrammingError(f"--lengths takes comma-separated numbers, got {lengths!r}") from None
    for source in training.sources:
        check_source(source, passages)
    use_threads(threads)
    lm = api.as_model(model, device=device)
    total = len(training.sources) * len(training.lengths) * passages
    with Reporter("training passages", quiet, total, transient=False) as reporter:
        def on_task(key, metrics) -> None:
            reporter.update(reporter.completed + 1, f"{key.source} L={key.length} #{key.sample}: "
                                                    f"{status_words(metrics)} in {int(metrics['steps'])} steps")

        def on_step(step: int, loss: float) -> None:
            reporter.update(step + 1, f"end to end: loss {loss:.3f}", total=end_to_end)

        encoder = train_encoder(lm, vectors, training, out=out, on_task=on_task, on_step=on_step)
    print(f"encoder for {lm.name}, {vectors} vector(s): {encoder.about['texts']} exact solutions, ridge alpha "
          f"{encoder.about['alpha']:g}; training passages in {training_store(lm, vectors)}", file=sys.stderr)


@app.command()
def models() -> None:
    """List the model aliases and whether each is ready offline."""
    table = Table()
    table.add_column("alias", overflow="fold")  # never cut: it is what --model takes
    table.add_column("status")
    table.add_column("model")
    for alias in ALIASES.values():
        synonyms = [old for old, name in SYNONYMS.items() if name == alias.name]
        table.add_row(alias.name + (" (default)" if alias.name == DEFAULT_MODEL else "")
                      + "".join(f"; also {old}" for old in synonyms), alias_status(alias), alias.description)
    show(table, "Any Hugging Face id or local model directory works too, where a network or a copy exists.")


def version_callback(value: bool) -> None:
    if value:
        print(f"cramming {__version__}")
        raise typer.Exit()


@app.callback()
def top(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                     help="Print the version and exit.")) -> None:
    """Cram texts into a few input vectors of a frozen language model, and decode them back."""


class OneLine(logging.Formatter):
    """The library's log records as the CLI's other messages: a warning says so, one line each."""

    def format(self, record: logging.LogRecord) -> str:
        return ("warning: " if record.levelno >= logging.WARNING else "") + record.getMessage()


def say_what_runs(quiet: bool) -> None:
    """The library's account of what a run is about to do (api.log) on stderr, unless --quiet; warnings always."""
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def main() -> None:
    # The hub client's retries and notices are not for our users; read when those libraries are first imported.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine())
    log.addHandler(handler)
    log.propagate = False
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as e:  # the parser's: one line, as for every other bad input
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError":  # `cram` or `cram encoder` alone: the help
            print(ctx.get_help())
            code = 0
        else:
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            print(f"error: {' '.join(e.format_message().split())}{where}", file=sys.stderr)
            code = EXIT_BAD_INPUT
    except CrammingError as e:
        print(f"error: {e}", file=sys.stderr)  # plain print: one line, never wrapped
        code = EXIT_BAD_INPUT
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    finally:
        log.removeHandler(handler)
        log.propagate = True
        log.setLevel(logging.NOTSET)
    if code == 130:
        print("interrupted", file=sys.stderr)
    if code:
        sys.exit(code)
