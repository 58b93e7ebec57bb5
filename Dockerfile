FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY devmetrics ./devmetrics
COPY shared ./shared
COPY services ./services
COPY migrations ./migrations
COPY gunicorn.conf.py Procfile ./
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e .
RUN useradd --create-home --uid 10001 devmetrics
USER devmetrics
EXPOSE 8001 8002 8003 8004
CMD ["gunicorn", "-c", "gunicorn.conf.py", "--bind", "0.0.0.0:8001", "services.accounts:create_app()"]
