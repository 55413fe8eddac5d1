"""URLs shown without the secrets they carry: RPC providers put API keys in the path
(Alchemy `/v2/<key>`, Infura `/v3/<key>`, QuickNode, Ankr…), in the query (`?apikey=`,
`?key=`, `?token=`, dRPC's `dkey`) or in the userinfo. `mask_url` keeps what tells an operator
which endpoint it is — scheme, host, port, the path's plain words — and replaces the rest with
`***`; `mask_urls_in` does it for every URL inside a text (an error message, a log line).

Heuristic on purpose, and erring on the side of hiding: a path segment or query value is a
secret when it is long (16+ characters) or mixes letters and digits over 8+ characters; a
query value is one whatever it looks like when its name says so. Masking a masked URL changes
nothing, and a URL that does not parse is masked whole.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
_SECRET_NAME = re.compile(r"key|token|secret|pass|auth|sig|cred|session", re.IGNORECASE)
# A URL inside free text: scheme://, then anything up to a space, quote or bracket.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>()\[\]{}]+")


def looks_secret(value: str) -> bool:
    """Whether a path segment or query value may be a key (see the module docstring)."""
    if len(value) >= 16:
        return True
    if len(value) < 8:
        return False
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def mask_url(url: str) -> str:
    """`url` with its userinfo, key-like path segments, secret query values and fragment
    replaced by `***` (e.g. `https://eth-mainnet.g.alchemy.com/v2/***`)."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{netloc}"
    path = "/".join(MASK if looks_secret(unquote(s)) else s for s in parts.path.split("/"))
    query = "&".join(_mask_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme.lower(), netloc, path, query, MASK if parts.fragment else ""))


def _mask_pair(pair: str) -> str:
    name, eq, value = pair.partition("=")
    if not eq:
        return MASK if looks_secret(unquote(name)) else name
    if value and (_SECRET_NAME.search(name) or looks_secret(unquote(value))):
        return f"{name}={MASK}"
    return pair


def mask_urls_in(text: str) -> str:
    """`text` with every URL in it masked; cheap when there is none."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda match: mask_url(match.group(0)), text)
