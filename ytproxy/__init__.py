"""ytproxy: a private, self-hosted YouTube gateway.

Two jobs share one process: ``ytproxy.live`` turns YouTube live channels into an
IPTV playlist whose streams are relayed through the gateway, and ``ytproxy.analyse``
plus ``ytproxy.download`` take any video URL, list its formats and stream the chosen
one to the user. The modules at this level are what both jobs share.
"""

from __future__ import annotations

__version__ = "0.1.0"
