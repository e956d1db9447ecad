# whylens service image: slim Python, non-root, `whylens serve` as entrypoint.
FROM python:3.11-slim AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY service ./service
COPY explainers ./explainers
COPY storage ./storage
RUN python -m venv /opt/whylens && /opt/whylens/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --uid 10001 whylens
COPY --from=build /opt/whylens /opt/whylens
ENV PATH=/opt/whylens/bin:$PATH \
    WHYLENS_DATA_DIR=/var/lib/whylens \
    NUMBA_CACHE_DIR=/var/cache/whylens/numba \
    PYTHONUNBUFFERED=1
RUN mkdir -p /var/lib/whylens /var/cache/whylens/numba \
    && chown whylens /var/lib/whylens /var/cache/whylens/numba
USER whylens
# Compile the TreeSHAP kernels into numba's on-disk cache now (docs/treeshap.md); a host
# with another CPU model recompiles into the same writable directory at start-up.
RUN python -c "from explainers.registry import warm_up; warm_up()"
WORKDIR /home/whylens
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["whylens", "serve", "--host", "0.0.0.0", "--port", "8080"]
