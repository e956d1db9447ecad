"""The floor of an explanation over HTTP: a bare Starlette route calling our explainer.

No validation, sealing, logging, masking, trace store or drift context: JSON in, the
row encoded, `explain` on a worker thread (as the service runs it), JSON out, on the
same uvicorn (httptools, uvloop) as `whylens serve`. `bench/explain_latency.py` runs it
beside the service so the service's HTTP ratio can be read against what HTTP alone
costs on this machine at that minute.

Run: python -m bench.http_floor --model model.txt --train train.parquet --port N
"""

from __future__ import annotations

import argparse
import asyncio

import lightgbm as lgb
import numpy as np
import orjson
import pandas as pd
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from explainers.encoding import encode_frame
from explainers.lightgbm_model import infer_lightgbm_schema
from explainers.registry import build_explainable


def floor_app(model_path: str, train_path: str) -> Starlette:
    """Build the bare explain route over the benchmark model."""
    booster = lgb.Booster(model_file=model_path)
    frame = pd.read_parquet(train_path).drop(columns=["label"])
    schema = infer_lightgbm_schema(booster, frame)
    background = encode_frame(frame.head(100), schema)
    explainer = build_explainable("lightgbm", booster, schema, background=background).explainer
    names = [feature.name for feature in schema.features]

    async def explain(request: Request) -> Response:
        features = orjson.loads(await request.body())["features"]
        row = np.array([[features[name] for name in names]], dtype=np.float64)
        result = await asyncio.to_thread(explainer.explain, row)
        return Response(orjson.dumps({"base_value": result.base_values[0],
                                      "attributions": result.values[0]},
                                     option=orjson.OPT_SERIALIZE_NUMPY),
                        media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    return Starlette(routes=[Route("/v1/explain", explain, methods=["POST"]),
                             Route("/readyz", ready)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(floor_app(args.model, args.train), host="127.0.0.1", port=args.port,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
