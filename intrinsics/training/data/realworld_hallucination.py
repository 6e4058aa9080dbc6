"""Hallucination data about real-world subjects: answers with the errors models actually make.

Why: :mod:`.hallucination` judges answers about a fictional world, one short document per
entity, where every bad value is a random perturbation or another entity's value in the same
wording family. A realistic RAG answer is different: it paraphrases encyclopedia-style
documents about real countries, cities, drugs or companies, and its errors are specific. This
module builds answers of one to four sentences about the subjects of :mod:`.realworld` that mix
supported claims with these errors (shares among bad facts, roughly, as :data:`ERROR_KINDS`):

* ``changed`` (~28%): a number changed by a plausible amount, a year or a day shifted, in the
  value's own format ("2,134,000" -> "2,390,000", "about 2.1 million" -> "about 2.4 million");
* ``wrong_doc`` (~23%): the value a distractor document states for the same attribute of
  another subject ("the capital of Peru is Quito" when a document about Ecuador is shown);
* ``swapped`` (~9%): a name or list item replaced by another subject's value of that attribute,
  one that no document shows ("French, Spanish and Italian" for "French, German and Italian");
* ``invented`` (~23%): an attribute the documents do not state for the subject, with a plausible
  value (the subject's own unrendered fact, true but ungrounded, or another subject's);
* ``generalisation`` (~8%): an unsupported broad claim ("It is the market leader in its
  sector."), key :data:`CLAIM`;
* ``negated`` (~9%): the opposite of what the subject's document states ("Peru does not border
  Chile.", "Neither French nor German is spoken in ...", "The Kestrel X2 is waterproof." where the
  document says it is not), in wordings of :data:`_NEGATED` or, copied, the document's own
  sentence with its polarity flipped (:data:`_NEGATED_COPY`). Its evidence is that document
  sentence (without its full stop), which the answer sentence does not contain: the value alone
  would be in the sentence and read as support.

Each example has 1-3 documents rendered by :func:`.realworld.render_doc` (the subject's own,
which usually states the asked fact, plus similar subjects that often state the same attribute
with another value, or unrelated ones), a user-style question from :func:`.realworld._question`
and the answer as the assistant turn. The first sentence answers the asked attribute; about 10%
of the examples leave that fact out of the subject's document, and most of those answer with a
faithful abstention ("The documents do not mention ..."). About 45% of the answers are fully
faithful. A sentence states one fact or two (joined with ", and" / "; "). Most sentences use
answer wordings that no document uses; in about a quarter (:data:`P_COPY`, where a document
states the fact) the first fact copies the document's own wording, faithfully or with the bad
value put in, because real answers copy their sources and a judge that only learned from
paraphrases distrusts a copied sentence.

Targets have :mod:`.hallucination`'s format: per sentence of
:func:`~intrinsics.training.data.text.split_sentences` of the answer, ``"e"`` is
``"documents: "`` plus, per fact, the value the documents give for that subject and attribute
(as the document writes it, without a leading "about"; for a negation, the document sentence it
contradicts) or "not stated", and ``"f"`` the label
(all facts supported -> faithful, none -> unfaithful, else partial). Every example is parsed back
with :func:`~intrinsics.parsers.parse_hallucination` against its own conversation, whose string
check re-derives the labels from the evidence; an example where that disagrees with the gold (a
value that happens to occur in a sentence it does not belong to) is dropped and drawn again
(:func:`build_counted` returns how many). Rows also carry ``source``, ``domain``, ``subject``,
``asked``, per-sentence ``errors`` (error kinds; empty for a faithful sentence), ``copied``
(whether its first fact copies a document's wording), ``claims`` (per sentence, per fact: key,
claimed value (a negation's clause as written), evidence, error kind) and ``docs``; training
ignores them.

Splits use :mod:`.realworld`'s subject split and its held-out question wordings for ``eval``; its
held-out domains never appear, and no text comes from the realistic evaluation (a test checks).
Deterministic for a seed.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field

from intrinsics.builtin import hallucination_spec
from intrinsics.parsers import EVIDENCE_PREFIX, NOT_STATED, parse_hallucination
from intrinsics.spec import RawOutput
from intrinsics.training.data.realworld import (
    DOMAINS,
    Subject,
    _Pools,
    _pools,
    _question,
    _similar,
    _sub,
    _unrelated,
    render_doc,
)
from intrinsics.training.data.text import compact_json, doc_messages, split_sentences

INTRINSIC = "hallucination"
LABELS = ("faithful", "partial", "unfaithful")
#: Error kinds and their target shares among the bad facts (sampled among the kinds a fact allows;
#: the weights below are tuned so that the realised shares come out near these).
ERROR_KINDS = {
    "changed": 0.28,
    "wrong_doc": 0.23,
    "swapped": 0.09,
    "invented": 0.23,
    "generalisation": 0.08,
    "negated": 0.09,
}
_WEIGHTS = {
    "changed": 0.28,
    "wrong_doc": 0.33,
    "swapped": 0.09,
    "invented": 0.31,
    "generalisation": 0.082,
    "negated": 0.065,
}
#: The key of an unsupported generalisation ("It is the largest ... in the world.").
CLAIM = "claim"
P_CORRUPT = 0.55  # examples with at least one planned bad sentence
P_LEAVE_OUT = 0.14  # examples whose subject document lacks the asked fact
P_ABSTAIN = 0.72  # of those, the answer says so (faithfully)
P_COPY = 0.3  # sentences whose first fact is worded the way a document words it

#: Values whose items a ``swapped`` error replaces one at a time ("French, German and Italian").
_LISTS = frozenset({"languages", "neighbours", "uses", "diet", "side_effects", "symptoms", "founders"})
_HEDGE = re.compile(r"^(?:about|roughly|around|some|nearly|up to|just) ", re.IGNORECASE)
_HEDGE_TWICE = re.compile(r"\b(about|roughly|around) (?:about|roughly|around) ", re.IGNORECASE)
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?")
_WORD_NUMBERS = tuple("one two three four five six seven eight nine ten eleven twelve".split())
_WORD_NUMBER = re.compile(r"\b(" + "|".join(_WORD_NUMBERS) + r")\b")
_BREAKS = re.compile(r"[.!?]\s")  # a value or name that split_sentences would cut in two
#: A template's leading subject slot ("{s} is ...", "{s}'s capital ...", "The {s} weighs ...").
_LEAD = re.compile(r"^(?:[Tt]he )?\{s\}(?=(?:'s)? )")
_COMBINABLE = re.compile(r"^(?:(?:[Tt]he )?\{s\}(?:'s)? |Its |It |Her |She )")

#: Answer-style wordings per ``kind:key``, beside the facts' own statement wordings (an answer
#: that only copied document sentences would make the judgement a string match; one that never
#: copies teaches that a copied sentence is suspect, and real answers copy often).
_FRAMES: dict[str, tuple[str, ...]] = {
    "country:capital": ("The capital of {s} is {v}.", "{s}'s capital is {v}.", "{s} has {v} as its capital."),
    "country:population": ("The population of {s} is {v}.", "{s} has {v} inhabitants."),
    "country:area": ("{s} has an area of {v} square kilometres.", "The area of {s} is {v} km²."),
    "country:currency": ("{s}'s currency is the {v}.", "{s} pays with the {v}."),
    "country:languages": ("The languages spoken in {s} are {v}.", "{s}'s main languages are {v}."),
    "country:neighbours": ("{s} borders {v}.", "{s}'s neighbouring countries are {v}."),
    "country:phone": ("{s}'s calling code is +{v}.", "To phone {s} from abroad, you dial +{v}."),
    "country:tld": ("{s}'s internet domain is {v}.",),
    "city:country": ("{s} is located in {v}.", "{s} is in {v}."),
    "city:population": ("{s} has a population of {v}.", "The population of {s} is {v}."),
    "city:timezone": ("{s} is in the {v} time zone.",),
    "city:coordinates": ("The coordinates of {s} are {v}.", "{s} is located at {v}."),
    "compound:melting_point": ("The melting point of {s} is {v}.", "{s} has a melting point of {v}."),
    "compound:molar_mass": ("The molar mass of {s} is {v}.",),
    "compound:discoverer": ("{s} was discovered by {v}.", "{v} was the first to make {s}."),
    "compound:discovery_year": ("{s} was discovered in {v}.", "{s} was first made in {v}."),
    "compound:uses": ("{s} is mainly used in {v}.",),
    "species:lifespan": ("{s} can live for {v}.", "The lifespan of {s} is {v}."),
    "species:length": ("{s} reaches a length of {v}.", "{s} is {v} long when fully grown."),
    "species:diet": ("{s} eats {v}.", "{s} lives on {v}."),
    "species:habitat": ("{s} lives in {v}.", "The habitat of {s} is {v}."),
    "species:status": ("The conservation status of {s} is {v}.",),
    "species:described_by": ("{v} first described {s}.", "{s} was named by {v}."),
    "mission:launch": ("{s} launched on {v}.", "{s} was launched on {v}."),
    "mission:agency": ("{s} was run by {v}.", "{s} was a mission of {v}."),
    "mission:mass": ("{s} had a launch mass of {v}.", "At launch, {s} weighed {v}."),
    "mission:target": ("{s} went to study {v}.", "The target of {s} was {v}."),
    "mission:duration": ("{s} operated for {v}.", "{s} was active for {v}."),
    "drug:adult_dose": ("The adult dose of {s} is {v}.", "For adults, the dose of {s} is {v}."),
    "drug:side_effects": ("Side effects of {s} can include {v}.", "{s} may cause {v}."),
    "drug:treats": ("{s} treats {v}.", "{s} is prescribed for {v}."),
    "drug:approved": ("{s} received approval in {v}.", "{s} has been approved since {v}."),
    "drug:storage": ("{s} should be kept at {v}.",),
    "disease:symptoms": ("The symptoms of {s} include {v}.", "{s} causes {v}."),
    "disease:incubation": ("{s} has an incubation period of {v}.",),
    "disease:spread": ("{s} is spread by {v}.", "People catch {s} through {v}."),
    "disease:first_described": ("{s} was first identified in {v}.", "{s} has been known since {v}."),
    "event:year": ("{s} happened in {v}.", "{s} took place in the year {v}."),
    "event:leader": ("{v} led {s}.", "{s} was commanded by {v}."),
    "event:casualties": ("The death toll of {s} was {v}.", "{s} killed about {v} people."),
    "event:duration": ("{s} went on for {v}.", "{s} lasted for {v}."),
    "event:outcome": ("{s} ended in {v}.", "The outcome of {s} was {v}."),
    "person:born": ("{s}'s date of birth is {v}.", "{s} was born on {v}."),
    "person:birthplace": ("{s} is from {v}.", "{s}'s birthplace is {v}."),
    "person:occupation": ("{s} was {v} by profession.", "{s} worked as {v}."),
    "person:award": ("{s} was awarded the national science medal in {v}.",),
    "person:spouse": ("{s}'s husband was {v}.", "{s} married {v}."),
    "person:children": ("{s} had {v} children.",),
    "person:died": ("{s} died in {v}.", "{s} passed away in {v}."),
    "company:founded": ("{s} was set up in {v}.", "{s} dates back to {v}."),
    "company:founders": ("{s} was started by {v}.", "The founders of {s} are {v}."),
    "company:headquarters": ("{s} is based in {v}.", "{s}'s headquarters are in {v}."),
    "company:employees": ("{s} has {v} employees.", "{s} employs about {v} people."),
    "company:revenue": ("{s}'s annual revenue is {v}.", "{s} had revenue of {v} last year."),
    "company:ceo": ("{s} is run by {v}.", "The CEO of {s} is {v}."),
    "product:battery": ("The {s}'s battery lasts up to {v}.", "The {s} runs for up to {v} on one charge."),
    "product:weight": ("The {s} weighs {v}.", "The {s} has a weight of {v}."),
    "product:price": ("The {s} costs {v}.", "The price of the {s} is {v}."),
    "product:release": ("The {s} came out in {v}.", "The {s} was launched in {v}."),
    "product:storage": ("The {s} has {v} of storage.",),
    "appliance:reset": ("To reset {s}, you {v}.",),
    "appliance:temperature": ("{s} can be used at temperatures between {v}.",),
    "appliance:filter": ("The filter of {s} should be replaced every {v}.",),
    "appliance:warranty": ("{s} has a {v} warranty.",),
    "appliance:power": ("{s} uses {v} of power.", "The power consumption of {s} is {v}."),
    "appliance:error": ("When {s} shows error E4, {v}.",),
    "software:export": ("To export from {s}, {v}.",),
    "software:requirements": ("{s} requires {v}.",),
    "software:price": ("{s} costs {v}.", "The price of {s} is {v}."),
    "software:autosave": ("{s} autosaves every {v}.",),
}

#: What an abstention calls each attribute ("The documents do not mention the capital of ...").
_NOUNS = {
    "capital": "capital",
    "population": "population",
    "area": "area",
    "currency": "currency",
    "languages": "languages",
    "neighbours": "neighbouring countries",
    "phone": "calling code",
    "tld": "internet domain",
    "country": "country",
    "timezone": "time zone",
    "coordinates": "coordinates",
    "melting_point": "melting point",
    "molar_mass": "molar mass",
    "discoverer": "discoverer",
    "discovery_year": "year of discovery",
    "uses": "uses",
    "lifespan": "lifespan",
    "length": "length",
    "diet": "diet",
    "habitat": "habitat",
    "status": "conservation status",
    "launch": "launch date",
    "agency": "operator",
    "mass": "launch mass",
    "target": "target",
    "duration": "duration",
    "adult_dose": "adult dose",
    "side_effects": "side effects",
    "approved": "approval date",
    "storage": "storage",
    "symptoms": "symptoms",
    "incubation": "incubation period",
    "spread": "transmission route",
    "year": "date",
    "leader": "leader",
    "casualties": "death toll",
    "outcome": "outcome",
    "born": "date of birth",
    "birthplace": "birthplace",
    "occupation": "profession",
    "spouse": "spouse",
    "died": "date of death",
    "founded": "founding year",
    "founders": "founders",
    "headquarters": "headquarters",
    "employees": "number of employees",
    "revenue": "revenue",
    "ceo": "chief executive",
    "battery": "battery life",
    "weight": "weight",
    "price": "price",
    "release": "release date",
    "reset": "reset procedure",
    "temperature": "operating temperature",
    "warranty": "warranty",
    "power": "power consumption",
    "requirements": "system requirements",
    "autosave": "autosave interval",
}
_ABSTAIN_NOUN = (
    "The documents do not mention the {n} of {s}.",
    "I could not find the {n} of {s} in the documents.",
    "None of the documents gives the {n} of {s}.",
    "The provided documents do not state the {n} of {s}.",
    "The documents say nothing about the {n} of {s}.",
)
_ABSTAIN_PLAIN = (
    "The documents do not say.",
    "The documents do not answer this question.",
    "The documents do not contain this information.",
    "I can't find that in the documents.",
)
_LEAD_INS = ("According to the documents, ", "Based on the documents, ", "The documents say that ")

#: Unsupported broad claims, per subject kind (none of them occurs in a document).
_GENERAL: dict[str, tuple[str, ...]] = {
    "country": (
        "{s} is one of the most visited countries in its region.",
        "{s} is widely regarded as the safest country in its region.",
        "{s} has one of the fastest-growing economies in the world.",
        "{s} has the highest standard of living in its part of the world.",
    ),
    "city": (
        "{s} is the largest city in its country.",
        "{s} is widely regarded as the cultural capital of the region.",
        "{s} is one of the fastest-growing cities in the world.",
        "{s} has the busiest airport in the country.",
    ),
    "compound": (
        "{s} is the most widely used compound of its kind.",
        "{s} is completely harmless to humans.",
        "{s} is found in almost every household.",
    ),
    "species": (
        "{s} is one of the most common animals in its range.",
        "{s} is found all over the world.",
        "{s} is not threatened anywhere in its range.",
    ),
    "mission": (
        "{s} was the most successful mission of its decade.",
        "{s} is widely regarded as a landmark in space exploration.",
        "{s} returned more data than any mission before it.",
    ),
    "drug": (
        "{s} is the most prescribed medicine for this condition.",
        "{s} is safe for everyone, including children.",
        "{s} works better than all other treatments.",
    ),
    "disease": (
        "{s} is one of the most common diseases in the world.",
        "{s} is always fatal if left untreated.",
        "{s} affects people of all ages equally.",
    ),
    "event": (
        "{s} is widely regarded as a turning point in the history of the continent.",
        "{s} was the bloodiest conflict of the century.",
        "{s} is remembered as the most important event of its era.",
    ),
    "person": (
        "{s} is widely regarded as one of the most influential figures of her generation.",
        "{s} was the first woman in her country to reach such a position.",
        "{s} is considered a pioneer in her field.",
    ),
    "company": (
        "{s} is the market leader in its sector.",
        "{s} is the largest employer in the region.",
        "{s} is widely regarded as one of the most innovative companies in the world.",
    ),
    "product": (
        "The {s} is the best-selling device in its class.",
        "The {s} is widely considered the best device on the market.",
        "The {s} has the longest battery life of any comparable device.",
    ),
    "appliance": (
        "{s} is the most energy-efficient model on the market.",
        "{s} never needs any maintenance.",
        "{s} is the most popular model of its kind.",
    ),
    "software": (
        "{s} is the most popular program of its kind.",
        "{s} is used by millions of people worldwide.",
        "{s} works on every operating system.",
    ),
}


#: Negated wordings per ``kind:key`` (``kind:key:value`` where the value decides the direction):
#: answers that state the opposite of the subject's document. ``{v}`` is the value, or one item
#: of a list ("Peru does not border Chile."); ``{a}``/``{b}`` two items of one ("Neither ... nor").
#: For the facts that documents state as a negative ("It is not waterproof.", value ``no``), the
#: wordings assert the positive. Only facts where a denial reads as something an answer would
#: say: memberships, places, names, uses, approvals, side effects, not a population figure.
_NEGATED: dict[str, tuple[str, ...]] = {
    "country:capital": (
        "{v} is not the capital of {s}.",
        "{s}'s capital is not {v}.",
        "The government of {s} does not sit in {v}.",
        "{s} is governed from another city rather than {v}.",
        "{v} has never been the capital of {s}.",
    ),
    "country:currency": (
        "{s} does not use the {v}.",
        "The {v} is not the currency of {s}.",
        "{s} has never used the {v}.",
        "Shops in {s} do not accept the {v}.",
    ),
    "country:languages": (
        "{v} is not spoken in {s}.",
        "Nobody in {s} speaks {v}.",
        "{v} is not an official language of {s}.",
        "Neither {a} nor {b} is spoken in {s}.",
    ),
    "country:neighbours": (
        "{s} does not border {v}.",
        "{s} has no border with {v}.",
        "{v} is not one of {s}'s neighbours.",
        "Neither {a} nor {b} borders {s}.",
    ),
    "country:tld": ("{s} does not use the {v} domain.", "The internet domain of {s} is not {v}."),
    "city:country": (
        "{s} is not in {v}.",
        "{s} is not a city in {v}.",
        "{s} does not belong to {v}.",
        "{s} has never been part of {v}.",
    ),
    "city:timezone": ("{s} does not follow the {v} time zone.", "{s} is not in the {v} time zone."),
    "compound:discoverer": (
        "{s} was not discovered by {v}.",
        "{v} never made {s}.",
        "{v} had no part in the discovery of {s}.",
    ),
    "compound:uses": (
        "{s} is not used in {v}.",
        "{s} has no use in {v}.",
        "{s} is used neither in {a} nor in {b}.",
        "{s} is never used in {v}.",
    ),
    "compound:solubility": (
        "{s} does not dissolve in water.",
        "{s} is insoluble in water.",
        "{s} cannot be dissolved in water.",
    ),
    "species:diet": (
        "{s} does not eat {v}.",
        "{s} never feeds on {v}.",
        "{s} eats neither {a} nor {b}.",
        "The diet of {s} includes no {v}.",
    ),
    "species:habitat": ("{s} is not found in {v}.", "{s} does not live in {v}.", "{s} is never seen in {v}."),
    "species:status": (
        "{s} is not listed as {v}.",
        "{s} is not considered {v}.",
        "{s} is no longer listed as {v}.",
    ),
    "species:described_by": (
        "{s} was not described by {v}.",
        "{v} never described {s}.",
        "{v} did not name {s}.",
    ),
    "mission:agency": (
        "{s} was not run by {v}.",
        "{v} had no role in {s}.",
        "{v} neither built nor ran {s}.",
    ),
    "mission:target": (
        "{s} did not study {v}.",
        "{s} was never sent to {v}.",
        "Studying {v} was not a goal of {s}.",
    ),
    "drug:side_effects": (
        "{s} does not cause {v}.",
        "{v} is not a side effect of {s}.",
        "{s} has no known side effects.",
        "Patients taking {s} never report {v}.",
        "{s} causes neither {a} nor {b}.",
    ),
    "drug:treats": (
        "{s} is not used to treat {v}.",
        "Doctors do not prescribe {s} for {v}.",
        "{s} has no effect on {v}.",
        "{s} is prescribed for other conditions rather than {v}.",
    ),
    "drug:pregnancy": (
        "{s} is safe to take during pregnancy.",
        "Pregnant women can take {s}.",
        "{s} may be used in pregnancy.",
    ),
    "drug:approved": (
        "{s} has never been approved.",
        "Regulators have not approved {s}.",
        "{s} is not an approved medicine.",
    ),
    "drug:storage": ("{s} should not be stored at {v}.",),
    "disease:symptoms": (
        "{s} does not cause {v}.",
        "{v} is not a symptom of {s}.",
        "Patients with {s} do not develop {v}.",
        "{s} causes neither {a} nor {b}.",
        "{s} never causes {v}.",
        "None of the patients with {s} develop {v}.",
    ),
    "disease:spread": (
        "{s} is not spread by {v}.",
        "{s} does not spread through {v}.",
        "People cannot catch {s} through {v}.",
        "{s} never spreads through {v}.",
        "{s} is never passed on through {v}.",
    ),
    "disease:vaccine": (
        "A vaccine against {s} is available.",
        "People can be vaccinated against {s}.",
        "There is a licensed vaccine for {s}.",
    ),
    "event:year": ("{s} did not take place in {v}.",),
    "event:leader": (
        "{s} was not led by {v}.",
        "{v} did not command in {s}.",
        "{v} took no part in {s}.",
        "{v} never led {s}.",
    ),
    "event:outcome": ("{s} did not end with {v}.", "{s} did not result in {v}."),
    "person:birthplace": (
        "{s} was not born in {v}.",
        "{s} is not a native of {v}.",
        "{v} is not where {s} was born.",
        "{s} has never lived in {v}.",
    ),
    "person:occupation": ("{s} never worked as {v}.", "{s} was not {v} by profession."),
    "person:award": (
        "{s} never won the national science medal.",
        "{s} did not receive the national science medal.",
    ),
    "person:spouse": ("{s} never married.", "{s} was not married to {v}.", "{v} was not the husband of {s}."),
    "person:children": ("{s} had no children.", "{s} never had children."),
    "person:children:no": ("{s} had children.", "{s} had children of her own."),
    "company:founders": (
        "{s} was not founded by {v}.",
        "{v} had no part in founding {s}.",
        "{v} was not among the founders of {s}.",
    ),
    "company:headquarters": (
        "{s} is not based in {v}.",
        "{s} has no office in {v}.",
        "None of the offices of {s} is in {v}.",
        "The head office of {s} is not in {v}.",
    ),
    "company:ceo": (
        "{v} is not the chief executive of {s}.",
        "{s} is not run by {v}.",
        "{v} has never led {s}.",
    ),
    "company:listed": (
        "{s} is listed on the stock exchange.",
        "Shares of {s} are publicly traded.",
        "{s} is a listed company rather than a private one.",
    ),
    "product:waterproof": (
        "The {s} is waterproof.",
        "The {s} can be used in the shower.",
        "The {s} is fully water-resistant.",
    ),
    "appliance:outdoor": ("{s} can be used outdoors.", "{s} is suitable for outdoor use."),
    "appliance:warranty": ("{s} comes with no warranty.", "{s} is not covered by any warranty."),
    "software:offline": (
        "{s} works offline.",
        "{s} can be used offline.",
        "No internet connection is needed for {s}.",
    ),
    "software:autosave": (
        "{s} does not save your work automatically.",
        "{s} has no autosave feature.",
        "{s} never saves automatically.",
    ),
    "software:price": ("{s} costs nothing.", "No licence is needed to use {s}."),
}
#: A document wording (a :class:`~.realworld.Fact` ``says`` template) with its polarity flipped:
#: what a copying answer that gets the fact backwards writes ("X is used to treat asthma." ->
#: "X is not used to treat asthma."). ``{v}``: the value, or one item of a list.
_NEGATED_COPY: dict[str, str] = {
    "The capital of {s} is {v}.": "The capital of {s} is not {v}.",
    "{v} serves as the capital and seat of government of {s}.": "{v} does not serve as the capital of {s}.",
    "{s} is governed from {v}, its capital.": "{s} is not governed from {v}.",
    "The currency of {s} is the {v}.": "The currency of {s} is not the {v}.",
    "{s} uses the {v} as its official currency.": "{s} does not use the {v} as its official currency.",
    "Most people in {s} speak {v}.": "Nobody in {s} speaks {v}.",
    "The main languages of {s} are {v}.": "{v} is not one of the main languages of {s}.",
    "{s} shares land borders with {v}.": "{s} shares no land border with {v}.",
    "{s} is bordered by {v}.": "{s} is not bordered by {v}.",
    "Its neighbours are {v}.": "Its neighbours do not include {v}.",
    "{s} lies in {v}.": "{s} does not lie in {v}.",
    "{s} is a city in {v}.": "{s} is not a city in {v}.",
    "Websites from {s} use the {v} domain.": "Websites from {s} do not use the {v} domain.",
    "{s} keeps the time of the {v} zone.": "{s} does not keep the time of the {v} zone.",
    "Clocks in {s} follow the {v} time zone.": "Clocks in {s} do not follow the {v} time zone.",
    "{s} was first synthesised by {v}.": "{s} was not first synthesised by {v}.",
    "The chemist {v} first prepared {s}.": "The chemist {v} never prepared {s}.",
    "{s} is used in {v}.": "{s} is not used in {v}.",
    "{s} dissolves readily in water.": "{s} does not dissolve in water.",
    "{s} feeds mainly on {v}.": "{s} never feeds on {v}.",
    "{s} is found in {v}.": "{s} is not found in {v}.",
    "It inhabits {v}.": "It does not inhabit {v}.",
    "{s} is listed as {v}.": "{s} is not listed as {v}.",
    "{s} was first described by {v}.": "{s} was not first described by {v}.",
    "{s} was operated by {v}.": "{s} was not operated by {v}.",
    "{s} was sent to study {v}.": "{s} was never sent to study {v}.",
    "The goal of {s} was to observe {v}.": "The goal of {s} was not to observe {v}.",
    "Common side effects of {s} include {v}.": "Side effects of {s} do not include {v}.",
    "{s} can cause {v}.": "{s} does not cause {v}.",
    "{s} is used to treat {v}.": "{s} is not used to treat {v}.",
    "Doctors prescribe {s} for {v}.": "Doctors do not prescribe {s} for {v}.",
    "{s} is a treatment for {v}.": "{s} is not a treatment for {v}.",
    "{s} should not be taken during pregnancy.": "{s} can be taken during pregnancy.",
    "Pregnant women must not use {s}.": "Pregnant women may use {s}.",
    "{s} is not recommended in pregnancy.": "{s} is recommended in pregnancy.",
    "{s} was approved in {v}.": "{s} was never approved.",
    "Symptoms of {s} include {v}.": "Symptoms of {s} do not include {v}.",
    "{s} spreads through {v}.": "{s} does not spread through {v}.",
    "It is transmitted by {v}.": "It is not transmitted by {v}.",
    "There is no vaccine against {s}.": "There is a vaccine against {s}.",
    "No vaccine for {s} has been licensed.": "A vaccine for {s} has been licensed.",
    "{s} took place in {v}.": "{s} did not take place in {v}.",
    "{s} was led by {v}.": "{s} was not led by {v}.",
    "{v} commanded the winning side in {s}.": "{v} did not command the winning side in {s}.",
    "{s} ended with {v}.": "{s} did not end with {v}.",
    "The result of {s} was {v}.": "The result of {s} was not {v}.",
    "{s} was born in {v}.": "{s} was not born in {v}.",
    "{s} worked as {v}.": "{s} never worked as {v}.",
    "{s} won the national science medal in {v}.": "{s} never won the national science medal.",
    "{s} was married to {v}.": "{s} was never married to {v}.",
    "{s} had {v} children.": "{s} had no children.",
    "{s} was founded by {v}.": "{s} was not founded by {v}.",
    "{v} started {s}.": "{v} did not start {s}.",
    "{s} is headquartered in {v}.": "{s} is not headquartered in {v}.",
    "The head office of {s} is in {v}.": "The head office of {s} is not in {v}.",
    "The chief executive of {s} is {v}.": "The chief executive of {s} is not {v}.",
    "{s} is not listed on any stock exchange.": "{s} is listed on a stock exchange.",
    "Shares of {s} are not publicly traded.": "Shares of {s} are publicly traded.",
    "The {s} is not waterproof.": "The {s} is waterproof.",
    "{s} is not suitable for outdoor use.": "{s} is suitable for outdoor use.",
    "Do not use {s} outdoors.": "You can use {s} outdoors.",
    "{s} comes with a {v} warranty.": "{s} comes with no warranty.",
    "{s} does not work offline.": "{s} works offline.",
    "An internet connection is required to use {s}.": "No internet connection is required to use {s}.",
    "{s} saves your work automatically every {v}.": "{s} does not save your work automatically.",
}
#: Words that make a statement negative: a negated sentence has other ones than the sentence it
#: contradicts ("does not border" against "borders"; "is waterproof" against "is not waterproof").
_NEGATION = re.compile(r"\b(?:not|no|never|none|neither|nor|nobody|nothing|cannot|rather than)\b|n't\b", re.I)


# --------------------------------------------------------------------------------- helpers
def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fold(text: str) -> str:
    return text.casefold()


def _states(folded: str, value: str) -> bool:
    """``value`` as whole words in the case-folded ``folded`` (the parser's check)."""
    return re.search(rf"(?<!\w){re.escape(value.casefold())}(?!\w)", folded) is not None


def _core(value: str) -> str:
    """The part of a value that the evidence quotes: "about 2.1 million" -> "2.1 million" (an
    answer may drop or repeat the hedge; the number is what is checked)."""
    return _HEDGE.sub("", value)


def _has_value_slot(subject: Subject, key: str) -> bool:
    fact = subject.facts[key]
    return all("{v}" in t for t in fact.says) and fact.value not in ("yes", "no")


def _numeric(value: str) -> bool:
    """A value with a number that a ``changed`` error can alter (not a name's: "type 2 diabetes")."""
    words = [m for m in _WORD_NUMBER.finditer(value) if m.group() != "one"]
    return bool(_NUMBER.search(value) or words) and not re.search(r"type \d", value)


def _items(value: str) -> list[str]:
    return [p.strip() for p in re.split(r", | and ", value) if p.strip()]


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _negations(text: str) -> list[str]:
    """The negation words of ``text``, sorted: two statements with other ones differ in polarity."""
    return sorted(m.group().casefold() for m in _NEGATION.finditer(text))


def _negated_wordings(subject: Subject, key: str) -> tuple[str, ...]:
    """:data:`_NEGATED`'s wordings for the subject's fact (by its value first: "had no children"
    is denied by "had children", "had two children" by "had no children")."""
    fact = subject.facts[key]
    return _NEGATED.get(f"{subject.kind}:{key}:{fact.value}", _NEGATED.get(f"{subject.kind}:{key}", ()))


def _statement_of(doc: _Doc, key: str) -> tuple[str, str] | None:
    """The sentence (or spec-sheet line) of ``doc`` that states its subject's ``key``, and the
    ``says`` template it was written from ("" for a sheet line); None when it states none.
    Rendered the way :func:`.realworld.render_doc` renders it, so the match is exact."""
    subject = doc.subject
    fact = subject.facts[key]
    if key not in doc.keys:
        return None
    for template in fact.says:
        for first in (True, False):
            sentence = _sub(template, subject, fact.value, first=first)
            if sentence in doc.text:
                return template, sentence
    line = f"{fact.label}: {fact.value}{fact.unit}"
    if fact.label and re.search(rf"(?m)^{re.escape(line)}$", doc.text):
        return "", line
    return None


def _pronoun(subject: Subject, possessive: bool) -> str:
    if subject.kind == "person":
        return "Her" if possessive else "She"
    return "Its" if possessive else "It"


def _render(template: str, subject: Subject, value: str, ref: str) -> str:
    """``template`` about ``subject`` with ``value``; ``ref``: how a leading subject slot reads
    ("name", "pronoun": "It"/"She", "anaphor": "The country")."""
    t = template
    m = _LEAD.match(t)
    if m and ref != "name":
        possessive = t[m.end() :].startswith("'s")
        if ref == "anaphor" and subject.anaphor.startswith("The "):
            t = subject.anaphor + t[m.end() :]
        else:
            t = _pronoun(subject, possessive) + t[m.end() + (2 if possessive else 0) :]
    t = t.replace("{s}", subject.name).replace("{v}", value)
    return _cap(_HEDGE_TWICE.sub(r"\1 ", t))


def _perturb_number(text: str, rng: random.Random, year_like: bool) -> str:
    """A plausible other number in ``text``'s format (commas, decimals, magnitude)."""
    if "." in text:
        places = len(text.split(".")[1])
        x = float(text)
        for _ in range(20):
            y = x * (1 + rng.choice((-1, 1)) * rng.uniform(0.06, 0.35))
            new = f"{y:.{places}f}"
            if new != text and y > 0:
                return new
        return f"{x + 1:.{places}f}"
    n = int(text.replace(",", ""))
    if year_like:
        for _ in range(20):
            y = n + rng.choice((-1, 1)) * rng.choice((1, 2, 3, 4, 5, 7, 10, 12, 15, 20))
            if y <= 2025 and y != n:
                return str(y)
        return str(n - 1)
    if n <= 31:  # small counts, days of the month (kept at 1-28, as the dates are)
        spread = max(3, n * 2 // 5)
        cands = [m for m in range(max(1, n - spread), min(n + spread, 28) + 1) if m != n]
        return str(rng.choice(cands or [n + 1]))
    zeros = len(str(n)) - len(str(n).rstrip("0"))
    step = 10 ** min(zeros, len(str(n)) - 1)
    for _ in range(20):
        y = round(n * (1 + rng.choice((-1, 1)) * rng.uniform(0.08, 0.4)) / step) * step
        if y > 0 and y != n:
            return f"{y:,}" if "," in text or y >= 1000 else str(y)
    return f"{n + step:,}" if "," in text else str(n + step)


def _change_number(value: str, rng: random.Random) -> str | None:
    """``value`` with one of its numbers changed, or None when it has none."""
    nums = list(_NUMBER.finditer(value))
    if nums:
        m = rng.choice(nums)
        text = m.group()
        year_like = bool(re.fullmatch(r"1[0-9]{3}|20[0-2][0-9]", text))
        return value[: m.start()] + _perturb_number(text, rng, year_like) + value[m.end() :]
    words = [m for m in _WORD_NUMBER.finditer(value) if m.group() != "one"]  # "one minute"
    if words:
        m = rng.choice(words)
        i = _WORD_NUMBERS.index(m.group())
        j = rng.choice([k for k in range(max(1, i - 3), min(len(_WORD_NUMBERS), i + 4)) if k != i])
        return value[: m.start()] + _WORD_NUMBERS[j] + value[m.end() :]
    return None


# ----------------------------------------------------------------------------------- claims
@dataclass
class _Negation:
    """How a ``negated`` claim may be worded: its answer wordings, the document wording it
    contradicts (its ``source``, "" for a sheet line) and that wording flipped (``mirror``, ""
    when :data:`_NEGATED_COPY` has none), and the items it denies (``{v}``/``{a}``, ``{b}``)."""

    wordings: tuple[str, ...]
    source: str
    mirror: str
    items: tuple[str, ...]


@dataclass
class Claim:
    """One fact an answer sentence states: the value it claims and what the documents give."""

    key: str
    value: str  # as claimed ("" for an abstention; a generalisation's template; a negation's denied value)
    evidence: str = NOT_STATED
    error: str = ""  # "" when supported, else an ERROR_KINDS kind
    abstain: bool = False
    negation: _Negation | None = None
    said: str = ""  # the clause as written, before it is joined (set when the sentence is made)


def _fill(template: str, negation: _Negation) -> str:
    """A negated wording with the denied items put in (the subject slot left for :func:`_render`)."""
    items = negation.items or ("",)
    return template.replace("{a}", items[0]).replace("{b}", items[-1]).replace("{v}", items[0])


@dataclass
class _Doc:
    subject: Subject
    text: str
    keys: list[str]
    folded: str = ""

    def __post_init__(self) -> None:
        self.folded = _fold(self.text)


@dataclass
class _Answer:
    """What one example's answer may say: the subject's quotable facts, the distractors'
    values, and which attributes are used."""

    pools: _Pools
    rng: random.Random
    subject: Subject
    own: _Doc
    docs: list[_Doc]
    asked: str
    used: set[str] = field(default_factory=set)
    own_values: dict[str, str] = field(default_factory=dict)  # key -> the value as the doc writes it
    others: dict[str, list[str]] = field(default_factory=dict)  # key -> distractor docs' values
    folded: str = ""
    general_used: bool = False

    def __post_init__(self) -> None:
        self.folded = "\n".join(d.folded for d in self.docs)
        for key in self.own.keys:
            if _has_value_slot(self.subject, key) and _states(
                self.own.folded, _core(self.subject.facts[key].value)
            ):
                self.own_values[key] = _core(self.subject.facts[key].value)
        for d in self.docs:
            if d is self.own:
                continue
            if d.subject.kind != self.subject.kind:  # a drug's storage is not a phone's
                continue
            for key in d.keys:
                if key in self.subject.facts and _has_value_slot(d.subject, key):
                    value = d.subject.facts[key].value
                    if _states(d.folded, _core(value)):
                        self.others.setdefault(key, []).append(value)

    # ------------------------------------------------------------------- candidates per kind
    def _differs(self, claimed: str, key: str) -> bool:
        """A bad value: neither it nor the documents' value contains the other."""
        true = self.own_values.get(key, _core(self.subject.facts[key].value))
        return (
            claimed.casefold() != true.casefold()
            and not _states(_fold(claimed), true)
            and not _states(_fold(true), _core(claimed))
        )

    def _fresh(self, claimed: str) -> bool:
        """A value that no document shows."""
        return not _states(self.folded, _core(claimed)) and not _BREAKS.search(claimed)

    def _peer_values(self, key: str) -> list[str]:
        """Other subjects' values of ``key``: a neighbouring country's or a city of the same
        country's first where there are some (the confusions a model makes), else any."""
        peers = [
            s
            for s in self.pools.by_group[(self.subject.split, self.subject.group)]
            if s.name != self.subject.name and key in s.facts and _has_value_slot(s, key)
        ]
        near: list[Subject] = []
        if "neighbours" in self.subject.facts:
            names = set(_items(self.subject.facts["neighbours"].value))
            near = [s for s in peers if s.name in names]
        elif self.subject.kind == "city":
            near = [s for s in peers if s.facts["country"].value == self.subject.facts["country"].value]
        if near and self.rng.random() < 0.8:
            peers = near
        return [s.facts[key].value for s in peers]

    def ok(self, key: str | None = None) -> Claim | None:
        cands = [k for k in self.own_values if k not in self.used]
        if key is not None:
            cands = [key] if key in cands else []
        if not cands:
            return None
        key = self.rng.choice(cands)
        self.used.add(key)
        return Claim(key, self.subject.facts[key].value, self.own_values[key])

    def _changed(self, key: str) -> Claim | None:
        value = self.subject.facts[key].value
        for _ in range(4):
            new = _change_number(value, self.rng)
            if new and self._differs(new, key) and self._fresh(new):
                return Claim(key, new, self.own_values[key], "changed")
        return None

    def _swapped(self, key: str) -> Claim | None:
        value = self.subject.facts[key].value
        peers = self._peer_values(key)
        if key in _LISTS:
            mine = _items(value)
            pool = sorted({i for v in peers for i in _items(v)} - {i.casefold() for i in mine} - set(mine))
            if not pool:
                return None
            new_items = list(mine)
            new_items[self.rng.randrange(len(mine))] = self.rng.choice(pool)
            cands = [_join(new_items)]
        else:
            cands = self.rng.sample(peers, min(6, len(peers)))
        for new in cands:
            if self._differs(new, key) and self._fresh(new):
                return Claim(key, new, self.own_values[key], "swapped")
        return None

    def _wrong_doc(self, key: str) -> Claim | None:
        if key in self.own_values:
            evidence = self.own_values[key]
        elif key not in self.own.keys:
            evidence = NOT_STATED
        else:  # stated in a form the evidence cannot quote
            return None
        for new in self.rng.sample(self.others[key], len(self.others[key])):
            if self._differs(new, key) and not _BREAKS.search(new):
                return Claim(key, new, evidence, "wrong_doc")
        return None

    def _invented(self, key: str) -> Claim | None:
        own = self.subject.facts[key].value
        if not _has_value_slot(self.subject, key):  # "It is not waterproof.": the wording says it
            return Claim(key, own, NOT_STATED, "invented")
        cands = [own] if self.rng.random() < 0.6 else []
        peers = self._peer_values(key)
        cands += self.rng.sample(peers, min(4, len(peers)))
        for new in cands:
            if self._fresh(new):
                return Claim(key, new, NOT_STATED, "invented")
        return None

    def _negated(self, key: str) -> Claim | None:
        """The opposite of the subject's document sentence about ``key``, with that sentence as the
        evidence. The denied items are the ones that sentence states (a negation of anything else,
        "the capital of Peru is not Quito", would be true); :func:`_denies` checks each wording
        against all the documents when the sentence is made."""
        stated = _statement_of(self.own, key)
        if stated is None:
            return None
        source, sentence = stated
        evidence = sentence.removesuffix(".")
        if ";" in evidence or not _states(self.folded, evidence):  # the parser splits on ";"
            return None
        value = self.subject.facts[key].value
        items = (_items(value) if key in _LISTS else [value]) if _has_value_slot(self.subject, key) else []
        if not all(_states(_fold(evidence), i) for i in items):
            return None
        self.rng.shuffle(items)
        two = len(items) >= 2
        wordings = tuple(t for t in _negated_wordings(self.subject, key) if two or "{b}" not in t)
        if not wordings:
            return None
        negation = _Negation(wordings, source, _NEGATED_COPY.get(source, ""), tuple(items[:2]))
        return Claim(key, value, evidence, "negated", negation=negation)

    def _candidates(self, kind: str, key: str | None) -> list[str]:
        free = [k for k in self.subject.facts if k not in self.used and (key is None or k == key)]
        if kind == "changed":
            return [k for k in free if k in self.own_values and _numeric(self.subject.facts[k].value)]
        if kind == "swapped":
            return [k for k in free if k in self.own_values and not _numeric(self.subject.facts[k].value)]
        if kind == "wrong_doc":
            return [k for k in free if k in self.others]
        if kind == "invented":
            return [k for k in free if k not in self.own.keys and (key is not None or k != self.asked)]
        if kind == "negated":
            return [k for k in free if k in self.own.keys and _negated_wordings(self.subject, k)]
        return [] if self.general_used or key is not None else [CLAIM]

    def bad(self, key: str | None = None) -> Claim | None:
        """A bad fact (about ``key`` if given) of a kind drawn by :data:`_WEIGHTS` among those
        this example allows."""
        kinds = dict(_WEIGHTS)
        while kinds:
            kind = self.rng.choices(list(kinds), list(kinds.values()))[0]
            del kinds[kind]
            keys = self._candidates(kind, key)
            self.rng.shuffle(keys)
            for k in keys[:3]:
                if kind == "generalisation":
                    self.general_used = True
                    template = self.rng.choice(_GENERAL[self.subject.kind])
                    return Claim(CLAIM, template, NOT_STATED, "generalisation")
                make = {
                    "changed": self._changed,
                    "swapped": self._swapped,
                    "wrong_doc": self._wrong_doc,
                    "invented": self._invented,
                    "negated": self._negated,
                }[kind]
                claim = make(k)
                if claim is not None:
                    self.used.add(k)
                    return claim
        return None


# -------------------------------------------------------------------------------- sentences
def _templates(subject: Subject, key: str) -> list[str]:
    return list(subject.facts[key].says) + list(_FRAMES.get(f"{subject.kind}:{key}", ()))


def _lowerable(template: str, subject: Subject, ref: str) -> bool:
    """Whether a clause of ``template`` may start in lower case after ", and" or "; " (not when
    it starts with a name or a value: "ESA built ...", "Mozambique ...")."""
    if _LEAD.match(template) and (ref != "name" or subject.name[:1].islower()):
        return True
    return not template.startswith("{")


def _denies(ans: _Answer, claim: Claim, text: str) -> bool:
    """Whether ``text`` states the opposite of the negated claim's evidence sentence and is not
    supported by any document: no document contains it (a document that says "X is not listed"
    would make "X is not listed" true), it does not contain the evidence (the parser would read
    the evidence in it as support), and its negation words differ from the evidence's (it flips
    the polarity; "soluble in water but not in oil" is not flipped by "does not dissolve")."""
    folded = _fold(text)
    return (
        folded.removesuffix(".") not in ans.folded
        and not _states(folded, claim.evidence)
        and _negations(text) != _negations(claim.evidence)
    )


def _copied_negation(ans: _Answer, claim: Claim, negation: _Negation) -> tuple[str, bool] | None:
    """The document's own sentence with its polarity flipped (:data:`_NEGATED_COPY`), referring to
    the subject as that sentence does; None when there is no such wording or it fails
    :func:`_denies`."""
    if not negation.mirror:
        return None
    subject, true = ans.subject, ans.subject.facts[claim.key].value
    for ref in ("name", "anaphor"):
        if _fold(_render(negation.source, subject, true, ref)) in ans.folded:
            text = _render(_fill(negation.mirror, negation), subject, "", ref)
            if _denies(ans, claim, text):
                return text, _lowerable(negation.mirror, subject, ref)
    return None


def _states_value(subject: Subject, claim: Claim, text: str) -> bool:
    """Whether ``text`` carries a bad claim's value as it is (not "Francs" for the "Franc" that a
    distractor states); a claim without a value slot ("It is not waterproof.") always does."""
    if not claim.error or not _has_value_slot(subject, claim.key):
        return True
    return _states(_fold(text), _core(claim.value))


def _copied_clause(ans: _Answer, claim: Claim) -> tuple[str, bool] | None:
    """The claim in the wording a document uses for the subject's fact, with the claimed value
    (so a bad value reads as a document sentence with one value changed), or None when no
    document words the fact that way (an invented fact, a generalisation)."""
    if claim.key == CLAIM:
        return None
    if claim.negation is not None:
        return _copied_negation(ans, claim, claim.negation)
    subject, true = ans.subject, ans.subject.facts[claim.key].value
    templates = list(subject.facts[claim.key].says)
    ans.rng.shuffle(templates)
    for t in templates:
        for ref in ("name", "pronoun"):
            text = _render(t, subject, claim.value, ref)
            if _fold(_render(t, subject, true, ref)) in ans.folded and _states_value(subject, claim, text):
                return text, _lowerable(t, subject, ref)
    return None


def _clause(ans: _Answer, claim: Claim, ref: str, second: bool = False) -> tuple[str, bool] | None:
    """One claim as a sentence, preferring wordings that no document uses, and whether it may
    start in lower case. ``second``: the clause follows another one, so it should start with
    its subject (a pronoun) where a wording allows."""
    subject, rng, negation = ans.subject, ans.rng, claim.negation
    if claim.key == CLAIM:
        return _render(claim.value, subject, "", ref), True
    if negation is None:
        templates = _templates(subject, claim.key)
    else:  # only the wordings that deny the evidence sentence here (see _denies)
        templates = [
            t for t in negation.wordings if _denies(ans, claim, _render(_fill(t, negation), subject, "", ref))
        ]
    if second and any(_COMBINABLE.match(t) for t in templates):
        templates = [t for t in templates if _COMBINABLE.match(t)]
    elif ref == "name" and any("{s}" in t for t in templates):
        templates = [t for t in templates if "{s}" in t]  # name the subject when it is due
    rng.shuffle(templates)
    fallback = None
    for t in templates:
        if negation is None:
            text = _render(t, subject, claim.value, ref)
            if claim.error == "" and not _states(_fold(text), claim.evidence):
                continue  # the wording changes the value ("Prices are given in Euros.")
            if not _states_value(subject, claim, text):
                continue  # or the bad value ("Francs" for "Franc"): the record would be wrong
        else:
            text = _render(_fill(t, negation), subject, "", ref)
        made = text, _lowerable(t, subject, ref)
        if _fold(text) not in ans.folded and (not second or made[1]):
            return made
        fallback = fallback or made
    return fallback


def _abstain(ans: _Answer, claim: Claim) -> str:
    subject, rng = ans.subject, ans.rng
    noun = _NOUNS.get(claim.key)
    if noun is None or rng.random() < 0.2:
        return rng.choice(_ABSTAIN_PLAIN)
    name = "the " + subject.name if subject.kind == "product" else subject.name
    return rng.choice(_ABSTAIN_NOUN).format(n=noun, s=name)


def _sentence(ans: _Answer, claims: list[Claim], index: int) -> tuple[str, bool] | None:
    """The claims of one answer sentence as text, and whether its first fact copies a
    document's wording (:data:`P_COPY`); the first sentence names the subject, later ones often
    use a pronoun or the subject's description; a second claim follows ", and" or "; " with a
    pronoun."""
    rng, subject = ans.rng, ans.subject
    if claims[0].abstain:
        return _abstain(ans, claims[0]), False
    ref = "name" if index == 0 else rng.choice(("name", "pronoun", "pronoun", "anaphor"))
    copy = _copied_clause(ans, claims[0]) if rng.random() < P_COPY else None
    made = copy or _clause(ans, claims[0], ref)
    if made is None:
        return None
    text, lowerable = made
    claims[0].said = text
    copied = copy is not None
    # a lead-in ("According to the documents, the ...") only before an answer wording
    if index == 0 and not copied and rng.random() < 0.15 and lowerable:
        text = rng.choice(_LEAD_INS) + text[:1].lower() + text[1:]
    elif index == 0 and not copied and rng.random() < 0.15 and text.startswith(_cap(subject.name)):
        text = rng.choice(_LEAD_INS) + subject.name + text[len(subject.name) :]
    if len(claims) == 2:
        second = _clause(ans, claims[1], rng.choice(("pronoun", "anaphor")), second=True)
        if second is None:
            return None
        clause, second_lowerable = second
        claims[1].said = clause
        joiner = ", and " if second_lowerable and rng.random() < 0.7 else "; "
        if second_lowerable:
            clause = clause[:1].lower() + clause[1:]
        text = f"{text[:-1]}{joiner}{clause}"
    return text, copied


def _label(claims: list[Claim]) -> str:
    oks = sum(c.error == "" for c in claims)
    return "faithful" if oks == len(claims) else "unfaithful" if oks == 0 else "partial"


def _plan_labels(rng: random.Random, n_sent: int, corrupt: bool, abstain: bool | None) -> list[str]:
    """Planned labels per sentence; ``abstain``: the first sentence says the documents lack the
    asked fact (True) or claims it anyway (False), None when the documents state it."""
    if abstain and corrupt:
        n_sent = max(n_sent, 2)
    labels = ["faithful"] * n_sent
    if corrupt:
        free = list(range(1, n_sent)) if abstain else list(range(n_sent))
        n_bad = 2 if len(free) > 1 and rng.random() < 0.45 else 1
        for i in rng.sample(free, n_bad):
            labels[i] = "partial" if rng.random() < 0.3 else "unfaithful"
    if abstain is False and labels[0] == "faithful":
        labels[0] = "unfaithful" if rng.random() < 0.75 else "partial"
    return labels


def _plan(ans: _Answer, corrupt: bool, abstain: bool | None) -> list[list[Claim]]:
    """The claims of each answer sentence; the first answers the asked attribute (or, with
    ``abstain``, says the documents do not give it). Empty when the first sentence cannot be
    made."""
    rng, asked = ans.rng, ans.asked
    stated = asked in ans.own_values
    n_sent = rng.choices((1, 2, 3, 4), (0.2, 0.35, 0.3, 0.15))[0]
    labels = _plan_labels(rng, n_sent, corrupt, abstain)
    out: list[list[Claim]] = []
    for i, planned in enumerate(labels):
        prefer = asked if i == 0 else None
        claims: list[Claim | None]
        if i == 0 and not stated and planned == "faithful":
            ans.used.add(asked)
            claims = [Claim(asked, "", NOT_STATED, abstain=True)]
        elif planned == "faithful":
            claims = [ans.ok(prefer)] + ([ans.ok()] if rng.random() < 0.25 else [])
        elif planned == "unfaithful":
            claims = [ans.bad(prefer)] + ([ans.bad()] if rng.random() < 0.12 else [])
        elif i == 0 and not stated:
            claims = [ans.bad(prefer), ans.ok()]
        elif rng.random() < 0.5:
            claims = [ans.ok(prefer), ans.bad()]
        else:
            claims = [ans.bad(prefer), ans.ok()]
        real = [c for c in claims if c is not None]
        if not real or (i == 0 and real[0].key != asked):
            if i == 0:
                return []
            continue
        out.append(real)
    return out


# ---------------------------------------------------------------------------------- examples
def _distinct(a: Subject, b: Subject) -> bool:
    x, y = a.name.lower(), b.name.lower()
    return x not in y and y not in x


def _docs(pools: _Pools, rng: random.Random, subject: Subject, asked: str, leave_out: bool) -> list[_Doc]:
    """The subject's document (stating ``asked`` unless ``leave_out``) and 0-2 distractors."""
    own = None
    for _ in range(6):  # a wording may not carry the value as the evidence quotes it
        text, keys = render_doc(
            subject,
            rng,
            include=None if leave_out else asked,
            exclude=(asked,) if leave_out else (),
            decoy_of=asked if rng.random() < 0.15 else None,
            long=rng.random() < 0.4,
        )
        own = _Doc(subject, text, keys)
        if leave_out or _states(own.folded, _core(subject.facts[asked].value)):
            break
    assert own is not None
    docs = [own]
    for _ in range(rng.choice((0, 1, 1, 2, 2))):
        if rng.random() < 0.65:
            other = _similar(subject, pools, rng, asked if rng.random() < 0.8 else None)
            include = asked if asked in other.facts and rng.random() < 0.65 else None
        else:
            other, include = _unrelated(subject, pools, rng), None
        if not all(_distinct(other, d.subject) for d in docs):
            continue
        text, keys = render_doc(other, rng, include=include)
        docs.append(_Doc(other, text, keys))
    rng.shuffle(docs)
    return docs


def _recorded(claim: Claim, subject: Subject) -> str:
    """The value a row's ``claims`` record: a generalisation's sentence, a negation's clause (its
    value is the one it denies), else the claimed value."""
    if claim.key == CLAIM:
        return _render(claim.value, subject, "", "name")
    return claim.said if claim.negation else claim.value


def _target(sentences: list[list[Claim]]) -> list[dict]:
    return [
        {"r": i, "e": EVIDENCE_PREFIX + "; ".join(c.evidence for c in claims), "f": _label(claims)}
        for i, claims in enumerate(sentences)
    ]


def survives_parser(row: dict) -> bool:
    """Whether :func:`~intrinsics.parsers.parse_hallucination`, reading the row's conversation,
    gives back exactly its gold labels (with every quoted value found in the documents)."""
    _, context = hallucination_spec().example_context(row["messages"])
    parsed = parse_hallucination(RawOutput(text=row["output"], context=context))
    gold: list[tuple[str, list[str]]] = [(s["f"], []) for s in json.loads(row["output"])]
    return [(s.f, s.unverified) for s in parsed.sentences] == gold


def build_example(pools: _Pools, rng: random.Random, split: str) -> dict | None:
    """One example about a random subject of ``split``, or None when no answer could be made."""
    domain = rng.choice(DOMAINS)
    subject = rng.choice([s for s in pools.by_split[split] if s.domain == domain])
    if _BREAKS.search(subject.name + " "):
        return None
    askable = [k for k in subject.facts if _has_value_slot(subject, k)]
    if not askable:
        return None
    asked = rng.choice(askable)
    leave_out = rng.random() < P_LEAVE_OUT
    docs = _docs(pools, rng, subject, asked, leave_out)
    own = next(d for d in docs if d.subject is subject)
    stated = asked in _Answer(pools, rng, subject, own, docs, asked).own_values
    if not stated and asked in own.keys:  # stated, but not as the evidence could quote it
        return None
    abstain = None if stated else rng.random() < P_ABSTAIN
    corrupt = rng.random() < P_CORRUPT or abstain is False
    sentences: list[list[Claim]] = []
    ans: _Answer | None = None
    for _ in range(6):  # re-plan until the realised answer is as corrupt as planned
        ans = _Answer(pools, rng, subject, own, docs, asked)
        plan = _plan(ans, corrupt, abstain)
        if plan and any(c.error for claims in plan for c in claims) == corrupt:
            sentences = plan
            break
    if not sentences or ans is None:
        return None
    made = [_sentence(ans, claims, i) for i, claims in enumerate(sentences)]
    if any(m is None for m in made):
        return None
    texts = [m[0] for m in made if m is not None]
    answer = " ".join(texts)
    if len(split_sentences(answer)) != len(texts):
        return None
    question = _question(subject, subject.facts[asked], rng, split)
    msgs = doc_messages([d.text for d in docs], question, system=rng.random() < 0.8)
    msgs.append({"role": "assistant", "content": answer})
    return {
        "intrinsic": INTRINSIC,
        "messages": hallucination_spec().training_messages(msgs),
        "output": compact_json(_target(sentences)),
        "source": "realworld",
        "domain": domain,
        "subject": subject.name,
        "asked": asked,
        "errors": [[c.error for c in claims if c.error] for claims in sentences],
        "copied": [m[1] for m in made if m is not None],
        "claims": [
            [
                {
                    "key": c.key,
                    "value": _recorded(c, subject),
                    "evidence": c.evidence,
                    "error": c.error,
                }
                for c in claims
            ]
            for claims in sentences
        ],
        "docs": [{"subject": d.subject.name, "facts": d.keys} for d in docs],
    }


def build_counted(split: str, n: int, seed: int = 0) -> tuple[list[dict], dict[str, int]]:
    """:func:`build`, with how many drawn examples were dropped: ``"unmade"`` (no answer of the
    planned kind, or one that does not split back into its sentences) and ``"parser"`` (the
    parser's string check would not give back the gold labels)."""
    if split not in ("train", "val", "eval"):
        raise ValueError(f"unknown split {split!r}")
    pools = _pools(seed)
    rng = random.Random(f"realworld:{INTRINSIC}:{split}:{seed}")
    rows: list[dict] = []
    dropped = {"unmade": 0, "parser": 0}
    while len(rows) < n:
        row = build_example(pools, rng, split)
        if row is None:
            dropped["unmade"] += 1
        elif not survives_parser(row):
            dropped["parser"] += 1
        else:
            rows.append(row)
    return rows, dropped


def build(split: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` realistic-style hallucination examples for ``split``."""
    return build_counted(split, n, seed)[0]
