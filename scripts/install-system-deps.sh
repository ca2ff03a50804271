#!/usr/bin/env bash
# Install the Debian packages ytproxy needs, when they are missing.
#   run:  ffmpeg (merged video+audio downloads, the live slates) and a Chinese font
#         (fonts-wqy-microhei, the smallest) for the slate of a channel that is not live
#   test: the same, and redis-server, chromium (browser tests), prometheus (promtool),
#         VLC (cvlc, vlc-plugin-base for HLS: the player tests), xmltv-util
#         (tv_validate_file and the XMLTV DTD: the guide's tests);
#         the font also makes the browser tests and screenshots render the zh pages
#   bench: the same as test, and nginx-light and wrk (bench/compare.py's baseline and load)
# As root it uses apt-get; otherwise it says what to install and, for `run`, goes on.
set -euo pipefail
mode=${1:-run}
declare -A wanted=([ffmpeg]=ffmpeg [ffprobe]=ffmpeg)
if [[ $mode == bench ]]; then
  wanted+=([nginx]=nginx-light [wrk]=wrk [curl]=curl)
  PATH=$PATH:/usr/sbin
  mode=test
fi
if [[ $mode == test ]]; then
  wanted+=([redis-server]=redis-server [chromium]=chromium [promtool]=prometheus [cvlc]=vlc-bin)
  wanted+=([tv_validate_file]=xmltv-util)
fi
missing=()
for cmd in "${!wanted[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${wanted[$cmd]}")
done
if command -v dpkg-query >/dev/null 2>&1; then
  dpkg-query -W -f='${Status}' fonts-wqy-microhei 2>/dev/null | grep -q "ok installed" \
    || missing+=(fonts-wqy-microhei)
  if [[ $mode == test ]]; then
    dpkg-query -W -f='${Status}' vlc-plugin-base 2>/dev/null | grep -q "ok installed" \
      || missing+=(vlc-plugin-base)
  fi
fi
[[ ${#missing[@]} -eq 0 ]] && exit 0
packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian packages: $packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  # shellcheck disable=SC2086
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $packages >/dev/null
  # The prometheus package starts a server we do not want running.
  if [[ $packages == *prometheus* ]]; then
    (systemctl disable --now prometheus 2>/dev/null || service prometheus stop 2>/dev/null || true)
  fi
elif [[ $mode == test ]]; then
  echo "Missing: $packages — install them (e.g. sudo apt-get install $packages)" >&2
  exit 1
else
  echo "Note: $packages not found; merged video+audio downloads and live slates need" \
    "ffmpeg, and the slates' Chinese text a CJK font (fonts-wqy-microhei)." >&2
fi
