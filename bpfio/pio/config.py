"""Machine configs: a TOML file of named port bindings, loaded into a :class:`Machine`.

The format (documented with examples in ``docs/engine.md``)::

    [machine]
    name = "pc"                      # optional
    engine = "compiled"              # optional, or "interp" or "jit"

    [bindings.pmtimer]
    base = 0x608
    length = 4
    program = "../asm/pmtimer.asm"   # optional; relative to this file; any program format
    model = "bpfio.devices.pmtimer:PMTimer"   # optional; package.module:Class
    model_args = { }                 # optional keyword arguments for the class
    mem_words = 16                   # optional
    clock_hz = 3579545               # optional
    notifiers = 0                    # optional
    defines = { NAME = 1 }           # optional -D for the assembler

:func:`check_machine` reports every problem it finds (each a
:class:`~bpfio.errors.ConfigError` naming the file, the binding and the
problem); :func:`load_machine` raises the first.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from pathlib import Path
from typing import Any, Callable

from bpfio.errors import BpfError, ConfigError, LimitError, VerifierError
from bpfio.limits import load_toml
from bpfio.abi import pio as abi
from bpfio.pio.machine import CLOCK_HZ_MAX, ENGINES, Machine

MACHINE_KEYS = {"name", "engine"}
BINDING_KEYS = {"base", "length", "program", "model", "model_args", "mem_words",
                "clock_hz", "notifiers", "defines"}
TOP_KEYS = {"machine", "bindings"}


def _int(value, what: str, lo: int, hi: int, *, hexa: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{what} {value:#x} is out of range {lo:#x}..{hi:#x}" if hexa
                         else f"{what} {value} is out of range {lo}..{hi}")
    return value


def _overlaps(bindings: dict, fname: str) -> tuple[list[ConfigError], set[str]]:
    """Report every pair of overlapping ranges among bindings with a valid base/length."""
    spans = []
    for bname, spec in bindings.items():
        if isinstance(spec, dict):
            base, length = spec.get("base"), spec.get("length")
            if (isinstance(base, int) and isinstance(length, int) and not isinstance(base, bool)
                    and not isinstance(length, bool) and 0 <= base and 0 < length):
                spans.append((base, base + length, bname))
    errors, losers = [], set()
    for i, (lo, hi, name) in enumerate(spans):
        for lo2, hi2, name2 in spans[:i]:
            if lo < hi2 and lo2 < hi:
                errors.append(ConfigError(
                    f"ports {lo:#x}..{hi - 1:#x} overlap binding '{name2}' "
                    f"(ports {lo2:#x}..{hi2 - 1:#x})", filename=fname, binding=name))
                losers.add(name)
                break
    return errors, losers


def import_model(spec: str) -> type:
    """Import ``package.module:Class`` and return the class."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"model {spec!r} is not of the form 'package.module:Class'")
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"model {spec!r}: cannot import module '{module_name}': {exc}") from None
    except Exception as exc:  # user code: a syntax or runtime error while importing it
        raise ValueError(f"model {spec!r}: importing '{module_name}' failed: "
                         f"{type(exc).__name__}: {exc}") from None
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"model {spec!r}: module '{module_name}' has no '{attr}'")
    if not callable(obj):
        raise ValueError(f"model {spec!r} is not a class")
    return obj


def _load_program(path: Path, defines: dict[str, Any], config_dir: Path):
    from bpfio.text.formats import load_program
    from bpfio.resources import asm_dir
    return load_program(str(path), include_path=(config_dir, asm_dir()),
                        defines={k: v for k, v in defines.items()})


def check_machine(path: str | Path, clock: Callable[[], int] | None = None, *,
                  engine: str | None = None) -> tuple[Machine | None, list[ConfigError]]:
    """Load a config, collecting every error; return (machine or None, errors).

    The machine holds every binding that loaded; it is None when the file
    itself cannot be read or parsed.  ``engine`` overrides ``[machine] engine``.
    """
    path = Path(path)
    fname = str(path)
    errors: list[ConfigError] = []
    override = engine
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [ConfigError("config file not found", filename=fname)]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ConfigError(f"cannot read config: {exc}", filename=fname)]
    try:
        doc = load_toml(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [ConfigError(f"invalid TOML: {exc}", filename=fname)]
    except LimitError as exc:
        return None, [ConfigError(str(exc), filename=fname)]

    for key in doc:
        if key not in TOP_KEYS:
            errors.append(ConfigError(f"unknown top-level key '{key}' (expected "
                                      f"[machine] and [bindings.NAME] tables)", filename=fname))
    head = doc.get("machine", {})
    name, engine = "machine", "compiled"
    if not isinstance(head, dict):
        errors.append(ConfigError("'machine' must be a table", filename=fname))
        head = {}
    for key in head:
        if key not in MACHINE_KEYS:
            errors.append(ConfigError(f"[machine]: unknown key '{key}'", filename=fname))
    if "name" in head:
        if isinstance(head["name"], str) and head["name"]:
            name = head["name"]
        else:
            errors.append(ConfigError("[machine]: name must be a non-empty string", filename=fname))
    if "engine" in head:
        if head["engine"] in ENGINES:
            engine = head["engine"]
        else:
            errors.append(ConfigError(f"[machine]: engine {head['engine']!r} is not one of "
                                      f"{', '.join(ENGINES)}", filename=fname))
    machine = Machine(clock=clock, engine=override or engine, name=name)

    bindings = doc.get("bindings", {})
    if not isinstance(bindings, dict):
        errors.append(ConfigError("'bindings' must be a table of [bindings.NAME] tables",
                                  filename=fname))
        bindings = {}
    if not bindings:
        errors.append(ConfigError("no bindings: add at least one [bindings.NAME] table",
                                  filename=fname))
    config_dir = path.resolve().parent
    overlap_errors, losers = _overlaps(bindings, fname)
    errors.extend(overlap_errors)
    for bname, spec in bindings.items():
        try:
            kwargs = _binding_kwargs(bname, spec, config_dir, fname)
        except ConfigError as exc:
            errors.append(exc)
            continue
        if bname in losers:  # already reported; still checked above for its other errors
            continue
        prog_file = kwargs.pop("program_file", None)
        try:
            machine.attach(name=bname, **kwargs)
        except VerifierError as exc:
            errors.append(ConfigError(f"program '{prog_file}' fails the pio verifier: {exc}",
                                      filename=fname, binding=bname))
        except BpfError as exc:
            errors.append(ConfigError(str(exc), filename=fname, binding=bname))
    return machine, errors


def _binding_kwargs(bname: str, spec, config_dir: Path, fname: str) -> dict[str, Any]:
    """Validate one [bindings.NAME] table; build attach() keyword arguments."""
    def fail(message: str) -> ConfigError:
        return ConfigError(message, filename=fname, binding=bname)

    if not isinstance(spec, dict):
        raise fail("must be a table")
    unknown = sorted(set(spec) - BINDING_KEYS)
    if unknown:
        raise fail(f"unknown key '{unknown[0]}' (known: {', '.join(sorted(BINDING_KEYS))})")
    for key in ("base", "length"):
        if key not in spec:
            raise fail(f"missing required key '{key}'")
    try:
        kwargs: dict[str, Any] = {
            "base": _int(spec["base"], "base", 0, abi.PIO_PORTS - 1, hexa=True),
            "length": _int(spec["length"], "length", 1, abi.PIO_PORTS),
            "mem_words": _int(spec.get("mem_words", abi.PIO_MEM_DEFAULT), "mem_words",
                              abi.PIO_MEM_MIN, abi.PIO_MEM_MAX),
            "notifiers": _int(spec.get("notifiers", 0), "notifiers", 0, abi.PIO_NOTIFIERS_MAX),
        }
        if "clock_hz" in spec:
            kwargs["clock_hz"] = _int(spec["clock_hz"], "clock_hz", 0, CLOCK_HZ_MAX) or None
        if kwargs["base"] + kwargs["length"] > abi.PIO_PORTS:
            raise ValueError(f"ports {kwargs['base']:#x}..{kwargs['base'] + kwargs['length'] - 1:#x}"
                             f" run past 0xffff")
    except ValueError as exc:
        raise fail(str(exc)) from None

    defines = spec.get("defines", {})
    if not isinstance(defines, dict) or not all(
            isinstance(v, (int, str)) and not isinstance(v, bool) for v in defines.values()):
        raise fail("defines must be a table of NAME = integer or string")
    if "program" in spec:
        prog = spec["program"]
        if not isinstance(prog, str) or not prog:
            raise fail("program must be a file name (relative to the config file)")
        prog_path = (config_dir / prog)
        if not os.path.isfile(prog_path):       # never raises (a name too long: False)
            raise fail(f"program file '{prog}' not found (looked for {prog_path})")
        try:
            kwargs["program"] = _load_program(prog_path, defines, config_dir)
            kwargs["program_file"] = prog
        except BpfError as exc:
            raise fail(f"program '{prog}': {exc}") from None
        except OSError as exc:
            raise fail(f"program '{prog}': {exc.strerror or exc}") from None
    elif defines:
        raise fail("defines given without a program")

    if "model" in spec:
        args = spec.get("model_args", {})
        if not isinstance(args, dict):
            raise fail("model_args must be a table")
        try:
            cls = import_model(spec["model"])
        except ValueError as exc:
            raise fail(str(exc)) from None
        try:
            kwargs["device"] = cls(**args)
        except Exception as exc:  # a model constructor is user code: report, never trace
            raise fail(f"model {spec['model']}({', '.join(f'{k}=' for k in args)}) failed: "
                       f"{type(exc).__name__}: {exc}") from None
    elif "model_args" in spec:
        raise fail("model_args given without a model")
    return kwargs


def load_machine(path: str | Path, clock: Callable[[], int] | None = None, *,
                 engine: str | None = None) -> Machine:
    """Load a machine config; raise the first :class:`ConfigError` if any."""
    machine, errors = check_machine(path, clock=clock, engine=engine)
    if errors:
        if machine is not None:
            machine.close()
        raise errors[0]
    return machine
