"""MLServer custom runtime: issue bodies in, generated titles out, over V2 and the Seldon v1 protocol.

How it sits in MLServer 1.7 (read in mlserver/server.py, batching/hooks.py, rest/server.py):
- On load, MLServer first registers the `@custom_handler` routes, then `load_batching` replaces the
  instance's `predict` with the adaptive batcher's entry point, and only then calls `load()`.
- The batcher merges concurrent requests into one `predict` call; if that call raises, *every* request in the
  batch gets the error. So `load()` puts a checker in front of the batcher: each request is validated on its
  own (a bad one gets its own 400/413) and only a clean, canonical request is queued for merging.
- The Seldon routes check their own format, then queue the same clean request, so v1 and V2 share model calls.
- The batcher's `predict` calls run on one model thread through `MergingModelThread`, which merges the batches
  that queue while the model is busy, so the batch window can stay short (see the class).
"""

import asyncio
import gc
import importlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from mlserver import MLModel
from mlserver.context import model_context
from mlserver.errors import MLServerError
from mlserver.handlers import custom_handler
from mlserver.types import InferenceRequest, InferenceResponse, MetadataModelResponse, Parameters
from mlserver.utils import get_model_uri

from issue_titles.contract import MODEL_CARD, MODEL_NAME

from . import observability
from .limits import ServingLimits
from .protocol import (
    PayloadTooLarge,
    bodies_from_seldon,
    bodies_from_v2,
    seldon_payload,
    seldon_response,
    titles_from_v2,
    v2_request,
    v2_response,
)

logger = logging.getLogger(__name__)


# A server only loads verified bundles: provenance.json present and every recorded sha256 matching.
DEFAULT_PREDICTOR_LOADER = "issue_titles.predictor:TitlePredictor.load_bundle"
WARM_UP_BODY = "warm up: compile the decoder before the first real request"


class Predictor(Protocol):
    def predict(self, bodies: list[str]) -> list[str]: ...


class ModelNotLoaded(MLServerError):
    def __init__(self) -> None:
        super().__init__("the model is still loading; retry when /v2/health/ready answers 200", status_code=503)


class PredictionFailed(MLServerError):
    def __init__(self) -> None:
        super().__init__("the model failed on this batch; see the server log", status_code=500)


def import_loader(spec: str) -> Callable[[Path], Predictor]:
    """`"package.module:Attr.attr"` -> the callable; how tests swap in a fake predictor."""
    module_name, _, attribute_path = spec.partition(":")
    if not module_name or not attribute_path:
        raise ValueError(f"predictor_loader must look like 'package.module:callable', got {spec!r}")
    target: Any = importlib.import_module(module_name)
    for part in attribute_path.split("."):
        target = getattr(target, part)
    return target


class IssueTitleRuntime(MLModel):
    """Loads the verified bundle at `parameters.uri` (`TitlePredictor.load_bundle`) and serves it (see module doc)."""

    _predictor: Predictor | None = None
    _limits: ServingLimits = ServingLimits()
    _data_plane: Any = None
    _provenance: Mapping[str, Any] = MappingProxyType({})  # until load() reads the bundle's; shared, so read-only
    _model_card: str | None = None

    def attach_data_plane(self, data_plane: Any) -> None:
        """The server's `DataPlane`: the Seldon routes infer through it, so MLServer counts and traces them."""
        self._data_plane = data_plane

    async def load(self) -> bool:
        extra = dict((self.settings.parameters.extra or {}) if self.settings.parameters else {})
        limit_names = {field.name for field in fields(ServingLimits)}
        self._limits = ServingLimits.from_env(**{k: v for k, v in extra.items() if k in limit_names})
        loader = import_loader(str(extra.get("predictor_loader") or DEFAULT_PREDICTOR_LOADER))
        model_dir = Path(await get_model_uri(self.settings))
        self._provenance = observability.read_provenance(model_dir)
        card = model_dir / MODEL_CARD
        self._model_card = card.read_text(encoding="utf-8") if card.is_file() else None

        # One model thread: batches queue up instead of fighting over the CPU cores, and the event loop stays
        # free to answer health checks and reject bad requests while a batch runs.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="issue-titles-model")
        self._model_thread = MergingModelThread(self._executor, self._limits.max_batch_bodies)
        loop = asyncio.get_running_loop()
        predictor = await loop.run_in_executor(self._executor, loader, model_dir)
        # Compile before the first request: TitlePredictor compiles each batch size it decodes with XLA (warm_up);
        # any other predictor gets one call.
        warm_up = getattr(predictor, "warm_up", None)
        if callable(warm_up):
            await loop.run_in_executor(self._executor, warm_up, WARM_UP_BODY)
        else:
            await loop.run_in_executor(self._executor, predictor.predict, [WARM_UP_BODY])
        self._predictor = predictor
        # TensorFlow, Keras and MLServer leave hundreds of thousands of long-lived Python objects: a full collection
        # walked them all, stalling every request for ~200 ms (p99 at 8x the p50 under load). Frozen, it skips them.
        gc.collect()
        gc.freeze()

        # Whatever MLServer installed as `predict` (the adaptive batcher, or the plain method when batching is
        # off) now sits behind the per-request checker.
        self._queue_for_model = self.predict
        self.predict = self._check_then_queue  # type: ignore[method-assign]
        logger.info("loaded issue-title model from %s (limits: %s)", model_dir, self._limits.as_dict())
        return True

    async def unload(self) -> bool:
        self._predictor = None
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        return True

    @property
    def limits(self) -> ServingLimits:
        return self._limits

    async def _check_then_queue(self, payload: InferenceRequest) -> InferenceResponse:
        """V2 entry point: reject this request alone if it is bad, else queue its clean copy for batching."""
        bodies = bodies_from_v2(payload, self._limits)
        observability.note_bodies(len(bodies))
        return await self._queue_for_model(v2_request(bodies, payload.id))

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """One model call for a (possibly merged) batch; inputs were checked per request already."""
        predictor = self._predictor
        if predictor is None:
            raise ModelNotLoaded()
        bodies = bodies_from_v2(payload, limits=None)
        titles = await self._model_thread.predict(predictor, bodies)
        return v2_response([str(title) for title in titles], self.name, self.version)

    async def _answer_seldon(self, request: Request) -> JSONResponse:
        if self._predictor is None:
            raise ModelNotLoaded()
        raw = await request.body()
        if len(raw) > self._limits.max_request_bytes:
            raise PayloadTooLarge(f"request has {len(raw)} bytes; at most {self._limits.max_request_bytes} are allowed")
        payload = seldon_payload(raw, request.headers.get("content-type"), request.scope.get("query_string", b""))
        bodies = bodies_from_seldon(payload, self._limits)
        observability.note_bodies(len(bodies))
        if self._data_plane is not None:
            # MLServer's own inference path, as for V2: model_infer_request_* with this model's name and version,
            # a trace span, the batcher's queue metrics (the checker in front of the batcher re-reads the bodies).
            response = await self._data_plane.infer(v2_request(bodies), self.name, self.version)
        else:
            # The batcher logs queue metrics labelled by model, which MLServer's V2 path sets up via this context.
            with model_context(self.settings):
                response = await self._queue_for_model(v2_request(bodies))
        return JSONResponse(seldon_response(titles_from_v2(response), request.headers.get("seldon-puid")))

    # MLServer keeps one route per decorated method, so each Seldon path gets its own small method.
    @custom_handler(rest_path="/api/v1.0/predictions")
    async def seldon_predictions(self, request: Request) -> JSONResponse:
        """The tutorial's external Seldon path, for calling the container directly."""
        return await self._answer_seldon(request)

    @custom_handler(rest_path="/api/v0.1/predictions")
    async def seldon_predictions_v01(self, request: Request) -> JSONResponse:
        """The path the tutorial's curl used (Seldon Core 0.x)."""
        return await self._answer_seldon(request)

    @custom_handler(rest_path="/predict")
    async def seldon_executor_predict(self, request: Request) -> JSONResponse:
        """Where Seldon Core 1.17's executor POSTs the unchanged request body for protocol "seldon"."""
        return await self._answer_seldon(request)

    async def metadata(self) -> MetadataModelResponse:
        """V2 model metadata from the bundle: versions = [job ID], platform, tensors (from the model settings), and
        `parameters` with what built it: job, pipeline, data commits, code, decoding, metrics, quality gate."""
        response = await super().metadata()
        response.parameters = Parameters(**bundle_parameters(self._provenance))
        return response

    async def _seldon_model_metadata(self) -> dict[str, Any]:
        v2 = (await self.metadata()).model_dump(exclude_none=True, mode="json")
        return {
            "name": v2["name"],
            "versions": v2.get("versions", []),
            "platform": v2.get("platform", ""),
            "inputs": v2.get("inputs", []),
            "outputs": v2.get("outputs", []),
            # Seldon Core 1.x keeps `custom` a string-to-string map (SeldonModelMetadata in prediction.proto).
            "custom": seldon_custom(self._provenance),
        }

    @custom_handler(rest_path=f"/api/v1.0/metadata/{MODEL_NAME}", rest_method="GET")
    async def seldon_model_metadata(self) -> JSONResponse:
        """Seldon Core 1 model metadata: `GET /api/v1.0/metadata/<model>` (what the executor answers for a model)."""
        return JSONResponse(await self._seldon_model_metadata())

    @custom_handler(rest_path="/metadata", rest_method="GET")
    async def seldon_microservice_metadata(self) -> JSONResponse:
        """The microservice's own `/metadata`, which Seldon Core 1's executor reads for a model's metadata."""
        return JSONResponse(await self._seldon_model_metadata())

    @custom_handler(rest_path="/api/v1.0/metadata", rest_method="GET")
    async def seldon_graph_metadata(self) -> JSONResponse:
        """Seldon Core 1 graph metadata: the deployment's one model, its inputs as the graph's inputs."""
        model = await self._seldon_model_metadata()
        return JSONResponse(
            {
                "name": self.name,
                "models": {self.name: model},
                "graphinputs": model["inputs"],
                "graphoutputs": model["outputs"],
            }
        )

    @custom_handler(rest_path=f"/v2/models/{MODEL_NAME}/model-card", rest_method="GET")
    async def model_card(self) -> Response:
        """The bundle's MODEL_CARD.md (Markdown), written by `stages build`."""
        if self._model_card is None:
            return JSONResponse({"error": "this bundle has no MODEL_CARD.md; rebuild it with `stages build`"}, 404)
        return PlainTextResponse(self._model_card, media_type="text/markdown; charset=utf-8")

    @custom_handler(rest_path="/health/status", rest_method="GET")
    async def seldon_executor_status(self) -> JSONResponse:
        """Where the executor's `/api/v1.0/status/<model>` lands; 200 only once the model is loaded."""
        if self._predictor is None:
            raise ModelNotLoaded()
        return JSONResponse({"status": "ready", "model": self.name})


def bundle_parameters(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """What the V2 metadata's `parameters` says about the bundle, from its provenance.json."""
    keys = ("job_id", "pipeline", "output_commit", "inputs", "code", "architecture", "decoding", "metrics",
            "quality_gate", "built_at", "bundle_format")  # fmt: skip
    found = {key: provenance[key] for key in keys if provenance.get(key) is not None}
    return {"content_type": "str", **found, "model_card": f"/v2/models/{MODEL_NAME}/model-card"}


def seldon_custom(provenance: Mapping[str, Any]) -> dict[str, str]:
    """Seldon's `custom` map (strings only): job, commits per input, the headline ROUGE-L numbers."""
    custom: dict[str, str] = {}
    for key in ("job_id", "pipeline", "output_commit", "built_at"):
        if provenance.get(key):
            custom[key] = str(provenance[key])
    for name, source in (provenance.get("inputs") or {}).items():
        if isinstance(source, dict) and source.get("commit"):
            custom[f"input_commit.{name}"] = str(source["commit"])
    metrics = provenance.get("metrics") or {}
    for where, record in (("test", metrics.get("model")), ("heldout", (metrics.get("heldout") or {}).get("model"))):
        if isinstance(record, dict) and "rouge_l" in record:
            custom[f"rouge_l.{where}"] = f"{record['rouge_l']:.4f}"
    custom["model_card"] = f"/v2/models/{MODEL_NAME}/model-card"
    return custom


class MergingModelThread:
    """Runs model calls on the one model thread; batches that queue while it is busy go in together as one call.

    MLServer's adaptive batcher (1.7, batching/adaptive.py) closes a batch `max_batch_time` after its first
    request and hands it over even while the previous batch is still running. A long window makes a lone request
    wait for company that never comes; a short one, without this, splits a burst into small batches that queue
    behind each other. Merging what waits behind the busy model keeps batching under load with a short window.
    A merged call holds whole batches up to `max_bodies` (at least one batch), so one huge call cannot build up.
    """

    def __init__(self, executor: ThreadPoolExecutor, max_bodies: int) -> None:
        self._executor = executor
        self._max_bodies = max_bodies
        self._waiting: deque[tuple[list[str], asyncio.Future[list[str]]]] = deque()
        self._busy = False
        self._drainer: asyncio.Task[None] | None = None  # held: the event loop keeps only a weak reference

    async def predict(self, predictor: Predictor, bodies: list[str]) -> list[str]:
        """Titles for `bodies`, in order; raises `PredictionFailed` if the model call they were part of failed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[str]] = loop.create_future()
        self._waiting.append((bodies, future))
        if not self._busy:
            self._busy = True
            self._drainer = loop.create_task(self._drain(predictor))
        return await future

    def _next_group(self) -> list[tuple[list[str], asyncio.Future[list[str]]]]:
        group = [self._waiting.popleft()]
        size = len(group[0][0])
        while self._waiting and size + len(self._waiting[0][0]) <= self._max_bodies:
            size += len(self._waiting[0][0])
            group.append(self._waiting.popleft())
        return group

    async def _drain(self, predictor: Predictor) -> None:
        loop = asyncio.get_running_loop()
        group: list[tuple[list[str], asyncio.Future[list[str]]]] = []
        try:
            while self._waiting:
                group = self._next_group()
                merged = [body for bodies, _ in group for body in bodies]
                try:
                    titles = await loop.run_in_executor(self._executor, predictor.predict, merged)
                except Exception:
                    logger.exception("prediction failed for a batch of %d bodies", len(merged))
                    _fail(group)
                    continue
                if len(titles) != len(merged):
                    logger.error("predictor returned %d titles for %d bodies", len(titles), len(merged))
                    _fail(group)
                    continue
                start = 0
                for bodies, future in group:
                    if not future.done():
                        future.set_result([str(title) for title in titles[start : start + len(bodies)]])
                    start += len(bodies)
                group = []
        finally:  # cancelled (server shutting down): nobody may wait forever
            _fail(group + list(self._waiting))
            self._waiting.clear()
            self._busy = False


def _fail(group: list[tuple[list[str], "asyncio.Future[list[str]]"]]) -> None:
    for _, future in group:
        if not future.done():
            future.set_exception(PredictionFailed())
