"""Mask credentials in URLs and free text before they reach logs, records or errors.

:func:`redact` masks URL passwords, secret query parameters and values registered with
:func:`register_secret`; :class:`SecretFilter` masks given secrets in the log records of other
libraries (kafka-python logs its configuration and SASL bytes at DEBUG; see :func:`guard_loggers`);
:func:`print_exc` / :func:`format_exc` print a traceback through :func:`redact`.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from typing import Iterable
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


class SecretFilter(logging.Filter):
    """A log filter that masks a record's message and the text of its traceback (``exc_info``): the
    ``secrets`` it was given, and with ``urls`` everything :func:`redact` masks (URL passwords,
    secret query values, registered secrets). Filters do not inherit: :func:`guard_loggers` puts one
    on a logger and all its existing children."""

    def __init__(self, urls: bool = False):
        super().__init__()
        self.secrets: set[str] = set()
        self.urls = urls

    def _mask(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, MASK)
        return redact(text) if self.urls else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets or self.urls:
            msg = record.getMessage()
            masked = self._mask(msg)
            if masked != msg:
                record.msg, record.args = masked, None
            if record.exc_info and not record.exc_text:
                record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            if record.exc_text:
                record.exc_text = self._mask(record.exc_text)
        return True


LOG_FILTER = SecretFilter()     # other libraries' loggers (guard_loggers): every guarded logger shares its secrets
URL_FILTER = SecretFilter(urls=True)    # avgrid's loggers that log tracebacks (masked_logger)


def masked_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with :data:`URL_FILTER` on it: its messages and the tracebacks it logs
    (``log.exception``) go through :func:`redact`."""
    logger = logging.getLogger(name)
    if URL_FILTER not in logger.filters:
        logger.addFilter(URL_FILTER)
    return logger


def guard_loggers(prefix: str, secrets: Iterable[str]) -> None:
    """Mask ``secrets`` in every record of logger ``prefix`` and of each ``prefix.*`` logger that exists
    now (call again after a library created more, e.g. kafka-python's per-connection loggers)."""
    LOG_FILTER.secrets.update(s for s in secrets if s)
    for name in [prefix] + list(logging.root.manager.loggerDict):
        if name == prefix or name.startswith(prefix + "."):
            logger = logging.getLogger(name)
            if LOG_FILTER not in logger.filters:
                logger.addFilter(LOG_FILTER)


def format_exc() -> str:
    """The traceback of the exception being handled, as :func:`traceback.format_exc` gives it, with
    :func:`redact` applied (a URL in an exception's message keeps its password masked)."""
    return redact(traceback.format_exc())


def print_exc(file=None) -> None:
    """:func:`traceback.print_exc`, through :func:`redact` (to ``file``, default stderr)."""
    print(format_exc(), end="", file=file if file is not None else sys.stderr, flush=True)
