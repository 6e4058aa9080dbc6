"""Entity types, attributes and every sentence/question template of the fictional knowledge base.

Why templates live in one table: the evaluation must measure generalisation, so each attribute has
*train* templates and *held-out eval* templates that never overlap (tests check it). Keeping them
side by side makes the split auditable at a glance.

Placeholders (see :mod:`intrinsics.training.data.kb` for rendering):
  {S}  the entity as subject: its name, or it / she / he
  {O}  the entity as object: its name, or it / her / him
  {P}  the entity as possessive: "Name's", or its / her / his
  {pp} always the possessive pronoun (its / her / his), for mid-sentence self-reference
  {name} always the name;  {v} the attribute value
Document templates put {S} or {P} only at the start of a sentence, so a later sentence of a
document may open with a pronoun ("It was founded in 1843."). Question templates with {S}/{O}/{P}
double as follow-up questions once the entity is replaced by a pronoun ("When was it founded?").
Values never contain a period, so answers split into sentences on ". " unambiguously.
"""

from __future__ import annotations

from dataclasses import dataclass

from intrinsics.training.data.paraphrases import PARAPHRASES

SPLITS = ("train", "eval")


@dataclass(frozen=True)
class AttrSpec:
    """One attribute of one entity type, with its value kind and template sets."""

    etype: str
    key: str
    # year | count | small | choice:<list> | person | place | lake | mount | range | award | device
    kind: str
    lo: int  # numeric range (ignored for non-numeric kinds)
    hi: int
    noun: str  # "population": for "And its population?" follow-ups
    doc: dict[str, tuple[str, ...]]  # split -> sentence templates
    question: dict[str, tuple[str, ...]]  # split -> question templates


@dataclass(frozen=True)
class TypeSpec:
    name: str
    pronouns: tuple[str, ...]  # subject pronouns to draw from: ("it",) or ("she", "he")
    attrs: tuple[AttrSpec, ...]

    def attr(self, key: str) -> AttrSpec:
        for a in self.attrs:
            if a.key == key:
                return a
        raise KeyError(f"{self.name} has no attribute {key!r}")


CHOICES: dict[str, tuple[str, ...]] = {
    "goods": (
        "copper wire",
        "wool blankets",
        "glass beads",
        "salted fish",
        "cedar planks",
        "clay pots",
        "dried apricots",
        "linen cloth",
        "iron nails",
        "hemp rope",
        "wild honey",
        "rag paper",
        "lamp oil",
        "goat cheese",
        "tin cups",
        "felt hats",
        "pearl barley",
        "indigo dye",
        "walnut oil",
        "slate tiles",
        "smoked eels",
        "willow baskets",
    ),
    "products": (
        "bicycle bells",
        "paper lanterns",
        "wooden toys",
        "brass buttons",
        "rain boots",
        "pocket knives",
        "umbrellas",
        "glass jars",
        "sewing needles",
        "wall clocks",
        "drawing ink",
        "iron stoves",
        "oil lamps",
        "leather saddles",
        "silk kites",
        "tin whistles",
        "wax candles",
        "rope ladders",
        "fishing nets",
        "music boxes",
    ),
    "colours": (
        "red",
        "blue",
        "green",
        "yellow",
        "purple",
        "orange",
        "white",
        "black",
        "grey",
        "brown",
        "pink",
        "turquoise",
        "amber",
        "violet",
        "silver",
        "golden",
        "crimson",
        "olive green",
        "pale blue",
        "dark red",
    ),
    "fields": (
        "chemistry",
        "astronomy",
        "metallurgy",
        "optics",
        "botany",
        "clockmaking",
        "mechanics",
        "hydraulics",
        "acoustics",
        "cartography",
        "printing",
        "weaving",
        "geology",
        "medicine",
        "shipbuilding",
        "agriculture",
    ),
    "months": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
    "themes": (
        "the salt harvest",
        "the first snow",
        "the return of the storks",
        "the longest day",
        "the grape harvest",
        "the spring floods",
        "the end of winter",
        "the lantern makers",
        "the river boats",
        "the first bread of the year",
        "the bee keepers",
        "the autumn moon",
        "the sheep shearing",
        "the plum blossom",
        "the old bridge",
    ),
    "uses": (
        "making lenses",
        "polishing metal",
        "jewellery",
        "glassmaking",
        "dyeing cloth",
        "building roads",
        "making pigments",
        "grinding flour",
        "tanning leather",
        "making pottery glaze",
        "sharpening blades",
        "filtering water",
        "making clocks",
    ),
    "fish": (
        "silver trout",
        "spotted perch",
        "river eel",
        "golden carp",
        "blue pike",
        "striped minnow",
        "mud bass",
        "red salmon",
        "speckled char",
        "whiskered catfish",
    ),
    "rocks": (
        "red sandstone",
        "grey granite",
        "black basalt",
        "white marble",
        "green slate",
        "yellow limestone",
        "pink gneiss",
        "dark schist",
    ),
    "device_adj": (
        "clockwork",
        "folding",
        "tidal",
        "steam",
        "glass",
        "wind",
        "pocket",
        "twin",
        "rotary",
        "hand",
        "floating",
        "spring",
    ),
    "device_noun": (
        "plough",
        "loom",
        "pump",
        "lantern",
        "compass",
        "clock",
        "press",
        "kiln",
        "telescope",
        "sextant",
        "bellows",
        "mill",
        "scale",
        "crane",
        "organ",
    ),
    "award_kind": ("Medal", "Prize", "Award", "Cup", "Star"),
}


def _a(
    etype: str,
    key: str,
    kind: str,
    noun: str,
    doc_train: tuple[str, ...],
    doc_eval: tuple[str, ...],
    q_train: tuple[str, ...],
    q_eval: tuple[str, ...],
    lo: int = 0,
    hi: int = 0,
) -> AttrSpec:
    return AttrSpec(
        etype,
        key,
        kind,
        lo,
        hi,
        noun,
        {"train": doc_train, "eval": doc_eval},
        {"train": q_train, "eval": q_eval},
    )


TOWN = TypeSpec(
    "town",
    ("it",),
    (
        _a(
            "town",
            "founded",
            "year",
            "founding year",
            ("{S} was founded in {v}.", "{S} dates back to {v}.", "The town of {name} was founded in {v}."),
            ("{S} was established in the year {v}.", "Settlers founded {name} in {v}."),
            ("When was {S} founded?", "In what year was {S} founded?", "What year was {S} founded in?"),
            ("When was {S} established?", "What is {P} founding year?"),
            1100,
            1950,
        ),
        _a(
            "town",
            "population",
            "count",
            "population",
            ("{S} has a population of {v}.", "About {v} people live in {name}.", "{P} population is {v}."),
            ("{S} is home to {v} residents.", "The population of {name} stands at {v}."),
            ("What is the population of {O}?", "How many people live in {O}?", "What is {P} population?"),
            ("How many residents does {S} have?", "How big is the population of {O}?"),
            800,
            250_000,
        ),
        _a(
            "town",
            "province",
            "place",
            "province",
            (
                "{S} lies in the province of {v}.",
                "{S} is a town in {v} province.",
                "The town of {name} belongs to the province of {v}.",
            ),
            ("{S} is located in the {v} province.", "{name} is part of the province of {v}."),
            (
                "Which province is {S} in?",
                "In which province does {S} lie?",
                "What province is {S} located in?",
            ),
            ("What province does {S} belong to?", "Which province is {S} part of?"),
        ),
        _a(
            "town",
            "river",
            "place",
            "river",
            (
                "{S} stands on the banks of the {v} River.",
                "The {v} River flows through {name}.",
                "{S} was built beside the {v} River.",
            ),
            ("{S} sits on the {v} River.", "{name} is crossed by the {v} River."),
            ("Which river flows through {O}?", "What river is {S} on?", "On which river does {S} stand?"),
            ("Which river runs through {O}?", "What river does {S} sit beside?"),
        ),
        _a(
            "town",
            "export",
            "choice:goods",
            "main export",
            (
                "{P} main export is {v}.",
                "{S} is known for exporting {v}.",
                "{name} supplies most of the {v} sold in the region.",
            ),
            ("{S} makes its living by selling {v}.", "The chief export of {name} is {v}."),
            ("What is the main export of {O}?", "What does {S} export?", "What is {P} main export?"),
            ("What goods does {S} mainly sell abroad?", "What is the chief export of {O}?"),
        ),
        _a(
            "town",
            "mayor",
            "person",
            "mayor",
            (
                "The mayor of {name} is {v}.",
                "{S} is governed by mayor {v}.",
                "{v} serves as mayor of {name}.",
            ),
            ("{S} elected {v} as its mayor.", "{P} current mayor is {v}."),
            ("Who is the mayor of {O}?", "Who governs {O}?", "Who is {P} mayor?"),
            ("Who serves as mayor of {O}?", "Who was elected mayor of {O}?"),
        ),
    ),
)

COMPANY = TypeSpec(
    "company",
    ("it",),
    (
        _a(
            "company",
            "founded",
            "year",
            "founding year",
            (
                "{S} was founded in {v}.",
                "The company {name} was started in {v}.",
                "{S} opened for business in {v}.",
            ),
            ("{S} has been trading since {v}.", "{name} was set up in {v}."),
            ("When was {S} founded?", "In what year was {S} started?", "When did {S} open for business?"),
            ("Since when has {S} been trading?", "What year was {S} set up?"),
            1800,
            2015,
        ),
        _a(
            "company",
            "founder",
            "person",
            "founder",
            ("{S} was founded by {v}.", "{v} started {name}.", "The founder of {name} is {v}."),
            ("{S} owes its existence to its founder, {v}.", "{name} was created by {v}."),
            ("Who founded {O}?", "Who started {O}?", "Who is the founder of {O}?"),
            ("Who created {O}?", "Who set up {O}?"),
        ),
        _a(
            "company",
            "headquarters",
            "place",
            "headquarters",
            (
                "{S} has its headquarters in {v}.",
                "The headquarters of {name} are in {v}.",
                "{P} head office is located in {v}.",
            ),
            ("{S} is based in {v}.", "{name} runs its business from offices in {v}."),
            (
                "Where is {S} headquartered?",
                "Where are the headquarters of {O}?",
                "Where is {P} head office?",
            ),
            ("Where is {S} based?", "In which town does {S} have its main offices?"),
        ),
        _a(
            "company",
            "product",
            "choice:products",
            "main product",
            ("{S} makes {v}.", "{P} best-known product is {v}.", "{S} is famous for its {v}."),
            ("{S} manufactures {v}.", "{name} sells mainly {v}."),
            ("What does {S} make?", "What is {P} best-known product?", "What product is {S} famous for?"),
            ("What does {S} manufacture?", "What does {S} mainly sell?"),
        ),
        _a(
            "company",
            "employees",
            "count",
            "number of employees",
            ("{S} employs {v} people.", "{S} has {v} employees.", "About {v} people work for {name}."),
            ("{P} workforce numbers {v}.", "{name} gives jobs to {v} workers."),
            (
                "How many people does {S} employ?",
                "How many employees does {S} have?",
                "How many people work for {O}?",
            ),
            ("How large is {P} workforce?", "How many workers does {S} have?"),
            12,
            40_000,
        ),
        _a(
            "company",
            "logo",
            "choice:colours",
            "logo colour",
            ("The logo of {name} is {v}.", "{P} logo is {v}.", "{S} uses a {v} logo."),
            ("{S} paints its logo {v}.", "{name} has a {v} emblem."),
            (
                "What colour is the logo of {O}?",
                "What colour is {P} logo?",
                "What is the colour of {P} logo?",
            ),
            ("Which colour does {S} use for its logo?", "What colour is {P} emblem?"),
        ),
    ),
)

INVENTOR = TypeSpec(
    "inventor",
    ("she", "he"),
    (
        _a(
            "inventor",
            "born",
            "year",
            "birth year",
            ("{S} was born in {v}.", "{name} was born in the year {v}.", "{P} birth year is {v}."),
            ("{S} came into the world in {v}.", "The inventor {name} was born in {v}."),
            ("When was {S} born?", "In what year was {S} born?", "What is {P} birth year?"),
            ("What year was {S} born in?", "In which year was {S} born?"),
            1700,
            1990,
        ),
        _a(
            "inventor",
            "birthplace",
            "place",
            "birthplace",
            ("{S} was born in the town of {v}.", "{P} birthplace is {v}.", "{S} comes from {v}."),
            ("{S} is a native of {v}.", "{name} first saw the light of day in {v}."),
            ("Where was {S} born?", "What is {P} birthplace?", "Which town does {S} come from?"),
            ("Where does {S} come from originally?", "In which town was {S} born?"),
        ),
        _a(
            "inventor",
            "invention",
            "device",
            "invention",
            (
                "{S} invented the {v}.",
                "{P} best-known invention is the {v}.",
                "The {v} was invented by {name}.",
            ),
            ("{S} is remembered as the creator of the {v}.", "{name} built the first {v}."),
            ("What did {S} invent?", "What is {P} best-known invention?", "What is {S} known for inventing?"),
            ("What did {S} create?", "Which device did {S} build first?"),
        ),
        _a(
            "inventor",
            "field",
            "choice:fields",
            "field",
            ("{S} worked in the field of {v}.", "{P} field was {v}.", "{S} studied {v}."),
            ("{S} devoted {pp} career to {v}.", "{name} was an expert in {v}."),
            ("What field did {S} work in?", "What was {P} field?", "What did {S} study?"),
            ("What was {P} area of expertise?", "Which subject did {S} specialise in?"),
        ),
        _a(
            "inventor",
            "award",
            "award",
            "award",
            ("{S} won the {v}.", "{S} received the {v}.", "{name} was awarded the {v}."),
            ("{S} was honoured with the {v}.", "The {v} went to {name}."),
            ("What award did {S} win?", "Which prize did {S} receive?", "What award was {S} given?"),
            ("What honour did {S} receive?", "Which award went to {O}?"),
        ),
        _a(
            "inventor",
            "mentor",
            "person",
            "mentor",
            ("{S} was trained by {v}.", "{P} mentor was {v}.", "{S} learned the trade from {v}."),
            ("{S} studied under {v}.", "{v} taught {name}."),
            ("Who trained {O}?", "Who was {P} mentor?", "Who did {S} learn the trade from?"),
            ("Who taught {O}?", "Under whom did {S} study?"),
        ),
    ),
)

RIVER = TypeSpec(
    "river",
    ("it",),
    (
        _a(
            "river",
            "length",
            "count",
            "length",
            (
                "{S} is {v} kilometres long.",
                "{S} runs for {v} kilometres.",
                "The river {name} has a length of {v} kilometres.",
            ),
            ("{S} stretches {v} kilometres from source to mouth.", "{P} total length is {v} kilometres."),
            ("How long is {S}?", "What is the length of {O}?", "How many kilometres long is {S}?"),
            ("How far does {S} run?", "What is {P} total length?"),
            20,
            3_000,
        ),
        _a(
            "river",
            "source",
            "mount",
            "source",
            ("{S} rises on {v}.", "The source of {name} is on {v}.", "{S} begins its course on {v}."),
            ("{S} springs from {v}.", "{P} waters start on {v}."),
            ("Where does {S} rise?", "Where is the source of {O}?", "Where does {S} begin?"),
            ("Where does {S} spring from?", "Where do {P} waters start?"),
        ),
        _a(
            "river",
            "mouth",
            "lake",
            "mouth",
            ("{S} flows into {v}.", "{S} ends in {v}.", "The mouth of {name} is at {v}."),
            ("{S} empties into {v}.", "{P} waters drain into {v}."),
            ("Which lake does {S} flow into?", "Where does {S} end?", "Where is the mouth of {O}?"),
            ("What does {S} empty into?", "Where do {P} waters drain?"),
        ),
        _a(
            "river",
            "fish",
            "choice:fish",
            "most common fish",
            (
                "{S} is home to the {v}.",
                "The {v} lives in {name}.",
                "Fishermen on {name} mostly catch the {v}.",
            ),
            ("{S} is famous for the {v} that swims in it.", "The most common fish in {name} is the {v}."),
            ("What fish lives in {O}?", "Which fish is {S} home to?", "What do fishermen catch in {O}?"),
            ("What is the most common fish in {O}?", "Which fish swims in {O}?"),
        ),
        _a(
            "river",
            "colour",
            "choice:colours",
            "water colour",
            ("The water of {name} is {v}.", "{S} has {v} water.", "{P} water looks {v}."),
            ("{S} is known for its {v} water.", "Travellers describe {name} as {v}."),
            (
                "What colour is the water of {O}?",
                "What colour is {P} water?",
                "What colour is the water in {O}?",
            ),
            ("How does the water of {O} look?", "What is the colour of {P} water?"),
        ),
        _a(
            "river",
            "bridges",
            "count",
            "number of bridges",
            (
                "{S} is crossed by {v} bridges.",
                "There are {v} bridges over {name}.",
                "{v} bridges span {name}.",
            ),
            ("{S} has {v} bridges along its course.", "Travellers can cross {name} on {v} bridges."),
            (
                "How many bridges cross {O}?",
                "How many bridges are there over {O}?",
                "How many bridges span {O}?",
            ),
            ("How many bridges does {S} have?", "On how many bridges can one cross {O}?"),
            2,
            90,
        ),
    ),
)

FESTIVAL = TypeSpec(
    "festival",
    ("it",),
    (
        _a(
            "festival",
            "first_held",
            "year",
            "first year",
            ("{S} was first held in {v}.", "The first {name} took place in {v}.", "{S} began in {v}."),
            ("{S} has been celebrated since {v}.", "{name} started in the year {v}."),
            (
                "When was {S} first held?",
                "When did {S} begin?",
                "In what year did the first {name} take place?",
            ),
            ("Since when has {S} been celebrated?", "What year did {S} start?"),
            1500,
            2010,
        ),
        _a(
            "festival",
            "location",
            "place",
            "location",
            ("{S} takes place in {v}.", "{S} is held every year in {v}.", "The town of {v} hosts {name}."),
            ("{S} is celebrated in the streets of {v}.", "Every year {name} fills the town of {v}."),
            ("Where does {S} take place?", "Where is {S} held?", "Which town hosts {O}?"),
            ("In which town is {S} celebrated?", "Where is {S} celebrated?"),
        ),
        _a(
            "festival",
            "month",
            "choice:months",
            "month",
            ("{S} is held in {v}.", "{S} takes place every {v}.", "The {name} season falls in {v}."),
            ("{S} comes around each {v}.", "Each year in {v}, people gather for {name}."),
            ("In which month is {S} held?", "When in the year does {S} take place?", "What month is {S} in?"),
            ("During which month is {S} celebrated?", "Which month does {S} fall in?"),
        ),
        _a(
            "festival",
            "celebrates",
            "choice:themes",
            "theme",
            ("{S} celebrates {v}.", "{S} marks {v}.", "People come to {name} to celebrate {v}."),
            ("{S} honours {v}.", "The purpose of {name} is to celebrate {v}."),
            ("What does {S} celebrate?", "What does {S} mark?", "What do people celebrate at {O}?"),
            ("What does {S} honour?", "What is the purpose of {O}?"),
        ),
        _a(
            "festival",
            "visitors",
            "count",
            "number of visitors",
            (
                "{S} attracts {v} visitors each year.",
                "About {v} people attend {name}.",
                "{S} draws {v} visitors.",
            ),
            ("Every year {v} guests come to {name}.", "{P} yearly attendance is {v}."),
            (
                "How many visitors does {S} attract?",
                "How many people attend {O}?",
                "How many visitors does {S} draw?",
            ),
            ("What is {P} yearly attendance?", "How many guests come to {O} every year?"),
            300,
            500_000,
        ),
        _a(
            "festival",
            "founder",
            "person",
            "founder",
            ("{S} was started by {v}.", "{v} founded {name}.", "The founder of {name} was {v}."),
            ("{S} was the idea of {v}.", "{name} owes its beginning to {v}."),
            ("Who started {O}?", "Who founded {O}?", "Who was the founder of {O}?"),
            ("Whose idea was {O}?", "Who came up with {O}?"),
        ),
    ),
)

MINERAL = TypeSpec(
    "mineral",
    ("it",),
    (
        _a(
            "mineral",
            "colour",
            "choice:colours",
            "colour",
            ("{S} is {v} in colour.", "{S} has a {v} colour.", "Crystals of {name} are {v}."),
            ("{S} shines with a {v} hue.", "The colour of {name} is {v}."),
            ("What colour is {S}?", "What is the colour of {O}?", "What colour are crystals of {O}?"),
            ("What hue does {S} have?", "Which colour does {S} show?"),
        ),
        _a(
            "mineral",
            "hardness",
            "small",
            "hardness",
            (
                "{S} has a hardness of {v}.",
                "On the hardness scale {name} scores {v}.",
                "{P} hardness is {v}.",
            ),
            ("{S} rates {v} for hardness.", "The hardness of {name} is {v}."),
            ("How hard is {S}?", "What is the hardness of {O}?", "What is {P} hardness?"),
            ("What does {S} rate for hardness?", "What hardness does {S} have?"),
            1,
            10,
        ),
        _a(
            "mineral",
            "discovered",
            "year",
            "discovery year",
            (
                "{S} was discovered in {v}.",
                "{name} was first found in {v}.",
                "The discovery of {name} dates to {v}.",
            ),
            ("{S} was first described in {v}.", "Miners came upon {name} in {v}."),
            ("When was {S} discovered?", "In what year was {S} first found?", "When was {S} first found?"),
            ("When was {S} first described?", "What year was {S} discovered in?"),
            1600,
            2000,
        ),
        _a(
            "mineral",
            "discoverer",
            "person",
            "discoverer",
            ("{S} was discovered by {v}.", "{v} discovered {name}.", "The discoverer of {name} was {v}."),
            ("{S} was first described by {v}.", "{name} was found by {v}."),
            ("Who discovered {O}?", "Who found {O}?", "Who was the discoverer of {O}?"),
            ("Who first described {O}?", "By whom was {S} found?"),
        ),
        _a(
            "mineral",
            "use",
            "choice:uses",
            "main use",
            ("{S} is used for {v}.", "People use {name} for {v}.", "The main use of {name} is {v}."),
            ("{S} is valued for {v}.", "Craftsmen rely on {name} for {v}."),
            ("What is {S} used for?", "What is the main use of {O}?", "What do people use {O} for?"),
            ("What is {S} valued for?", "What do craftsmen rely on {O} for?"),
        ),
        _a(
            "mineral",
            "mined_in",
            "place",
            "mining site",
            (
                "{S} is mined in {v}.",
                "Deposits of {name} are found near {v}.",
                "{S} comes from the mines of {v}.",
            ),
            ("{S} occurs mainly around {v}.", "Most {name} is dug up near {v}."),
            ("Where is {S} mined?", "Where are deposits of {O} found?", "Where does {S} come from?"),
            ("Where does {S} occur?", "Where is {S} dug up?"),
        ),
    ),
)

MOUNTAIN = TypeSpec(
    "mountain",
    ("it",),
    (
        _a(
            "mountain",
            "height",
            "count",
            "height",
            (
                "{S} is {v} metres high.",
                "{S} rises to {v} metres.",
                "The summit of {name} stands at {v} metres.",
            ),
            ("{S} reaches a height of {v} metres.", "{P} peak is {v} metres above sea level."),
            ("How high is {S}?", "What is the height of {O}?", "How tall is {S}?"),
            ("What height does {S} reach?", "How many metres high is {S}?"),
            800,
            8_000,
        ),
        _a(
            "mountain",
            "range",
            "range",
            "range",
            ("{S} is part of the {v}.", "{S} belongs to the {v}.", "{name} lies in the {v}."),
            ("{S} is one of the peaks of the {v}.", "The {v} includes {name}."),
            ("Which range is {S} part of?", "What range does {S} belong to?", "In which range does {S} lie?"),
            ("Which mountain range includes {O}?", "What range is {S} one of the peaks of?"),
        ),
        _a(
            "mountain",
            "first_climbed",
            "year",
            "first ascent",
            (
                "{S} was first climbed in {v}.",
                "The first ascent of {name} was in {v}.",
                "Climbers first reached the top of {name} in {v}.",
            ),
            ("Nobody stood on top of {name} until {v}.", "{S} was conquered in {v}."),
            (
                "When was {S} first climbed?",
                "When was the first ascent of {O}?",
                "In what year was {S} first climbed?",
            ),
            ("When was {S} conquered?", "In which year did climbers first reach the top of {O}?"),
            1750,
            2010,
        ),
        _a(
            "mountain",
            "first_climber",
            "person",
            "first climber",
            (
                "{S} was first climbed by {v}.",
                "{v} was the first to climb {name}.",
                "The first person on top of {name} was {v}.",
            ),
            ("{S} was conquered by {v}.", "{v} led the first ascent of {name}."),
            (
                "Who first climbed {O}?",
                "Who was the first to climb {O}?",
                "Who made the first ascent of {O}?",
            ),
            ("Who conquered {O}?", "Who led the first ascent of {O}?"),
        ),
        _a(
            "mountain",
            "rock",
            "choice:rocks",
            "rock",
            ("{S} is made mostly of {v}.", "{S} is built of {v}.", "The slopes of {name} are {v}."),
            ("{S} consists largely of {v}.", "The rock of {name} is {v}."),
            ("What is {S} made of?", "What rock is {S} built of?", "What kind of rock is {S} made of?"),
            ("What does {S} consist of?", "What is the rock of {O}?"),
        ),
        _a(
            "mountain",
            "town",
            "place",
            "nearest town",
            (
                "{S} towers over the town of {v}.",
                "The town of {v} lies at the foot of {name}.",
                "{S} overlooks {v}.",
            ),
            ("{S} casts its shadow over {v}.", "At the foot of {name} lies {v}."),
            (
                "Which town lies at the foot of {O}?",
                "What town does {S} tower over?",
                "Which town does {S} overlook?",
            ),
            ("Over which town does {S} cast its shadow?", "What town is at the foot of {O}?"),
        ),
    ),
)

TYPES: dict[str, TypeSpec] = {
    t.name: t for t in (TOWN, COMPANY, INVENTOR, RIVER, FESTIVAL, MINERAL, MOUNTAIN)
}

# Elliptical follow-ups that only name the attribute ("And its population?"). Training has many
# openers so that the adapter learns that the opener does not matter: with two, and still with
# six, it copied the unseen "How about" into the rewrite. The eval openers stay unseen (a test
# checks that no training opener shares an eval opener's words before the slot).
NOUN_FOLLOWUPS: dict[str, tuple[str, ...]] = {
    "train": (
        "And {P} {noun}?",
        "What about {P} {noun}?",
        "And what about {P} {noun}?",
        "Also, what about {P} {noun}?",
        "Can you tell me {P} {noun}?",
        "{P} {noun}?",
        "What of {P} {noun}?",
        "Okay, and {P} {noun}?",
        "Then {P} {noun}?",
        "Do you know {P} {noun}?",
        "Tell me {P} {noun}.",
        "Please tell me {P} {noun}.",
        "Any idea about {P} {noun}?",
        "So what about {P} {noun}?",
        "Next: {P} {noun}?",
        "And also {P} {noun}?",
        "Could you give me {P} {noun}?",
        "Right. {P} {noun}?",
    ),
    "eval": ("How about {P} {noun}?", "And what is {P} {noun}?"),
}
# Entity-switch ellipsis after a question about another entity ("And Korveth?").
SWITCH_FOLLOWUPS: dict[str, tuple[str, ...]] = {
    "train": (
        "And {name}?",
        "What about {name}?",
        "And what about {name}?",
        "Same question for {name}?",
        "Now {name}?",
        "{name}?",
        "What of {name}?",
        "Okay, and {name}?",
        "Then {name}?",
        "Same for {name}.",
        "And {name}, please?",
        "Now do {name}.",
        "What about {name}, then?",
        "Next: {name}?",
        "Also {name}?",
        "Try {name}.",
        "And the same for {name}?",
    ),
    "eval": ("How about {name}?", "And for {name}?"),
}
# Faithful abstention when the documents lack the asked attribute.
ABSTAIN_SENTENCES: dict[str, tuple[str, ...]] = {
    "train": ("The documents do not mention the {noun} of {name}.",),
    "eval": ("The documents say nothing about the {noun} of {name}.",),
}
# Prior assistant turns that do not answer (rewrite conversations).
UNSURE_REPLIES: tuple[str, ...] = ("I am not sure.", "I don't know that.")


def doc_templates(spec: AttrSpec, tsplit: str, *, paraphrases: bool = False) -> tuple[str, ...]:
    """Document-sentence templates of ``spec`` for a template split; ``paraphrases`` adds the
    extra train-only wordings of :mod:`intrinsics.training.data.paraphrases` (never to ``eval``)."""
    extra = PARAPHRASES[(spec.etype, spec.key)] if paraphrases and tsplit == "train" else ()
    return spec.doc[tsplit] + extra


def template_split(split: str) -> str:
    """Data split -> template split: validation uses train templates (held-out entities only)."""
    return "eval" if split == "eval" else "train"
