# ytproxy: the gateway in one image (see DEPLOYMENT.md; docker-compose.yml runs it).
#
# Python 3.11 slim (Debian), ffmpeg from Debian for merged downloads and the live
# slates, fonts-wqy-microhei for the slates' Chinese text (the smallest Debian font with
# Chinese glyphs, ~5 MB), and deno as yt-dlp's JavaScript runtime, which the
# `yt-dlp[default,deno]` dependency brings as a pip package (the binary lands in
# /opt/venv/bin, where yt-dlp looks first). It runs as an unprivileged user. No test or
# dev dependencies.
#
# The app runs from /app, with templates/, static/ and the locale files beside the
# package (they are not in the wheel), so the virtualenv holds the dependencies only.
# Updating yt-dlp means rebuilding without the cache:
#   docker compose build --pull --no-cache app && docker compose up -d

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml ./
# The runtime dependencies exactly as pyproject.toml lists them (not its extras), in a
# layer of their own so that a code change does not reinstall them.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && pip install -r requirements.txt \
 && deno --version

FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg fonts-wqy-microhei \
 && rm -rf /var/lib/apt/lists/*
ARG UID=10001
RUN useradd --system --uid "$UID" --user-group --create-home --home-dir /home/ytproxy \
    --shell /usr/sbin/nologin ytproxy
COPY --from=build /opt/venv /opt/venv
# HOST=0.0.0.0: inside a container loopback is unreachable from outside. deno keeps its
# cache in DENO_DIR, which must be writable by the app's user.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    DENO_DIR=/home/ytproxy/.cache/deno
WORKDIR /app
COPY app.py channels.toml ./
COPY ytproxy ./ytproxy
COPY templates ./templates
COPY static ./static
RUN python -m compileall -q ytproxy \
 && mkdir -p /app/data && chown ytproxy /app/data && chmod 0700 /app/data
# Cookies uploaded from the browser (/settings) are kept here; compose mounts a volume.
ENV DATA_DIR=/app/data
USER ytproxy
# Fail the build, rather than YouTube at run time, when yt-dlp cannot find the JS
# runtime or ffmpeg is missing; this is the same lookup /health and /diagnostics use.
RUN python -c "import yt_dlp; from yt_dlp.globals import supported_js_runtimes; info = supported_js_runtimes.value['deno']().info; assert info is not None and info.supported, 'yt-dlp finds no usable deno'; print('yt-dlp', yt_dlp.version.__version__, 'finds deno', info.version, 'at', info.path)" \
 && ffmpeg -hide_banner -version | head -n 1 \
 && test -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
EXPOSE 8000
# /health is open even with ACCESS_TOKEN set; python, because the image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["python", "app.py"]
