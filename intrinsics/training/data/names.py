"""Pronounceable invented names for the fictional knowledge base.

Why: the intrinsics run on a 135M model that must learn to *ground* answers in documents. If entity
names were real (Paris, Marie Curie) the model could answer from memorised world facts and the
labels (faithful / answerable / correct) would stop measuring grounding. Names are built from
syllables, checked against a blocklist of common real names and English words, and kept unique
so that exact-name lookups (keyword retrieval, answer containment) are unambiguous.
"""

from __future__ import annotations

import random

ONSETS = (
    "b",
    "br",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "sk",
    "st",
    "t",
    "th",
    "tr",
    "v",
    "z",
    "sh",
    "h",
    "j",
    "q",
    "vr",
    "zh",
)
VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "i", "ae", "ei", "ou")
MID_CODAS = ("", "", "", "", "l", "n", "r", "s", "m")
END_CODAS = ("", "n", "r", "l", "th", "k", "m", "sk", "nd", "rn", "x", "v")
PLACE_ENDINGS = ("", "", "a", "or", "en", "ith", "ara", "oss", "eth", "ane", "ir", "ul")
PERSON_ENDINGS = ("", "", "a", "i", "o", "en", "el", "is")
SURNAME_ENDINGS = ("", "", "ov", "ek", "ane", "orn", "ith", "ard", "el", "ari")

# Common real names, places, words and brands that a syllable generator could plausibly produce.
# Best effort: the check is on the lower-cased full token.
BLOCKLIST = frozenset(
    """
paris rome lima oslo kiev kyiv dover bern milan sara maria anna tara dana nina vera mara lena rosa
bella kara tina tom sam ben dan don ken kim tim jim bill dave peter john mark paul luke lisa lola
pluto mars venus terra sonora toledo verona sirena malta cuba peru chad mali togo benin niger nile
volga rhine seine tiber congo indus ganges amazon hudson delta sierra tango kilo zulu nora dora
cora flora gloria laura moscow berlin madrid lisbon london boston denver austin dallas salem tampa
reno omaha akron derby leeds bath hull york kent essex boris ivan olga igor vlad sasha misha dima
petra tessa vanessa teresa kira mira luna nova stella sofia sophia zara zora kora dara lara sera
tera vega riga baku doha oman yemen qatar kabul sudan ghana kenya samoa tonga fiji nauru palau
java bali sumatra borneo kobe osaka kyoto tokyo nara seoul busan hanoi hue delhi goa pune agra
dhaka lagos accra dakar rabat tunis cairo giza luxor sinai gaza haifa tyre sidon homs hama aden
sana tehran shiraz tabriz herat balkh merv khiva nukus osh bishkek astana almaty tbilisi yerevan
minsk vilnius tallinn sofia skopje tirana split zadar pula rijeka bled graz linz wels brno plzen
turin genoa parma siena pisa lucca padua bari como trento udine nice lyon metz nancy lille tours
nantes brest rennes caen rouen reims dijon arles nimes pau sete sedan mons gent liege namur bruges
delft gouda breda ede emmen lund malmo umea kiruna turku oulu espoo tromso bodo molde skien hamar
bergen odense aarhus vejle ribe dundee perth derry cork sligo galway ennis tralee bray naas thor
odin loki freya frey tyr baldur hel zeus hera ares apollo athena hermes hades demeter gaia rhea
kronos cronus atlas titan osiris isis horus set thoth anubis ra amun aten ptah bast sekhmet shiva
vishnu rama krishna indra agni kali durga ganesh brahma buddha zen yoga tao karma
able ache acre also area army aunt baby back bake bale band bank bare barn base bath bead beam
bean bear beat bell belt bend best bike bird bite blue boat body bone book boot born boss both bowl
bulk burn bush busy cafe cage cake calm came camp cane cape card care cart case cash cast cave
cell chef chin chip city clay club coal coat code coin cold come cone cook cool cope copy cord core
corn cost crew crop cube cure cute dame dare dark data date dawn dead deal dean dear debt deck deep
deer demo deny desk dial dice diet dine dirt disk dive dome done door dose dove down drag draw drum
dual duck duke dull dune dusk dust duty each earn ease east easy edge else emit envy even exam exit
face fact fade fail fair fake fall fame fare farm fast fate fear feed feel fern file fill film find
fine fire firm fish five flag flat flaw fled flee flow foam fold folk fond font food fool foot fork
form fort foul four fuel full fume fund fuse gain gale game gate gave gaze gear gene gift girl give
glad glow glue goal goat gold golf gone good gown grab gray grew grey grid grim grin grip grow gulf
guru hair half hall halt hand hang hard harm hate have head heal heap hear heat heel held help herb
herd here hero hide high hike hill hint hire hold hole holy home hood hook hope horn hose host hour
huge hung hunt hurt idea inch iron item jade jail jazz jean joke jump june jury just keen keep kelp
kept kick kind king kiss kite knee knew knit knot know lace lack lady laid lake lamb lamp land lane
last late lava lawn lead leaf leak lean leap left lend lens less liar life lift like limb lime limp
line link lion list live load loan lock loft logo lone long look loop lord lore lose loss lost loud
love luck lump lung lure lush made mail main make male mall many mare mask mass mate maze meal mean
meat meet melt memo menu mere mesh mild mile milk mill mind mine mint miss mist mode mole monk mood
moon more moss most moth move much mule muse must myth nail name navy near neat neck need nest news
next nice node none noon norm nose note noun oath obey odor okay once only onto open oral oven over
pace pack page paid pail pain pair pale palm pane park part pass past path peak pear peel pier pile
pine pink pipe plan play plot plum poem poet pole poll pond pony pool poor pope pork port pose post
pour pray prey pull pump pure push race rack rage raid rail rain rank rare rash rate read real rear
reed reef rely rent rest rice rich ride ring riot ripe rise risk road roar robe rock rode role roll
roof room root rope rose ruby rude ruin rule rush rust safe saga sage said sail sake sale salt same
sand sane sang save scan seal seam seat seed seek seem seen self sell send sent shed ship shoe shop
shot show shut sick side sigh sign silk sing sink site size skin slam slap sled slid slim slip slot
slow snap snow soap soar sock soda sofa soft soil sold sole solo some song soon sore sort soul soup
sour span spin spot star stay stem step stir stop such suit sung sunk sure surf swan swim tail take
tale talk tall tame tank tape task taxi team tear tell tend tent term test text than that then they
thin this tide tidy tile till time tiny tire toad toil told toll tomb tone tool tops tore torn toss
tour town trap tray tree trim trio trip true tube tuna tune turn twin type unit upon urge used user
vain vale vane vary vase vast veil vein vent verb very vest veto view vine visa void volt vote wade
wage wait wake walk wall wand want ward warm warn wary wash wave weak wear weed week well went were
west what when whip wide wife wild will wind wine wing wire wise wish with woke wolf wood wool word
wore work worm wrap yard yarn year yoga yolk your zero zone zoom
baker barber border bother butter candle cannon canyon carbon carpet castle cellar center cinder
copper corner cotton dinner doctor dragon fender finger flavor garden ginger hammer harbor hunter
ladder laser leader lemon letter liver lumber manor marker market master matter meadow melon member
mirror mortar motor nectar number oyster parrot pepper pillar pirate planet pocket poster powder
ranger raven razor river robin rocket rubber saddle salmon sister soldier spider summer sunder
tender thunder timber tinder tower trader turtle velvet viper walker warden water winter wonder
zealot tundra savanna sahara gobi arctic alaska texas dakota nevada utah idaho oregon montana
vermont maine ohio iowa kansas arizona florida georgia carolina virginia indiana illinois
""".split()
)


def _syllable(rng: random.Random, coda_pool: tuple[str, ...]) -> str:
    return rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(coda_pool)


def _pronounceable(word: str) -> bool:
    """Rejects clusters a reader cannot say: 3+ consonants or 3+ vowels in a row, double letters
    at the ends, and very short or very long words."""
    if not 4 <= len(word) <= 11:
        return False
    vowels = set("aeiouy")
    run_c = run_v = 0
    for ch in word:
        if ch in vowels:
            run_v, run_c = run_v + 1, 0
        else:
            run_c, run_v = run_c + 1, 0
        if run_c >= 3 or run_v >= 3:
            return False
    return word[0] != word[1] and word[-1] != word[-2]


class NameGenerator:
    """Produces unique invented single-word stems and multi-word names from one seeded RNG.

    Every token handed out is remembered, so no stem is ever reused: a town, a surname and a
    province never share a word, and no name is a token of another name.
    """

    def __init__(self, rng: random.Random, used: frozenset[str] | set[str] = frozenset()) -> None:
        self._rng = rng
        self._used: set[str] = set(used)

    @property
    def used(self) -> frozenset[str]:
        return frozenset(self._used)

    def stem(
        self, syllables: tuple[int, int] = (2, 3), endings: tuple[str, ...] = ("",), max_len: int = 8
    ) -> str:
        """A fresh capitalised word of 2-3 syllables plus an optional ending, at most ``max_len``
        letters: short names cost the 135M model fewer tokens and are easier to copy exactly."""
        for _ in range(10_000):
            n = self._rng.randint(*syllables)
            parts = [_syllable(self._rng, MID_CODAS) for _ in range(n - 1)]
            parts.append(_syllable(self._rng, END_CODAS))
            word = ("".join(parts) + self._rng.choice(endings)).lower()
            # Possessives of names ending in "s" read badly ("Orvass's"); plurals would too.
            if len(word) > max_len or word.endswith("s") or not _pronounceable(word):
                continue
            if word in BLOCKLIST or word in self._used:
                continue
            self._used.add(word)
            return word.capitalize()
        raise RuntimeError("name space exhausted")  # pragma: no cover - 10k misses never happen

    def place(self) -> str:
        return self.stem((2, 3), PLACE_ENDINGS, max_len=8)

    def person(self) -> str:
        first = self.stem((1, 2), PERSON_ENDINGS, max_len=6)
        last = self.stem((2, 2), SURNAME_ENDINGS, max_len=8)
        return f"{first} {last}"

    def word(self) -> str:
        return self.stem((2, 2), ("",), max_len=7)
