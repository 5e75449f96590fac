"""The gRPC edge shared by the worker and the clients: a channel to a coordinator address
(`http://` or `https://` with optional CA and client certificate), the bearer token as call
metadata, and typed unary and server-streaming calls built from the generated message classes."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import grpc
import grpc.aio
from google.protobuf.message import Message

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

DEFAULT_COORDINATOR = "http://127.0.0.1:7450"

ADDRESS_VARIABLES = ("BATON_ADDR", "BATON_COORDINATOR")
"""The environment variables a coordinator address is read from, first set wins: `BATON_ADDR` (the
CLI's, the Rust worker's and the SDK's) and its older alias `BATON_COORDINATOR`."""

log = logging.getLogger("baton.worker")

# The coordinator's default `max_payload_bytes` (4 MiB) plus room for the other fields (64 KiB).
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024

# Longest token accepted (bytes), as the Rust SDK.
MAX_TOKEN_BYTES = 4096


@dataclass(frozen=True)
class Tls:
    """PEM files for an `https://` coordinator: the CA that signed its certificate (default: the
    system's CAs) and an optional client certificate and key for mTLS."""

    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    @staticmethod
    def from_env() -> Tls:
        """From `BATON_CA_FILE`, `BATON_CLIENT_CERT`, `BATON_CLIENT_KEY`."""
        return Tls(
            ca_file=os.environ.get("BATON_CA_FILE") or None,
            client_cert=os.environ.get("BATON_CLIENT_CERT") or None,
            client_key=os.environ.get("BATON_CLIENT_KEY") or None,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials; raises ValueError naming the unreadable file or missing half."""

        def read(setting: str, path: str | None) -> bytes | None:
            if path is None:
                return None
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as e:
                raise ValueError(f"{setting} {path!r}: {e.strerror}") from None

        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("BATON_CLIENT_CERT and BATON_CLIENT_KEY go together: set both or neither")
        return grpc.ssl_channel_credentials(
            root_certificates=read("BATON_CA_FILE", self.ca_file),
            private_key=read("BATON_CLIENT_KEY", self.client_key),
            certificate_chain=read("BATON_CLIENT_CERT", self.client_cert),
        )


MAX_COORDINATORS = 16
"""Most coordinator addresses one worker or client takes (as the Rust worker)."""


def coordinator_address(given: str | None) -> str:
    """The coordinator address to use: `given` when it is not empty, else `BATON_ADDR`, else its
    alias `BATON_COORDINATOR`, else `http://127.0.0.1:7450`. Not checked here (see
    `split_address`)."""
    if given:
        return given
    values = [(name, os.environ.get(name, "").strip()) for name in ADDRESS_VARIABLES]
    found = [(name, value) for name, value in values if value]
    if not found:
        return DEFAULT_COORDINATOR
    if len({value for _, value in found}) > 1:
        logging.getLogger("baton").warning(
            "%s; using %s", " and ".join(f"{n}={v[:200]!r}" for n, v in found) + " differ", found[0][0]
        )
    return found[0][1]


def split_address(address: str) -> tuple[str, bool]:
    """`(grpc target, tls)` of a coordinator address (`host:port`, which means
    `http://host:port`, `http://host:port` or `https://host:port`),
    or of several separated by commas (`http://10.0.0.1:7450,http://10.0.0.2:7450`, at most 16,
    plain `http://` or `host:port` only). Several addresses become one gRPC target (`ipv4:a:p,b:p`, or `ipv6:`)
    whose `pick_first` policy uses the first that answers and moves on to the next when its
    connection fails; host names in a list are resolved now. ValueError for another scheme or
    none, an empty or too long list, or several `https://` addresses (use a load balancer's
    address, or one DNS name with several addresses, which gRPC also fails over between)."""
    parts = [a.strip() for a in address.split(",") if a.strip()]
    if not parts:
        raise ValueError(f"{address[:200]!r}: no coordinator address")
    if len(parts) > MAX_COORDINATORS:
        raise ValueError(f"{len(parts)} coordinator addresses: at most {MAX_COORDINATORS}")
    if len(parts) == 1:
        return _one_address(parts[0])
    hosts = [_one_address(p) for p in parts]
    if any(tls for _, tls in hosts):
        raise ValueError(
            f"{address[:200]!r}: several https:// coordinator addresses are not supported by the Python SDK; "
            "use a load balancer's address or one DNS name with several addresses"
        )
    return _resolved_target([h for h, _ in hosts], address), False


def _one_address(address: str) -> tuple[str, bool]:
    scheme, sep, rest = address.partition("://")
    if not sep:
        # `host:port` means `http://host:port`, as for the CLI, the Rust worker and grpcio.
        scheme, rest = "http", address
    if scheme.lower() not in ("http", "https"):
        raise ValueError(
            f"unsupported scheme {scheme[:200]!r} in {address[:200]!r}: use host:port, http://host:port or https://host:port"
        )
    target = rest.rstrip("/")
    if not target or target.startswith(":"):
        raise ValueError(f"{address[:200]!r} has no host: use host:port, http://host:port or https://host:port")
    return target, scheme.lower() == "https"


def _resolved_target(hostports: list[str], given: str) -> str:
    """`ipv4:a:p,b:p` (or `ipv6:[a]:p,...`) for `host:port`s, each host resolved to its addresses
    in order. ValueError naming the address when one does not resolve or the families mix."""
    v4: list[str] = []
    v6: list[str] = []
    for hostport in hostports:
        host, sep, port = hostport.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"{hostport[:200]!r} in {given[:200]!r} has no port: use http://host:port")
        host = host.strip("[]")
        try:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            raise ValueError(f"{hostport[:200]!r} in {given[:200]!r} does not resolve: {e}") from None
        for family, _, _, _, sockaddr in infos:
            ip = str(sockaddr[0])
            if family == socket.AF_INET and f"{ip}:{port}" not in v4:
                v4.append(f"{ip}:{port}")
            elif family == socket.AF_INET6 and f"[{ip}]:{port}" not in v6:
                v6.append(f"[{ip}]:{port}")
    if v4 and not v6:
        return "ipv4:" + ",".join(v4)
    if v6 and not v4:
        return "ipv6:" + ",".join(v6)
    if v4:
        # Both families: keep IPv4 (one gRPC target takes one family).
        return "ipv4:" + ",".join(v4)
    raise ValueError(f"{given[:200]!r}: no address")


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """`authorization: Bearer <token>` (RFC 6750 section 2.1), or nothing without a token.
    ValueError (without echoing the token) when it is too long or has characters a header cannot."""
    if token is None:
        return ()
    token = token.strip()
    if not token:
        return ()
    if len(token.encode()) > MAX_TOKEN_BYTES or any(not (0x21 <= ord(c) <= 0x7E) for c in token):
        raise ValueError(f"the token must be at most {MAX_TOKEN_BYTES} bytes of visible ASCII")
    return (("authorization", f"Bearer {token}"),)


def _options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.enable_retries", 0),
    ]


def aio_channel(address: str, tls: Tls, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> grpc.aio.Channel:
    """An asyncio channel to `address` (connects lazily)."""
    target, secure = split_address(address)
    options = _options(max_message_bytes)
    if target.startswith(("ipv4:", "ipv6:")):
        # A list target's default :authority would be the whole list, which an HTTP/2 server
        # refuses (PROTOCOL_ERROR): name the first address instead.
        options.append(("grpc.default_authority", target.split(":", 1)[1].split(",", 1)[0]))
    if secure:
        return grpc.aio.secure_channel(target, tls.credentials(), options=options)
    if tls.ca_file or tls.client_cert:
        raise ValueError(f"TLS files are set but {address[:200]!r} is not an https:// address")
    return grpc.aio.insecure_channel(target, options=options)


class Unary(Generic[Req, Resp]):
    """One unary RPC on an asyncio channel: `await call(request)` returns the answer or raises
    grpc.aio.AioRpcError."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        path: str,
        response: type[Resp],
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        self._call = channel.unary_unary(
            path,
            request_serializer=_serialize,
            response_deserializer=response.FromString,
        )
        self._metadata = metadata

    async def __call__(self, request: Req, timeout: float | None = 30.0) -> Resp:
        return await self._call(request, metadata=self._metadata, timeout=timeout)


class Coordinators:
    """One channel per coordinator address of a list (`http://a:7450,http://b:7450`; a single
    address is a list of one), as the Rust worker keeps them: calls go to the one in use and move
    on to the next when it answers UNAVAILABLE (unreachable, or it cannot reach Redis and says so
    at once) or misses the call deadline, or when its health probe says it cannot serve."""

    def __init__(self, address: str, tls: Tls, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        split_address(address)  # the same checks as one channel over the list
        parts = [a.strip() for a in address.split(",") if a.strip()]
        self.addresses = parts
        self.channels = [aio_channel(a, tls, max_message_bytes) for a in parts]
        self.current = 0

    def move_on(self, from_index: int) -> None:
        """Moves on from coordinator `from_index` to the next (unless another call did already)."""
        if len(self.channels) > 1 and self.current == from_index:
            self.current = (from_index + 1) % len(self.channels)
            log.warning(
                "coordinator %s unreachable or not serving; failing over to %s",
                self.addresses[from_index],
                self.addresses[self.current],
            )

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


MOVE_ON = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
"""The answers after which a call moves on to the next coordinator."""


class FailoverUnary(Generic[Req, Resp]):
    """One unary RPC over [`Coordinators`], each call bounded by `timeout` seconds: raises
    grpc.aio.AioRpcError as [`Unary`] does, after which the next call goes to the next coordinator
    when the error was UNAVAILABLE or DEADLINE_EXCEEDED (the caller's retry then fails over)."""

    def __init__(
        self,
        coordinators: Coordinators,
        path: str,
        response: type[Resp],
        metadata: tuple[tuple[str, str], ...],
        timeout: float,
    ) -> None:
        self._coordinators = coordinators
        self._calls = [Unary[Req, Resp](ch, path, response, metadata) for ch in coordinators.channels]
        self._timeout = timeout

    async def __call__(self, request: Req, timeout: float | None = None) -> Resp:
        i = self._coordinators.current
        try:
            return await self._calls[i](request, timeout=timeout or self._timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() in MOVE_ON:
                self._coordinators.move_on(i)
            raise


class Stream(Generic[Req, Resp]):
    """One server-streaming RPC on an asyncio channel."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        path: str,
        response: type[Resp],
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        self._call = channel.unary_stream(
            path,
            request_serializer=_serialize,
            response_deserializer=response.FromString,
        )
        self._metadata = metadata

    def __call__(self, request: Req, timeout: float | None = None) -> grpc.aio.UnaryStreamCall[Req, Resp]:
        return cast("grpc.aio.UnaryStreamCall[Req, Resp]", self._call(request, metadata=self._metadata, timeout=timeout))


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
