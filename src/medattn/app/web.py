"""The FastAPI application: HTML pages, the REST API under ``/api/``, OpenAPI at ``/docs``.

Authentication: a signed, HttpOnly, SameSite=Lax session cookie for the pages
(sign in at ``/login``), or ``Authorization: Bearer <personal API token>`` for
the API. State-changing requests authenticated by the cookie must carry the
session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``).
A case that is not the user's own (and the user is no admin) answers 404, the
same as a case that does not exist.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from medattn import __version__
from medattn.app import pipelines
from medattn.app.db import ApiToken, Case, Database, User
from medattn.app.guards import BodyGuard
from medattn.app.jobs import JobQueue, QueueFull
from medattn.app.naming import name_case_inputs
from medattn.app.security import (
    LoginThrottle,
    authenticate,
    create_token,
    csrf_matches,
    end_session,
    is_disabled,
    new_csrf_token,
    record_token_use,
    session_user,
    start_session,
    token_for,
    token_use_is_stale,
)
from medattn.app.settings import AppSettings
from medattn.app.storage import CaseStore
from medattn.app.uploads import UploadError, check_upload
from medattn.errors import MedattnError

log = logging.getLogger("medattn.app")
HERE = Path(__file__).parent
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
#: seconds a client is told to wait when the job queue is full
QUEUE_RETRY_AFTER_S = 30


class AppState:
    def __init__(self, settings: AppSettings) -> None:
        settings.ensure_dirs()
        self.settings = settings
        self.db = Database(settings.database_url)
        self.store = CaseStore(settings.cases_dir, settings.tmp_dir)
        swept = self.store.sweep_scratch()  # scratch folders of jobs a killed server left behind
        if swept:
            log.info("removed %d stale temporary folder(s) from %s", swept, settings.tmp_dir)
        self.key = settings.secret_key()
        self.throttle = LoginThrottle(settings.login_max_failures, settings.login_max_failures_address,
                                      settings.login_window_s)
        pipelines.scan_user_models(settings.models_dir)
        self.jobs = JobQueue(self.db, self._run_case, maxsize=settings.queue_size, workers=settings.workers)

    def _run_case(self, case_id: str, progress) -> None:
        pipelines.run_case(self.db, self.store, case_id, progress)


def _state(request: Request) -> AppState:
    return request.app.state.medattn


def _db(request: Request):
    with _state(request).db.session() as s:
        yield s


DbSession = Annotated[Session, Depends(_db)]


def _user_from_request(request: Request, s: Session) -> tuple[User | None, bool]:
    """(user, via_token). Blocking database work: call it in the threadpool, not on the event loop."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        tok = token_for(s, auth[7:].strip())
        if tok is None:
            raise HTTPException(401, "invalid API token", headers={"WWW-Authenticate": "Bearer"})
        if token_use_is_stale(tok):
            record_token_use(_state(request).db, tok.id)
        return tok.user, True
    user = session_user(s, request.session.get("sid"))  # server-side: signed-out sessions are gone
    if user is not None and is_disabled(user):  # `medattn users disable` ends open sessions too
        user = None
    return user, False


async def _check_csrf(request: Request, via_token: bool) -> None:
    if via_token or request.method in SAFE_METHODS:
        return
    expected = request.session.get("csrf")
    given = request.headers.get("x-csrf-token")
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        given = (await request.form()).get("csrf_token")
    if not csrf_matches(expected, given if isinstance(given, str) else None):
        raise HTTPException(403, "missing or invalid CSRF token")


async def api_user(request: Request, s: DbSession) -> User:
    user, via_token = await run_in_threadpool(_user_from_request, request, s)
    if user is None:
        raise HTTPException(401, "sign in or send an API token", headers={"WWW-Authenticate": "Bearer"})
    await _check_csrf(request, via_token)
    return user


class _LoginRedirect(Exception):
    pass


async def page_user(request: Request, s: DbSession) -> User:
    user, via_token = await run_in_threadpool(_user_from_request, request, s)
    if user is None:
        raise _LoginRedirect
    await _check_csrf(request, via_token)
    return user


ApiUser = Annotated[User, Depends(api_user)]
PageUser = Annotated[User, Depends(page_user)]


def _visible_cases(s: Session, user: User):
    q = select(Case)
    if not user.is_admin:
        q = q.where(Case.owner_id == user.id)
    return q


def _get_case(s: Session, user: User, case_id: str) -> Case:
    case = s.get(Case, case_id)
    if case is None or (case.owner_id != user.id and not user.is_admin):
        raise HTTPException(404, "case not found")
    return case


def case_json(case: Case) -> dict[str, Any]:
    return {
        "id": case.id,
        "title": case.title,
        "pipeline": case.pipeline,
        "model": case.model_name,
        "model_version": case.model_version,
        "status": case.status,
        "progress": case.progress,
        "message": case.message,
        "input_name": case.input_name,
        "input_format": case.input_format,
        "modality": case.modality,
        "owner": case.owner.username if case.owner else None,
        "created_at": case.created_at.isoformat() + "Z",
        "finished_at": case.finished_at.isoformat() + "Z" if case.finished_at else None,
        "results": case.results,
        "files": [{"name": f.name, "kind": f.kind, "media_type": f.media_type, "size": f.size,
                   "url": f"/api/cases/{case.id}/files/{f.name}"} for f in case.files],
    }


def create_app(settings: AppSettings | None = None, start_worker: bool = True) -> FastAPI:
    """Build the application (the database is created or migrated here)."""
    settings = settings or AppSettings.from_env()
    state = AppState(settings)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_worker:
            state.jobs.start()
        yield
        state.jobs.stop()

    app = FastAPI(
        docs_url=None, redoc_url=None,  # served below from the package's own assets (work offline)
        title="medattn auxiliary diagnosis",
        version=__version__,
        description="Segment, denoise and enhance medical images; cases, reports and exports. "
        "Results assist and do not replace a clinician.",
        lifespan=lifespan,
    )
    app.state.medattn = state
    app.add_middleware(BodyGuard, max_body=lambda: int(settings.max_request_mb * 1e6),
                       is_signed_in=lambda scope: _signed_in(state, scope))  # inside the session middleware
    app.add_middleware(SessionMiddleware, secret_key=state.key, session_cookie="medattn_session",
                       max_age=settings.session_max_age, same_site="lax", https_only=settings.secure_cookies)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _add_offline_docs(app)
    templates = Jinja2Templates(directory=HERE / "templates")

    @app.exception_handler(_LoginRedirect)
    async def _to_login(request: Request, exc: _LoginRedirect) -> Response:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.middleware("http")
    async def _security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith(("/docs", "/redoc")):
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'",
            )
        return response

    def render(request: Request, name: str, user: User | None, status_code: int = 200,
               headers: dict[str, str] | None = None, **ctx: Any) -> HTMLResponse:
        if "csrf" not in request.session:
            request.session["csrf"] = new_csrf_token()
        return templates.TemplateResponse(
            request, name, {"user": user, "csrf": request.session["csrf"], "version": __version__, **ctx},
            status_code=status_code, headers=headers,
        )

    # ------------------------------------------------------------------ pages
    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, next: str = "/", error: str = "") -> HTMLResponse:
        return render(request, "login.html", None, next=next if next.startswith("/") else "/", error=error)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, s: DbSession, username: Annotated[str, Form()],
                    password: Annotated[str, Form()], csrf_token: Annotated[str, Form()] = "",
                    next: Annotated[str, Form()] = "/") -> Response:
        if not csrf_matches(request.session.get("csrf"), csrf_token):
            raise HTTPException(403, "missing or invalid CSRF token")
        throttle, address = _state(request).throttle, request.client.host if request.client else "unknown"
        wait = throttle.retry_after(username, address)
        if wait:
            return render(request, "login.html", None, status_code=429, headers={"Retry-After": str(wait)},
                          next=next, error=f"Too many failed sign-ins. Try again in {wait} seconds.")
        user = await run_in_threadpool(authenticate, s, username, password)  # Argon2 is slow on purpose
        if user is None:
            throttle.failed(username, address)
            return render(request, "login.html", None, next=next, error="Wrong user name or password.")
        throttle.succeeded(username)
        sid = await run_in_threadpool(start_session, s, user, settings.session_max_age)
        # Committed before the redirect goes out: the dependency's own commit runs after the response is sent,
        # and the browser's next request (following the redirect) must find the session.
        await run_in_threadpool(s.commit)
        request.session.clear()
        request.session["sid"] = sid
        request.session["csrf"] = new_csrf_token()
        return RedirectResponse(next if next.startswith("/") and not next.startswith("//") else "/", 303)

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, s: DbSession, user: PageUser) -> Response:
        end_session(s, request.session.get("sid"))  # the cookie stops working, wherever a copy of it is
        s.commit()  # before the response: a copy of the cookie must fail from the very next request
        request.session.clear()
        return RedirectResponse("/login", 303)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def case_list_page(request: Request, s: DbSession, user: PageUser, q: str = "", status: str = "",
                       pipeline: str = "") -> HTMLResponse:
        cases = _query_cases(s, user, q, status, pipeline, limit=200, offset=0)
        return render(request, "cases.html", user, cases=cases, q=q, status=status, pipeline=pipeline,
                      pipelines=pipelines.PIPELINES)

    @app.get("/cases/new", response_class=HTMLResponse, include_in_schema=False)
    def new_case_page(request: Request, user: PageUser) -> HTMLResponse:
        return render(request, "new_case.html", user, catalog=pipelines.catalog(), error="")

    @app.post("/cases", include_in_schema=False)
    async def create_case_form(request: Request, s: DbSession, user: PageUser,
                               files: Annotated[list[UploadFile], File()],
                               pipeline: Annotated[str, Form()], model: Annotated[str, Form()] = "",
                               title: Annotated[str, Form()] = "",
                               allow_modality_mismatch: Annotated[bool, Form()] = False) -> Response:
        try:
            created = await _create_cases(request, s, user, files, pipeline, model, title, allow_modality_mismatch)
        except HTTPException as exc:
            if exc.status_code in (400, 413, 415, 503):  # the form again, with the message and the error status
                return render(request, "new_case.html", user, status_code=exc.status_code, headers=exc.headers,
                              catalog=pipelines.catalog(), error=exc.detail)
            raise
        target = f"/cases/{created[0].id}" if len(created) == 1 else "/"
        return RedirectResponse(target, 303)

    @app.get("/cases/{case_id}", response_class=HTMLResponse, include_in_schema=False)
    def case_page(request: Request, case_id: str, s: DbSession, user: PageUser) -> HTMLResponse:
        case = _get_case(s, user, case_id)
        return render(request, "case.html", user, case=case, card=pipelines.model_card(case.model_name),
                      files={f.kind: f for f in case.files}, viewer=_viewer_info(request, case))

    @app.get("/tokens", response_class=HTMLResponse, include_in_schema=False)
    def tokens_page(request: Request, s: DbSession, user: PageUser, created: str = "") -> HTMLResponse:
        toks = s.scalars(select(ApiToken).where(ApiToken.user_id == user.id)).all()
        return render(request, "tokens.html", user, tokens=toks, created=request.session.pop("new_token", ""))

    @app.post("/tokens", include_in_schema=False)
    def create_token_form(request: Request, s: DbSession, user: PageUser,
                          name: Annotated[str, Form()] = "token") -> Response:
        _, plain = create_token(s, user, name)
        s.commit()  # before the response (the dependency commits only after it is sent)
        request.session["new_token"] = plain
        return RedirectResponse("/tokens", 303)

    @app.post("/tokens/{token_id}/delete", include_in_schema=False)
    def delete_token_form(token_id: int, s: DbSession, user: PageUser) -> Response:
        tok = s.get(ApiToken, token_id)
        if tok is None or tok.user_id != user.id:
            raise HTTPException(404, "token not found")
        s.delete(tok)
        s.commit()  # revoked before the response goes out
        return RedirectResponse("/tokens", 303)

    # -------------------------------------------------------------------- API
    @app.get("/api/health", tags=["service"])
    def health(request: Request) -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "queue": _state(request).jobs.pending}

    @app.get("/api/me", tags=["accounts"])
    def me(user: ApiUser) -> dict[str, Any]:
        return {"id": user.id, "username": user.username, "is_admin": user.is_admin}

    @app.get("/api/models", tags=["models"])
    def models(user: ApiUser, modality: str | None = None) -> dict[str, Any]:
        """Pipelines and the models each one can run, each with its modality, and their model cards. With
        ``modality`` (endoscopy, dermoscopy, rgb, ct, mr, gray...), only the models that fit such an input and
        the defaults for it."""
        return pipelines.catalog(modality)

    @app.get("/api/cases", tags=["cases"])
    def list_cases(s: DbSession, user: ApiUser, q: str = "", status: str = "", pipeline: str = "",
                   limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """Cases visible to the caller (own cases; all for admins), newest first, with search and filters."""
        cases = _query_cases(s, user, q, status, pipeline, limit=min(max(limit, 1), 500), offset=max(offset, 0))
        return {"cases": [case_json(c) for c in cases], "limit": limit, "offset": offset}

    @app.post("/api/cases", status_code=202, tags=["cases"])
    async def create_cases(request: Request, s: DbSession, user: ApiUser,
                           files: Annotated[list[UploadFile], File(description="one or more images")],
                           pipeline: Annotated[str, Form(description="segment | denoise | enhance | denoise+segment")],
                           model: Annotated[str, Form()] = "", title: Annotated[str, Form()] = "",
                           allow_modality_mismatch: Annotated[bool, Form(
                               description="run a model whose modality does not fit the input (recorded in "
                                           "the case)")] = False) -> dict[str, Any]:
        """Upload files; one case per file is queued. Returns the new cases (status ``queued``). The model
        (default: chosen from each input's modality) must fit the input's modality, else HTTP 400."""
        created = await _create_cases(request, s, user, files, pipeline, model, title, allow_modality_mismatch)
        return {"cases": [case_json(c) for c in created]}

    @app.get("/api/cases/{case_id}", tags=["cases"])
    def get_case(case_id: str, s: DbSession, user: ApiUser) -> dict[str, Any]:
        return case_json(_get_case(s, user, case_id))

    @app.delete("/api/cases/{case_id}", status_code=204, tags=["cases"])
    def delete_case(request: Request, case_id: str, s: DbSession, user: ApiUser) -> Response:
        case = _get_case(s, user, case_id)
        if case.status in ("queued", "running"):
            raise HTTPException(409, "case is still being processed")
        s.delete(case)
        s.commit()  # the row first, then the files: a failed commit leaves the case whole
        _state(request).store.delete_case(case_id)
        return Response(status_code=204)

    @app.get("/api/cases/{case_id}/files/{name}", tags=["cases"])
    def case_file(request: Request, case_id: str, name: str, s: DbSession, user: ApiUser,
                  download: bool = False) -> FileResponse:
        case = _get_case(s, user, case_id)
        cf = next((f for f in case.files if f.name == name), None)
        path = _state(request).store.path(case_id, name)
        if cf is None or not path.is_file():
            raise HTTPException(404, "file not found")
        return FileResponse(path, media_type=cf.media_type,
                            filename=cf.name if download else None,
                            content_disposition_type="attachment" if download else "inline")

    @app.get("/api/cases/{case_id}/slices/{layer}/{z}", tags=["cases"])
    def case_slice(request: Request, case_id: str, layer: str, z: int, s: DbSession, user: ApiUser) -> Response:
        """Slice ``z`` (0-based) of a viewer layer as raw little-endian pixels for the browser to draw.

        ``layer``: ``image`` (input values, HU for CT), ``processed`` (denoised), ``labels``
        (lesion numbers), ``attention`` (0..255). Headers ``X-Dtype`` (uint8, uint16, int16,
        float32) and ``X-Shape`` (``H,W`` or ``H,W,3``) say how to read the body.
        """
        return _slice_response(request, _get_case(s, user, case_id), layer, z)

    @app.get("/api/cases/{case_id}/report.pdf", tags=["exports"])
    def report(request: Request, case_id: str, s: DbSession, user: ApiUser) -> Response:
        """PDF report: images, measurements, model and version, and the assistive-use statement."""
        case = _get_case(s, user, case_id)
        _require_done(case)
        from medattn.app.reports import build_report

        try:
            pdf = build_report(case, _state(request).store)
        except Exception as exc:  # a report that cannot be built is the case's problem, not a server crash
            raise HTTPException(422, f"report of case {case.id[:8]} ({case.input_name}) failed: "
                                     f"{type(exc).__name__}: {exc}"[:500]) from exc
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="medattn-case-{case.id[:8]}.pdf"'})

    @app.get("/api/cases/{case_id}/export/{fmt}", tags=["exports"])
    def export(request: Request, case_id: str, fmt: str, s: DbSession, user: ApiUser) -> Response:
        """The mask as ``png``, ``nifti`` or ``dicom-seg`` (DICOM inputs only)."""
        case = _get_case(s, user, case_id)
        _require_done(case)
        from medattn.app.exports import ExportError, export_mask

        try:
            data, media_type, filename = export_mask(case, _state(request).store, fmt)
        except ExportError as exc:
            raise HTTPException(422, str(exc)) from exc
        return Response(data, media_type=media_type,
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    @app.get("/api/tokens", tags=["accounts"])
    def list_tokens(s: DbSession, user: ApiUser) -> dict[str, Any]:
        toks = s.scalars(select(ApiToken).where(ApiToken.user_id == user.id)).all()
        return {"tokens": [{"id": t.id, "name": t.name, "prefix": t.prefix, "created_at": t.created_at.isoformat(),
                            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None} for t in toks]}

    @app.post("/api/tokens", status_code=201, tags=["accounts"])
    def new_token(s: DbSession, user: ApiUser, name: Annotated[str, Form()] = "token") -> dict[str, Any]:
        """Create a personal API token. The token is shown once; only its hash is stored."""
        tok, plain = create_token(s, user, name)
        s.commit()  # usable as soon as the client reads it
        return {"id": tok.id, "name": tok.name, "token": plain}

    @app.delete("/api/tokens/{token_id}", status_code=204, tags=["accounts"])
    def delete_token(token_id: int, s: DbSession, user: ApiUser) -> Response:
        tok = s.get(ApiToken, token_id)
        if tok is None or tok.user_id != user.id:
            raise HTTPException(404, "token not found")
        s.delete(tok)
        s.commit()  # revoked before the response goes out
        return Response(status_code=204)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/") or request.headers.get("accept", "").startswith("application/json"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return templates.TemplateResponse(request, "error.html", {"status": exc.status_code, "detail": exc.detail,
                                          "user": None, "version": __version__}, status_code=exc.status_code)

    return app


def _query_cases(s: Session, user: User, q: str, status: str, pipeline: str, limit: int, offset: int) -> list[Case]:
    query = _visible_cases(s, user)
    if q:
        like = f"%{q}%"
        query = query.where(or_(Case.title.ilike(like), Case.input_name.ilike(like), Case.model_name.ilike(like)))
    if status:
        query = query.where(Case.status == status)
    if pipeline:
        query = query.where(Case.pipeline == pipeline)
    return list(s.scalars(query.order_by(Case.created_at.desc()).limit(limit).offset(offset)))


def _viewer_info(request: Request, case: Case) -> dict[str, Any] | None:
    from medattn.app.viewer import read_info

    return read_info(_state(request).store.root / case.id) if case.status == "done" else None


def _slice_response(request: Request, case: Case, layer: str, z: int) -> Response:
    from medattn.app.viewer import read_slice

    if case.status != "done":
        raise HTTPException(404, "no viewer data: the case is not done")
    try:
        data, dtype, shape = read_slice(_state(request).store.root / case.id, layer, z)
    except KeyError:
        raise HTTPException(404, f"this case has no {layer!r} layer") from None
    except IndexError:
        raise HTTPException(404, f"slice {z} is out of range") from None
    return Response(data, media_type="application/octet-stream",
                    headers={"X-Dtype": dtype.name, "X-Shape": ",".join(map(str, shape)),
                             "Cache-Control": "private, max-age=3600"})


def _require_done(case: Case) -> None:
    if case.status != "done":
        raise HTTPException(409, f"case is {case.status}, not done")


async def _create_cases(request: Request, s: Session, user: User, files: list[UploadFile], pipeline: str,
                        model: str, title: str, allow_mismatch: bool = False) -> list[Case]:
    state = _state(request)
    settings = state.settings
    try:
        pipelines.resolve(pipeline, model or None)  # pipeline and model names, before reading any upload
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    if not files:
        raise HTTPException(400, "no file uploaded")
    await run_in_threadpool(s.commit)  # give the connection back before the slow checks below
    max_bytes = int(settings.max_upload_mb * 1e6)
    try:
        with state.jobs.admit(len(files)) as ticket:  # a place for every file, or 503 and nothing stored
            raw = [(up.filename or "upload", await up.read(max_bytes + 1)) for up in files]
            # Decoding, de-identification and database writes are blocking work: keep them off the event loop.
            created = await run_in_threadpool(_check_and_store, state, s, user, raw, pipeline, model, title,
                                              allow_mismatch)
            for case in created:
                state.jobs.submit(case.id, ticket)
    except QueueFull:
        raise HTTPException(503, f"the job queue is full ({settings.queue_size} jobs); nothing was stored, "
                                 f"try again in {QUEUE_RETRY_AFTER_S} s",
                            headers={"Retry-After": str(QUEUE_RETRY_AFTER_S)}) from None
    return created


def _check_and_store(state: AppState, s: Session, user: User, raw: list[tuple[str, bytes]], pipeline: str,
                     model: str, title: str, allow_mismatch: bool = False) -> list[Case]:
    settings = state.settings
    max_bytes = int(settings.max_upload_mb * 1e6)
    checked = []
    for name, data in raw:
        try:
            checked.append(check_upload(name, data, max_bytes, settings.max_pixels, state.key.encode()))
        except UploadError as exc:
            status = 413 if "limit" in str(exc) and "MB" in str(exc) else 400
            raise HTTPException(status, str(exc)) from None
    plans = [_plan(up, pipeline, model, allow_mismatch) for up in checked]  # the modality guard, per file
    created = []
    stored: list[str] = []
    try:
        for up, plan in zip(checked, plans, strict=True):
            case = Case(owner_id=user.id, title=title or up.name, pipeline=pipeline, model_name=plan.model,
                        model_version=pipelines.model_version(plan.model), input_name=up.name,
                        input_format=up.kind, modality=plan.input_modality, meta={}, results=plan.results())
            inputs = name_case_inputs(case, up.files, settings.keep_file_names, up.name)  # before the INSERT
            case.title, case.input_name = case.title[:255], case.input_name[:255]
            s.add(case)
            s.flush()
            stored.append(case.id)
            for fname, blob in inputs:
                state.store.add_bytes(s, case, "input", fname, blob)
            created.append(case)
        s.commit()  # the case and its files exist before the worker can see the id
    except Exception as exc:  # nothing half-stored: no rows (rolled back), no files
        s.rollback()
        for cid in stored:
            state.store.delete_case(cid)
        name = checked[len(stored) - 1].name if stored else "upload"
        log.error("storing an upload failed: %s", type(exc).__name__)
        raise HTTPException(400, f"{name}: could not be stored ({type(exc).__name__})") from None
    return created


def _plan(up: Any, pipeline: str, model: str, allow_mismatch: bool) -> pipelines.Resolution:
    """The model for one checked upload, from its modality; HTTP 400 naming the file when none may run."""
    try:
        found, guess = up.modality or pipelines.detect_input(up.files, up.kind)  # decoded once, at the check
        return pipelines.resolve(pipeline, model or None, found, guess, allow_mismatch)
    except (ValueError, MedattnError) as exc:
        raise HTTPException(400, f"{up.name}: {exc}") from None


async def _signed_in(state: AppState, scope: dict[str, Any]) -> bool:
    """Whether a request carries a valid session or API token, from its headers only (for BodyGuard)."""
    request = Request(scope)

    def check() -> bool:
        with state.db.session() as s:
            try:
                user, _ = _user_from_request(request, s)
            except HTTPException:
                return False
            return user is not None

    return await run_in_threadpool(check)


DOCS_ASSETS = "/docs-assets"


def _add_offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from the assets of the fastapi-offline package: no CDN needed."""
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{title} - API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{title} - API",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False)
