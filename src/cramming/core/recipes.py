"""Recipes: initialization + optimizer + schedule + loss + stopping rule, as frozen dataclasses.

A named recipe never changes meaning: `default` is its latest version (`default@7`), and every earlier version
stays in REGISTRY with its settings and a description of its own, so a stored row's recipe is always a registry
entry plus the fields changed from it (`Recipe.base`, `Recipe.overrides`). Changing a named recipe means adding
a version. A recipe is changed from configuration, never by editing code: `recipe.override({"lr": 0.1})`, from
the command line `cram compress --set lr=0.1 --set period=800`, in a spec a `[recipes.NAME]` table with
`base = "cold"` and the fields to change. Every change is checked against the field's type and the recipe's
validity rules, and a bad one gets one line naming the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import types
import typing
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Sequence

from cramming.core.errors import CrammingError
from cramming.core.forms import parse_form


@dataclass(frozen=True)
class Recipe:
    """Initialization + optimizer + schedule + loss + stopping rule."""

    name: str
    lr: float
    betas: tuple[float, float] = (0.9, 0.9)
    weight_decay: float = 0.01
    init: Literal["embedding_std", "uniform"] = "embedding_std"
    init_scale: float = 1.0  # embedding_std: multiplies randn * std(embeddings); uniform: upper bound
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    final_lr: float = 0.0  # cosine only: the learning rate reached at the end of each period
    period: int | None = None  # cosine only: steps per cosine cycle, restarting at lr after each; None: max_steps
    period_mult: float = 1.0  # each cosine cycle this many times longer than the one before
    restart_decay: float = 1.0  # each cosine cycle starts at this fraction of the one before's peak lr
    # cosine with periods only: a sample whose accuracy has not risen within its period for this many steps starts
    # its next period now, on its own (the schedule runs per sample), instead of idling to the period's end
    stall: int | None = None
    grad_clip: float | None = None  # per-sample gradient-norm clip
    loss_margin: float | None = None  # a token whose logit leads every other by more than this leaves the loss
    wrong_weight: float = 1.0  # a token whose argmax is wrong weighs this many times a right one in the loss
    prefix_token: bool = False  # a fixed token (BOS, else EOS) before the vectors takes the attention sink's seat
    prior: bool = False  # add the model's prior (prior.py: the mean of the vectors crammed for a few passages)
    encoder: bool = False  # and the model's encoder's offset for each text (encoder.py: predicted from the text)
    max_steps: int = 5000
    # Give up on a sample whose best teacher-forced accuracy has not risen for this many steps (the paper's rule).
    patience: int | None = None
    # The model's compute type while cramming: auto = bf16 autocast on CUDA, float32 elsewhere (a vector file
    # records it resolved). Whatever it is, a sample counts as exact only when greedy decoding in float32
    # (decode.verify) gives its text back: bf16 here is a faster way to the same verified vectors.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # A sample is done only when every token of its greedy path leads the runner-up by at least this (vectors
    # that survive rounding, quantization, another dtype): cram compress --margin.
    required_margin: float = 0.0
    storage: str = "fp32"  # the form the vectors are crammed through and stored in (storage.py): --storage
    # How the text comes back: greedy decoding, token by token (the paper's), or one-step, one forward pass over
    # [text vectors ; T copies of the last vector], each copy's position predicting its own token (Mezentsev and
    # Oseledets, 2025): decode.py.
    decoder: Literal["greedy", "one-step"] = "greedy"
    # one-step only: the copied vector is the model's shared one (model/copy_vector.py: trained once on other texts,
    # frozen), so only the text's own vectors are crammed and stored: a file holds e alone.
    shared_copy: bool = False
    # Cram K coefficients in the model's shared basis instead of the vectors' n * d numbers (core/basis.py,
    # model/basis.py): a file stores those K; None: the vectors themselves.
    rank: int | None = None
    base: str | None = None  # the registry entry (name@version) this recipe is or was changed from; a label

    def __post_init__(self) -> None:
        # Checked here so that a bad recipe fails at once with one line, not after minutes of cramming.
        problems = [
            (not self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (not self.final_lr >= 0, f"final_lr must be >= 0, got {self.final_lr}"),
            (self.schedule not in ("constant", "cosine"),
             f"schedule must be constant or cosine, got {self.schedule!r}"),
            (self.init not in ("embedding_std", "uniform"),
             f"init must be embedding_std or uniform, got {self.init!r}"),
            (self.warmup_steps < 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.period is not None and self.period < 1, f"period must be >= 1, got {self.period}"),
            # Shrinking periods would end in 1-step cycles: no schedule, and lr_factor walking every step.
            (not self.period_mult >= 1, f"period_mult must be >= 1, got {self.period_mult}"),
            (not 0 < self.restart_decay <= 1, f"restart_decay must be in (0, 1], got {self.restart_decay}"),
            (self.stall is not None and not (self.stall >= 1 and self.schedule == "cosine" and self.period),
             f"stall must be >= 1 and needs a cosine schedule with a period, got {self.stall}"),
            (not self.wrong_weight > 0, f"wrong_weight must be > 0, got {self.wrong_weight}"),
            (self.grad_clip is not None and not self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}"),
            (self.max_steps < 0, f"max_steps must be >= 0, got {self.max_steps}"),
            (self.patience is not None and self.patience < 1, f"patience must be >= 1, got {self.patience}"),
            (self.prior and not self.prefix_token, "prior needs prefix_token: the prior is crammed with one"),
            (self.encoder and not self.prior, "encoder needs prior: its offsets are from the prior's start"),
            (self.precision not in ("auto", "fp32", "bf16"),
             f"precision must be auto, fp32 or bf16, got {self.precision!r}"),
            (not self.required_margin >= 0, f"required_margin must be >= 0, got {self.required_margin}"),
            (self.decoder not in ("greedy", "one-step"), f"decoder must be greedy or one-step, got {self.decoder!r}"),
            (self.shared_copy and self.decoder != "one-step", "shared_copy needs decoder one-step"),
            (self.rank is not None and self.rank < 1, f"rank must be >= 1, got {self.rank}"),
            (self.base is not None and self.base not in REGISTRY,
             f"base must be a registry entry (name@version), got {self.base!r}"),
        ]
        for bad, message in problems:
            if bad:
                raise CrammingError(f"recipe {self.name!r}: {message}")
        try:
            object.__setattr__(self, "storage", parse_form(str(self.storage)))
        except CrammingError as err:
            raise CrammingError(f"recipe {self.name!r}: {err}") from None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> Recipe:
        """A recipe from plain values (JSON, TOML), each checked against its field's type."""
        name = settings.get("name", "recipe")
        return cls(**_checked_fields(name, settings))

    def override(self, changes: dict[str, Any], name: str | None = None) -> Recipe:
        """This recipe with some fields changed, each checked against its type and the validity rules; named
        `name`, or by default this one's name followed by the changes (a label says what a thing is). It keeps
        its base, so what it is stays "a registry entry plus these changes"."""
        if "name" in changes or "base" in changes:
            raise CrammingError(f"recipe {self.name!r}: name and base are its labels, not settings")
        checked = _checked_fields(self.name, changes)
        label = name or "+".join([self.name] + [f"{k}={json.dumps(v)}" for k, v in changes.items()])
        return replace(self, name=label, **checked)

    def digest(self) -> str:
        """What ran, as a short hash: every setting, the step budget, the required margin, the storage form and
        the compute precision included, but not the name or the base, which are labels. Two recipes with the same
        settings are the same run whatever they are called. A field added after rows were stored counts only when
        it differs from its default, so those rows keep their keys; precision fp32 hashes as the "auto" of the rows
        stored before it was resolved, which all ran on CPUs, in float32. A renamed field hashes under its first
        name."""
        first_names = {new: old for old, new in _RENAMED.items()}
        settings = {first_names.get(k, k): v for k, v in self.to_dict().items()
                    if k not in ("name", "base") and not (k in _ADDED_LATER and v in _ADDED_LATER[k])}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def resolved(self, device: str) -> Recipe:
        """The recipe as it runs on a device kind (cuda, cpu, mps): precision auto becomes bf16 on CUDA, fp32
        elsewhere, so a key or a file never says "auto"."""
        if self.precision != "auto":
            return self
        return replace(self, precision="bf16" if device == "cuda" else "fp32")

    def overrides(self) -> dict[str, Any]:
        """The fields, the step budget aside, in which this recipe differs from its registry entry ({} for an
        entry itself, or a recipe of your own without one). A resolved precision is not a change from auto."""
        if self.base is None:
            return {}
        entry = replace(REGISTRY[self.base], max_steps=self.max_steps).to_dict()
        return {k: v for k, v in self.to_dict().items() if k not in ("name", "base") and v != entry[k]
                and not (k == "precision" and entry[k] == "auto" and v == "fp32")}

    def label(self) -> str:
        """What the recipe is, in a few words: its registry entry and the changes ("default@7", "default@6 with
        precision bf16"); a recipe of your own without one, its name. The name a spec gave it stays the row's."""
        if self.base is None:
            return self.name
        changed = self.overrides()
        return self.base + (f" with {', '.join(f'{k} {v}' for k, v in changed.items())}" if changed else "")

    def describe(self) -> str:
        """The label, and what the registry entry is in words."""
        return self.label() if self.base is None else f"{self.label()} ({DESCRIPTIONS[self.base]})"

    @property
    def bf16(self) -> bool | None:
        """precision.autocast's bf16 argument: None leaves it to the device."""
        return {"auto": None, "fp32": False, "bf16": True}[self.precision]

    def lr_factor(self, step: int) -> float:
        """Multiplier of lr at a step: linear warm-up, then constant, or cosine down to final_lr over the step
        budget (or over each `period`, restarting)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        if self.period:  # warm restarts: the cosine starts over after each period, the next period_mult times longer
            start, period, peak = self._cycle(step)
            progress = (step - start) / period
        else:
            progress, peak = min(1.0, (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps)), 1.0
        floor = self.final_lr / self.lr
        return floor + (max(peak, floor) - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def restarts(self, budget: int, early: Sequence[int] = ()) -> list[int]:
        """The steps before `budget` at which a sample's cosine periods began (none without periods): the
        schedule's, moved by the stall rule's `early` restarts (CramResult.restarts, a vector file's "restarts"),
        each of which starts the next period then and shifts the rest of the schedule, as the loop does."""
        if self.schedule != "cosine" or not self.period:
            return []
        out, shift, pending = [], 0, sorted(early)
        while True:
            scheduled = self.next_restart((out[-1] if out else 0) + shift) - shift  # in the loop's steps
            if pending and pending[0] <= scheduled:
                step = pending.pop(0)
                shift = self.next_restart(step + shift) - step
            else:
                step = scheduled
            if step >= budget:
                return out
            out.append(step)

    def next_restart(self, step: int) -> int:
        """The step at which the cosine period holding `step` ends and the next one starts (periods only)."""
        start, period, _ = self._cycle(max(step, self.warmup_steps))
        return start + period

    def _cycle(self, step: int) -> tuple[int, int, float]:
        """(first step, length, peak factor) of the cosine period holding a step at or after the warm-up."""
        start, period, peak = self.warmup_steps, self.period, 1.0
        while step >= start + period:
            start += period
            period = max(1, round(period * self.period_mult))
            peak *= self.restart_decay
        return start, period, peak


_HINTS = typing.get_type_hints(Recipe)
_ADDED_LATER = {"precision": ("auto", "fp32"), "restart_decay": (1.0,), "encoder": (False,), "stall": (None,),
                "wrong_weight": (1.0,), "required_margin": (0.0,), "storage": ("fp32",), "base": (None,),
                "decoder": ("greedy",), "shared_copy": (False,), "rank": (None,)}


# Fields renamed since rows were stored: stored settings, specs and --set still read the first name.
_RENAMED = {"margin": "loss_margin"}  # three margins, three names: loss_margin, required_margin, path_margin


def _checked_fields(recipe: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Settings by field name (a renamed field's first name read as today's), each value as its field takes it."""
    fields = {}
    for key, value in settings.items():
        key = _RENAMED.get(key, key)
        fields[key] = _checked(recipe, key, value)
    return fields


def _checked(recipe: str, key: str, value: Any) -> Any:
    """value as field `key` of a Recipe takes it, or a one-line error naming the field."""
    if key not in _HINTS:
        raise CrammingError(f"recipe {recipe!r}: no field {key!r}; the fields are: {', '.join(_HINTS)}")
    converted = _convert(value, _HINTS[key])
    if converted is _WRONG:
        raise CrammingError(f"recipe {recipe!r}: {key} takes {_describe(_HINTS[key])}, got {value!r}")
    return converted


_WRONG = object()


def _convert(value: Any, hint: Any) -> Any:
    """value as the type `hint` names (ints where floats go, lists where tuples go), or _WRONG."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return next((c for c in (_convert(value, a) for a in args) if c is not _WRONG), _WRONG)
    if hint is type(None):
        return None if value is None else _WRONG
    if origin is Literal:
        return value if value in args else _WRONG
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            return _WRONG
        items = [_convert(v, a) for v, a in zip(value, args)]
        return _WRONG if _WRONG in items else tuple(items)
    if isinstance(value, bool) or not isinstance(value, hint if hint is not float else (int, float)):
        return value if hint is bool and isinstance(value, bool) else _WRONG
    return float(value) if hint is float else value


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} numbers"
    return "null" if hint is type(None) else hint.__name__


def parse_setting(text: str) -> tuple[str, Any]:
    """FIELD=VALUE from a command line -> (field, value); the value is read as JSON (0.1, true, null, [0.9, 0.99])
    where it is JSON, else kept as a string (cosine)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise CrammingError(f"a recipe setting is FIELD=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw


REGISTRY: dict[str, Recipe] = {}  # name@version -> the recipe; entries are added, never changed or removed
DESCRIPTIONS: dict[str, str] = {}  # name@version -> what it is, in the words reports and README use


def _version(name: str, description: str, **settings: Any) -> Recipe:
    """Add the next version of a named recipe to the registry -> the entry."""
    version = 1 + sum(key.split("@")[0] == name for key in REGISTRY)
    key = f"{name}@{version}"
    REGISTRY[key] = entry = Recipe(name=key, base=None, **settings)
    object.__setattr__(entry, "base", key)  # checked against the registry, which holds it only now
    DESCRIPTIONS[key] = description
    return entry


# Kuratov et al. (2025): their optimizer, init, budget and stopping rule, on our objective. A recipe is "as
# published" only where it is.
_version("paper", "Kuratov et al.'s optimizer, init, 5000-step budget and patience rule, on our objective: the "
         "first token is predicted from the vectors (their code gives it as input), so the vectors decode alone",
         lr=1e-2, init="embedding_std", max_steps=5000, patience=2000)
_version("progressive", "Tarasov et al.'s Progressive Cramming optimizer, init and schedule, as published",
         lr=0.1, init="uniform", init_scale=0.02, schedule="cosine", warmup_steps=100, final_lr=1e-3, grad_clip=1.0,
         max_steps=5000)

# Ours, in the order the default changed (docs/notebook.md says why each step): each version's settings as it
# ran. One short-lived version put a token after the vectors, which today's loop has no field for; it is not
# kept (no stored row ran with it).
_DEFAULT_1 = dict(lr=5e-2, init="embedding_std", max_steps=5000)
_version("default", "ours, first: the paper's init and optimizer with a 5x larger step", **_DEFAULT_1)
_version("default", "the paper's init and optimizer with a 5x larger step, a BOS token before the vectors (the "
         "attention sink's seat)", **_DEFAULT_1, prefix_token=True)
_COSINE = dict(_DEFAULT_1, lr=0.3, schedule="cosine", final_lr=1e-3, period=600, prefix_token=True)
_version("default", "a prefix token, lr 0.3 cosine-decaying over periods of 600 steps", **_COSINE)
# Periods twice as long each time (600, 1200, 2400, ...: a short text finishes in the first, a long one gets the
# time to settle), and a loss that leaves out the tokens already right by 2 logits, spending the one vector on
# those still wrong.
_COLD = dict(_COSINE, period_mult=2.0, loss_margin=2.0)
_version("default", "a prefix token, lr 0.3 in cosine periods of 600, 1200, ... steps, and a loss without the "
         "tokens already right by 2 logits", **_COLD)
# From a random start, it needs no prior: for another model when the prior's one-time build costs too much.
_version("cold", "ours, from a random start: a prefix token, lr 0.3 in cosine periods of 600, 1200, ... steps, "
         "and a loss without the tokens already right by 2 logits (default@4)", **_COLD)
# Started from the model's prior (prior.py: the mean of the vectors crammed for 16 passages), in periods of
# 1000, 2000, ...: from the prior a long text keeps its lead through the first period, where a restart at step
# 600 threw it away.
_PRIOR = dict(_COLD, prior=True, period=1000)
_version("default", "cold started from the model's prior (its first build), "
         "periods of 1000, 2000, ... steps", **_PRIOR)
# No weight decay: at 30x the paper's step, AdamW's decay (lr * 0.01 of the vector per step) held 64-token
# solutions at norms ~55 where they settle at ~90.
_version("default", "cold started from the model's prior, periods of 1000, 2000, ... steps, no weight decay",
         **_PRIOR, weight_decay=0.0)
# A token whose argmax is wrong weighs 4 times a right one: the margin loss alone let a few wrong tokens sit for
# the rest of a cosine period, and at 64 tokens the weight pulled 9 of 10 held-out tuning passages into the
# first period (docs/notebook.md, "wrong_weight on the tuning set").
_version("default", "ours: cold started from the model's prior, periods of 1000, 2000, ... steps, no weight decay, "
         "wrong tokens weighing 4 times in the loss", **_PRIOR, weight_decay=0.0, wrong_weight=4.0)

# A name alone means its latest version.
RECIPES: dict[str, Recipe] = {key.split("@")[0]: entry for key, entry in REGISTRY.items()}


def stored(settings: dict[str, Any]) -> Recipe:
    """A recipe as a row or a file stored it. Rows stored before recipes had versions have no base: theirs is
    the registry entry whose settings are nearest theirs (the budget and the precision aside), among the
    versions of their own name where it is a registry name, the latest on a tie."""
    recipe = Recipe.from_dict(settings)  # a field added since takes its default: what ran
    if recipe.base is not None or "base" in settings:
        return recipe
    name = settings.get("name", "").split("+")[0]
    candidates = [k for k in REGISTRY if k.split("@")[0] == name] or list(REGISTRY)
    changes = {key: replace(recipe, base=key).overrides() for key in candidates}
    unresolved = lambda key: len([k for k in changes[key] if k != "precision"])  # noqa: E731
    return replace(recipe, base=min(reversed(candidates), key=unresolved))


def superseded(key: str) -> bool:
    """Whether a registry entry (name@version) is no longer its name's latest version."""
    return RECIPES[key.split("@")[0]].name != key


def get_recipe(name: str, settings: list[str] | None = None) -> Recipe:
    """The named recipe (its latest version) or a registry entry (name@version), with FIELD=VALUE settings (a
    command line's --set) applied and checked."""
    recipe = RECIPES.get(name) or REGISTRY.get(name)
    if recipe is None:
        raise CrammingError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)} (or a version of one: "
                            f"{', '.join(REGISTRY)})")
    return recipe.override(dict(map(parse_setting, settings))) if settings else recipe
