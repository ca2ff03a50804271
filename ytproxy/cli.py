"""`python app.py`: read the settings, set up logging, serve with uvicorn
(configured by `server.uvicorn_config`).

A bad setting, or a bad channels file, stops start-up with one line on stderr naming
the variable (or the file and the problem: missing, unreadable, not UTF-8, not TOML, or
the channel and field), and exit status 2; no traceback.

The garbage collector is tuned for a server (`tune_gc`): what exists once the app is
built is frozen out of the collections, and the youngest generation is collected
after `GC_THRESHOLD[0]` allocations instead of 700. Most of what a request allocates is
freed by reference counting; with the default the collections took about a fifth of
the CPU of a small download (measured as CPU time per request under `wrk`, averages
of three runs each: ~840 → ~640 µs). Reference cycles still go, a little later; but
what a download or a live segment makes is freed by reference counting alone (the
tests' `cycles_left_by_the_app`): with a cycle per request, the collections under
`wrk -c100` freed tens of thousands of objects at a time, in pauses of 36-50 ms that
every request in flight waited through.

The C allocator is tuned too (`tune_malloc`, glibc only): a relayed block (up to
`CHUNK_SIZE`, 256 KiB) is a fresh bytes object, and with glibc's defaults the heap was
given back to the kernel (trimmed past 128 KiB free) and grown again under load, so
the same pages were faulted in and zeroed over and over: 10-24 page faults per small
download under `wrk -c100` (the process's `minflt`). Keeping up to `MALLOC_TRIM`
(32 MiB) free at the top of the heap, with blocks under `MALLOC_MMAP` (4 MiB) taken
from it rather than mapped one by one, brought that under 0.5 (0.0 in `make bench`).
The memory stays in the process after a burst (at most `MALLOC_TRIM` above what is in
use); its peak is unchanged (`make bench` prints the faults and the peak).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys

import uvicorn

from .app import create_app
from .live.channels import ChannelsError, load_channels
from .logs import configure_logging
from .server import uvicorn_config
from .settings import Settings, SettingsError, load_environment
from .urlguard import is_loopback_host

log = logging.getLogger(__name__)

GC_THRESHOLD = (50_000, 20, 100)
MALLOC_TRIM = 32 * 1024 * 1024
MALLOC_MMAP = 4 * 1024 * 1024
# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def main() -> None:
    try:
        settings = Settings.from_env(load_environment())
    except SettingsError as exc:
        sys.stderr.write(f"ytproxy: invalid setting: {exc}\n")
        raise SystemExit(2) from None
    try:
        load_channels(settings.channels_file)
    except ChannelsError as exc:
        sys.stderr.write(f"ytproxy: invalid channels file: {exc}\n")
        raise SystemExit(2) from None
    configure_logging(settings)
    if settings.access_token is None and not is_loopback_host(settings.host):
        log.warning(
            "Listening on %s without ACCESS_TOKEN: anyone who can reach this port can use "
            "the gateway. Set ACCESS_TOKEN in .env.",
            settings.host,
        )
    app = create_app(settings)
    tune_gc()
    tune_malloc()
    uvicorn.Server(uvicorn_config(app, settings)).run()


def tune_gc() -> None:
    """See the module docstring."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def tune_malloc() -> bool:
    """See the module docstring; False where the C library is not glibc (nothing done)."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the process's own C library
    if mallopt is None:
        return False
    # Both set: setting either turns off glibc's own adjustment of the other.
    return bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP) and mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM))
