"""Training that updates: warm-start from the previous model and fine-tune on the new rows plus a replay sample.

`stages train --input PRE_PROCESS --vocabulary VOCAB --output OUT` assembles the encoded shards (each row once, the
first shard by name wins), then decides:

- **update** when a previous model exists (`issue_titles.previous`: this pipeline's previous output commit), it was
  trained with the same vocabulary files (byte for byte) and the same training settings, and `--full` is not given:
  the weights start from the previous model's and fine-tune for `UpdateSettings.epochs` epoch(s) at a reduced
  learning rate on the rows the previous model never trained on plus a seeded replay sample of the others
  (`replay_factor` x the new rows, at least `min_replay`), so the model does not forget the old data;
- **full** otherwise (first run, vocabulary drift, a changed setting, `--full`, `UpdateSettings.max_updates` updates
  in a row since the last full training), and as a fallback when the previous
  weights do not fit the model (a shape mismatch): the reason is printed and recorded.

The output adds `lineage.json` (mode, reason, the commit and weights it started from, and the chain of updates back
to the last full training) and `trained_keys.json` (the rows the model has seen, so the next update knows which are
new); model.json carries the lineage too, so build's provenance names the model it started from.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from issue_titles.contract import BODY_VOCAB, MODEL_INFO, PREPROCESS, TITLE_VOCAB, WEIGHTS_FILE
from issue_titles.errors import StageError
from issue_titles.jsonio import read_json, write_json
from issue_titles.preprocess import ARRAYS
from issue_titles.previous import previous_output
from issue_titles.shards import shard_dirs
from issue_titles.vocabulary import read_text_config, vocab_dir

if TYPE_CHECKING:  # train imports Keras; this module imports it only when it trains
    from issue_titles.train import TrainSettings

LINEAGE = "lineage.json"
TRAINED_KEYS = "trained_keys.json"
FINGERPRINT_EXCLUDES = ("verbose", "max_minutes")


@dataclass(frozen=True)
class UpdateSettings:
    """How an update fine-tunes. The step is small on purpose: a full training ends its cosine schedule at a step
    size of zero and saves a moving average of its weights, and an update's fresh Adam moves every weight by about
    its learning rate per step, whatever the gradient. On the full data (76,923 rows, one 1% update of 24 steps from
    the same base model) the held-out ROUGE-L moved by -0.0006, -0.0012, -0.0027 and -0.0059 at a scale of 0.05,
    0.1, 0.2 and 0.5 (bench/results.md, "Update step size")."""

    full: bool = False
    epochs: int = 1
    learning_rate_scale: float = 0.1
    replay_factor: float = 4.0
    min_replay: int = 1000
    # Successive updates drift slowly down (about -0.0007 held-out ROUGE-L each on the full data, -0.0053 after ten:
    # bench/results.md): after this many updates in a row the next training is a full one, which resets the chain.
    max_updates: int = 10

    def __post_init__(self) -> None:
        if (
            self.epochs < 1
            or not 0 < self.learning_rate_scale <= 1
            or self.replay_factor < 0
            or self.min_replay < 0
            or self.max_updates < 1
        ):
            raise StageError(
                "update settings out of range: --update-epochs >= 1, 0 < --update-lr-scale <= 1, "
                "--replay-factor >= 0, --min-replay >= 0, --max-updates >= 1"
            )


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assemble(pre_dir: Path, vocabulary: Path, target: Path) -> list[str]:
    """Write the flat pre_process layout `stages train` reads into `target`; return the row keys in order."""
    shards = shard_dirs(pre_dir, "keys.json")
    if not shards:
        raise StageError("no encoded shard (a folder holding keys.json) in the input", path=pre_dir)
    config = read_text_config(vocabulary)
    seen: set[str] = set()
    keys: list[str] = []
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ARRAYS}
    grams: list[np.ndarray] = []
    repeated = 0
    for shard in shards:
        shard_keys = read_json(shard / "keys.json")
        keep = []
        for index, key in enumerate(shard_keys):
            if key in seen:
                repeated += 1
                continue
            seen.add(key)
            keep.append(index)
            keys.append(key)
        for name in ARRAYS:
            array = np.load(shard / f"{name}.npy", allow_pickle=False)
            if array.shape[0] != len(shard_keys):
                raise StageError(f"{name}.npy has {array.shape[0]} rows, keys.json {len(shard_keys)}", path=shard)
            parts[name].append(array[keep])
        if config.trigrams_per_token:
            grams.append(np.load(shard / "train_body_grams.npy", allow_pickle=False)[keep])
    target.mkdir(parents=True, exist_ok=True)
    for name, arrays in parts.items():
        np.save(target / f"{name}.npy", np.concatenate(arrays).astype(np.int32), allow_pickle=False)
    if grams:
        np.save(target / "train_body_grams.npy", np.concatenate(grams), allow_pickle=False)
    folder = vocab_dir(vocabulary)
    for name in (BODY_VOCAB, TITLE_VOCAB):
        (target / name).write_bytes((folder / name).read_bytes())
    write_json(
        target / PREPROCESS,
        config.as_dict() | {"rows": len(keys), "repeated_across_files": repeated, "shards": len(shards)},
    )
    return keys


def subset(source: Path, target: Path, rows: np.ndarray) -> None:
    """The assembled folder restricted to `rows` (sorted indices)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.suffix == ".npy":
            np.save(target / path.name, np.load(path, allow_pickle=False)[rows], allow_pickle=False)
        elif path.name == PREPROCESS:
            write_json(target / path.name, read_json(path) | {"rows": len(rows)})
        else:
            (target / path.name).write_bytes(path.read_bytes())


def fingerprint(settings: TrainSettings) -> dict:
    return {key: value for key, value in asdict(settings.resolved()).items() if key not in FINGERPRINT_EXCLUDES}


def decide(previous: Path | None, flat: Path, settings: TrainSettings, update: UpdateSettings) -> tuple[str, str]:
    """('update' | 'full', why)."""
    if update.full:
        return "full", "a full training was asked for (--full)"
    if previous is None or not (previous / MODEL_INFO).is_file():
        return "full", "no previous model"
    if not (previous / TRAINED_KEYS).is_file():
        return "full", "the previous model records no trained rows (it was not trained by this step)"
    for name in (BODY_VOCAB, TITLE_VOCAB):
        if not (previous / name).is_file() or sha256_file(previous / name) != sha256_file(flat / name):
            return (
                "full",
                f"the vocabulary changed ({name} differs from the previous model's: drift past the threshold)",
            )
    previous_lineage = read_json(previous / LINEAGE) if (previous / LINEAGE).is_file() else {}
    if previous_lineage.get("settings") != fingerprint(settings):
        return "full", "a training setting changed since the previous model"
    updates = int(previous_lineage.get("updates_since_full") or 0)
    if updates >= update.max_updates:
        return "full", f"{updates} updates in a row since the last full training (--max-updates {update.max_updates})"
    return "update", "same vocabulary and settings as the previous model"


@dataclass
class UpdatePlan:
    """Which assembled rows an update fits and validates on, and what it leaves for the next update."""

    fit: np.ndarray  # row indices, sorted
    validate: np.ndarray  # row indices, sorted: fitted by no model of the chain
    new_rows: int
    replay_rows: int
    trained_keys: list[str]
    validation_keys: list[str]


def full_plan(keys: list[str], validation_split: float) -> tuple[list[str], list[str]]:
    """(fitted keys, validation keys) of a full training: Keras' validation_split holds out the last rows."""
    cut = int(len(keys) * (1.0 - validation_split))
    return keys[:cut], keys[cut:]


def plan_update(
    keys: list[str], trained: set[str], validation: set[str], update: UpdateSettings, seed: int, validation_split: float
) -> UpdatePlan:
    """New rows are those no model of the chain saw; a seeded `validation_split` of them joins the chain's
    validation rows (never fitted, so build chooses the decoding on rows the model did not learn); the rest are
    fitted together with a replay sample of the rows fitted before."""
    from issue_titles.shards import unit_hash

    new = [i for i, key in enumerate(keys) if key not in trained and key not in validation]
    new_validation = [i for i in new if unit_hash(keys[i], "validation", seed) < validation_split]
    held = set(new_validation)
    new_fit = [i for i in new if i not in held]
    old = np.array([i for i, key in enumerate(keys) if key in trained], dtype=np.int64)
    want = min(len(old), max(round(update.replay_factor * len(new_fit)), update.min_replay))
    rng = np.random.default_rng([seed, len(keys)])
    replay = np.sort(rng.choice(old, size=want, replace=False)) if want else np.zeros(0, dtype=np.int64)
    fit = np.sort(np.concatenate([np.array(new_fit, dtype=np.int64), replay]))
    validate = np.array(sorted([i for i, key in enumerate(keys) if key in validation] + new_validation), dtype=np.int64)
    fitted = trained | {keys[i] for i in new_fit}
    return UpdatePlan(
        fit, validate, len(new_fit), len(replay), [k for k in keys if k in fitted], [keys[i] for i in validate]
    )


def run_train_incremental(
    pre_dir: Path,
    vocabulary: Path,
    output_dir: Path,
    settings: TrainSettings,
    update: UpdateSettings,
    previous_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> dict:
    from issue_titles.train import run_train

    env = os.environ if env is None else env
    with tempfile.TemporaryDirectory(prefix="train-assembly-") as scratch_name:
        scratch = Path(scratch_name)
        flat = scratch / "all"
        keys = assemble(pre_dir, vocabulary, flat)
        previous, previous_commit = (previous_dir, None) if previous_dir else previous_output(scratch / "previous", env)
        mode, reason = decide(previous, flat, settings, update)
        lineage: dict[str, Any] = {
            "mode": mode,
            "reason": reason,
            "commit": env.get("PACH_OUTPUT_COMMIT_ID"),
            "settings": fingerprint(settings),
            "rows": len(keys),
            "vocabulary_sha256": sha256_file(flat / BODY_VOCAB)[:16] + sha256_file(flat / TITLE_VOCAB)[:16],
        }
        if mode == "update":
            assert previous is not None
            old_lineage = read_json(previous / LINEAGE)
            previous_info = read_json(previous / MODEL_INFO)
            resolved = settings.resolved()
            plan = plan_update(
                keys,
                set(read_json(previous / TRAINED_KEYS)),
                set(previous_info.get("validation_row_keys") or []),
                update,
                settings.seed,
                resolved.validation_split,
            )
            started_from = {
                "commit": previous_commit or old_lineage.get("commit"),
                "mode": old_lineage.get("mode"),
                "weights_sha256": sha256_file(previous / WEIGHTS_FILE),
            }
            chain = [] if old_lineage.get("mode") == "full" else list(old_lineage.get("chain", []))
            lineage |= {
                "started_from": started_from,
                "chain": [*chain, started_from],
                "new_rows": plan.new_rows,
                "replay_rows": plan.replay_rows,
                "validation_rows": len(plan.validate),
                "updates_since_full": len(chain) + 1,
            }
            # Keras watches the loss on a sample of the chain's validation rows, as many as its validation_split
            # would hold out of the fitted rows; build chooses the decoding on all of them (validation_row_keys).
            watch = min(
                len(plan.validate),
                max(1, round(len(plan.fit) * resolved.validation_split / (1.0 - resolved.validation_split))),
            )
            rng = np.random.default_rng([settings.seed, len(keys), 1])
            watched = (
                np.sort(rng.choice(plan.validate, size=watch, replace=False)) if len(plan.validate) else plan.fit[-1:]
            )
            part = scratch / "update"
            subset(flat, part, np.concatenate([plan.fit, watched]))
            total = len(plan.fit) + len(watched)
            tuned = replace(
                settings,
                epochs=update.epochs,
                validation_split=(len(watched) - 0.5) / total,
                learning_rate=resolved.learning_rate * update.learning_rate_scale,
            )
            write_json(scratch / LINEAGE, lineage)
            write_json(scratch / TRAINED_KEYS, plan.trained_keys)
            try:
                info = run_train(
                    part,
                    output_dir,
                    tuned,
                    initial_weights=previous / WEIGHTS_FILE,
                    extra_info={"lineage": lineage, "validation_row_keys": plan.validation_keys},
                    extra_files={LINEAGE: scratch / LINEAGE, TRAINED_KEYS: scratch / TRAINED_KEYS},
                )
                print(
                    f"stages train: warm-started from the previous model ({plan.new_rows} new rows, "
                    f"{plan.replay_rows} replayed)",
                    file=sys.stderr,
                )
                return info
            except ValueError as error:
                note = (
                    f"warm start refused: the previous model's weights do not fit this model ({error}); "
                    "falling back to a full training"
                )
                print(f"stages train: {note}", file=sys.stderr)
                lineage = {
                    key: value
                    for key, value in lineage.items()
                    if key
                    not in ("started_from", "chain", "new_rows", "replay_rows", "validation_rows", "updates_since_full")
                }
                lineage |= {"mode": "full", "reason": note}
        fitted, validation = full_plan(keys, settings.resolved().validation_split)
        write_json(scratch / TRAINED_KEYS, fitted)
        write_json(scratch / LINEAGE, lineage)
        return run_train(
            flat,
            output_dir,
            settings,
            extra_info={"lineage": lineage, "validation_row_keys": validation},
            extra_files={LINEAGE: scratch / LINEAGE, TRAINED_KEYS: scratch / TRAINED_KEYS},
        )
