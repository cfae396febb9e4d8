"""The installers behind `make install`, `make tts` and `make lm-tools`, run with stub system commands.

local/apt_install.sh (the Debian packages of install_tts.sh and install_lm_tools.sh) runs as root
and as a user who is not (user nobody when the tests run as root, as in CI) with and without sudo;
tools/ensure_venv.sh chooses the interpreter of .venv among stub Pythons. PATH holds only the stubs
and a few system tools, so this machine's own sudo, apt-get or python3 never answers.
"""

import os
import pty
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPE_LOCAL = REPO / "egs2/librispeech_ils/ssl1/local"
INSTALLERS = ("apt_install.sh", "install_tts.sh", "install_lm_tools.sh")
ENSURE_VENV = REPO / "tools/ensure_venv.sh"
SYSTEM_TOOLS = ("bash", "env", "id", "grep", "sed", "dirname", "rm", "mkdir", "cp", "cat")
NOBODY = 65534
NON_ROOT_UID = NOBODY if os.geteuid() == 0 else os.geteuid()
PACKAGES = ("festival", "flite")
APT_INSTALL = ("--purpose", "the tests", "--no_apt_get", "use another package manager", *PACKAGES)


def write_command(bin_dir: Path, name: str, script: str) -> None:
    """An executable shell script ``bin_dir/name``."""
    (bin_dir / name).write_text("#!/bin/sh\n" + script)
    (bin_dir / name).chmod(0o755)


def path_with_system_tools(bin_dir: Path) -> str:
    bin_dir.mkdir(exist_ok=True)
    for tool in SYSTEM_TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


def non_root_prefix() -> List[str]:
    """The command prefix that runs a command as a user who is not root."""
    if os.geteuid() != 0:
        return []
    for prefix in (
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"],
        ["runuser", "-u", "nobody", "--"],
    ):
        if shutil.which(prefix[0]) and subprocess.run([*prefix, "true"]).returncode == 0:
            return prefix
    pytest.skip("the tests run as root and neither setpriv nor runuser can switch to user nobody")


class AptSandbox:
    """Copies of the installers beside stub dpkg-query, apt-get and sudo, which log their calls.

    The directory is readable by user nobody (pytest's tmp_path lies in root's 0700 directory).
    """

    def __init__(self, root: Path):
        self.scripts = root / "local"
        self.scripts.mkdir()
        for name in INSTALLERS:
            shutil.copy(RECIPE_LOCAL / name, self.scripts / name)
        self.logs = root / "logs"
        self.logs.mkdir()
        self.logs.chmod(0o777)  # the stubs write here as nobody
        self.bin = root / "bin"
        self.path = path_with_system_tools(self.bin)
        self.installed()
        write_command(
            self.bin,
            "apt-get",
            f'echo "uid=$(id -u) frontend=$DEBIAN_FRONTEND $*" >> {self.logs}/apt-get\n',
        )

    def installed(self, *packages: str) -> None:
        """dpkg-query reports ``packages`` installed and every other package missing."""
        write_command(
            self.bin,
            "dpkg-query",
            "for package; do :; done  # the last argument\n"
            f'case " {" ".join(packages)} " in\n'
            '  *" $package "*) echo "install ok installed" ;;\n'
            '  *) echo "dpkg-query: no packages found matching $package" >&2; exit 1 ;;\n'
            "esac\n",
        )

    def sudo(self, needs_password: bool) -> None:
        """A sudo whose ``sudo -n true`` fails when it ``needs_password``; it runs the rest as is."""
        write_command(
            self.bin,
            "sudo",
            f'echo "$*" >> {self.logs}/sudo\n'
            f'if [ "$1" = -n ]; then shift; [ "$1" = true ] && exit {int(needs_password)}; fi\n'
            'exec env "$@"\n',
        )

    def run(
        self, script: str, *args: str, as_root: bool = False, stdin: Optional[int] = None
    ) -> subprocess.CompletedProcess:
        if as_root and os.geteuid() != 0:
            pytest.skip("the root path needs the tests to run as root")
        prefix = [] if as_root else non_root_prefix()
        command = ["env", "-i", f"PATH={self.path}", "bash", f"{self.scripts}/{script}", *args]
        return subprocess.run(
            [*prefix, *command],
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def calls(self, command: str) -> List[str]:
        log = self.logs / command
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def sandbox_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="test_install_"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


@pytest.fixture
def apt(sandbox_dir) -> AptSandbox:
    return AptSandbox(sandbox_dir)


def apt_get_calls(uid: int) -> List[str]:
    packages = " ".join(PACKAGES)
    return [
        f"uid={uid} frontend=noninteractive update -qq",
        f"uid={uid} frontend=noninteractive install -y -qq --no-install-recommends {packages}",
    ]


# ----------------------------------------------------------------------------------------------
# local/apt_install.sh
# ----------------------------------------------------------------------------------------------
def test_nothing_missing_is_quiet(apt):
    apt.installed(*PACKAGES)
    result = apt.run("apt_install.sh", *APT_INSTALL)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert apt.calls("apt-get") == []


def test_root_runs_apt_get_itself(apt):
    apt.sudo(needs_password=False)
    result = apt.run("apt_install.sh", *APT_INSTALL, as_root=True)
    assert result.returncode == 0, result.stderr
    assert apt.calls("apt-get") == apt_get_calls(uid=0)
    assert apt.calls("sudo") == []


def test_user_with_passwordless_sudo_installs_through_sudo_n(apt):
    apt.sudo(needs_password=False)
    result = apt.run("apt_install.sh", *APT_INSTALL)
    assert result.returncode == 0, result.stderr
    assert "sudo -n" in result.stderr
    # The stub sudo does not change the user: apt-get ran through it, not as root.
    assert apt.calls("apt-get") == apt_get_calls(uid=NON_ROOT_UID)
    sudo_calls = apt.calls("sudo")
    assert sudo_calls[0] == "-n true" and len(sudo_calls) == 3
    assert all(call.startswith("-n ") for call in sudo_calls)


def test_user_whose_sudo_asks_a_password_at_a_terminal_is_asked(apt):
    apt.sudo(needs_password=True)
    terminal, terminal_user_side = pty.openpty()
    try:
        result = apt.run("apt_install.sh", *APT_INSTALL, stdin=terminal_user_side)
    finally:
        os.close(terminal)
        os.close(terminal_user_side)
    assert result.returncode == 0, result.stderr
    assert "festival flite (the tests)" in result.stderr and "password" in result.stderr
    assert apt.calls("apt-get") == apt_get_calls(uid=NON_ROOT_UID)
    sudo_calls = apt.calls("sudo")
    assert sudo_calls[0] == "-n true" and len(sudo_calls) == 3
    assert not any(call.startswith("-n ") for call in sudo_calls[1:])


def test_user_whose_sudo_asks_a_password_without_a_terminal_gets_the_command(apt):
    apt.sudo(needs_password=True)
    result = apt.run("apt_install.sh", *APT_INSTALL)
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("run: sudo apt-get install -y festival flite")
    assert apt.calls("apt-get") == []
    assert apt.calls("sudo") == ["-n true"]


def test_user_without_sudo_gets_the_root_command(apt):
    result = apt.run("apt_install.sh", *APT_INSTALL)
    assert result.returncode == 1
    assert "run as root: apt-get install -y festival flite " in result.stderr
    assert "su -c 'apt-get install -y festival flite'" in result.stderr
    assert apt.calls("apt-get") == []


def test_installed_packages_are_left_out(apt):
    apt.installed("festival")
    result = apt.run("apt_install.sh", *APT_INSTALL)
    assert result.returncode == 1
    assert "run as root: apt-get install -y flite " in result.stderr


@pytest.mark.parametrize(
    "installer, command",
    [
        (
            "install_tts.sh",
            "apt-get install -y espeak-ng festival festvox-kallpc16k festvox-kdlpc16k "
            "festvox-us-slt-hts flite",
        ),
        ("install_lm_tools.sh", "apt-get install -y irstlm"),
    ],
)
def test_installers_install_their_packages_through_apt_install(apt, installer, command):
    result = apt.run(installer)
    assert result.returncode == 1
    assert f"run as root: {command} " in result.stderr


def test_without_apt_get_the_installer_says_what_to_do(apt):
    (apt.bin / "apt-get").unlink()
    result = apt.run("install_lm_tools.sh")
    assert result.returncode == 1
    assert "missing irstlm" in result.stderr and "there is no apt-get here" in result.stderr
    assert "set IRSTLM to the folder that holds bin/build-lm.sh" in result.stderr


# ----------------------------------------------------------------------------------------------
# tools/ensure_venv.sh
# ----------------------------------------------------------------------------------------------
class PythonSandbox:
    """Stub interpreters that answer ensure_venv.sh's version query and make stub venvs."""

    def __init__(self, root: Path):
        self.bin = root / "bin"
        self.path = path_with_system_tools(self.bin)
        self.log = root / "venv.log"
        self.venv = root / ".venv"

    def python(self, name: str, version: str, where: Optional[Path] = None) -> Path:
        """A stub ``name`` of Python ``version`` in ``where`` (default: on PATH).

        ``-m venv DIR`` makes ``DIR/bin/python``, a stub of the same version, and is logged.
        """
        where = where or self.bin
        where.mkdir(parents=True, exist_ok=True)
        write_command(
            where,
            name,
            'case "$1" in\n'
            f"  -c) echo {version} ;;\n"
            f'  -m) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && echo "${{0##*/}} $*" >> {self.log} ;;\n'
            "  *) exit 2 ;;\n"
            "esac\n",
        )
        return where / name

    def run(self, python3: Optional[Path] = None) -> subprocess.CompletedProcess:
        env = {"PATH": self.path}
        if python3 is not None:
            env["PYTHON3"] = str(python3)
        return subprocess.run(
            ["bash", str(ENSURE_VENV), str(self.venv)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def venv_version(self) -> str:
        venv_python = [str(self.venv / "bin/python"), "-c", "version"]
        return subprocess.run(venv_python, capture_output=True, text=True).stdout.strip()

    def venvs_made(self) -> List[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def pythons(tmp_path) -> PythonSandbox:
    sandbox = PythonSandbox(tmp_path)
    sandbox.python("python3", "3.13")
    sandbox.python("python3.12", "3.12")
    return sandbox


def test_venv_takes_a_supported_python_when_python3_is_not(pythons):
    result = pythons.run()
    assert result.returncode == 0, result.stderr
    assert pythons.venv_version() == "3.12"
    assert pythons.venvs_made() == [f"python3.12 -m venv {pythons.venv}"]


@pytest.mark.parametrize("existing_python", ["3.13", None])
def test_venv_of_an_unsupported_or_broken_python_is_rebuilt(pythons, existing_python):
    pythons.venv.mkdir()
    (pythons.venv / ".installed").touch()
    if existing_python:
        pythons.python("python", existing_python, where=pythons.venv / "bin")
    result = pythons.run()
    assert result.returncode == 0, result.stderr
    assert f"removing {pythons.venv}" in result.stderr
    assert pythons.venv_version() == "3.12"
    assert not (pythons.venv / ".installed").exists()


def test_venv_of_a_supported_python_is_kept(pythons):
    pythons.python("python", "3.11", where=pythons.venv / "bin")
    (pythons.venv / ".installed").touch()
    result = pythons.run()
    assert (result.returncode, result.stderr) == (0, "")
    assert pythons.venv_version() == "3.11" and (pythons.venv / ".installed").exists()
    assert pythons.venvs_made() == []


def test_without_a_supported_python_it_says_which_work_and_how_to_get_one(pythons):
    (pythons.bin / "python3.12").unlink()
    result = pythons.run()
    assert result.returncode == 1
    assert "python3 (3.13), python3.12 (not found)" in result.stderr
    assert "needs Python 3.10, 3.11 or 3.12" in result.stderr
    assert "uv python install 3.12 && make PYTHON3=$(uv python find 3.12)" in result.stderr
    assert not pythons.venv.exists()


def test_python3_variable_picks_the_interpreter(pythons, tmp_path):
    chosen = pythons.python("python3", "3.11", where=tmp_path / "opt")
    result = pythons.run(python3=chosen)
    assert result.returncode == 0, result.stderr
    assert pythons.venv_version() == "3.11"


def test_python3_variable_of_an_unsupported_python_is_refused(pythons, tmp_path):
    refused = pythons.python("python3", "3.13", where=tmp_path / "opt")
    result = pythons.run(python3=refused)
    assert result.returncode == 1
    assert f"among {refused} (3.13)" in result.stderr
    assert not pythons.venv.exists()


def test_failed_venv_is_removed(pythons):
    write_command(
        pythons.bin,
        "python3.12",
        'case "$1" in -c) echo 3.12 ;; *) mkdir -p "$3"; exit 1 ;; esac\n',
    )
    result = pythons.run()
    assert result.returncode == 1
    assert "python3.12 -m venv" in result.stderr and "python3.12-venv" in result.stderr
    assert not pythons.venv.exists()
