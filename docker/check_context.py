"""Checks what can be checked without a Docker engine: every COPY source in docker/Dockerfile.* exists in
the build context (the project root), and compose.yaml parses with the services and build files it names."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if parts and parts[0].upper() == "COPY":
            args = [p for p in parts[1:] if not p.startswith("--")]
            sources += args[:-1]
    return sources


def problems() -> list[str]:
    found = []
    for dockerfile in sorted((ROOT / "docker").glob("Dockerfile.*")):
        for src in copy_sources(dockerfile):
            if not (ROOT / src).exists():
                found.append(f"{dockerfile.name}: COPY source {src} is missing from the build context")
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = (ROOT / "docker" / build["context"]).resolve()
            if not (context / build["dockerfile"]).exists():
                found.append(f"compose service {name}: {build['dockerfile']} not found under {context}")
    return found


if __name__ == "__main__":
    errors = problems()
    print("\n".join(errors) or "docker: build contexts and compose file are consistent")
    sys.exit(1 if errors else 0)
