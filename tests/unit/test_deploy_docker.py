"""deploy/Dockerfile and .dockerignore: a small non-root runtime image that runs the worker.

Docker is not available where the tests run: the Dockerfile is parsed into instructions and checked for the
properties the manifests rely on (numeric non-root user, no dev extra, the worker command and queue, the
metrics port), and .dockerignore is evaluated with Docker's rules against what the Dockerfile copies.
"""

from __future__ import annotations

import fnmatch
import json
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from producers.keys import drain_queue
from producers.wire import DEFAULT_PREFIX
from tests.unit.test_compose import REPO, load_compose
from tests.unit.test_deploy_manifests import BUILDS, worker_container
from worker.settings import Settings

DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    parsed = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            parsed.append((keyword.upper(), " ".join(arguments.split())))
    return parsed


def stages(parsed: list[Instruction]) -> list[list[Instruction]]:
    """The instructions of each build stage, in order."""
    result: list[list[Instruction]] = []
    for keyword, arguments in parsed:
        if keyword == "FROM":
            result.append([])
        result[-1].append((keyword, arguments))
    return result


def exec_form(parsed: list[Instruction], keyword: str) -> list[str]:
    """The JSON (exec) form arguments of the last such instruction; shell form fails."""
    (arguments,) = [args for key, args in parsed if key == keyword][-1:]
    value = json.loads(arguments)
    assert isinstance(value, list), f"{keyword} must use the exec form"
    return value


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final_stage(dockerfile: list[Instruction]) -> list[Instruction]:
    return stages(dockerfile)[-1]


def test_the_parser_joins_continuations_and_drops_comments() -> None:
    """The helper reads Dockerfiles the way docker does for the parts checked here."""
    text = "# c\nFROM x AS y\nRUN a \\\n    b\n\nUSER 1\n"
    assert instructions(text) == [("FROM", "x AS y"), ("RUN", "a b"), ("USER", "1")]


def test_every_stage_builds_from_python_3_11_slim(dockerfile: list[Instruction]) -> None:
    """The build and runtime stages share the slim Python 3.11 base."""
    bases = [arguments.split()[0] for keyword, arguments in dockerfile if keyword == "FROM"]
    assert bases
    assert set(bases) == {"python:3.11-slim"}


def test_the_image_runs_as_numeric_user_10001(final_stage: list[Instruction]) -> None:
    """A numeric USER lets Kubernetes verify runAsNonRoot; it matches the Deployment's runAsUser."""
    (user,) = [arguments for keyword, arguments in final_stage if keyword == "USER"][-1:]
    assert user.split(":")[0] == "10001"
    pod = next(r for r in BUILDS["base"] if r["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(user.split(":")[0])


def test_only_runtime_dependencies_are_installed(dockerfile: list[Instruction]) -> None:
    """``pip install ".[worker,local]"``: the worker's and the stand-in's dependencies, without the dev extra."""
    installs = [arguments for keyword, arguments in dockerfile if keyword == "RUN" and "pip install" in arguments]
    assert installs
    assert all("dev" not in install and "-e " not in install for install in installs)
    assert any(
        install.split("pip install")[1].split("&&")[0].split()[-1] == '".[worker,local]"' for install in installs
    )


def test_the_image_writes_no_bytecode_and_homes_in_tmp(final_stage: list[Instruction]) -> None:
    """A read-only root works: no .pyc written at run time, and HOME is the writable /tmp."""
    env = " ".join(arguments for keyword, arguments in final_stage if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env.split()
    assert "HOME=/tmp" in env.split()


def test_the_default_command_runs_the_threads_worker_on_the_drain_queue(final_stage: list[Instruction]) -> None:
    """``celery -A worker worker --pool threads ... --queues cio.drain``."""
    command = exec_form(final_stage, "ENTRYPOINT") + exec_form(final_stage, "CMD")
    assert command[:4] == ["celery", "-A", "worker", "worker"]
    assert command[command.index("--pool") + 1] == "threads"
    assert command[command.index("--queues") + 1] == drain_queue(DEFAULT_PREFIX)
    assert Settings().key_prefix == DEFAULT_PREFIX


def test_compose_and_kubernetes_run_the_images_command(final_stage: list[Instruction]) -> None:
    """The worker command is written three times; the three copies agree."""
    cmd = exec_form(final_stage, "CMD")
    assert load_compose()["services"]["worker"]["command"] == cmd
    for resources in BUILDS.values():
        assert worker_container(resources)["args"] == cmd
        assert "command" not in worker_container(resources)


def test_the_metrics_port_is_exposed_and_sigterm_stops(final_stage: list[Instruction]) -> None:
    """EXPOSE names the default metrics port; SIGTERM is the stop signal the worker handles."""
    exposed = {port for keyword, arguments in final_stage if keyword == "EXPOSE" for port in arguments.split()}
    assert str(Settings().metrics_port) in exposed
    assert ("STOPSIGNAL", "SIGTERM") in final_stage


def _matches(candidate: str, pattern: str) -> bool:
    """One path against one pattern; a ``**/`` pattern matches the last segment at any depth."""
    if pattern.startswith("**/"):
        return fnmatch.fnmatch(candidate.rsplit("/", 1)[-1], pattern.removeprefix("**/"))
    return fnmatch.fnmatch(candidate, pattern)


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins, ``!`` re-includes, parents count."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        body = pattern.removeprefix("!").rstrip("/")
        if any(_matches(candidate, body) for candidate in candidates):
            result = not pattern.startswith("!")
    return result


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def copied_sources(dockerfile: list[Instruction]) -> list[str]:
    """Paths the Dockerfile COPYs from the build context (not ``--from`` another stage)."""
    sources = []
    for keyword, arguments in dockerfile:
        if keyword == "COPY" and not arguments.startswith("--from"):
            sources += arguments.split()[:-1]
    return sources


def test_everything_the_dockerfile_copies_is_in_the_build_context(dockerfile: list[Instruction]) -> None:
    """.dockerignore keeps the sources the build needs, and each one exists."""
    patterns = dockerignore_patterns()
    sources = copied_sources(dockerfile)
    assert {"pyproject.toml", "README.md", "worker", "producers"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), source
        assert not ignored(source, patterns), source
        assert not ignored(f"{source}/__init__.py", patterns) or not (REPO / source).is_dir(), source


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "deploy/compose/secrets/demo_api_key",
        "worker/__pycache__/settings.cpython-311.pyc",
        "cio_fleet.egg-info/PKG-INFO",
        ".env",
    ],
)
def test_the_build_context_leaves_out_history_secrets_and_caches(path: str) -> None:
    """Nothing but the sources reaches the daemon: no history, virtualenv, tests, secrets or bytecode."""
    assert ignored(path, dockerignore_patterns())


def test_the_ignore_rules_re_include_after_a_catch_all() -> None:
    """The matcher applies Docker's order rules (so the checks above can fail)."""
    assert ignored("a/b.py", ["*"])
    assert not ignored("a/b.py", ["*", "!a/"])
    assert ignored("a/__pycache__/x.pyc", ["*", "!a/", "**/__pycache__"])
    assert not ignored("a/b.py", [])


CONSTRAINTS = REPO / "deploy" / "constraints.txt"


def pins() -> dict[str, str]:
    """Distribution (normalised name) → pinned version, from deploy/constraints.txt."""
    found: dict[str, str] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned with ==: {line!r}"
            found[canonicalize_name(name)] = version
    return found


def test_the_image_installs_with_the_pinned_constraints(dockerfile: list[Instruction]) -> None:
    """Reproducible images: the runtime install is constrained by deploy/constraints.txt, copied into the build."""
    installs = [arguments for keyword, arguments in dockerfile if keyword == "RUN" and "pip install" in arguments]
    assert any("-c deploy/constraints.txt" in install for install in installs)
    assert "deploy/constraints.txt ./deploy/constraints.txt" in [args for key, args in dockerfile if key == "COPY"]


def test_the_constraints_pin_every_runtime_requirement_at_a_version_it_allows() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["worker"]]
    requirements += project["optional-dependencies"]["local"]
    pinned = pins()
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not pinned in deploy/constraints.txt (run `make constraints`)"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]} does not satisfy {text}"
