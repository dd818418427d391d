"""The bench contract app: every server in bench/ serves exactly this.

GET / -> "Hello, World!" (text/plain); HEAD / same headers, no body; POST /echo -> the body;
GET /test?name=John -> <h1>Hello John</h1> (escaped, text/html; charset=utf-8); else 404.
"""

from html import escape

from tpd2py import App, Request, Response

app = App()

HELLO = b"Hello, World!"
TEXT = b"text/plain"


@app.route("/")
def hello(req: Request) -> Response:
    return Response(HELLO, content_type=TEXT)


@app.route("/echo", methods=["POST"])
def echo(req: Request) -> Response:
    return Response(req.body(), content_type=b"application/octet-stream")


@app.route("/test")
def test(req: Request) -> bytes:
    name = req.query.get("name", "")
    return b"<h1>Hello %s</h1>" % escape(name).encode()
