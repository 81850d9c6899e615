"""`make binder`: the mybinder.org link that opens this checkout's workbook in JupyterLab.

The repository cannot know its public home in advance, and every fork has its own, so the
link is built from where the checkout lives (``git remote get-url origin``) and what is
checked out (the branch, or the commit when detached). The shapes are BinderHub's
repository providers (binderhub.readthedocs.io, "Repository Providers"):

    GitHub       https://mybinder.org/v2/gh/<owner>/<repo>/<ref>
    GitLab.com   https://mybinder.org/v2/gl/<url-escaped group/project>/<ref>
    other git    https://mybinder.org/v2/git/<url-escaped clone URL>/<ref>

each followed by ``?urlpath=lab/tree/<notebook>``. A remote on this machine (a path or a
file:// URL, as in a CI clone) is no public home: then there is no link. book/build.py uses
the same ``find_home`` for the site's launch buttons. Standard library only, so ``make
binder`` needs no virtual environment.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
BINDERHUB = "https://mybinder.org"
START = "notebooks/00_start_here.ipynb"
GITHUB, GITLAB = "github.com", "gitlab.com"  # mybinder.org's gl provider serves gitlab.com only
NO_HOME = (
    "binder: this checkout has no public git remote (origin is missing, or a path on this "
    "machine). Push it to GitHub or GitLab (git remote add origin URL; git push -u origin "
    "BRANCH), then run make binder again."
)
# git's scp-like syntax, [user@]host:path; a one-letter "host" is a Windows drive (C:\...).
SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^/:]{2,}):(?P<path>.+)$")
CLONE_SCHEMES = {"https", "http", "git"}  # what Binder can clone without credentials
SSH_SCHEMES = {"ssh", "git+ssh", "ssh+git"}
LOOPBACK = re.compile(r"^(localhost|127\.[\d.]+|\[?::1\]?)$")


@dataclass(frozen=True)
class Remote:
    """A public git repository: its host, its path there (no ``.git``), a URL to clone."""

    host: str
    path: str
    clone_url: str


@dataclass(frozen=True)
class Home:
    """Where this checkout lives publicly, and the branch or commit checked out."""

    remote: Remote
    ref: str

    @property
    def binder_spec(self) -> str:
        """BinderHub's provider prefix and spec: gh/..., gl/... or git/..."""
        ref = quote(self.ref, safe="/")
        owner_repo = self.remote.path.split("/")
        if self.remote.host == GITHUB and len(owner_repo) == 2:
            return f"gh/{self.remote.path}/{ref}"
        if self.remote.host == GITLAB:
            return f"gl/{quote(self.remote.path, safe='')}/{ref}"
        # The whole URL escaped, ':' and '/' included: BinderHub splits the spec at the
        # first '/' (a half-escaped https%3A//host fails to resolve on mybinder.org).
        return f"git/{quote(self.remote.clone_url, safe='')}/{ref}"

    @property
    def launch_base(self) -> str:
        """The link that builds this checkout on mybinder.org (and opens JupyterLab's home)."""
        return f"{BINDERHUB}/v2/{self.binder_spec}"

    def launch_url(self, notebook: str = START) -> str:
        """The link that builds this checkout on mybinder.org and opens ``notebook``."""
        return opening(self.launch_base, notebook)

    @property
    def web_url(self) -> str | None:
        """The repository's web page, on the hosts whose page is known to be there."""
        if self.remote.host in (GITHUB, GITLAB):
            return f"https://{self.remote.host}/{self.remote.path}"
        return None

    def folder_url(self, folder: str) -> str | None:
        """A folder's web page at this ref (GitHub and GitLab lay it out differently)."""
        if self.web_url is None:
            return None
        tree = "tree" if self.remote.host == GITHUB else "-/tree"
        return f"{self.web_url}/{tree}/{quote(self.ref, safe='/')}/{quote(folder.strip('/'))}/"


def opening(launch_base: str, notebook: str) -> str:
    """A launch link that opens ``notebook`` (a path from the repository root) in JupyterLab."""
    return f"{launch_base}?urlpath=lab/tree/{quote(notebook)}"


def public_remote(url: str) -> Remote | None:
    """The remote a browser's Binder can reach, or None for a path on this machine.

    https and ssh forms of the same repository give the same Remote; credentials in the
    URL are dropped (they must never reach a printed link); ssh becomes https, since
    Binder clones without keys.
    """
    url = url.strip()
    if "://" in url:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in CLONE_SCHEMES | SSH_SCHEMES or not parts.hostname:
            return None  # file://, or a scheme Binder cannot clone
        host, path = parts.hostname.lower(), parts.path
        port = f":{parts.port}" if parts.port and scheme not in SSH_SCHEMES else ""
        if scheme in SSH_SCHEMES:
            scheme = "https"
    else:
        match = SCP_LIKE.match(url)
        if not match:
            return None  # a path: /srv/repo.git, ../repo, C:\repo
        scheme, port = "https", ""
        host, path = match["host"].lower(), match["path"]
    host = host.removeprefix("www.")
    path = path.strip("/")
    name = path.removesuffix(".git")
    if not name or LOOPBACK.match(host):
        return None
    return Remote(host=host, path=name, clone_url=f"{scheme}://{host}{port}/{path}")


def _git(root: Path, *args: str) -> str | None:
    """A git command's output, or None when it fails (no repository, no remote, no git)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def checkout_ref(root: Path) -> str | None:
    """The branch checked out, or the commit when HEAD is detached."""
    return _git(root, "symbolic-ref", "--quiet", "--short", "HEAD") or _git(
        root, "rev-parse", "HEAD"
    )


def find_home(root: Path = ROOT) -> Home | None:
    """This checkout's public home, from its origin remote; None when it has none."""
    origin = _git(root, "remote", "get-url", "origin")
    remote = public_remote(origin) if origin else None
    ref = checkout_ref(root) if remote else None
    return Home(remote, ref) if remote and ref else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout (default: this one)")
    parser.add_argument("--notebook", default=START, help=f"the notebook to open ({START})")
    args = parser.parse_args(argv)
    home = find_home(args.root)
    if home is None:
        print(NO_HOME, file=sys.stderr)
        return 1
    print(home.launch_url(args.notebook))
    return 0


if __name__ == "__main__":
    sys.exit(main())
