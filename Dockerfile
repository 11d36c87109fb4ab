# Two images from one file:
#   api    - the HTTP service (CPU only, no GPU packages): docker build --target api .
#   worker - a GPU worker with the vllm extra, on vLLM's own image (it pins torch/CUDA)
FROM python:3.11-slim AS source
WORKDIR /srv
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations

FROM python:3.11-slim AS api
WORKDIR /srv
COPY --from=source /srv /srv
RUN pip install --no-cache-dir -e . \
 && useradd --system --uid 10001 distillery
USER distillery
ENV DISTILLERY_HOST=0.0.0.0 DISTILLERY_PORT=8000 DISTILLERY_AUTH=true
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz')"
CMD ["distillery", "serve", "--no-migrate", "--no-worker"]

FROM vllm/vllm-openai:v0.33.0 AS worker
WORKDIR /srv
COPY --from=source /srv /srv
RUN pip install --no-cache-dir -e '.[vllm]'
ENV DISTILLERY_TEACHER__BACKEND=vllm
ENTRYPOINT []
CMD ["distillery", "worker"]
