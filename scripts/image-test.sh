#!/usr/bin/env bash
# `make image-test`: build the Dockerfile and check the image works, without Docker.
#
# No Docker engine runs here and Docker Hub is unreachable, so: buildah (which builds a
# Dockerfile with no container runtime, `--isolation chroot`) on a stand-in for the
# python:3.11-slim base made from Debian packages (scripts/standin-base-image.sh; see
# DEPLOYMENT.md for how it differs from the official image). Then, in the built image,
# as its non-root user, it starts the image's own CMD, checks /health is healthy (yt-dlp's
# version, deno and ffmpeg found), runs the image's HEALTHCHECK command, checks that no
# test or dev dependency is installed, and prints the image size and build time.
#
# Runs as root (buildah, debootstrap, apt-get). It does not test docker-compose.yml.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=localhost/ytproxy:image-test
export BUILDAH_ISOLATION=chroot

if [[ $(id -u) -ne 0 ]]; then
  echo "image-test: run as root (buildah and debootstrap need it)" >&2
  exit 1
fi
missing=()
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "image-test: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

base=$(bash scripts/standin-base-image.sh)
echo "image-test: base $base is a local STAND-IN built from Debian packages, not Docker Hub's"

started=$(date +%s)
# --format docker keeps HEALTHCHECK (the OCI format has no field for it); --pull=never
# makes the FROM lines use the stand-in in local storage.
# Where this machine reaches PyPI through a TLS-inspecting proxy, its CA bundle is
# mounted for the RUN steps only (it is not copied into the image).
build_volumes=()
bundle=/etc/ssl/certs/ca-certificates.crt
if [[ -s $bundle ]]; then
  build_volumes=(-v "$bundle:$bundle:ro")
fi
buildah bud --isolation chroot --format docker --pull=never --layers --quiet \
  "${build_volumes[@]}" -f Dockerfile -t "$TAG" . >/dev/null
build_seconds=$(($(date +%s) - started))

ctr=$(buildah from --pull=never "$TAG")
app_pid=
cleanup() {
  if [[ -n $app_pid ]]; then
    kill -TERM -- "-$app_pid" 2>/dev/null || true
    wait "$app_pid" 2>/dev/null || true
  fi
  buildah rm "$ctr" >/dev/null 2>&1 || true
  [[ -n ${log:-} ]] && rm -f "$log"
}
trap cleanup EXIT

# The image's own settings, from its Docker config: USER, CMD and HEALTHCHECK.
image_config() {
  buildah inspect --type image "$TAG" | python3 -c '
import json, sys
config = json.load(sys.stdin)["Docker"]["config"]
value = config.get(sys.argv[1])
print("\n".join(value) if isinstance(value, list) else (value or ""))' "$1"
}
user=$(image_config User)
mapfile -t cmd < <(image_config Cmd)
[[ -n $user && $user != root && $user != 0 ]] || { echo "image-test: image runs as root" >&2; exit 1; }
uid=$(buildah run --isolation chroot "$ctr" -- id -u "$user")
[[ $uid -ne 0 ]] || { echo "image-test: USER $user is uid 0" >&2; exit 1; }
echo "image-test: the app runs as USER $user (uid $uid)"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
# chroot isolation shares the host's network, so loopback reaches the app. The image's
# own CMD, as its own user, in its own process group so that cleanup stops all of it.
setsid buildah run --isolation chroot --user "$uid" \
  --env HOST=127.0.0.1 --env PORT="$port" "$ctr" -- "${cmd[@]}" >"$log" 2>&1 &
app_pid=$!

health=
for _ in $(seq 1 120); do
  if health=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())' \
    "http://127.0.0.1:$port/health" 2>/dev/null); then
    break
  fi
  if ! kill -0 "$app_pid" 2>/dev/null; then
    echo "image-test: the app exited:" >&2
    cat "$log" >&2
    exit 1
  fi
  health=
  sleep 0.5
done
[[ -n $health ]] || { echo "image-test: /health did not answer in 60 s" >&2; cat "$log" >&2; exit 1; }
echo "image-test: /health → $health"
python3 - "$health" <<'EOF'
import json, sys
body = json.loads(sys.argv[1])
components = body["components"]
problems = [
    what
    for what, ok in [
        ("status is not healthy", body["status"] == "healthy"),
        ("no yt-dlp version", bool(body.get("ytdlp_version"))),
        ("deno not found", components["js_runtime"].get("found")),
        ("ffmpeg not found", components["ffmpeg"].get("found")),
    ]
    if not ok
]
if problems:
    sys.exit("image-test: /health: " + ", ".join(problems))
print(
    f"image-test: healthy; yt-dlp {body['ytdlp_version']}, "
    f"deno {components['js_runtime'].get('version')}, ffmpeg {components['ffmpeg'].get('version')}"
)
EOF

# The HEALTHCHECK exactly as the image declares it (exec form: ["CMD", argv...]).
mapfile -t check < <(buildah inspect --type image "$TAG" | python3 -c '
import json, sys
test = (json.load(sys.stdin)["Docker"]["config"].get("Healthcheck") or {}).get("Test") or ["NONE"]
if test[0] != "CMD":
    sys.exit("image-test: HEALTHCHECK is missing or not in exec form: %r" % test)
print("\n".join(test[1:]))')
[[ ${#check[@]} -gt 0 ]] || exit 1
echo "image-test: HEALTHCHECK ${check[*]}"
set +e
check_output=$(buildah run --isolation chroot --user "$uid" --env PORT="$port" "$ctr" -- "${check[@]}" 2>&1)
check_status=$?
set -e
echo "image-test: HEALTHCHECK exit $check_status${check_output:+, output: $check_output}"
[[ $check_status -eq 0 ]] || exit 1

# Cookies uploaded from the browser go to DATA_DIR: the app's user must be able to write it.
buildah run --isolation chroot --user "$uid" "$ctr" -- sh -c \
    'test -n "$DATA_DIR" && test -d "$DATA_DIR" && test -w "$DATA_DIR"' \
    || { echo "image-test: DATA_DIR is not a directory the app's user can write"; exit 1; }
echo "image-test: DATA_DIR is writable by the app's user"

# No test or dev dependency: nothing only pyproject.toml's extras ask for, unless a
# runtime dependency needs it too (uvicorn[standard] brings PyYAML, say). The closure
# of the runtime requirements is worked out inside the image, from what is installed.
extras_only=$(python3 -c '
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
name = lambda r: re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower().replace("_", "-")
runtime = {name(r) for r in project["dependencies"]}
print(" ".join(sorted({name(r) for g in project["optional-dependencies"].values() for r in g} - runtime)))')
runtime_reqs=$(python3 -c '
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
buildah run --isolation chroot --user "$uid" "$ctr" -- python -c '
import sys
from importlib import metadata
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name as canon

installed = {canon(d.metadata["Name"]): d for d in metadata.distributions()}
needed, todo = set(), [(Requirement(r), ()) for r in sys.argv[2].splitlines()]
while todo:
    req, _ = todo.pop()
    key = canon(req.name)
    if key not in installed or (key, tuple(sorted(req.extras))) in needed:
        continue
    needed.add((key, tuple(sorted(req.extras))))
    for sub in installed[key].requires or []:
        sub_req = Requirement(sub)
        envs = [{"extra": e} for e in req.extras] or [{"extra": ""}]
        if sub_req.marker is None or any(sub_req.marker.evaluate(env) for env in envs):
            todo.append((sub_req, ()))
needed_names = {key for key, _ in needed}
forbidden = [canon(n) for n in sys.argv[1].split()]
found = sorted(n for n in forbidden if n in installed and n not in needed_names)
if found:
    sys.exit("image-test: test/dev dependencies in the image: " + ", ".join(found))
print(
    "image-test: %d Python packages, none only for tests or development (checked: %s)"
    % (len(installed), ", ".join(forbidden))
)' "$extras_only" "$runtime_reqs"

kill -TERM -- "-$app_pid" 2>/dev/null || true
wait "$app_pid" 2>/dev/null || true
app_pid=

size=$(buildah images --format '{{.Size}}' "$TAG")
echo "image-test: OK — $TAG, size $size, built in ${build_seconds}s (base: stand-in $base)"
