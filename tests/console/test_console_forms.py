"""The console's forms (``console.auth.form_fields``): URL-encoded bodies only, at most ``MAX_FORM_BYTES``;
anything else is refused with 413 or 415 before a route sees it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from shopflow.console.auth import FORM_TYPE, MAX_FORM_BYTES, form_fields


def posted(body_chunks: Sequence[bytes], content_type: str | None = FORM_TYPE,
           content_length: int | None = None) -> Request:
    """A POST as the server hands it over: its headers, then its body chunk by chunk."""
    headers = [] if content_type is None else [(b"content-type", content_type.encode())]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    chunks = [*body_chunks] or [b""]
    sent = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict:
        return sent.pop(0)

    return Request({"type": "http", "method": "POST", "path": "/x", "headers": headers, "query_string": b""},
                   receive)


async def test_a_url_encoded_form_is_read_once():
    request = posted([b"csrf_token=t%2B1&next=%2Fgroups", b"&empty="])

    fields = await form_fields(request)

    assert fields == {"csrf_token": "t+1", "next": "/groups", "empty": ""}
    assert await form_fields(request) is fields  # the body is not read twice


async def test_a_form_past_the_limit_is_refused_with_413_while_read():
    chunk = b"a=" + b"x" * (MAX_FORM_BYTES // 2)
    with pytest.raises(HTTPException) as refused:
        await form_fields(posted([chunk, chunk, chunk]))  # chunked: no Content-Length to trust
    assert refused.value.status_code == 413 and str(MAX_FORM_BYTES) in refused.value.detail


async def test_a_form_declared_past_the_limit_is_refused_with_413_unread():
    with pytest.raises(HTTPException) as refused:
        await form_fields(posted([], content_length=MAX_FORM_BYTES + 1))
    assert refused.value.status_code == 413


@pytest.mark.parametrize(("content_type", "length"), [
    ("multipart/form-data; boundary=x", 10), ("text/plain", 3), ("application/xml", 5), (None, 12),
])
async def test_a_body_of_another_type_is_refused_with_415(content_type, length):
    with pytest.raises(HTTPException) as refused:
        await form_fields(posted([b"x" * length], content_type=content_type, content_length=length))
    assert refused.value.status_code == 415 and FORM_TYPE in refused.value.detail


@pytest.mark.parametrize(("content_type", "length"), [(None, None), (None, 0), ("application/json", 2)])
async def test_no_body_or_a_scripts_json_has_no_form_fields(content_type, length):
    assert await form_fields(posted([b"{}" if length else b""], content_type=content_type,
                                    content_length=length)) == {}


@pytest.mark.integration
@pytest.mark.parametrize(("content_type", "body", "status", "says"), [
    ("multipart/form-data; boundary=b", b"--b--\r\n", 415, FORM_TYPE),
    (FORM_TYPE, b"csrf_token=" + b"x" * MAX_FORM_BYTES, 413, "at most"),
])
def test_the_console_refuses_a_form_it_cannot_read(ops_user_factory, ops_session, content_type, body, status, says):
    # Given a signed-in ops user
    session = ops_session(ops_user_factory("ops"))

    # When their sign-out is posted as a form the console does not read
    answer = session.client.post("/logout", content=body, headers={"Content-Type": content_type,
                                                                   "Accept": "application/json"})

    # Then it is refused, saying why, and the session lives on
    assert answer.status_code == status and says in answer.json()["detail"], answer.text
    assert session.client.get("/?format=json").status_code == 200
