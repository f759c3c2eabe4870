"""A scripted SMTP server for the email channel's fault tests: it answers RCPT TO with a chosen reply
(550 refused, 451 try later), so the channel's reading of SMTP replies is tested without a real server
that could be told to refuse. Mail that is accepted is tested against the stack's real mailpit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def smtp_stub(rcpt_reply: str) -> AsyncIterator[int]:
    """A listening stub on a free local port (yielded); ``rcpt_reply`` e.g. ``"550 5.1.1 no such user"``."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 stub ESMTP\r\n")
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250 stub\r\n")
            elif verb == b"RCPT":
                writer.write(rcpt_reply.encode() + b"\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:  # MAIL FROM, RSET, NOOP
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
