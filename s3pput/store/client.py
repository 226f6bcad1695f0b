"""Making the clients of a run: the boto3 session and client, the one TLS trust setting
for every connection, and the lean path's start without botocore (``lean_start``)."""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from typing import Dict, Optional, Tuple, Union
from urllib.parse import urlparse, urlsplit

from ..config import Config
from ..errors import ConfigError
from . import lazy
from .errors import ANSWERED_200, _fatal
from .lean import Credentials, Route


def _is_local_host(url: Optional[str]) -> bool:
    host = urlparse(url).hostname if url else None
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


_SESSIONS: Dict[tuple, object] = {}


def _session(cfg: Config, *, fresh: bool = False):
    """One boto3 session per process and credentials (FRESH: a new one, replacing it, so
    that the credential chain is asked again). Making a client reads the S3 service model
    (about 0.2 s of CPU); a session caches it, and forked workers inherit the main
    process's warm session, so each makes its own client in a few milliseconds.

    Raises ``ConfigError`` when botocore cannot build it (no such profile, an AWS config
    file it cannot parse)."""
    identity = (cfg.profile, cfg.access_key, cfg.secret_key, cfg.session_token)
    if fresh or identity not in _SESSIONS:
        try:
            core = lazy.botocore_session.Session()
            # Timestamps stay strings: s3pput reads none, and dateutil parsing every
            # LastModified was most of the CPU of a listing (1,000 per page).
            core.get_component("response_parser_factory").set_parser_defaults(
                timestamp_parser=str)
            session = lazy.boto3.session.Session(
                profile_name=cfg.profile, aws_access_key_id=cfg.access_key,
                aws_secret_access_key=cfg.secret_key, aws_session_token=cfg.session_token,
                botocore_session=core)
        except lazy.botocore_exceptions.BotoCoreError as err:
            raise _fatal(err, cfg.bucket) from err
        _SESSIONS[identity] = (session, core)
    return _SESSIONS[identity]


_TRUST: Dict[tuple, Union[bool, str]] = {}


def tls_verify(cfg: Config) -> Union[bool, str]:
    """The one trust setting for every connection of the run: the path of the CA bundle
    to trust, True for botocore's default bundle, or False (``--no-verify-ssl``: no checks).
    The boto3 client gets it as ``verify=``; the fast path builds its SSL context from it.

    The bundle is ``--ca-bundle``, else what botocore resolves itself (``AWS_CA_BUNDLE``,
    then ``ca_bundle`` in the profile), else ``REQUESTS_CA_BUNDLE`` (botocore's own last
    resort when a client is made without ``verify``), else botocore's default. Passing
    ``verify=True`` instead would silently drop the first three. A bundle that cannot be
    loaded is a ``ConfigError`` here, up front, not a TLS failure on every request."""
    if not cfg.verify_ssl:
        return False
    if (cfg.endpoint_url or "").startswith("http:"):
        return True  # plain HTTP: no certificate to check, no bundle to look up
    key = (cfg.profile, cfg.access_key, cfg.ca_bundle, cfg.endpoint_url)
    if key not in _TRUST:
        if cfg.ca_bundle:
            bundle, origin = cfg.ca_bundle, "--ca-bundle"
        else:
            bundle = _session(cfg)[1].get_config_variable("ca_bundle")
            origin = "AWS_CA_BUNDLE or ca_bundle in the AWS profile"
            if not bundle and os.environ.get("REQUESTS_CA_BUNDLE"):
                bundle, origin = os.environ["REQUESTS_CA_BUNDLE"], "REQUESTS_CA_BUNDLE"
        # Only HTTPS reads the bundle: a stale AWS_CA_BUNDLE stops no plain-HTTP run.
        if bundle and not (cfg.endpoint_url or "https:").startswith("http:"):
            import ssl

            try:
                ssl.create_default_context(cafile=bundle)
            except (OSError, ssl.SSLError, ValueError) as err:
                reason = getattr(err, "strerror", None) or getattr(err, "reason", None) \
                    or str(err)
                raise ConfigError(f"cannot use the CA bundle {bundle!r} ({origin}): {reason}; "
                                  "it must be a file of PEM certificates") from err
        _TRUST[key] = bundle or True
    return _TRUST[key]


def make_client(cfg: Config, *, pool_size: int = 10, fresh: bool = False):
    """Build a boto3 S3 client for CFG (FRESH: from a new session: the credential chain is
    asked again). Call it inside the process that uses it.

    Each call of the client is one attempt: retries are s3pput's own (``retry``), for the
    lean path and the client alike. Raises ``ConfigError`` when botocore refuses the
    configuration."""
    if cfg.checksums == "auto":
        # Several S3-compatible stores mishandle the CRC32 trailers botocore sends by
        # default since 1.36; our own Content-MD5 protects every body anyway.
        checksums = "when_supported" if cfg.is_aws else "when_required"
    else:
        checksums = cfg.checksums
    addressing = "path" if _is_local_host(cfg.endpoint_url) else "auto"
    config = lazy.botocore_config.Config(
        region_name=cfg.region,
        max_pool_connections=max(10, pool_size),
        connect_timeout=min(cfg.timeout, 10),
        read_timeout=cfg.timeout,
        retries={"mode": "standard", "total_max_attempts": 1},
        # We always send Content-MD5, so signing the payload again with SHA-256 over
        # plain HTTP would only cost CPU.
        s3={"addressing_style": addressing, "payload_signing_enabled": False},
        request_checksum_calculation=checksums,
        response_checksum_validation=checksums,
        tcp_keepalive=True,
        user_agent_extra="s3pput",
    )
    verify = tls_verify(cfg)
    session, _ = _session(cfg, fresh=fresh)
    try:
        client = session.client("s3", endpoint_url=cfg.endpoint_url, verify=verify,
                                config=config)
    except lazy.botocore_exceptions.BotoCoreError as err:
        raise _fatal(err, cfg.bucket) from err
    except ValueError as err:  # botocore's word for an endpoint it cannot use
        raise ConfigError(f"cannot make an S3 client: {err}") from err
    # botocore turns a 200 whose body is not XML (or is an <Error>) into a 500 before it
    # parses it; the answer as the store sent it is noted, so that messages name what the
    # store did.
    client.meta.events.register("after-call.s3", _note_answered_200)
    return client


def _note_answered_200(http_response=None, parsed=None, **_ignored) -> None:
    """botocore's after-call event: mark in the parsed answer (which a ClientError then
    carries) an error answer that the store sent as a 200 (its urllib3 response still
    says 200), with what its body was."""
    if http_response is None or parsed is None or http_response.status_code < 300 or \
            getattr(getattr(http_response, "raw", None), "status", None) != 200:
        return
    from .answers import parse_error

    body = http_response.content or b""
    parsed[ANSWERED_200] = "an <Error> body" if parse_error(body) is not None else \
        "a body that is not XML"


class Clients:
    """The boto3 client of one process, made on first use, and the credentials that both
    paths sign with (botocore's own provider, refreshed as botocore refreshes it); forced
    to fetch fresh ones by ``refresh`` (an ExpiredToken the provider did not foresee)."""

    def __init__(self, cfg: Config, pool_size: int):
        self.cfg = cfg
        self.pool_size = pool_size
        self.lock = threading.Lock()
        self._client = None
        self._credentials = None  # botocore's credentials object of the client's session
        self.refreshed_at = 0.0

    def client(self):
        if self._client is None:
            with self.lock:
                if self._client is None:
                    self._make(fresh=False)
        return self._client

    def _make(self, *, fresh: bool) -> None:
        client = make_client(self.cfg, pool_size=self.pool_size, fresh=fresh)
        self._credentials = _session(self.cfg)[0].get_credentials()
        self._client = client

    def credentials(self) -> Optional[Credentials]:
        """The key pair to sign with now (None: the chain found none)."""
        self.client()
        found = self._credentials
        if found is None:
            return None
        frozen = found.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    def refresh(self, since: float) -> bool:
        """Fetch fresh credentials (a new session asks the whole chain again: the
        credential_process, the SSO cache, the instance role) unless that was done after
        SINCE (``time.monotonic``): a request that began before the last refresh is only
        retried. Returns True (the caller retries)."""
        with self.lock:
            if self.refreshed_at > since:
                return True
            self._make(fresh=True)
            self.refreshed_at = time.monotonic()
        return True


def lean_start(cfg: Config, environ=None) -> Optional[Tuple[Route, Credentials]]:
    """The fast path's route and credentials when they are plain settings, so that it can
    start before (and often without) botocore: None when botocore must resolve them.

    * Route: a custom endpoint (``--endpoint-url``) with nothing but scheme, host and port,
      and a region given (``--region``, ``AWS_REGION``...): botocore addresses any custom
      endpoint path-style in the URLs it presigns (``scheme://host:port/bucket/key``),
      which is how the fast path takes it from a client otherwise. For AWS itself (endpoint
      rules, regions, virtual hosts) and a region only a profile knows: botocore.
    * Credentials: keys given as settings, exactly the ones botocore would take first: the
      ``SPACES_*`` keys s3pput passes to the session, or, without ``--profile``,
      ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``) from the
      environment, the first provider of botocore's chain. Profiles, SSO, roles, instance
      metadata: botocore."""
    environ = os.environ if environ is None else environ
    if not cfg.endpoint_url or not cfg.region:
        return None
    parts = urlsplit(cfg.endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or \
            parts.path.strip("/") or parts.query or parts.fragment or parts.username:
        return None
    route = Route.from_url(f"{parts.scheme}://{parts.netloc}/{cfg.bucket}/K", cfg.region)
    if cfg.access_key and cfg.secret_key:
        return route, Credentials(cfg.access_key, cfg.secret_key, cfg.session_token)
    key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if cfg.profile or not key or not secret or environ.get("AWS_CREDENTIAL_EXPIRATION"):
        return None
    token = environ.get("AWS_SESSION_TOKEN") or environ.get("AWS_SECURITY_TOKEN") or None
    return route, Credentials(key, secret, token)

