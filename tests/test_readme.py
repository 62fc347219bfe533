"""The README stays true: its Python example runs, its commands exist, .ci/run runs its test command."""

import re
import subprocess
from pathlib import Path

from click.testing import CliRunner

from bpfio.cli import COMMANDS, main
from devtools import bpfio_exe

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_python_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert "'fast_path_share': 1.0" in capsys.readouterr().out


def test_every_command_in_the_readme_exists_and_has_help():
    used = set(re.findall(r"^bpfio (\w+)", README, re.M))
    assert used and used <= set(COMMANDS), used - set(COMMANDS)
    for name in used:
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output


def test_ci_runs_the_readme_test_command():
    test_cmd = re.search(r"Run the tests:\n\n```sh\n(.*?)\n```", README, re.S).group(1)
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


def test_readme_main_job_command_runs(tmp_path):
    main_cmd = re.search(r"Run the main job.*?```sh\n(.*?)\n```", README, re.S).group(1)
    job = main_cmd.split("&& .venv/bin/")[-1]          # the part after the set-up
    assert job.startswith("bpfio machine run ")
    done = subprocess.run([bpfio_exe(), *job.split()[1:]], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "never needed userspace" in done.stdout and "mismatches: 0" in done.stdout
