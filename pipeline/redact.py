"""Mask credentials in URLs and free text before they reach logs, records or errors."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# scheme://user:password@host  ->  scheme://user:***@host ; also catches URLs inside longer text.
# The password runs to the LAST "@" before whitespace: a password typed with "@" or "/" that should
# have been percent-encoded (p@ss/w) is still masked whole. "host:port" is not taken for a login, so
# an "@" later in a path or query (rtsp://nvr:554/ch1@main) leaves the URL as it is. Not caught: a
# raw password holding whitespace, or starting with digits and then "/", and a "/" in a user name.
_URL_CRED = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/\s\[\]]*?):"
                       r"(?!\d{1,5}(?:[/?#\s]|$))(?P<pw>\S*)@")
# query parameters that commonly carry secrets
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|passwd|pwd|pass|passphrase|token|access_token|secret|key|auth|sig|signature)=)([^&\s#]+)")


_SECRETS: set[str] = set()       # values avgrid put into URLs itself (``${VAR}`` in a source), masked anywhere


def register_secret(value: str) -> None:
    """Mask ``value`` wherever :func:`redact` (in this process) meets it from now on."""
    if len(value) >= 4:         # shorter ones would mask ordinary text; URL positions still mask them
        _SECRETS.add(value)


def redact(text: str) -> str:
    """Return ``text`` with URL passwords and secret query parameters replaced by ``***``.

    >>> redact("rtsp://admin:hunter2@cam1:554/live?token=abc&x=1")
    'rtsp://admin:***@cam1:554/live?token=***&x=1'
    >>> redact("srt://cam2:9000?mode=caller&passphrase=0123456789ab&latency=200")
    'srt://cam2:9000?mode=caller&passphrase=***&latency=200'
    """
    if not text:
        return text
    for secret in _SECRETS:
        text = text.replace(secret, MASK)
    text = _URL_CRED.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{MASK}", text)


def strip_credentials(url: str) -> str:
    """Drop user info and secret query values entirely (for stream ids derived from URLs).

    >>> strip_credentials("rtsp://admin:hunter2@cam1:554/live")
    'rtsp://cam1:554/live'
    """
    m = _URL_CRED.match(url)
    if m:
        return redact(m["scheme"] + url[m.end():])
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if not parts.scheme or "@" not in parts.netloc:
        return redact(url)
    netloc = parts.netloc.rsplit("@", 1)[1]
    return redact(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))
