"""Extra train-only document templates, five per attribute, keyed by (entity type, attribute key).

Why: with only the three ``doc["train"]`` phrasings of :mod:`intrinsics.training.data.schema` per attribute,
the hallucination adapter's evidence lookup was right for 57% of sentences in held-out wordings;
the hypothesis was that it learnt the templates rather than the attributes. Measured with the same
budget: 56%, no better (the adapters' BUILD.md); the shipped adapter is trained with them all the
same. They widen the training distribution (subject-first, value-first, passive, relative
clauses, "According to ..." openers) and are used for training only: the
held-out ``doc["eval"]`` templates stay unseen, so none of these reuses an eval template's
structure or any word that only the eval templates of that attribute use (tests check).

Placeholders follow schema.py: {S}/{P} only at the very start (those templates also render with a
pronoun subject), {name} and {pp} elsewhere, exactly one {v}.
"""

from __future__ import annotations

PARAPHRASES: dict[tuple[str, str], tuple[str, ...]] = {
    # ------------------------------------------------------------------------------------ town
    ("town", "founded"): (
        "{S} traces its origins to {v}.",
        "{P} founding goes back to {v}.",
        "Old charters show that {name} was founded in {v}.",
        "The founding of {name} took place in {v}.",
        "In {v}, the first houses of {name} were raised.",
    ),
    ("town", "population"): (
        "{S} counts {v} inhabitants.",
        "{P} population totals {v}.",
        "Census records credit {name} with {v} inhabitants.",
        "A census counted {v} people in {name}.",
        "{name} is a town of {v} people.",
    ),
    ("town", "province"): (
        "{S} falls under the administration of {v} province.",
        "{P} province is {v}.",
        "In the province of {v} lies the town of {name}.",
        "{v} is the province that {name} falls within.",
        "{v} province counts {name} among its towns.",
    ),
    ("town", "river"): (
        "{S} lies along the {v} River.",
        "{P} waterfront faces the {v} River.",
        "The {v} River runs past {name}.",
        "Maps show {name} beside the {v} River.",
        "{S} grew up around a bend of the {v} River.",
    ),
    ("town", "export"): (
        "{S} ships {v} abroad.",
        "{P} leading export is {v}.",
        "Most of what {name} sends abroad is {v}.",
        "The export trade of {name} rests on {v}.",
        "According to trade records, {name} exports mostly {v}.",
    ),
    ("town", "mayor"): (
        "{S} is led by mayor {v}.",
        "{P} town hall is headed by mayor {v}.",
        "{v} holds the office of mayor in {name}.",
        "According to council records, {name} answers to mayor {v}.",
        "Mayor {v} presides over the town of {name}.",
    ),
    # --------------------------------------------------------------------------------- company
    ("company", "founded"): (
        "{S} was launched in {v}.",
        "{P} history begins in {v}.",
        "The doors of {name} first opened in {v}.",
        "Company records trace {name} back to {v}.",
        "In {v}, {name} was incorporated.",
    ),
    ("company", "founder"): (
        "{S} was begun by the entrepreneur {v}.",
        "{P} original owner and founder was {v}.",
        "{v} is the person who founded {name}.",
        "Company records list {v} as the founder of {name}.",
        "{v} laid the foundations of {name}.",
    ),
    ("company", "headquarters"): (
        "{S} answers to a head office in {v}.",
        "{P} head office can be found in {v}.",
        "{name} keeps its headquarters in {v}.",
        "The town of {v} hosts the headquarters of {name}.",
        "The central office of {name} lies in {v}.",
    ),
    ("company", "product"): (
        "{S} produces {v}.",
        "{P} signature product is {v}.",
        "Shops stock {v} made by {name}.",
        "The workshops of {name} turn out {v}.",
        "According to its catalogue, {name} specialises in {v}.",
    ),
    ("company", "employees"): (
        "{S} has a staff of {v}.",
        "{P} payroll lists {v} people.",
        "A staff of {v} works at {name}.",
        "Company figures show {name} employing {v} staff.",
        "{v} people are employed by {name}.",
    ),
    ("company", "logo"): (
        "{S} brands itself with a {v} logo.",
        "{P} logo is coloured {v}.",
        "The {name} logo comes in {v}.",
        "{v} is the colour of the {name} logo.",
        "Signs and packaging of {name} show a {v} logo.",
    ),
    # -------------------------------------------------------------------------------- inventor
    ("inventor", "born"): (
        "{P} birth took place in {v}.",
        "{S} first drew breath in {v}.",
        "Parish registers record {name}'s birth in {v}.",
        "The birth of {name} dates to {v}.",
        "In {v}, {name} was born.",
    ),
    ("inventor", "birthplace"): (
        "{S} hails from the town of {v}.",
        "{P} home town is {v}.",
        "{v} is the town where {name} was born.",
        "According to parish records, {name} was born in the town of {v}.",
        "{name} was born and raised in {v}.",
    ),
    ("inventor", "invention"): (
        "{S} devised the {v}.",
        "{P} claim to fame is the {v}.",
        "The {v} is credited to {name}.",
        "{name} designed the {v}.",
        "Without {name}, there would be no {v}.",
    ),
    ("inventor", "field"): (
        "{S} spent {pp} working life in {v}.",
        "{P} research centred on {v}.",
        "{name} made {pp} name in {v}.",
        "{v} was the discipline {name} pursued.",
        "Colleagues say {name} worked mostly in {v}.",
    ),
    ("inventor", "award"): (
        "{S} earned the {v}.",
        "{P} proudest achievement was winning the {v}.",
        "The jury gave {name} the {v}.",
        "{name} was the winner of the {v}.",
        "Among {pp} distinctions is the {v}.",
    ),
    ("inventor", "mentor"): (
        "{S} was an apprentice of {v}.",
        "{P} guide and teacher was {v}.",
        "{v} trained the young {name}.",
        "{name} served {pp} apprenticeship with {v}.",
        "{v} was the mentor of {name}.",
    ),
    # ----------------------------------------------------------------------------------- river
    ("river", "length"): (
        "{S} measures {v} kilometres in length.",
        "{P} channel winds for {v} kilometres.",
        "Surveys put the length of {name} at {v} kilometres.",
        "{name} flows for {v} kilometres.",
        "{S} extends over {v} kilometres.",
    ),
    ("river", "source"): (
        "{S} has its source on {v}.",
        "{P} first trickle appears on {v}.",
        "High on {v}, {name} emerges.",
        "The slopes of {v} give rise to {name}.",
        "{name} originates on {v}.",
    ),
    ("river", "mouth"): (
        "{S} discharges into {v}.",
        "{P} journey ends at {v}.",
        "{v} receives the flow of {name}.",
        "At {v}, {name} reaches its end.",
        "{name} pours into {v}.",
    ),
    ("river", "fish"): (
        "{S} teems with the {v}.",
        "{P} best catch is the {v}.",
        "Anglers on {name} usually land the {v}.",
        "The {v} thrives in {name}.",
        "In {name}, the {v} outnumbers every other fish.",
    ),
    ("river", "colour"): (
        "{S} carries {v} water.",
        "{P} water has a {v} tint.",
        "Seen from above, the water of {name} looks {v}.",
        "{v} water fills the bed of {name}.",
        "Boatmen on {name} see {v} water beneath them.",
    ),
    ("river", "bridges"): (
        "{S} is spanned by {v} bridges.",
        "{S} flows under {v} bridges.",
        "Altogether, {v} bridges lead over {name}.",
        "Records show {v} bridges over {name}.",
        "{P} banks are linked by {v} bridges.",
    ),
    # -------------------------------------------------------------------------------- festival
    ("festival", "first_held"): (
        "{S} goes back to {v}.",
        "{P} first edition took place in {v}.",
        "The inaugural {name} was held in {v}.",
        "In {v}, {name} was staged for the first time.",
        "{name} made its debut in {v}.",
    ),
    ("festival", "location"): (
        "{S} is staged in {v}.",
        "{P} home is the town of {v}.",
        "{v} plays host to {name}.",
        "Visitors travel to {v} to attend {name}.",
        "{name} happens in the town of {v}.",
    ),
    ("festival", "month"): (
        "{S} falls in the month of {v}.",
        "{P} date is always in {v}.",
        "{v} is the month of {name}.",
        "{name} is scheduled in {v} annually.",
        "When {v} arrives, {name} begins.",
    ),
    ("festival", "celebrates"): (
        "{S} commemorates {v}.",
        "{S} rejoices in {v}.",
        "{P} theme has always been {v}.",
        "Crowds at {name} toast {v}.",
        "{name} pays homage to {v}.",
    ),
    ("festival", "visitors"): (
        "{S} welcomes {v} visitors annually.",
        "{P} crowds reach {v} people.",
        "Some {v} visitors turn up at {name}.",
        "Ticket counts put {name} at {v} visitors.",
        "{v} festival-goers flock into {name}.",
    ),
    ("festival", "founder"): (
        "{S} was launched by {v}.",
        "{P} founder was {v}.",
        "{v} organised the first {name}.",
        "{name} was dreamed up by {v}.",
        "Local history credits {v} with founding {name}.",
    ),
    # --------------------------------------------------------------------------------- mineral
    ("mineral", "colour"): (
        "{S} is coloured {v}.",
        "{P} crystals appear {v}.",
        "Samples of {name} are {v}.",
        "Collectors prize {name} for its {v} colour.",
        "A piece of {name} looks {v} in daylight.",
    ),
    ("mineral", "hardness"): (
        "{S} scores {v} on the hardness scale.",
        "{P} hardness measures {v}.",
        "Tests give {name} a hardness of {v}.",
        "{name} ranks {v} in hardness.",
        "A hardness of {v} is typical of {name}.",
    ),
    ("mineral", "discovered"): (
        "{S} was recognised as a new mineral in {v}.",
        "{P} discovery took place in {v}.",
        "{name} became known to science in {v}.",
        "In {v}, {name} was found for the first time.",
        "Geological records date the discovery of {name} to {v}.",
    ),
    ("mineral", "discoverer"): (
        "{S} counts {v} as its discoverer.",
        "{P} discovery is credited to {v}.",
        "{v} was the one who discovered {name}.",
        "The geologist {v} discovered {name}.",
        "Credit for discovering {name} goes to {v}.",
    ),
    ("mineral", "use"): (
        "{S} is typically employed in {v}.",
        "{P} main application is {v}.",
        "Workshops buy {name} for {v}.",
        "{name} finds use in {v}.",
        "Much of {name} gets used for {v}.",
    ),
    ("mineral", "mined_in"): (
        "{S} is extracted near {v}.",
        "{P} mines lie near {v}.",
        "The quarries of {v} yield {name}.",
        "{name} is quarried near {v}.",
        "{v} is where {name} gets mined.",
    ),
    # -------------------------------------------------------------------------------- mountain
    ("mountain", "height"): (
        "{S} stands {v} metres tall.",
        "{P} height is {v} metres.",
        "Surveyors measured {name} at {v} metres.",
        "{name} has an elevation of {v} metres.",
        "Maps list the height of {name} as {v} metres.",
    ),
    ("mountain", "range"): (
        "{S} stands among the summits of the {v}.",
        "{P} parent range is the {v}.",
        "Geographers group {name} with the {v}.",
        "{name} is a summit in the {v}.",
        "On maps, {name} appears in the {v}.",
    ),
    ("mountain", "first_climbed"): (
        "{S} was scaled for the first time in {v}.",
        "{P} summit was first reached in {v}.",
        "In {v}, climbers reached the summit of {name} for the first time.",
        "The first successful climb of {name} took place in {v}.",
        "Mountaineers first topped {name} in {v}.",
    ),
    ("mountain", "first_climber"): (
        "{S} was first scaled by {v}.",
        "{P} first climber was {v}.",
        "{v} reached the top of {name} before anyone else.",
        "{v} made the first climb of {name}.",
        "The honour of first climbing {name} belongs to {v}.",
    ),
    ("mountain", "rock"): (
        "{S} is composed of {v}.",
        "{P} bedrock is {v}.",
        "Beneath the snow, {name} is solid {v}.",
        "{v} forms the bulk of {name}.",
        "The cliffs of {name} are made of {v}.",
    ),
    ("mountain", "town"): (
        "{S} looms over the town of {v}.",
        "{P} nearest town is {v}.",
        "{name} dominates the view from {v}.",
        "The town of {v} nestles below {name}.",
        "Walkers heading for {name} begin in the town of {v}.",
    ),
}
