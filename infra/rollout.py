"""What the SeldonDeployment serves, decided from three stack settings, and what the stack outputs say about it.

    serving:modelTag       <export job ID> (pinned, today's behaviour) | latest (the newest export that passed the gate)
    serving:canaryTag      optional: <export job ID> | latest — a second predictor next to the main one
    serving:canaryTraffic  the canary's share in percent (1-99, default 10)

Canary: `pulumi config set serving:canaryTag <job>`. Promote: `pulumi config set serving:modelTag <job>` (a canary
that serves the same image as the main model is no canary: one predictor again). Drop:
`pulumi config rm serving:canaryTag`. Roll back: `pulumi config set serving:modelTag <previous job>`.

`latest` is resolved while the program runs (so `pulumi preview` shows the concrete image), through
`infra.model_source`. When pachd does not answer, the stack keeps what it deployed last: the program reads its own
previous `serving_models` output through a `pulumi.StackReference` to itself, and warns. We chose the stack's own
output over the alternatives because it is exactly what was last deployed, needs no cluster access during a preview
(reading the live SeldonDeployment would), and no extra resource whose outputs would be unknown during a preview (a
dynamic resource would).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pulumi

from infra.config import LATEST, ConfigError, RolloutConfig
from infra.model_source import PachdUnreachable, Selection, newest_exported_model
from infra.serving import CANARY_PREDICTOR, PREDICTOR
from pipelines.images import tagged

MAIN, CANARY = PREDICTOR, CANARY_PREDICTOR  # Seldon names their services <deployment>-<predictor>
OUTPUT = "serving_models"  # the stack output that records what is served, read back when pachd is unreachable
# --- resolution -------------------------------------------------------------------------------------------------------

Lookup = Callable[[str, str], Selection]


def _entry(predictor: str, image: str, job_id: str, source: str, **provenance: Any) -> dict[str, Any]:
    return {**provenance, "predictor": predictor, "image": image, "job_id": job_id, "source": source, "traffic": 100}


def _pinned(predictor: str, tag: str, image_repo: str) -> dict[str, Any]:
    return _entry(predictor, tagged(image_repo, tag), tag, f"pinned (serving:{_key(predictor)})")


def _key(predictor: str) -> str:
    return "canaryTag" if predictor == CANARY else "modelTag"


def _previous(previous: Any, predictor: str) -> dict[str, Any] | None:
    """This predictor's entry in the stack's last `serving_models` output (or the main model's, for a canary)."""
    entries = [e for e in (previous or []) if isinstance(e, dict) and isinstance(e.get("image"), str)]
    for wanted in (predictor, MAIN):
        for entry in entries:
            if entry.get("predictor") == wanted:
                return entry
    return None


def resolve(
    config: RolloutConfig,
    image_repo: str,
    pachd_address: str | None,
    previous: Any = None,
    lookup: Lookup | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """The predictors to serve, main first, each with its image, traffic share and provenance."""
    lookup = lookup or newest_exported_model
    warn = warn or pulumi.log.warn
    selection: Selection | None = None
    unreachable: str | None = None

    def pick(predictor: str, tag: str) -> dict[str, Any]:
        nonlocal selection, unreachable
        if tag != LATEST:
            return _pinned(predictor, tag, image_repo)
        if selection is None and unreachable is None:
            try:
                if pachd_address is None:
                    raise PachdUnreachable(
                        "the pachd address is not known yet (the Pachyderm load balancer has no address)"
                    )
                selection = lookup(pachd_address, image_repo)
                for refusal in selection.refused:
                    warn(f"not serving {refusal}")
            except PachdUnreachable as error:
                unreachable = str(error)
        if selection is not None and selection.model is not None:
            model = selection.model
            provenance = {k: v for k, v in model.provenance().items() if k != "job_id"}
            return _entry(
                predictor, model.image, model.job_id, f"latest export (serving:{_key(predictor)})", **provenance
            )
        last = _previous(previous, predictor)
        why = unreachable or "no export commit has passed the quality gate and verified yet" + (
            f" ({'; '.join(selection.refused)})" if selection and selection.refused else ""
        )
        if last is not None:
            warn(
                f"`serving:{_key(predictor)}` is `{LATEST}` but {why}: keeping the last deployed model {last['image']}"
            )
            return {
                **last,
                "predictor": predictor,
                "traffic": 100,
                "source": f"last deployed (kept: {'pachd unreachable' if unreachable else 'no newer export'})",
            }
        raise ConfigError(
            f"`serving:{_key(predictor)}` is `{LATEST}` but {why}, and this stack has deployed no model before. "
            f"Check pachd (`pachctl list commit {'export'}@master`), or pin a job ID: "
            f"`pulumi config set serving:{_key(predictor)} <export job ID>`"
        )

    if config.model is None:
        return []
    main = pick(MAIN, config.model)
    if config.canary is None:
        return [main]
    canary = pick(CANARY, config.canary)
    if canary["image"] == main["image"]:
        warn(
            f"the canary {canary['image']} is the main model now (promoted): remove the setting with "
            "`pulumi config rm serving:canaryTag`"
        )
        return [main]
    main["traffic"], canary["traffic"] = 100 - config.canary_traffic, config.canary_traffic
    return [main, canary]


def previous_models(opts: pulumi.ResourceOptions | None = None) -> pulumi.Output[Any]:
    """This stack's own last `serving_models` output (None before the first deployment).

    `get_output` keeps it plain unless that one output was secret (the whole `outputs` map is secret as soon as any
    output is, which would hide the image diff of the SeldonDeployment in the preview).
    """
    # <organization>/<project>/<stack>; a DIY (file/bucket) backend's organization is literally `organization`
    name = f"{pulumi.get_organization() or 'organization'}/{pulumi.get_project()}/{pulumi.get_stack()}"
    return pulumi.StackReference("serving-last-deployed", stack_name=name, opts=opts).get_output(OUTPUT)


def rollout_models(
    config: RolloutConfig,
    image_repo: str,
    pachd_address: pulumi.Input[str] | None,
    opts: pulumi.ResourceOptions | None = None,
    auth_token: pulumi.Input[str] | None = None,
) -> pulumi.Output[list[dict[str, Any]]]:
    """resolve() as an Output: pinned tags need nothing else; `latest` waits for the pachd address and the stack's
    previous output (read only then, so pinned stacks keep no reference to themselves).

    `auth_token` (pachd's root token, a secret) is only handed to the pachd client; the models it reads carry no
    part of it, so the result is not marked secret (a secret spec would hide the image diff of the preview)."""
    if not config.follows_pipeline:
        return pulumi.Output.from_input(resolve(config, image_repo, None))
    token = pulumi.Output.unsecret(pulumi.Output.from_input(auth_token))
    return pulumi.Output.all(pulumi.Output.from_input(pachd_address), previous_models(opts), token).apply(
        lambda values: resolve(
            config, image_repo, values[0], values[1], lookup=partial(newest_exported_model, auth_token=values[2])
        )
    )
