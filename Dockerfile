# One image for every Stagger service; the command picks the service:
#   docker run stagger service config
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 stagger
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels stagger && rm -rf /wheels
USER stagger
WORKDIR /home/stagger
ENV STAGGER_HTTP_HOST=0.0.0.0 \
    STAGGER_VAR_DIR=/home/stagger/var \
    STAGGER_LOG_FORMAT=json
ENTRYPOINT ["stagger"]
CMD ["--help"]
