"""The web app's HTTP handler (todo_project/handler.py): each request's Django work in one thread
hop, on a pool of request threads, with the same answers as Django's own ASGI handler."""

import asyncio
import threading

import httpx
from django.core import signals

from todo_project.asgi import application


def get_all(paths):
    async def requests():
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return [await client.get(path) for path in paths]

    return asyncio.run(requests())


def test_request_started_and_finished_run_in_one_request_thread_of_the_pool():
    seen = []

    def record(signal):
        return lambda **kwargs: seen.append((signal, threading.current_thread().name))

    started, finished = record("started"), record("finished")
    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        responses = get_all(["/healthz"] * 20)
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert [response.status_code for response in responses] == [200] * 20
    assert [signal for signal, _ in seen] == ["started", "finished"] * 20
    for (_, began_in), (_, ended_in) in zip(seen[::2], seen[1::2]):
        assert began_in == ended_in and began_in.startswith("request")  # a pool thread, not one per request


def test_a_streaming_response_is_served_whole_and_an_error_page_as_before():
    static, missing = get_all(["/static/admin/css/base.css", "/no-such-page/"])
    assert static.status_code == 200 and static.headers["content-type"].startswith("text/css")
    assert len(static.content) == int(static.headers["content-length"]) > 0
    assert missing.status_code == 404 and missing.headers["x-request-id"]
