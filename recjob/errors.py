"""What went wrong, in one line: the root cause of a failure raised in Java (py4j's ``Py4JJavaError`` prints the
call that failed and a 200-line trace, the reason only in its last ``Caused by``), and whether it is a refusal
of the machine (permission, read-only filesystem) that no retry can get past."""
from __future__ import annotations

import errno

DENIED_MARKERS = ("AccessDeniedException", "AccessControlException", "Permission denied", "Read-only file system")


def root_cause(exc: BaseException) -> str:
    """The innermost cause of ``exc`` as one short line (``Class: message``); Python exceptions as themselves."""
    java = getattr(exc, "java_exception", None)
    if java is None:
        cause = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        text = f"{type(cause).__name__}: {cause}"
        return (text.splitlines() or [text])[0]
    try:
        while java.getCause() is not None:
            java = java.getCause()
        return f"{java.getClass().getSimpleName()}: {java.getMessage()}".splitlines()[0]
    except Exception:  # noqa: BLE001 (the JVM is gone: fall back to the Python side's first line)
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def is_denied(exc: BaseException) -> bool:
    """Permission denied or a read-only filesystem, on the Python or the Java side."""
    if isinstance(exc, PermissionError) or (isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EROFS)):
        return True
    if getattr(exc, "java_exception", None) is not None:
        return any(m in root_cause(exc) for m in DENIED_MARKERS)
    return False
