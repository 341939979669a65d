"""A scripted OpenAI-compatible chat-completions server on localhost, standing in for the paid provider.

It is a real HTTP server speaking the chat-completions protocol (POST /v1/chat/completions,
answers with ``choices[0].message``). It plays back a script of answers and records every
request, so tests assert exactly what was sent: the tools, the tool results, the auth header.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from testing.http_servers import serve_in_background, stop

MODEL = "scripted-model"


class ScriptedChatServer:
    """Answers each POST /v1/chat/completions with the next scripted reply and records the request.

    A scripted reply is a JSON body (HTTP 200), or ``(status, body)``, or ``"hang"``: an answer
    held back until the test ends, to let the client time out.
    """

    def __init__(self, script):
        self.script = list(script)
        self.requests = []
        self.released = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                server.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(self.rfile.read(length))}
                )
                reply = server.script.pop(0) if server.script else (500, {"error": {"message": "script exhausted"}})
                if reply == "hang":
                    server.released.wait(timeout=30)
                    return
                status, body = reply if isinstance(reply, tuple) else (200, reply)
                payload = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread = serve_in_background(self.httpd)
        return self

    def __exit__(self, *exc):
        self.released.set()
        stop(self.httpd, self.thread)


def completion(content=None, tool_calls=None):
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}],
    }


def tool_call(call_id, name, arguments):
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": raw}}
