"""The 413 urban local bodies (ULBs) of Madhya Pradesh, as a fixed, deterministic list.

What is real and what is not:

* The 16 municipal corporations (Nagar Nigam) are real and named correctly, each in its real district.
  Bhopal (MP001) runs its own portal; the other 412 ULBs were on e-Nagar Palika.
* The kind counts are the state's: 16 Nagar Nigam, 99 Nagar Palika Parishad, 298 Nagar Parishad = 413.
* The 55 districts are the real districts of Madhya Pradesh (2023, including Maihar, Mauganj, Pandhurna).
* The 397 municipal councils and nagar parishads have GENERATED town names (Hindi-sounding syllables),
  spread round-robin over the districts. A reliable official list of all 413 names was not available
  offline; synthetic names are safer than half-remembered real ones. Codes (MP001..MP413) are ours too.
"""

from __future__ import annotations

from dataclasses import dataclass

NAGAR_NIGAM = "nagar_nigam"
NAGAR_PALIKA_PARISHAD = "nagar_palika_parishad"
NAGAR_PARISHAD = "nagar_parishad"

KIND_LABELS = {
    NAGAR_NIGAM: "Nagar Nigam",
    NAGAR_PALIKA_PARISHAD: "Nagar Palika Parishad",
    NAGAR_PARISHAD: "Nagar Parishad",
}
KIND_COUNTS = {NAGAR_NIGAM: 16, NAGAR_PALIKA_PARISHAD: 99, NAGAR_PARISHAD: 298}

# (town, district); Bhopal first: it is the one ULB not on the e-Nagar Palika portal.
MUNICIPAL_CORPORATIONS = (
    ("Bhopal", "Bhopal"),
    ("Indore", "Indore"),
    ("Gwalior", "Gwalior"),
    ("Jabalpur", "Jabalpur"),
    ("Ujjain", "Ujjain"),
    ("Sagar", "Sagar"),
    ("Ratlam", "Ratlam"),
    ("Satna", "Satna"),
    ("Dewas", "Dewas"),
    ("Rewa", "Rewa"),
    ("Burhanpur", "Burhanpur"),
    ("Khandwa", "Khandwa"),
    ("Katni", "Katni"),
    ("Singrauli", "Singrauli"),
    ("Morena", "Morena"),
    ("Chhindwara", "Chhindwara"),
)

DISTRICTS = (
    "Agar Malwa",
    "Alirajpur",
    "Anuppur",
    "Ashoknagar",
    "Balaghat",
    "Barwani",
    "Betul",
    "Bhind",
    "Bhopal",
    "Burhanpur",
    "Chhatarpur",
    "Chhindwara",
    "Damoh",
    "Datia",
    "Dewas",
    "Dhar",
    "Dindori",
    "Guna",
    "Gwalior",
    "Harda",
    "Indore",
    "Jabalpur",
    "Jhabua",
    "Katni",
    "Khandwa",
    "Khargone",
    "Maihar",
    "Mandla",
    "Mandsaur",
    "Mauganj",
    "Morena",
    "Narmadapuram",
    "Narsinghpur",
    "Neemuch",
    "Niwari",
    "Pandhurna",
    "Panna",
    "Raisen",
    "Rajgarh",
    "Ratlam",
    "Rewa",
    "Sagar",
    "Satna",
    "Sehore",
    "Seoni",
    "Shahdol",
    "Shajapur",
    "Sheopur",
    "Shivpuri",
    "Sidhi",
    "Singrauli",
    "Tikamgarh",
    "Ujjain",
    "Umaria",
    "Vidisha",
)

_PREFIXES = (
    "Ambi", "Bela", "Chandra", "Deo", "Ganga", "Hira", "Jamu", "Kesli", "Lakh", "Mahua",
    "Nand", "Pali", "Rajna", "Sona", "Tendu", "Udai", "Bamni", "Kanha", "Morwa", "Pipri",
    "Sarni", "Tilak", "Keol", "Badi", "Chhoti", "Gopal", "Harsi", "Jhiri", "Kurai", "Lohar",
)  # fmt: skip
_SUFFIXES = (
    "pur", "garh", "khedi", "ganj", "wara", "pura", "ghat", "kheda",
    "nagar", "sar", "bag", "gaon", "dih", "tal", "wani", "kala",
)  # fmt: skip


@dataclass(frozen=True)
class Ulb:
    code: str
    name: str
    kind: str
    district: str
    on_portal: bool
    town: str
    synthetic_name: bool


def _generated_towns(count: int) -> list[str]:
    """`count` distinct town names, the same on every run (a fixed permutation of prefix x suffix)."""
    combos = [p + s for p in _PREFIXES for s in _SUFFIXES]
    step = 7919  # prime, coprime with len(combos) = 480, so i*step mod n visits every combo once
    if count > len(combos):
        raise ValueError(f"only {len(combos)} generated names available, {count} asked")
    names = [combos[(i * step) % len(combos)] for i in range(count)]
    return [n[0] + n[1:].lower() for n in names]


def _build() -> tuple[Ulb, ...]:
    ulbs: list[Ulb] = []
    for i, (town, district) in enumerate(MUNICIPAL_CORPORATIONS):
        ulbs.append(
            Ulb(
                code=f"MP{i + 1:03d}",
                name=f"Nagar Nigam {town}",
                kind=NAGAR_NIGAM,
                district=district,
                on_portal=town != "Bhopal",
                town=town,
                synthetic_name=False,
            )
        )
    corporation_towns = {t for t, _d in MUNICIPAL_CORPORATIONS}
    towns = _generated_towns(KIND_COUNTS[NAGAR_PALIKA_PARISHAD] + KIND_COUNTS[NAGAR_PARISHAD] + 16)
    towns = [t for t in towns if t not in corporation_towns]
    n = len(ulbs)
    for kind in (NAGAR_PALIKA_PARISHAD, NAGAR_PARISHAD):
        for j in range(KIND_COUNTS[kind]):
            town = towns.pop(0)
            district = DISTRICTS[(j * 13 + (0 if kind == NAGAR_PALIKA_PARISHAD else 7)) % len(DISTRICTS)]
            n += 1
            ulbs.append(
                Ulb(
                    code=f"MP{n:03d}",
                    name=f"{KIND_LABELS[kind]} {town}",
                    kind=kind,
                    district=district,
                    on_portal=True,
                    town=town,
                    synthetic_name=True,
                )
            )
    return tuple(ulbs)


ULBS: tuple[Ulb, ...] = _build()
BY_CODE: dict[str, Ulb] = {u.code: u for u in ULBS}
