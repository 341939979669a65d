"""Django's ASGI handler, with each HTTP request's sync work done in one thread hop.

Django's own ASGIHandler runs the middleware chain in async mode: every sync-only middleware,
every MiddlewareMixin's process_request and process_response, the request_started and
request_finished signals and finally the (sync) view each hop between the event loop and a
thread, some ten hops per API request, and that bookkeeping (futures, executors, context copies)
cost more CPU than the view itself (bench/profile_web.py; py-spy of a gunicorn worker under
bench/probe_web.py). Every view and middleware of the project is sync, so this handler does
what a WSGI server does, once per request: in one thread, request_started, the middleware chain
in sync mode, the view, the rendered body and request_finished. Only the body's bytes go back
to the event loop, which sends them.

The threads are a pool of the process (``REQUEST_THREADS``), as a threaded WSGI server's: Django's
handler starts a thread for every request and joins it after (ThreadSensitiveContext), which
was, after the hops, the largest cost left in the event loop. Concurrent requests still run in
threads of their own, so one waiting on PostgreSQL never holds up another, and a request's
database connection is its thread's for the request (request_started and request_finished run
in that thread, and the connection goes back to the psycopg pool at the end). Beyond
``REQUEST_THREADS`` concurrent requests (a worker has ``DATABASE_POOL_MAX_SIZE`` connections
anyway) the next ones wait for a thread.

What stays Django's: reading the body (in the loop, before the hop), the race with a client
disconnect, and streaming responses (static files, which WhiteNoise answers before any database
work): their chunks are sent from the loop as Django does, and the response is closed afterwards.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.exceptions import RequestAborted
from django.http import FileResponse
from django.urls import set_script_prefix


# Threads for the requests of one web worker: well above its database connections, so that requests
# waiting on something else (the assistant's model, Redis) do not queue behind each other.
REQUEST_THREADS = 32
_request_threads = ThreadPoolExecutor(max_workers=REQUEST_THREADS, thread_name_prefix="request")


def in_request_thread(function):
    """``function`` as a coroutine function that runs it in one of the request threads."""
    return sync_to_async(function, thread_sensitive=False, executor=_request_threads)


class OneHopASGIHandler(ASGIHandler):
    def __init__(self):
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)  # the WSGI-style chain: sync middleware, sync view

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)  # no ThreadSensitiveContext: the pool is the threads

    def respond(self, scope, body_file):
        """The request's sync work, in its thread; a non-streaming response comes back closed."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size  # as Django's: the server chunks further
        if not response.streaming:
            response.close()  # request_finished here, where the view ran: its connection goes back to the pool
        return response

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        # The hop cannot be stopped once its thread runs, so a disconnect never loses its response:
        # it is awaited below in any case, and closed exactly once.
        responding = asyncio.ensure_future(in_request_thread(self.respond)(scope, body_file))

        async def process_request():
            await self.send_response(await asyncio.shield(responding), send)

        # As Django's: a client disconnect stops the sending (listen_for_disconnect goes first).
        tasks = [asyncio.create_task(self.listen_for_disconnect(receive)), asyncio.create_task(process_request())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except (RequestAborted, asyncio.CancelledError):
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        response = await responding
        if response.streaming:
            await in_request_thread(response.close)()
        body_file.close()
