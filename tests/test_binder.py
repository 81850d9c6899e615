"""`make binder` (book/binder.py): the mybinder.org link built from the checkout's git remote.

Offline, by shape: the links follow BinderHub's documented providers (gh/<owner>/<repo>/<ref>,
gl/<url-escaped namespace>/<ref>, git/<url-escaped URL>/<ref>) and open notebook 00 in
JupyterLab. Each case is a throwaway repository made with `git init` and `git remote add`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "book"))
import binder  # book/binder.py

# Behaves the same on every Python: CI runs it once, with the first of CI_PYTHONS.
pytestmark = pytest.mark.once

START = "lab/tree/notebooks/00_start_here.ipynb"


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def checkout(tmp_path: Path, origin: str | None, branch: str = "main") -> Path:
    root = tmp_path / "clone"
    root.mkdir()
    git(root, "init", "-q", "-b", branch)
    if origin is not None:
        git(root, "remote", "add", "origin", origin)
    return root


def make_binder(root: Path) -> subprocess.CompletedProcess[str]:
    """What `make binder` runs, against the checkout at ``root``."""
    return subprocess.run(
        [sys.executable, str(REPO / "book" / "binder.py"), "--root", str(root)],
        capture_output=True,
        text=True,
    )


def launched(root: Path) -> str:
    """The printed link's path; exactly one line is printed, and it opens notebook 00."""
    done = make_binder(root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and not done.stderr, (done.stdout, done.stderr)
    url = urlsplit(done.stdout.strip())
    assert (url.scheme, url.netloc) == ("https", "mybinder.org"), url
    assert parse_qs(url.query) == {"urlpath": [START]}, url.query
    return url.path


@pytest.mark.parametrize(
    "origin",
    [
        "https://github.com/ada/throughput-lab.git",
        "https://github.com/ada/throughput-lab",
        "https://github.com/ada/throughput-lab/",
        "https://ada:ghp_secret@github.com/ada/throughput-lab.git",
    ],
)
def test_github_https(tmp_path: Path, origin: str) -> None:
    path = launched(checkout(tmp_path, origin, branch="issue-7/fix"))
    assert path == "/v2/gh/ada/throughput-lab/issue-7/fix"


@pytest.mark.parametrize(
    "origin",
    ["git@github.com:ada/throughput-lab.git", "ssh://git@github.com/ada/throughput-lab"],
)
def test_github_ssh(tmp_path: Path, origin: str) -> None:
    path = launched(checkout(tmp_path, origin))
    assert path == "/v2/gh/ada/throughput-lab/main"


@pytest.mark.parametrize(
    "origin",
    [
        "https://gitlab.com/team/workshops/throughput-lab.git",
        "git@gitlab.com:team/workshops/throughput-lab",
    ],
)
def test_gitlab_namespace_is_url_escaped(tmp_path: Path, origin: str) -> None:
    path = launched(checkout(tmp_path, origin))
    assert path == "/v2/gl/team%2Fworkshops%2Fthroughput-lab/main"


@pytest.mark.parametrize(
    ("origin", "clone_url"),
    [
        (
            "https://codeberg.org/ada/throughput-lab.git",
            "https://codeberg.org/ada/throughput-lab.git",
        ),
        (
            "git@git.example.org:ada/throughput-lab.git",
            "https://git.example.org/ada/throughput-lab.git",
        ),
        ("https://git.example.org:8443/ada/tl", "https://git.example.org:8443/ada/tl"),
    ],
)
def test_any_other_git_url_is_escaped_whole(tmp_path: Path, origin: str, clone_url: str) -> None:
    path = launched(checkout(tmp_path, origin))
    provider, escaped, ref = path.split("/")[2:]
    assert (provider, ref) == ("git", "main")
    assert ":" not in escaped and unquote(escaped) == clone_url


def test_a_detached_checkout_launches_its_commit(tmp_path: Path) -> None:
    root = checkout(tmp_path, "https://github.com/ada/throughput-lab.git")
    git(
        root,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.org",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    )
    commit = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-q", "--detach")
    path = launched(root)
    assert path == f"/v2/gh/ada/throughput-lab/{commit}"


@pytest.mark.parametrize(
    "origin", ["/srv/git/throughput-lab.git", "../throughput-lab", "file:///srv/git/tl.git", None]
)
def test_no_public_remote_says_what_to_do_in_one_line(tmp_path: Path, origin: str | None) -> None:
    """A CI clone's origin is a path on the machine; a fresh `git init` has none."""
    done = make_binder(checkout(tmp_path, origin))
    assert done.returncode == 1
    assert not done.stdout
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "Push it to GitHub or GitLab" in done.stderr


def test_outside_a_git_checkout_too(tmp_path: Path) -> None:
    done = make_binder(tmp_path)
    assert (done.returncode, done.stderr.strip()) == (1, binder.NO_HOME)


def test_the_home_gives_the_site_its_pages() -> None:
    """book/build.py's links to the repository's pages, where the host's layout is known."""
    github = binder.Home(binder.public_remote("git@github.com:ada/tl.git"), "main")
    gitlab = binder.Home(binder.public_remote("https://gitlab.com/team/tl.git"), "main")
    other = binder.Home(binder.public_remote("https://codeberg.org/ada/tl.git"), "main")
    assert github.folder_url("notebooks/solutions") == (
        "https://github.com/ada/tl/tree/main/notebooks/solutions/"
    )
    assert gitlab.folder_url("notebooks/solutions") == (
        "https://gitlab.com/team/tl/-/tree/main/notebooks/solutions/"
    )
    assert other.web_url is None and other.folder_url("notebooks") is None
    assert github.launch_url("notebooks/02_x.ipynb").endswith(
        "?urlpath=lab/tree/notebooks/02_x.ipynb"
    )


def test_make_binder_runs_it() -> None:
    """`make binder` in this checkout prints what book/binder.py finds for it."""
    done = subprocess.run(
        ["make", "--no-print-directory", "-s", "binder", f"PYTHON={sys.executable}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    home = binder.find_home(REPO)
    if home is None:
        assert done.returncode != 0 and binder.NO_HOME in done.stderr
    else:
        assert (done.returncode, done.stdout.strip()) == (0, home.launch_url())
