"""A stand-in for the SMS provider's API, which cannot run here: a local server answering Twilio's
Messages API (``POST /2010-04-01/Accounts/{sid}/Messages.json``) as the provider does for the cases the
channel must handle: 201 with the message resource, 401 for bad credentials, 400 with code 21211 for a
number that is not E.164, and scripted outages (503) to exercise retries. It sends nothing anywhere: it
keeps the messages for the test to read. Not a provider, and never used outside tests and the demo.
"""

from __future__ import annotations

import base64
import secrets
import threading
from dataclasses import dataclass

from aiohttp import web

from shopflow.notify.local_server import ThreadedServer
from shopflow.notify.sms import E164


@dataclass(frozen=True, slots=True)
class TextMessage:
    sid: str
    to: str
    sender: str
    body: str


class SmsProviderStandIn:
    """``with SmsProviderStandIn() as sms:``: ``sms.origin``, ``sms.account_sid``, ``sms.auth_token``, ``sms.sent``."""

    def __init__(self) -> None:
        self.account_sid = "AC" + secrets.token_hex(16)
        self.auth_token = secrets.token_hex(16)
        self._lock = threading.Lock()
        self._sent: list[TextMessage] = []
        self._outages = 0
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        self._server = ThreadedServer(app, "sms-provider-stand-in")
        self.origin = ""

    @property
    def sent(self) -> list[TextMessage]:
        with self._lock:
            return list(self._sent)

    def fail_next(self, times: int) -> None:
        """The next ``times`` requests answer 503, as a provider's outage would."""
        with self._lock:
            self._outages = times

    def _authorised(self, request: web.Request, sid: str) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return sid == self.account_sid and request.headers.get("Authorization") == f"Basic {expected}"

    async def _create(self, request: web.Request) -> web.Response:
        with self._lock:
            if self._outages > 0:
                self._outages -= 1
                return web.json_response({"code": 20500, "message": "Internal Server Error", "status": 503},
                                         status=503)
        sid = request.match_info["sid"]
        if not self._authorised(request, sid):
            return web.json_response({"code": 20003, "message": "Authenticate", "status": 401}, status=401)
        form = await request.post()
        to, sender, body = str(form.get("To", "")), str(form.get("From", "")), str(form.get("Body", ""))
        if not E164.match(to):
            return web.json_response({"code": 21211, "message": f"The 'To' number {to} is not a valid phone number.",
                                      "status": 400}, status=400)
        message = TextMessage(sid="SM" + secrets.token_hex(16), to=to, sender=sender, body=body)
        with self._lock:
            self._sent.append(message)
        return web.json_response({"sid": message.sid, "to": to, "from": sender, "body": body, "status": "queued",
                                  "account_sid": sid, "num_segments": str(len(body) // 153 + 1)}, status=201)

    def __enter__(self) -> SmsProviderStandIn:
        self.origin = self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
