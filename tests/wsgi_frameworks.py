"""Real WSGI frameworks for tests/integration/test_wsgi_frameworks.py (the ``test`` extra
installs them): a Flask app, a Bottle app, a Falcon app and a minimal Django project. Each
``make_*`` imports its framework only when called."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def make_flask(files: Path) -> Any:
    from flask import Flask, Response, jsonify, request, send_file, stream_with_context

    app = Flask("tpd2py_test")

    @app.route("/")
    def index() -> str:
        return "<h1>Hello from Flask</h1>"

    @app.route("/form", methods=["POST"])
    def form() -> Any:
        return jsonify(name=request.form["name"], tags=request.form.getlist("tag"))

    @app.route("/json", methods=["POST"])
    def echo_json() -> Any:
        return jsonify(got=request.get_json())

    @app.route("/upload", methods=["POST"])
    def upload() -> Any:
        f = request.files["file"]
        data = f.read()
        return jsonify(filename=f.filename, size=len(data),
                       sha256=hashlib.sha256(data).hexdigest())

    @app.route("/stream")
    def stream() -> Response:
        def gen() -> Any:
            for i in range(3):
                yield f"line {i}\n"

        return Response(stream_with_context(gen()), mimetype="text/plain")

    @app.route("/file")
    def file() -> Any:
        return send_file(files / "data.bin", mimetype="application/octet-stream")

    return app


def make_bottle() -> Any:
    import bottle

    app = bottle.Bottle()

    @app.route("/hello/<name>")
    def hello(name: str) -> str:
        return f"Hello {name}"

    @app.post("/echo")
    def echo() -> bytes:
        return bottle.request.body.read()

    @app.route("/json")
    def as_json() -> dict:
        return {"ok": True, "query": dict(bottle.request.query)}

    return app


def make_falcon() -> Any:
    import falcon

    class Things:
        def on_get(self, req: Any, resp: Any) -> None:
            resp.media = {"things": [1, 2, 3]}

        def on_post(self, req: Any, resp: Any) -> None:
            resp.media = {"posted": req.get_media()}
            resp.status = falcon.HTTP_201

    class Stream:
        def on_get(self, req: Any, resp: Any) -> None:
            resp.content_type = "text/plain"
            resp.stream = iter([b"alpha ", b"beta ", b"gamma"])

    app = falcon.App()
    app.add_route("/things", Things())
    app.add_route("/stream", Stream())
    return app


def make_django() -> Any:
    """A minimal Django project: settings in code, a form with CSRF, an upload, a streaming
    response and the admin's login page (no database table is needed for these)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="tpd2py-test-only",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            INSTALLED_APPS=["django.contrib.admin", "django.contrib.auth",
                            "django.contrib.contenttypes", "django.contrib.sessions",
                            "django.contrib.messages", "django.contrib.staticfiles"],
            MIDDLEWARE=["django.middleware.common.CommonMiddleware",
                        "django.contrib.sessions.middleware.SessionMiddleware",
                        "django.middleware.csrf.CsrfViewMiddleware",
                        "django.contrib.auth.middleware.AuthenticationMiddleware",
                        "django.contrib.messages.middleware.MessageMiddleware"],
            TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                        "APP_DIRS": True,
                        "OPTIONS": {"context_processors": [
                            "django.template.context_processors.request",
                            "django.contrib.auth.context_processors.auth",
                            "django.contrib.messages.context_processors.messages"]}}],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                                   "NAME": ":memory:"}},
            STATIC_URL="/static/",
            USE_TZ=True,
        )
        django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


# -- the Django project's views and URLs (ROOT_URLCONF is this module) -------------------------


def _django_urls() -> list[Any]:
    from django.contrib import admin
    from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
    from django.middleware.csrf import get_token
    from django.urls import path

    def form(request: Any) -> Any:
        if request.method == "POST":
            return JsonResponse({"name": request.POST["name"]})
        token = get_token(request)
        return HttpResponse(f'<form method="post"><input name="csrfmiddlewaretoken" '
                            f'value="{token}"></form>')

    def upload(request: Any) -> Any:
        f = request.FILES["file"]
        data = f.read()
        return JsonResponse({"filename": f.name, "size": len(data),
                             "sha256": hashlib.sha256(data).hexdigest()})

    def stream(request: Any) -> Any:
        return StreamingHttpResponse((f"row {i}\n" for i in range(3)),
                                     content_type="text/plain")

    def echo_json(request: Any) -> Any:
        return JsonResponse({"got": json.loads(request.body)})

    from django.views.decorators.csrf import csrf_exempt

    return [path("form/", form), path("upload/", csrf_exempt(upload)),
            path("stream/", stream), path("json/", csrf_exempt(echo_json)),
            path("admin/", admin.site.urls)]


def __getattr__(name: str) -> Any:  # Django reads urlpatterns lazily, after setup()
    if name == "urlpatterns":
        return _django_urls()
    raise AttributeError(name)
