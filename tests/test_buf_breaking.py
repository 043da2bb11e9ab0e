"""scripts/buf_breaking.sh finds breaking proto changes against the right version of main.

Each case builds a throwaway git repository in a temporary folder with a copy of protos/,
so the project's own history is never changed.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "buf_breaking.sh"
IDENTITY_PROTO = Path("protos/trustfirst/identity/v1/identity.proto")
SOURCE_FIELD = "  string source = 2;"


def _buf() -> str:
    local = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
    found = str(local) if local.exists() else shutil.which("buf")
    if found is None:
        if os.environ.get("TRUSTFIRST_REQUIRE_BUF") == "1":
            pytest.fail("buf not found; .ci/run installs it with npm into .tools/")
        pytest.skip("buf not installed (npm install --prefix .tools @bufbuild/buf)")
    return found


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=tests", "-c", "user.email=tests@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def _edit(repo: Path, old: str, new: str) -> None:
    path = repo / IDENTITY_PROTO
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _commit(repo: Path, message: str) -> None:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BUF=_buf())
    env.pop("TRUSTFIRST_BUF_AGAINST", None)
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose main has one commit: the current protos/."""
    _buf()
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    _git(tmp_path, "init", "-q", "-b", "main")
    _commit(tmp_path, "Add protos")
    return tmp_path


def test_breaking_first_commit_passes(repo: Path) -> None:
    result = _run(repo)

    assert result.returncode == 0, result.stderr
    assert "first commit" in result.stdout


def test_breaking_added_field_passes(repo: Path) -> None:
    _edit(repo, SOURCE_FIELD, SOURCE_FIELD + "\n  string channel_hint = 99;")
    _commit(repo, "Add a field")
    result = _run(repo)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "comparing protos/ with HEAD~1" in result.stdout


def test_breaking_deleted_field_on_main(repo: Path) -> None:
    _edit(repo, SOURCE_FIELD, "  reserved 2;")
    _commit(repo, "Delete a field")
    result = _run(repo)

    assert result.returncode == 1
    assert "comparing protos/ with HEAD~1" in result.stdout
    assert 'field "2" with name "source"' in result.stdout + result.stderr


def test_breaking_uncommitted_change(repo: Path) -> None:
    _edit(repo, SOURCE_FIELD, "  int64 source = 2;")
    result = _run(repo)

    assert result.returncode == 1
    assert "comparing protos/ with HEAD " in result.stdout


def test_breaking_branch_against_main(repo: Path) -> None:
    _git(repo, "checkout", "-q", "-b", "feature")
    _edit(repo, SOURCE_FIELD, "  string source = 12;")
    _commit(repo, "Renumber a field")
    _edit(repo, "string request_id = 3;", "string request_id = 3;\n  string note = 98;")
    _commit(repo, "Add a field")
    result = _run(repo)

    # Against HEAD~1 only the added field would show; against main the renumbering does.
    assert result.returncode == 1
    assert "comparing protos/ with the merge base with main" in result.stdout


def test_breaking_branch_ignores_later_main(repo: Path) -> None:
    _git(repo, "checkout", "-q", "-b", "feature")
    _edit(repo, "string request_id = 3;", "string request_id = 3;\n  string note = 98;")
    _commit(repo, "Add a field on the branch")
    _git(repo, "checkout", "-q", "main")
    _edit(repo, SOURCE_FIELD, SOURCE_FIELD + "\n  string channel_hint = 99;")
    _commit(repo, "Add a field on main")
    _git(repo, "checkout", "-q", "feature")
    result = _run(repo)

    # Against main's tip, the branch would seem to delete field 99.
    assert result.returncode == 0, result.stdout + result.stderr


def test_breaking_explicit_ref(repo: Path) -> None:
    _edit(repo, SOURCE_FIELD, "  reserved 2;")
    _commit(repo, "Delete a field")
    result = _run(repo, "HEAD")

    assert result.returncode == 0, result.stdout + result.stderr


def test_breaking_unknown_ref(repo: Path) -> None:
    result = _run(repo, "no-such-branch")

    assert result.returncode == 2
    assert "unknown git ref no-such-branch" in result.stderr


def test_breaking_project_protos() -> None:
    """The project's protos/ keep compatibility with the version the script picks."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git clone")
    result = _run(ROOT)

    assert result.returncode == 0, result.stdout + result.stderr
