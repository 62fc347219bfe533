"""Issue 17 item 2: every -o/--output is written atomically; a failing run keeps the old file."""

import os
import resource
import subprocess

import pytest
from click.testing import CliRunner

from bpfio.cli import main
from devtools import bpfio_exe

# 361 instructions nothing shortens: over 8 KiB in every output format (~11 KB as C)
BIG_SOURCE = ("".join(f"ldb [{i}]\njeq #{i}, r{i}\n" for i in range(120)) + "ret #0\n"
              + "".join(f"r{i}: ret #{i + 1}\n" for i in range(120)))
OLD = b"the old content\n"


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))   # ulimit -f 8


# Every command with an -o option, each given output larger than 8 KiB.
def _commands(tmp_path):
    src = tmp_path / "big.asm"
    src.write_text(BIG_SOURCE)
    return {
        "asm": ["asm", "-f", "c", str(src)],
        "opt": ["opt", "--timeout", "60", "--search", "0", "-f", "c", str(src)],
        "cfg": ["cfg", str(src)],
    }


@pytest.mark.parametrize("cmd", ["asm", "opt", "cfg"])
def test_failing_write_keeps_the_old_file(cmd, tmp_path):
    out = tmp_path / ("out.dot" if cmd == "cfg" else "out.txt")
    out.write_bytes(OLD)
    args = [*_commands(tmp_path)[cmd], "-o", str(out)]
    proc = subprocess.run([bpfio_exe(), *args], capture_output=True, text=True,
                          preexec_fn=_limit_file_size, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == f"{out}: error: cannot write: File too large\n"
    assert out.read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["big.asm", out.name])
    # the same run without the limit replaces it
    proc = subprocess.run([bpfio_exe(), *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_bytes()) > 8192


@pytest.mark.parametrize("cmd", ["asm", "opt", "cfg"])
def test_dev_full_is_one_line(cmd, tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    args = _commands(tmp_path)[cmd]
    if cmd == "cfg":
        args = [*args[:1], "-o", "/dev/full", *args[1:]]
        # cfg picks the format by suffix; /dev/full has none
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2
        return
    result = CliRunner().invoke(main, [*args, "-o", "/dev/full"])
    assert result.exit_code == 1, result.output
    assert result.stderr == "/dev/full: error: cannot write: No space left on device\n"


@pytest.mark.parametrize("cmd", ["asm", "opt", "cfg"])
def test_missing_folder_is_one_line(cmd, tmp_path):
    out = tmp_path / "no" / "such" / "out.dot"
    result = CliRunner().invoke(main, [*_commands(tmp_path)[cmd], "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert result.stderr == (f"{out}: error: cannot write: folder '{out.parent}' "
                             "does not exist\n")
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_stdout_full_is_one_line(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    src = tmp_path / "big.asm"
    src.write_text(BIG_SOURCE)
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([bpfio_exe(), "asm", str(src)], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr == "<stdout>: error: cannot write: No space left on device\n"


def test_dev_stdout_is_written_directly(tmp_path):
    src = tmp_path / "p.asm"
    src.write_text("ret #1\n")
    proc = subprocess.run([bpfio_exe(), "asm", str(src), "-o", "/dev/stdout"],
                          capture_output=True, text=True, timeout=300)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "1,6 0 0 1,\n", "")


def test_new_file_mode_and_symlink_target(tmp_path):
    src = tmp_path / "p.asm"
    src.write_text("ret #1\n")
    old_umask = os.umask(0o027)
    try:
        result = CliRunner().invoke(main, ["asm", str(src), "-o", str(tmp_path / "new.txt")])
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640
    target = tmp_path / "target.txt"
    target.write_bytes(OLD)
    target.chmod(0o604)
    (tmp_path / "link.txt").symlink_to("target.txt")
    result = CliRunner().invoke(main, ["asm", str(src), "-o", str(tmp_path / "link.txt")])
    assert result.exit_code == 0
    assert (tmp_path / "link.txt").is_symlink()            # the link stays a link
    assert target.read_text() == "1,6 0 0 1,\n"
    assert target.stat().st_mode & 0o777 == 0o604          # and the file keeps its mode


def test_empty_output_name(tmp_path):
    src = tmp_path / "p.asm"
    src.write_text("ret #1\n")
    result = CliRunner().invoke(main, ["asm", str(src), "-o", ""])
    assert (result.exit_code, result.stderr) == (1, "error: the output file name is empty\n")
