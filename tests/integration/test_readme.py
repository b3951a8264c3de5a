"""The README reads on its own: every link stays inside the repository and leads to a file, the
two commands are there, and the configuration and `%tcache` commands are explained, not just
named."""

from __future__ import annotations

import re

from tests.support import REPO

README = REPO / "README.md"


def _text() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_links_only_to_files_of_the_repository() -> None:
    text = _text()
    assert not re.findall(r"https?://\S+", text), "a link outside the repository"
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert targets
    for target in targets:
        path = target.split("#")[0]
        assert (REPO / path).exists(), f"README links to {target}, which is not in the repository"


def test_readme_keeps_the_two_commands() -> None:
    section = _text().split("## Two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^bash \S+", section, re.M)
    assert commands == ["bash scripts/main.sh", "bash scripts/test.sh"]


def test_readme_explains_each_tcache_command() -> None:
    text = _text()
    for command in ("%tcache stats", "%tcache explain", "%tcache dashboard"):
        line = re.search(rf"^\* `{command}[^`]*` — (.+)$", text, re.M)
        assert line, f"{command} is not explained in a line of its own"
        assert len(line.group(1).split()) >= 8, f"{command}: {line.group(1)!r}"


def test_readme_says_what_each_configuration_variable_does() -> None:
    text = _text()
    section = text.split("**Configuration**", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([A-Z][A-Z0-9_]{3,})`", section))
    seed = {
        "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD",
        "MEMORY_CACHE_SIZE_MB", "DISK_CACHE_SIZE_GB", "DISK_CACHE_PATH",
        "S3_CACHE_BUCKET", "S3_CACHE_REGION", "CELERY_WORKER_ID", "AWS_BATCH_JOB_ID",
    }  # fmt: skip
    assert seed <= named, seed - named
    assert "caching:" in section  # the YAML block, by its name
    # and the reference of every variable is linked
    assert "docs/how-to/configure.md" in section
    configure = (REPO / "docs" / "how-to" / "configure.md").read_text(encoding="utf-8")
    for variable in named:
        assert variable in configure, f"{variable} is not in docs/how-to/configure.md"
