"""One table of the languages seachat talks about, and the codes each tool spells them with.

GGUF metadata (`general.languages`) usually carries ISO 639-1 codes from the source model
card ("th"), evaluation reports use FLORES-200 codes ("tha_Thai"), and the Hub's model card
wants ISO 639-1 where one exists. Everything that shows or writes a language goes through
`normalize()` so the three spellings meet.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    iso: str  # ISO 639-1 where one exists, else ISO 639-3 (what Hub model cards accept)
    flores: str  # FLORES-200 code: ISO 639-3 + ISO 15924 script
    english: str
    native: str


# Declarative: add a row to support a language everywhere (listing, card, report columns).
LANGUAGES: tuple[Language, ...] = (
    Language("th", "tha_Thai", "Thai", "ไทย"),
    Language("km", "khm_Khmr", "Khmer", "ខ្មែរ"),
    Language("lo", "lao_Laoo", "Lao", "ລາວ"),
    Language("my", "mya_Mymr", "Burmese", "မြန်မာ"),
    Language("vi", "vie_Latn", "Vietnamese", "Tiếng Việt"),
    Language("id", "ind_Latn", "Indonesian", "Bahasa Indonesia"),
    Language("ms", "zsm_Latn", "Malay", "Bahasa Melayu"),
    Language("tl", "tgl_Latn", "Tagalog", "Tagalog"),
    Language("jv", "jav_Latn", "Javanese", "Basa Jawa"),
    Language("ta", "tam_Taml", "Tamil", "தமிழ்"),
    Language("ar", "arb_Arab", "Arabic", "العربية"),
    Language("hi", "hin_Deva", "Hindi", "हिन्दी"),
    Language("zh", "zho_Hans", "Chinese (Simplified)", "中文"),
    Language("ja", "jpn_Jpan", "Japanese", "日本語"),
    Language("ko", "kor_Hang", "Korean", "한국어"),
    Language("en", "eng_Latn", "English", "English"),
)

_BY_KEY: dict[str, Language] = {}
for _lang in LANGUAGES:
    for _key in (_lang.iso, _lang.flores, _lang.flores.split("_")[0], _lang.english):
        _BY_KEY.setdefault(_key.casefold(), _lang)
# Spellings seen in the wild on model cards.
for _alias, _iso in (("fil", "tl"), ("zsm", "ms"), ("msa", "ms"), ("may", "ms"), ("bur", "my")):
    _BY_KEY.setdefault(_alias, _BY_KEY[_iso])


def lookup(code: str) -> Language | None:
    """The table row for any spelling we know ("th", "tha", "tha_Thai", "Thai"), else None."""
    return _BY_KEY.get(code.strip().casefold().replace("-", "_"))


def normalize(code: str) -> str:
    """The model-card code for a language; unknown codes pass through unchanged (stripped)."""
    lang = lookup(code)
    return lang.iso if lang else code.strip()


def display_name(code: str) -> str:
    """'Thai (tha_Thai)' style label for report tables; unknown codes are shown as given."""
    lang = lookup(code)
    return f"{lang.english} ({code})" if lang else code


def iso_codes(codes: list[str] | tuple[str, ...]) -> list[str]:
    """Normalized, de-duplicated, order kept."""
    out: list[str] = []
    for code in codes:
        norm = normalize(str(code))
        if norm and norm not in out:
            out.append(norm)
    return out
