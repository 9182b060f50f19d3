"""Quantization profiles: TOML data that says which ggml type every tensor gets, and why.

A profile is read and checked completely before any work starts: an unknown type, a regex
that does not compile, a layer range that is empty or backwards, an unknown key — each is a
one-line UserError naming the file, the rule and the fix. Checks that need the model (a
layer range past the model's last layer) happen when the profile is planned against a GGUF
(seachat.convert.quant.plan), still before anything is written.

Schema (see quant_profiles/*.toml and README "Quantization profiles"):

    name, summary, target_bpw, default_type          required
    file_type        llama.cpp file type recorded in general.file_type (default from type)
    output_type      output.weight, and token_embd.weight when it is tied to the output
    token_embd_type  token_embd.weight of an untied model
    imatrix          true: quantize with an importance matrix (computed if none is given)
    stock            the llama.cpp recipe this profile reproduces (e.g. "Q4_K_M")
    [fallbacks]      type -> type when a row is not a multiple of the type's block
    [calibration]    chunk_size, tokens, [calibration.mix] language -> token share weight
    [[rules]]        ordered, first match wins: kind and/or pattern, layers, type, why
    [tuned]          provenance of a tuned profile: model, text, date, budget, measurements
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

from seachat.convert.errors import UserError
from seachat.convert.gguf_file.ggml_types import (
    DEFAULT_FILE_TYPE,
    LLAMA_CPP_FALLBACKS,
    GGMLType,
    file_type_id,
    lookup,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Tensor kinds, as llama.cpp's quantizer categorises names (llama-quant.cpp, tensor_get_category).
KINDS = (
    "token_embd",
    "output",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_qkv",
    "attn_kv_b",
    "attn_output",
    "ffn_up",
    "ffn_gate",
    "ffn_down",
    "ffn_up_exps",
    "ffn_gate_exps",
    "ffn_down_exps",
    "ffn_gate_inp",
    "other",
)
# Mixture-of-experts tensors (all experts of a block in one 3-D tensor). llama.cpp's quantizer
# counts each as the dense kind its name contains, so a rule for ffn_up covers ffn_up_exps
# too (stock recipes stay llama.cpp's); a rule for ffn_up_exps covers only the experts.
EXPERT_KINDS = {"ffn_up_exps": "ffn_up", "ffn_gate_exps": "ffn_gate", "ffn_down_exps": "ffn_down"}
# Kinds llama.cpp never quantizes: a rule for them could not take effect.
UNQUANTIZED_KINDS = {
    "ffn_gate_inp": "the expert router stays at its converted precision (F32) in llama.cpp",
}

_TOP_KEYS = {
    "name",
    "summary",
    "target_bpw",
    "default_type",
    "file_type",
    "output_type",
    "token_embd_type",
    "output_without_imatrix",
    "imatrix",
    "stock",
    "fallbacks",
    "calibration",
    "rules",
    "tuned",
    "allocate",
}
_ALLOCATE_KEYS = {"budget", "measurements", "ranges", "fixed"}
_RULE_KEYS = {"kind", "pattern", "layers", "type", "why"}
_CALIBRATION_KEYS = {"chunk_size", "tokens", "mix", "process_output"}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# ALL_F32, MOSTLY_F16, MOSTLY_BF16: llama.cpp would ignore per-tensor types
_UNQUANTIZED_FILE_TYPES = (0, 1, 32)


# --------------------------------------------------------------------------- layer selectors


@dataclass(frozen=True)
class _Term:
    kind: str  # "abs" | "frac" | "first" | "last" | "more_bits"
    lo: Any = None
    hi: Any = None  # inclusive for "abs" (None = open), exclusive for "frac" (1 = to the end)

    def matches(self, i: int, n: int) -> bool:
        if self.kind == "abs":
            return i >= self.lo and (self.hi is None or i <= self.hi)
        if self.kind == "frac":
            pos = Fraction(i, n)
            return self.lo <= pos and (pos < self.hi or self.hi == 1)
        if self.kind == "first":  # llama.cpp: i_layer < n_layer/K (integer division)
            return i < n // self.lo
        if self.kind == "last":  # llama.cpp: i_layer >= (K-1)*n_layer/K
            return i >= (self.lo - 1) * n // self.lo
        if self.kind == "first_n":  # the first N blocks (fewer if the model has fewer)
            return i < self.lo
        if self.kind == "last_n":
            return i >= n - self.lo
        if self.kind == "more_bits":  # llama.cpp's use_more_bits()
            return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2
        raise AssertionError(self.kind)


_ABS_RE = re.compile(r"^(\d+)(?:-(\d*))?$")
_FRAC_RE = re.compile(r"^([0-9./%]+)-([0-9./%]+)$")
_FIRST_LAST_RE = re.compile(r"^(first|last)/(\d+)$")
_COUNT_RE = re.compile(r"^(first|last):(\d+)$")


def _fraction(text: str) -> Fraction:
    if text.endswith("%"):
        return Fraction(text[:-1]) / 100
    return Fraction(text)


@dataclass(frozen=True)
class LayerSelector:
    """Which block indices a rule covers. Comma-separated union of:
    `5`, `2-7` (inclusive), `12-` (to the end); `0-1/3`, `1/3-2/3`, `25%-50%` (fraction of
    depth, end exclusive, `1` reaches the last layer); `first/8`, `last/8`, `more_bits`
    (llama.cpp's own integer layer arithmetic, for reproducing its recipes)."""

    text: str
    terms: tuple[_Term, ...]

    @classmethod
    def parse(cls, text: str) -> LayerSelector:
        terms: list[_Term] = []
        for raw in str(text).split(","):
            item = raw.strip().replace(" ", "")
            if not item:
                raise ValueError(f"empty item in layers {text!r}")
            if item in ("all", "*"):
                terms.append(_Term("abs", 0, None))
            elif item == "more_bits":
                terms.append(_Term("more_bits"))
            elif m := _COUNT_RE.match(item):
                terms.append(_Term(m.group(1) + "_n", int(m.group(2))))
            elif m := _FIRST_LAST_RE.match(item):
                k = int(m.group(2))
                if k < 1:
                    raise ValueError(f"layers {item!r}: the divisor must be at least 1")
                terms.append(_Term(m.group(1), k))
            elif m := _ABS_RE.match(item):
                lo = int(m.group(1))
                hi = None if m.group(2) == "" else int(m.group(2) or lo)
                if hi is not None and hi < lo:
                    raise ValueError(f"layers {item!r} is backwards (start > end)")
                terms.append(_Term("abs", lo, hi))
            elif m := _FRAC_RE.match(item):
                try:
                    lo, hi = _fraction(m.group(1)), _fraction(m.group(2))
                except (ValueError, ZeroDivisionError):
                    raise ValueError(f"layers {item!r}: not a fraction range") from None
                if not (0 <= lo < hi <= 1):
                    raise ValueError(
                        f"layers {item!r}: need 0 <= start < end <= 1 (fractions of depth)"
                    )
                terms.append(_Term("frac", lo, hi))
            else:
                raise ValueError(
                    f"layers {item!r} not understood (use e.g. '0-5', '12-', '1/3-2/3', "
                    "'25%-50%', 'first:2', 'first/8', 'last/8', 'more_bits')"
                )
        return cls(str(text), tuple(terms))

    def matches(self, layer: int, n_layer: int) -> bool:
        return any(t.matches(layer, n_layer) for t in self.terms)

    def problem(self, n_layer: int) -> str | None:
        """Why this selector cannot apply to a model with n_layer blocks, or None."""
        for t in self.terms:
            if t.kind == "abs" and t.lo >= n_layer:
                return f"layers {self.text!r} starts past the model's last block ({n_layer - 1})"
            if t.kind == "abs" and t.hi is not None and t.hi >= n_layer:
                return f"layers {self.text!r} ends past the model's last block ({n_layer - 1})"
        return None


# --------------------------------------------------------------------------- profile


@dataclass(frozen=True)
class Rule:
    index: int  # 1-based, as people count rules in the file
    type: GGMLType
    kinds: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    layers: LayerSelector | None = None
    why: str = ""

    def describe(self) -> str:
        parts = []
        if self.kinds:
            parts.append("|".join(self.kinds))
        if self.pattern is not None:
            parts.append(f"/{self.pattern.pattern}/")
        if self.layers is not None:
            parts.append(f"layers {self.layers.text}")
        return f"rule {self.index} ({' '.join(parts) or 'any'})"


@dataclass(frozen=True)
class Calibration:
    mix: dict[str, float]  # language (file stem) -> share of calibration tokens (weights)
    tokens: int = 16384  # total calibration tokens aimed for
    chunk_size: int = 512  # tokens per evaluated chunk, BOS first
    process_output: bool = (
        False  # also collect activations for output.weight (llama-imatrix --process-output)
    )


@dataclass(frozen=True)
class Allocate:
    """Re-solve the per-group types for each model: minimise the worst language's predicted
    KLD (from `measurements`, per kind and depth range) within the size `budget` — a stock
    profile's size on the same model, or bits per weight. The profile's own rules then cover
    only what the measurements do not (seachat.convert.quant.tune.per_model.allocate_for_header)."""

    budget: str | float
    # measured on rows of both kinds (multiples of 256, and the 32-element fallback); for each
    # group the file measured on rows of its own kind is used, the first listed if several
    measurements: tuple[Path, ...]
    ranges: int = 3
    fixed: tuple[str, ...] = ()  # kinds kept at the profile's own choice (e.g. "output")


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str
    target_bpw: float
    default_type: GGMLType
    file_type: str  # llama.cpp ftype name, e.g. MOSTLY_Q4_K_M
    rules: tuple[Rule, ...] = ()
    fallbacks: dict[str, str] = field(default_factory=dict)  # merged over llama.cpp's
    output_type: GGMLType | None = None
    token_embd_type: GGMLType | None = None
    # Types at which the output projection (or the tied embedding that serves as it) is
    # quantized without its importance-matrix entry: on the 768-wide Gemma, q6_k with the
    # multilingual entry costs Tamil 0.51 KLD and 0.40 without (q5_k gains from it: 0.55 vs 1.48).
    output_without_imatrix: tuple[str, ...] = ()
    imatrix: bool = False
    calibration: Calibration | None = None
    stock: str | None = None
    tuned: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    allocate: Allocate | None = None
    allocated: str | None = None  # set on a profile re-solved for a model: the budget it met

    @property
    def file_type_id(self) -> int:
        return file_type_id(self.file_type)


def _err(where: str, message: str) -> UserError:
    return UserError(f"{where}: {message}")


def _type(where: str, value: Any, what: str) -> GGMLType:
    if not isinstance(value, str):
        raise _err(where, f"{what} must be a type name string like 'q4_k', got {value!r}")
    try:
        return lookup(value)
    except KeyError as exc:
        raise _err(where, f"{what}: {exc.args[0]}") from None


def profile_from_dict(data: dict[str, Any], source: str = "<profile>") -> Profile:
    """Validate a parsed TOML table and build the Profile; UserError on the first problem."""
    name, summary, bpw = _identity(source, data)
    default_type, file_type = _types(source, data)
    output_type = (
        _type(source, data["output_type"], "output_type") if "output_type" in data else None
    )
    token_embd_type = (
        _type(source, data["token_embd_type"], "token_embd_type")
        if "token_embd_type" in data
        else None
    )
    fallbacks = _fallbacks(source, data.get("fallbacks", {}))
    without = data.get("output_without_imatrix", [])
    if not isinstance(without, list):
        raise _err(source, "output_without_imatrix must be a list of type names")
    output_without_imatrix = tuple(_type(source, t, "output_without_imatrix").name for t in without)
    rules = _rules(source, data.get("rules", []))
    imatrix = data.get("imatrix", False)
    if not isinstance(imatrix, bool):
        raise _err(source, "imatrix must be true or false")
    calibration = None
    if "calibration" in data:
        calibration = _calibration(source, data["calibration"])
        if not imatrix:
            raise _err(source, "[calibration] is only used with imatrix = true")
    needs = sorted(
        t
        for t in {default_type, output_type, token_embd_type, *(r.type for r in rules)}
        if t and t.needs_imatrix
    )
    if needs and not imatrix:
        raise _err(
            source,
            f"type(s) {', '.join(t.name for t in needs)} need an importance matrix: set imatrix = true",
        )
    stock = data.get("stock")
    if stock is not None:
        try:
            file_type_id(stock)
        except KeyError:
            raise _err(source, f"stock {stock!r} is not a llama.cpp file type") from None
    tuned = data.get("tuned", {})
    if not isinstance(tuned, dict):
        raise _err(source, "[tuned] must be a table")
    allocate = _allocate(source, data["allocate"]) if "allocate" in data else None
    return Profile(
        name=name,
        summary=summary,
        target_bpw=bpw,
        default_type=default_type,
        file_type=file_type,
        rules=rules,
        fallbacks=fallbacks,
        output_type=output_type,
        token_embd_type=token_embd_type,
        output_without_imatrix=output_without_imatrix,
        imatrix=imatrix,
        calibration=calibration,
        stock=stock,
        tuned=dict(tuned),
        source=Path(source) if source != "<profile>" else None,
        allocate=allocate,
    )


def _known_keys(where: str, table: dict[str, Any], allowed: frozenset[str] | set[str]) -> None:
    """A misspelt key is an error, not a silently ignored setting."""
    unknown = set(table) - set(allowed)
    if unknown:
        raise _err(
            where,
            f"unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(allowed))})",
        )


def _identity(source: str, data: dict[str, Any]) -> tuple[str, str, float]:
    """Only known keys, the required ones present; the name, one-line summary and target."""
    _known_keys(source, data, _TOP_KEYS)
    for key in ("name", "summary", "target_bpw", "default_type"):
        if key not in data:
            raise _err(source, f"missing required key {key!r}")
    name = data["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _err(source, f"name {name!r} must be lower-case letters, digits, '-', '_' or '.'")
    summary = data["summary"]
    if not isinstance(summary, str) or not summary.strip() or "\n" in summary.strip():
        raise _err(source, "summary must be one non-empty line")
    bpw = data["target_bpw"]
    if not isinstance(bpw, (int, float)) or not 1.0 <= float(bpw) <= 32.0:
        raise _err(source, f"target_bpw {bpw!r} must be a number between 1 and 32")
    return name, summary.strip(), float(bpw)


def _types(source: str, data: dict[str, Any]) -> tuple[GGMLType, str]:
    """The default type (a quantized one) and the llama.cpp file type, as MOSTLY_<NAME>."""
    default_type = _type(source, data["default_type"], "default_type")
    if not default_type.is_quantized:
        raise _err(
            source,
            f"default_type {default_type.name} is not a quantized type (use seachat convert --outtype for f16/bf16/f32)",
        )
    file_type = data.get("file_type") or DEFAULT_FILE_TYPE[default_type.name]
    try:
        ftype_id = file_type_id(file_type)
    except KeyError:
        raise _err(
            source, f"file_type {file_type!r} is not a llama.cpp file type (e.g. Q4_K_M)"
        ) from None
    if ftype_id in _UNQUANTIZED_FILE_TYPES:
        raise _err(source, f"file_type {file_type!r} must be a quantized llama.cpp file type")
    upper = file_type.upper()
    return default_type, upper if upper.startswith("MOSTLY_") else "MOSTLY_" + upper


def _fallbacks(source: str, raw: Any) -> dict[str, str]:
    """llama.cpp's fallbacks with the profile's [fallbacks] over them."""
    if not isinstance(raw, dict):
        raise _err(source, "[fallbacks] must be a table of type = type")
    fallbacks = dict(LLAMA_CPP_FALLBACKS)
    for src, dst in raw.items():
        s = _type(f"{source}: [fallbacks]", src, "key")
        d = _type(f"{source}: [fallbacks]", dst, s.name)
        if d.block >= s.block and d.is_quantized:
            raise _err(
                source,
                f"[fallbacks] {s.name} -> {d.name}: the fallback must have a smaller block than {s.block}",
            )
        fallbacks[s.name] = d.name
    return fallbacks


def _rules(source: str, raw: Any) -> tuple[Rule, ...]:
    if not isinstance(raw, list):
        raise _err(source, "rules must be an array of tables ([[rules]])")
    return tuple(_rule(f"{source}: rule {i}", i, r) for i, r in enumerate(raw, start=1))


def _rule(where: str, index: int, raw: Any) -> Rule:
    if not isinstance(raw, dict):
        raise _err(where, "each [[rules]] entry must be a table")
    _known_keys(where, raw, _RULE_KEYS)
    if "type" not in raw:
        raise _err(where, "missing 'type'")
    rtype = _type(where, raw["type"], "type")
    kind_raw = raw.get("kind", [])
    kinds = (kind_raw,) if isinstance(kind_raw, str) else kind_raw
    if not isinstance(kinds, (list, tuple)) or not all(isinstance(k, str) for k in kinds):
        raise _err(where, "kind must be a kind name or a list of them")
    for kind in kinds:
        if kind not in KINDS:
            raise _err(where, f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
        if kind in UNQUANTIZED_KINDS:
            raise _err(where, f"kind {kind!r} is never quantized: {UNQUANTIZED_KINDS[kind]}")
    pattern = None
    if "pattern" in raw:
        if not isinstance(raw["pattern"], str) or not raw["pattern"]:
            raise _err(where, "pattern must be a non-empty regular expression string")
        try:
            pattern = re.compile(raw["pattern"])
        except re.error as exc:
            raise _err(
                where, f"pattern {raw['pattern']!r} is not a valid regular expression ({exc})"
            ) from None
    layers = None
    if "layers" in raw:
        try:
            layers = LayerSelector.parse(raw["layers"])
        except ValueError as exc:
            raise _err(where, str(exc)) from None
    if not kinds and pattern is None and layers is None:
        raise _err(
            where,
            "a rule needs at least one of kind, pattern or layers (use default_type for everything)",
        )
    return Rule(index, rtype, tuple(kinds), pattern, layers, str(raw.get("why", "")))


def _allocate(source: str, raw: Any) -> Allocate:
    where = f"{source}: [allocate]"
    if not isinstance(raw, dict):
        raise _err(where, "must be a table")
    _known_keys(where, raw, _ALLOCATE_KEYS)
    budget = raw.get("budget")
    if isinstance(budget, bool) or not isinstance(budget, (str, int, float)):
        raise _err(where, 'budget must be a stock profile name (e.g. "q4_k_m") or bits per weight')
    if isinstance(budget, (int, float)):
        if not 1.0 <= float(budget) <= 32.0:
            raise _err(where, f"budget {budget} bits per weight is out of range")
        budget = float(budget)
    else:
        paths = shipped_profile_paths()
        if budget not in paths:
            raise _err(where, f"budget {budget!r} is not a shipped profile ({', '.join(paths)})")
        try:
            data = tomllib.loads(paths[budget].read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):  # pragma: no cover - shipped files parse
            raise _err(where, f"budget profile {budget!r} cannot be read") from None
        if "allocate" in data:
            raise _err(
                where, f"budget profile {budget!r} is itself allocated; name a fixed-rule profile"
            )
    names = raw.get("measurements")
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise _err(
            where, "measurements must name the JSON written by `seachat tune` (or a list of them)"
        )
    base = Path(source).parent if source != "<profile>" else Path.cwd()
    paths = tuple(_measurements_file(where, base, name) for name in names)
    ranges = raw.get("ranges", 3)
    if not isinstance(ranges, int) or not 1 <= ranges <= 64:
        raise _err(where, "ranges must be an integer between 1 and 64")
    fixed = raw.get("fixed", [])
    if not isinstance(fixed, list) or not all(isinstance(k, str) and k in KINDS for k in fixed):
        raise _err(where, f"fixed must be a list of kinds ({', '.join(KINDS)})")
    return Allocate(budget, paths, ranges, tuple(fixed))


def _measurements_file(where: str, base: Path, name: str) -> Path:
    """One measurements JSON of [allocate], checked to hold measurements."""
    import json

    path = Path(name) if Path(name).is_absolute() else base / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise _err(
            where, f"measurements file {path} not found; keep it beside the profile"
        ) from None
    except ValueError:
        raise _err(
            where, f"measurements file {path} is not valid JSON; rerun `seachat tune`"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("delta"), dict) or not data["delta"]:
        raise _err(where, f"{path} holds no measurements (no 'delta'); rerun `seachat tune`")
    return path


def _calibration(source: str, raw: Any) -> Calibration:
    where = f"{source}: [calibration]"
    if not isinstance(raw, dict):
        raise _err(where, "must be a table")
    _known_keys(where, raw, _CALIBRATION_KEYS)
    mix_raw = raw.get("mix", {})
    if not isinstance(mix_raw, dict) or not mix_raw:
        raise _err(where, "needs a non-empty [calibration.mix] table of language = weight")
    mix: dict[str, float] = {}
    for lang, w in mix_raw.items():
        if not isinstance(w, (int, float)) or w < 0:
            raise _err(where, f"mix weight for {lang!r} must be a number >= 0")
        mix[str(lang)] = float(w)
    if sum(mix.values()) <= 0:
        raise _err(where, "mix weights must not all be zero")
    tokens = raw.get("tokens", 16384)
    chunk = raw.get("chunk_size", 512)
    if not isinstance(chunk, int) or not 32 <= chunk <= 8192:
        raise _err(where, "chunk_size must be an integer between 32 and 8192")
    if not isinstance(tokens, int) or tokens < chunk:
        raise _err(where, "tokens must be an integer of at least one chunk")
    process_output = raw.get("process_output", False)
    if not isinstance(process_output, bool):
        raise _err(where, "process_output must be true or false")
    return Calibration(mix=mix, tokens=tokens, chunk_size=chunk, process_output=process_output)


def load_profile_file(path: str | Path) -> Profile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read profile ({exc.strerror or exc})") from exc
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; save the profile as UTF-8") from None
    return profile_from_text(text, str(path))


def profile_from_text(text: str, source: str) -> Profile:
    """A profile from TOML text; UserError naming `source` for bad syntax or content."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{source}: not valid TOML ({exc}); fix the syntax") from exc
    return profile_from_dict(data, source)


def shipped_profile_paths() -> dict[str, Path]:
    """name -> TOML file of every profile that ships with seachat."""
    folder = resources.files("seachat.quant_profiles")
    out: dict[str, Path] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            out[entry.name[: -len(".toml")]] = Path(str(entry))
    return dict(sorted(out.items()))


def shipped_profiles() -> list[Profile]:
    return [load_profile_file(p) for p in shipped_profile_paths().values()]


DEFAULT_PROFILE = "sea-q4"


def load_profile(spec: str | Path | Profile) -> Profile:
    """A shipped profile by name (`sea-q4`), or a TOML file by path."""
    if isinstance(spec, Profile):
        return spec
    text = str(spec)
    shipped = shipped_profile_paths()
    if text in shipped:
        return load_profile_file(shipped[text])
    path = Path(text)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UserError(
                f"{path}: no such profile file; give a TOML path or one of: {', '.join(shipped)}"
            )
        return load_profile_file(path)
    raise UserError(
        f"unknown profile {text!r}; use one of: {', '.join(shipped)} (see `seachat profiles`), or a .toml path"
    )
