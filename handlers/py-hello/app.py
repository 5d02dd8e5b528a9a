"""py-hello: a tiny wasi:http/proxy handler in Python, built with componentize-py.

It answers every request with `hello from python` and the path it was asked
for, the same way a Rust handler would: through the standard wasi:http
interfaces, nothing specific to the edge.
"""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        body = f"hello from python at {path}\n".encode()
        headers = Fields.from_list([("content-type", b"text/plain; charset=utf-8")])
        response = OutgoingResponse(headers)
        response.set_status_code(200)
        response_body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with response_body.write() as stream:
            stream.blocking_write_and_flush(body)
        OutgoingBody.finish(response_body, None)
