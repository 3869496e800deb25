"""Who may reach the app and which files it may read: loopback and --auth checks, the --allow-dir folders."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from workbench.errors import WorkbenchError


def _parse_auth(spec: str | None):
    if not spec:
        return None
    user, sep, password = spec.partition(":")
    if not sep or not user or not password:
        raise WorkbenchError("--auth must be USER:PASS")
    return (user, password)


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_loopback(host: str | None) -> bool:
    """True when `host` (the --host value) binds the loopback interface only: localhost, 127.x.x.x or ::1."""
    if host is None:
        host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    h = host.strip().strip("[]")
    if h.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def exposure_warning(args) -> str | None:
    """Check that an app reachable from other machines (--host other than loopback, or --share) asks for a password.

    Returns None when it is fine (loopback, or --auth given), a warning to print when the operator opted out with
    --no-auth, and raises WorkbenchError otherwise: without a password anyone who reaches the port can load data
    files from the allowed folders, run the models, and cancel or resume every evaluation job."""
    host, share = getattr(args, "host", "127.0.0.1"), bool(getattr(args, "share", False))
    if getattr(args, "auth", None) or (is_loopback(host) and not share):
        return None
    how = " and ".join(x for x in (None if is_loopback(host) else f"--host {host or repr(host)} (other machines)",
                                   "--share (a public gradio.live link)" if share else None) if x)
    risk = ("anyone who reaches it could load data files from the allowed folders, run the models and cancel or "
            "resume every evaluation job")
    if getattr(args, "no_auth", False):
        return f"warning: the app is exposed through {how} WITHOUT a password (--no-auth): {risk}"
    raise WorkbenchError(f"refusing to expose the app through {how} without a password: {risk}. Add --auth USER:PASS "
                         "(every visitor then logs in), or pass --no-auth to run it open anyway, on a network you trust")


def allowed_folders(allow_dirs: list[str] | None = None) -> list[Path]:
    """The folders data may be loaded from through the UI: the --allow-dir folders (default: the working
    directory), and always the folder Gradio keeps uploads in. Resolved, so symbolic links cannot lead out."""
    from gradio.utils import get_upload_folder

    dirs = []
    for d in ([os.getcwd()] if allow_dirs is None else allow_dirs):
        path = Path(os.path.expanduser(str(d))).resolve()
        if not path.is_dir():
            raise WorkbenchError(f"--allow-dir {d}: not a folder")
        dirs.append(path)
    dirs.append(Path(get_upload_folder()).resolve())
    return list(dict.fromkeys(dirs))


def check_data_path(spec: str | None, folders: list[Path], also: tuple[Path, ...] = ()) -> None:
    """Refuse (WorkbenchError) a data path typed or uploaded in the UI unless it lies in one of `folders` (after
    resolving `..`, `~` and symbolic links) or is one of the files in `also` (the operator's --data). "demo", an
    empty value and hub ids (owner/name that is no path here) are not files and pass."""
    text = (spec or "").strip()
    if text in ("", "demo"):
        return
    expanded = os.path.expanduser(text)
    if _HUB_ID.fullmatch(expanded) and not os.path.lexists(expanded):
        return
    real = Path(expanded).resolve()
    if real in also or any(real == f or real.is_relative_to(f) for f in folders):
        return
    raise WorkbenchError(f"{text}: not in a folder this app may read ({', '.join(map(str, folders))}); upload the "
                         "file instead, or ask whoever runs the app to start it with --allow-dir FOLDER")
