"""Ask an RTSP server for a stream's description before the model loads, so that the usual IP-camera mistakes fail
in milliseconds and in words.

A wrong stream path (RTSP 404) or a missing or wrong user name or password (RTSP 401) would otherwise be found only
when FFmpeg opens the stream, after the model has loaded (seconds), and FFmpeg words both as an HTTP error.
:func:`check_rtsp` sends one ``DESCRIBE``, reads the status line and headers (not the description that follows
them) and closes the connection; a 401 is answered on the same connection, as FFmpeg does, after the few bytes of
its body. DESCRIBE only asks for the stream's description (SDP): it creates no session on the server and starts no
media, so asking before the run connects leaves the server as it was.

What decides the answer is done as FFmpeg does it, so that a URL passing here is one FFmpeg is let in with: the
request names the URL without its user info, and a 401 is answered as libavformat's ``httpauth.c`` answers it
(the user info percent-decoded and split at its first ``:``; Basic, or Digest with MD5 or MD5-sess and
``qop=auth``; Digest preferred when both are offered). A challenge that cannot be answered here (no challenge,
another scheme, an algorithm such as SHA-256) is not refused: FFmpeg's own open has the last word.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

from migr_rt import __version__

USER_AGENT = f"migr-rt/{__version__}"
#: An RTSP reply's status line and headers take a few hundred bytes; a server still sending headers past this
#: is not one to wait for.
_MAX_HEAD = 64 * 1024
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")


class RtspRefusal(Exception):
    """The server's answer (or its silence) says the stream cannot be read: the message is plain words, without
    the password; ``retryable`` is False for what waiting cannot fix (a wrong path, password or port)."""

    def __init__(self, words: str, *, retryable: bool) -> None:
        super().__init__(words)
        self.retryable = retryable


@dataclass(frozen=True)
class Reply:
    """An RTSP reply's status line and headers (names lower-cased, in order: WWW-Authenticate may repeat)."""

    code: int
    reason: str
    headers: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def status(self) -> str:
        return f"RTSP {self.code} {self.reason}".rstrip()


def split_user_info(url: str) -> tuple[str, str | None]:
    """``url`` without its user info (what FFmpeg names in its requests), and the user info as written in it
    (percent-encoded, so that a ``:`` or ``@`` in a password can be written as ``%3A``, ``%40``), or None."""
    scheme, sep, rest = url.partition("://")
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    end = min(ends, default=len(rest))
    info, at, host = rest[:end].rpartition("@")  # the last @ before the path, as FFmpeg's av_url_split
    return f"{scheme}{sep}{host}{rest[end:]}", (info if at else None)


def mask_password(text: str) -> str:
    """``text`` with the password of the URL it is replaced by ``****``: messages name a URL as the user gave it,
    and they end up in terminals, logs and bug reports."""
    if "://" not in text:
        return text
    bare, info = split_user_info(text)
    if info is None or ":" not in info:
        return text
    scheme, _, rest = bare.partition("://")
    return f"{scheme}://{info.partition(':')[0]}:****@{rest}"


#: A URL's user info, ``USER:PASSWORD@``, up to the last ``@`` before the path, as FFmpeg's av_url_split reads it
#: (``rtsp://me@mail.example:p@ss@cam/``: the user ``me@mail.example``, the password ``p@ss``).
_USER_INFO = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s/?#:]*:)[^\s/?#]*@")


def mask_passwords(text: str) -> str:
    """``text`` with the password of every URL in it masked: an error of FFmpeg's, as PyAV raises it, ends with the
    URL it opened, which is the one with the password. An ``@`` left unencoded in the user name or password is
    read as FFmpeg reads it (the last one before the path ends the user info)."""
    return _USER_INFO.sub(r"\1****@", text)


def check_rtsp(url: str, host: str, port: int, timeout: float) -> None:
    """Send ``DESCRIBE`` for ``url`` to ``host``:``port`` and raise :class:`RtspRefusal` when the answer says the
    stream cannot be read; a 2xx or 3xx (FFmpeg follows a redirect) passes. Connecting is not worded here: an
    OSError from it (refused, timed out, unreachable) is raised as it is, for the caller's words.

    ``timeout`` bounds the connection and then each reply as a whole (a server sending a byte at a time cannot
    stretch it).
    """
    request_url, info = split_user_info(url)
    where = f"{host} port {port}"
    with socket.create_connection((host, port), timeout=timeout) as sock:
        exchange = _Exchange(sock, request_url, timeout, where)
        try:
            reply = exchange.describe()
            if reply.code == 401 and info is not None and ":" in info:
                authorization = _authorization(reply, info, request_url)
                if authorization is None:  # a scheme or algorithm answered differently or not at all: FFmpeg's call
                    return
                exchange.skip_body(reply)
                reply = exchange.describe(authorization)
                if reply.code == 401:
                    user = unquote_to_bytes(info.partition(":")[0]).decode("utf-8", "replace")
                    raise RtspRefusal(f"the user name {user!r} or its password was refused ({reply.status})",
                                      retryable=False)
        except TimeoutError:
            raise RtspRefusal(f"no answer within {timeout:g} s (to an RTSP DESCRIBE sent to {where})",
                              retryable=True) from None
        except OSError as exc:  # reset by the server, say
            raise RtspRefusal(f"{where} broke the connection during an RTSP DESCRIBE ({exc.strerror or exc})",
                              retryable=True) from None
    _judge(reply, request_url, info)


def _judge(reply: Reply, request_url: str, info: str | None) -> None:
    """Refuse the final reply to DESCRIBE unless it is a 2xx or 3xx (or a 1xx, which no server sends here)."""
    if reply.code < 400:
        return
    if reply.code == 401:  # no password given (one given and refused was said by check_rtsp)
        scheme, _, rest = request_url.partition("://")
        given = "" if info is None else " (the URL gives a user name but no password)"
        raise RtspRefusal(f"the camera asks for a user name and password ({reply.status}){given}; give them in the "
                          f"URL: {scheme}://USER:PASSWORD@{rest} (an @ or : in them written as %40 or %3A)",
                          retryable=False)
    if reply.code == 404:
        path = urlsplit(request_url).path or "/"
        raise RtspRefusal(f"the server has no stream at the path {path!r} ({reply.status}: a wrong path, or nothing "
                          "publishes to it yet)", retryable=False)
    raise RtspRefusal(f"the RTSP server refuses the stream ({reply.status})", retryable=reply.code >= 500)


class _Exchange:
    """DESCRIBE requests and their replies on one connection, as FFmpeg sends them (one connection, CSeq from 1)."""

    def __init__(self, sock: socket.socket, request_url: str, timeout: float, where: str) -> None:
        self.sock, self.request_url, self.timeout, self.where = sock, request_url, timeout, where
        self.cseq = 0
        self.pending = b""  # received past the last reply's headers

    def describe(self, authorization: bytes | None = None) -> Reply:
        self.cseq += 1
        request = (f"DESCRIBE {self.request_url} RTSP/1.0\r\nAccept: application/sdp\r\nCSeq: {self.cseq}\r\n"
                   f"User-Agent: {USER_AGENT}\r\n").encode()
        if authorization is not None:
            request += b"Authorization: " + authorization + b"\r\n"
        self.sock.settimeout(self.timeout)
        self.sock.sendall(request + b"\r\n")
        return self._read_head()

    def skip_body(self, reply: Reply) -> None:
        """Read past the body a reply announced, so that the next reply is read from its start."""
        try:
            length = max(int((reply.values("content-length") or ["0"])[-1]), 0)
        except ValueError:
            length = 0
        deadline = time.monotonic() + self.timeout
        while len(self.pending) < length:
            self.pending += self._recv(deadline)
        self.pending = self.pending[length:]

    def _recv(self, deadline: float) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        chunk = self.sock.recv(4096)
        if not chunk:
            raise RtspRefusal(f"{self.where} closed the connection without answering an RTSP DESCRIBE",
                              retryable=True)
        return chunk

    def _read_head(self) -> Reply:
        deadline = time.monotonic() + self.timeout
        data, self.pending = self.pending, b""
        while not (end := _END_OF_HEAD.search(data)):
            if not b"RTSP/".startswith(data[:5]) or len(data) > _MAX_HEAD:  # refused on its first bytes, not waited on
                raise self._not_rtsp(data)
            data += self._recv(deadline)
        head, self.pending = data[:end.start()], data[end.end():]
        lines = head.decode("latin-1").split("\n")
        version, _, status = lines[0].rstrip("\r").partition(" ")
        code, _, reason = status.strip().partition(" ")
        if not version.startswith("RTSP/") or not (len(code) == 3 and code.isdigit()):
            raise self._not_rtsp(data)
        headers = []
        for line in lines[1:]:
            key, colon, value = line.rstrip("\r").partition(":")
            if colon:
                headers.append((key.strip().lower(), value.strip()))
        return Reply(int(code), reason.strip()[:100], tuple(headers))

    def _not_rtsp(self, data: bytes) -> RtspRefusal:
        first = data.split(b"\n", 1)[0].rstrip(b"\r")[:60].decode("latin-1")
        return RtspRefusal(f"{self.where} does not answer as an RTSP server (its reply begins {first!r})",
                           retryable=False)


def _authorization(reply: Reply, info: str, request_url: str) -> bytes | None:
    """The Authorization header's value FFmpeg sends in answer to the 401 ``reply``, or None where it sends none
    or this cannot tell what it sends.

    As in httpauth.c, a Digest challenge wins over Basic whatever their order, and of several Digest challenges
    the last one counts.
    """
    scheme, params = None, {}
    for value in reply.values("www-authenticate"):
        if value[:7].lower() == "digest ":
            scheme, params = "digest", _parameters(value[7:])
        elif value[:6].lower() == "basic " and scheme != "digest":
            scheme, params = "basic", {}
    credentials = unquote_to_bytes(info)  # FFmpeg's ff_urldecode: %XX decoded, a + kept
    if scheme == "basic":
        return b"Basic " + base64.b64encode(credentials)
    if scheme == "digest":
        user, _, password = credentials.partition(b":")
        return _digest(params, user, password, request_url.encode())
    return None


def _digest(params: dict[str, str], user: bytes, password: bytes, uri: bytes) -> bytes | None:
    """An RFC 2617 Digest answer to a DESCRIBE, field for field as httpauth.c's make_digest_auth writes it."""
    def md5(*parts: bytes) -> bytes:
        return hashlib.md5(b":".join(parts)).hexdigest().encode()

    realm, nonce, opaque, algorithm = (params.get(k, "").encode("latin-1") for k in ("realm", "nonce", "opaque",
                                                                                      "algorithm"))
    qop = _qop(params.get("qop", ""))
    cnonce, nc = os.urandom(8).hex().encode(), b"00000001"
    ha1 = md5(user, realm, password)
    if algorithm == b"MD5-sess":
        ha1 = md5(ha1, nonce, cnonce)
    elif algorithm not in (b"", b"MD5"):  # SHA-256 and others: FFmpeg sends no answer; its own open will say
        return None
    ha2 = md5(b"DESCRIBE", uri)
    response = md5(ha1, nonce, nc, cnonce, qop, ha2) if qop else md5(ha1, nonce, ha2)
    header = (b'Digest username="%s",realm="%s",nonce="%s",uri="%s",response="%s"'
              % (user, realm, nonce, uri, response))
    if algorithm:
        header += b",algorithm=" + algorithm
    if opaque:
        header += b',opaque="%s"' % opaque
    if qop:
        header += b',qop="%s",cnonce="%s",nc=%s' % (qop, cnonce, nc)
    return header


def _qop(offered: str) -> bytes:
    """``auth`` where httpauth.c's choose_qop finds it in the offered list, else nothing (no qop: RFC 2069). Like
    it, only the first ``auth`` in the list is looked at."""
    at = offered.find("auth")
    if at < 0:
        return b""
    after, before = offered[at + 4:at + 5], offered[at - 1:at] if at else ""
    alone = (after in ("", ",") or after.isspace()) and (before in ("", ",") or before.isspace())
    return b"auth" if alone else b""


def _parameters(text: str) -> dict[str, str]:
    """A challenge's ``key=value`` and ``key="quoted \\"value\\""`` pairs, read as FFmpeg's ff_parse_key_value reads
    them (keys as written: httpauth.c matches them case-sensitively)."""
    found: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and (text[i].isspace() or text[i] == ","):
            i += 1
        equals = text.find("=", i)
        if i >= n or equals < 0:
            return found
        key, i, value = text[i:equals], equals + 1, []
        if text[i:i + 1] == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    if i + 1 >= n:
                        break
                    i += 1
                value.append(text[i])
                i += 1
            i += 1  # the closing quote
        else:
            while i < n and not (text[i].isspace() or text[i] == ","):
                value.append(text[i])
                i += 1
        found[key] = "".join(value)
