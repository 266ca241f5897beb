# One image for every role: `up` (default), `worker`, `watch`, `api`.
FROM python:3.11-slim-bookworm
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 OMP_THREAD_LIMIT=1 \
    SCANSTATION_DATA=/data SCANSTATION_INBOX=/inbox SCANSTATION_HOST=0.0.0.0
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-eng \
      ghostscript poppler-utils qpdf xorriso redis-server libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# The pinned dependencies first (their layer is kept until the lock changes), then the package alone.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY scanner_service ./scanner_service
COPY workers ./workers
COPY ocr_models ./ocr_models
RUN pip install --no-cache-dir --no-deps . && pip check
VOLUME ["/data", "/inbox"]
EXPOSE 8000
ENTRYPOINT ["scanstation"]
CMD ["up"]
