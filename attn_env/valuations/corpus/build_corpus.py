"""Deterministic builder of the shipped corpus (queries and candidate ads).

Run ``python -m attn_env.valuations.corpus.build_corpus`` to regenerate
``queries.jsonl`` and ``candidates.jsonl`` beside this file. The texts are composed
from templates with varied products, invented brands and attributes, eight
verticals, one seeded generator: the same files come out every time. Everything
here was written for attn-market and is released under CC0 (see README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SEED = 20261126
QUERIES_PER_VERTICAL = 40
CANDIDATES_PER_VERTICAL = 375

# Each vertical: products, brands (invented), attributes, audiences, query and ad
# templates. Templates use {product}, {brand}, {attr}, {attr2}, {who}, {num}.
VERTICALS: dict[str, dict[str, list[str]]] = {
    "shoes": {
        "product": [
            "running shoes",
            "trail running shoes",
            "sneakers",
            "hiking boots",
            "marathon racing flats",
            "walking shoes",
            "basketball shoes",
            "leather boots",
            "sandals",
            "tennis shoes",
            "cross-training shoes",
            "waterproof boots",
        ],
        "brand": [
            "Stridewell",
            "Pacefoot",
            "Kestrel Run",
            "Ironsole",
            "Loamstep",
            "Velocitee",
            "Northtrail",
            "Cobblers & Co",
        ],
        "attr": [
            "cushioned",
            "lightweight",
            "wide-fit",
            "breathable",
            "waterproof",
            "carbon-plated",
            "zero-drop",
            "grippy",
            "stability",
            "vegan leather",
        ],
        "who": [
            "flat feet",
            "beginners",
            "marathon runners",
            "overpronators",
            "wide feet",
            "kids",
            "heavy runners",
            "everyday commuters",
        ],
        "query": [
            "best {product} for {who}",
            "{attr} {product} under {num} dollars",
            "where to buy {product} size {size}",
            "are {brand} {product} good",
            "{product} with good arch support",
            "how to choose {product}",
            "{attr} {product} for {who}",
            "{product} sale near me",
            "do I need new {product} after {num} miles",
            "comfortable {product} for standing all day",
        ],
        "ad": [
            "{brand} {attr} {product}: free returns and {num}% off this week.",
            "Find your fit: {attr} {product} from {brand}, made for {who}.",
            "New {brand} {product}, {attr} and {attr2}. Shop the collection.",
            "Run farther in {attr} {product}. {brand} outlet, sizes {size} to 13.",
            "{brand} {product} for {who}: {attr} midsole, {attr2} upper.",
            "Clearance on {product}: {brand} styles up to {num}% off.",
            "Our {attr} {product} are tested by {who}. Try {brand} risk free.",
            "Step up your stride with {brand} {attr} {product}.",
        ],
        "size": ["7", "8", "9", "10", "11", "12"],
    },
    "travel": {
        "product": [
            "flights to Lisbon",
            "a beach resort",
            "a city break in Rome",
            "cheap hotels in Tokyo",
            "a ski chalet",
            "a cruise to Norway",
            "a road trip rental car",
            "a safari tour",
            "hostels in Berlin",
            "a weekend in Paris",
            "an island hotel in Greece",
            "train tickets across Europe",
        ],
        "brand": [
            "Wayfarely",
            "SkyNest",
            "Bluecompass",
            "Tripwell",
            "Harbor & Sun",
            "Nomadia",
            "Orbitstay",
            "Faraway Lane",
        ],
        "attr": [
            "last-minute",
            "all-inclusive",
            "family-friendly",
            "budget",
            "luxury",
            "refundable",
            "off-season",
            "direct",
            "romantic",
            "pet-friendly",
        ],
        "who": [
            "couples",
            "families",
            "solo travellers",
            "students",
            "retirees",
            "backpackers",
            "honeymooners",
            "business travellers",
        ],
        "query": [
            "book {product} for {num} nights",
            "{attr} {product}",
            "best time to travel to {place}",
            "{product} for {who}",
            "how much does {product} cost",
            "visa requirements for {place}",
            "{attr} deals on {product}",
            "things to do in {place} for {who}",
            "cheapest way to get to {place}",
            "packing list for {product}",
        ],
        "ad": [
            "{brand}: {attr} {product} from {num} dollars a night.",
            "Escape to {place} with {brand}. {attr} packages for {who}.",
            "Book {product} with {brand} and save {num}% on {attr} stays.",
            "{brand} finds {attr} {product}, free cancellation included.",
            "Your trip to {place} starts here: {attr} hotels and flights by {brand}.",
            "{who} love {brand}: {attr} {product}, booked in minutes.",
            "Compare {product} on {brand}. {attr} options, no booking fees.",
            "Fly to {place} for less. {brand} {attr} fares this month.",
        ],
        "place": [
            "Lisbon",
            "Rome",
            "Tokyo",
            "Bali",
            "Iceland",
            "Mexico City",
            "Kyoto",
            "Crete",
            "Vancouver",
            "Marrakesh",
        ],
    },
    "tax_finance": {
        "product": [
            "tax return",
            "retirement savings account",
            "index fund",
            "personal loan",
            "credit card",
            "mortgage refinance",
            "small business bookkeeping",
            "tax deduction",
            "savings account",
            "capital gains tax",
            "self-employment tax",
            "estate plan",
        ],
        "brand": [
            "Ledgerline",
            "Taxwise",
            "Coinfield",
            "Northbank",
            "Fairshare Capital",
            "Brightbook",
            "Meridian Trust",
            "Penny & Pine",
        ],
        "attr": [
            "low-fee",
            "online",
            "high-yield",
            "fixed-rate",
            "certified",
            "free",
            "fast",
            "audit-proof",
            "no-penalty",
            "automated",
        ],
        "who": [
            "freelancers",
            "small businesses",
            "first-time filers",
            "retirees",
            "landlords",
            "students",
            "couples filing jointly",
            "expats",
        ],
        "query": [
            "how to file a {product} as {who}",
            "{attr} {product} options",
            "deadline for {product} this year",
            "can {who} claim a {product}",
            "best {product} for {who}",
            "how much {product} do I owe",
            "{product} calculator",
            "is a {attr} {product} worth it",
            "tax advice for {who}",
            "how to lower my {product}",
        ],
        "ad": [
            "{brand} tax experts: {attr} help with your {product}.",
            "File your {product} with {brand}. {attr} for {who}, maximum refund.",
            "{attr} {product} from {brand}: {num}% APR, no hidden fees.",
            "{who}: {brand} finds every {product} you qualify for.",
            "Talk to a {attr} accountant at {brand} about your {product}.",
            "{brand} makes {product} simple, {attr} and guaranteed accurate.",
            "Plan your {product} with {brand}: {attr} advice for {who}.",
            "Save on taxes this year. {brand} {attr} filing from {num} dollars.",
        ],
    },
    "laptops": {
        "product": [
            "laptop",
            "gaming laptop",
            "ultrabook",
            "2-in-1 laptop",
            "student notebook",
            "workstation laptop",
            "chromebook",
            "laptop for video editing",
            "thin and light laptop",
            "programming laptop",
            "laptop with OLED screen",
            "budget notebook",
        ],
        "brand": [
            "Voltbook",
            "Arcline",
            "Quillware",
            "Nimbus Compute",
            "Helixa",
            "Corebright",
            "Tessera PC",
            "Lumenbyte",
        ],
        "attr": [
            "16GB RAM",
            "long battery life",
            "lightweight",
            "RTX graphics",
            "1TB SSD",
            "backlit keyboard",
            "14-inch",
            "fanless",
            "touchscreen",
            "high refresh rate",
        ],
        "who": [
            "students",
            "programmers",
            "gamers",
            "designers",
            "video editors",
            "remote workers",
            "kids",
            "data scientists",
        ],
        "query": [
            "best {product} for {who}",
            "{product} with {attr}",
            "{product} under {num} dollars",
            "is {brand} a good {product} brand",
            "{product} vs desktop for {who}",
            "how much RAM does a {product} need",
            "{attr} {product} deals",
            "which {product} should I buy",
            "{product} battery replacement",
            "refurbished {product} with {attr}",
        ],
        "ad": [
            "{brand} {product} with {attr} and {attr2}. Order today.",
            "Built for {who}: the {brand} {product}, {attr}, from {num} dollars.",
            "Upgrade to a {brand} {product}: {attr}, {attr2}, free shipping.",
            "{who} choose {brand}. {attr} {product}, two-year warranty.",
            "The new {brand} {product} is here: {attr} in a slim body.",
            "Save {num}% on {brand} {product} models with {attr}.",
            "Power meets portability: {brand} {product}, {attr}.",
            "Compare {product} specs: {brand} {attr} versus the rest.",
        ],
    },
    "cooking": {
        "product": [
            "sourdough bread",
            "chicken curry",
            "vegan lasagna",
            "pad thai",
            "chocolate cake",
            "meal prep bowls",
            "homemade pasta",
            "slow cooker stew",
            "banana bread",
            "stir fry",
            "cast iron pan",
            "chef's knife",
        ],
        "brand": [
            "Hearthside Kitchen",
            "Saltcrest",
            "Copperleaf",
            "Pantry Lane",
            "Emberware",
            "Good Crumb",
            "Basil & Brine",
            "Kettlewood",
        ],
        "attr": [
            "easy",
            "quick",
            "gluten-free",
            "one-pot",
            "high-protein",
            "vegetarian",
            "budget",
            "crispy",
            "30-minute",
            "dairy-free",
        ],
        "who": [
            "beginners",
            "busy parents",
            "vegans",
            "students",
            "home bakers",
            "families",
            "athletes",
            "picky eaters",
        ],
        "query": [
            "{attr} {product} recipe",
            "how to make {product}",
            "{product} for {who}",
            "what goes well with {product}",
            "how long to bake {product}",
            "{attr} dinner ideas for {who}",
            "best {product} recipe without an oven",
            "{product} ingredients list",
            "can I freeze {product}",
            "how to fix dry {product}",
        ],
        "ad": [
            "{brand}: {attr} {product} recipes, ready in {num} minutes.",
            "Cook {product} like a pro with {brand} classes for {who}.",
            "Get {attr} {product} kits delivered. {brand}, first box {num}% off.",
            "{brand} {product}: {attr} and {attr2}, loved by {who}.",
            "Shop the {brand} cookware sale: cast iron, knives and {product} tools.",
            "{num} {attr} recipes for {who} from the {brand} test kitchen.",
            "Bake better {product}. {brand} flour, yeast and {attr} mixes.",
            "Weeknight {product} made {attr}: try the {brand} meal kit.",
        ],
    },
    "fitness": {
        "product": [
            "home workout plan",
            "gym membership",
            "yoga class",
            "strength training program",
            "adjustable dumbbells",
            "protein powder",
            "fitness tracker",
            "pilates mat",
            "rowing machine",
            "personal trainer",
            "HIIT workout",
            "resistance bands",
        ],
        "brand": [
            "Corepulse",
            "Liftline",
            "Zenfold Yoga",
            "Ironwell Gym",
            "Tempo Forge",
            "Stridefit",
            "Flexora",
            "Peakform",
        ],
        "attr": [
            "beginner",
            "20-minute",
            "full-body",
            "low-impact",
            "muscle-building",
            "fat-burning",
            "at-home",
            "guided",
            "advanced",
            "no-equipment",
        ],
        "who": [
            "beginners",
            "seniors",
            "new mothers",
            "busy professionals",
            "athletes",
            "people with back pain",
            "teenagers",
            "couples",
        ],
        "query": [
            "{attr} {product} for {who}",
            "how to start a {product}",
            "is a {product} worth it",
            "best {product} to lose weight",
            "{product} near me",
            "how often should I do a {product}",
            "{attr} workout without a gym",
            "{product} reviews",
            "build muscle with a {product}",
            "{product} for {who} at home",
        ],
        "ad": [
            "{brand}: {attr} {product} for {who}. First month free.",
            "Get fit with {brand}. {attr} {product}, {num} minutes a day.",
            "Join {brand} today: {attr} classes and a {product} that works.",
            "{who} train with {brand}. {attr} and {attr2} sessions.",
            "Transform your routine: {brand} {product}, {num}% off.",
            "The {brand} {product}: {attr}, coached, and built for {who}.",
            "Sweat smarter with a {attr} {product} from {brand}.",
            "{brand} {product} bundles for {who}, {attr} results.",
        ],
    },
    "insurance": {
        "product": [
            "car insurance",
            "home insurance",
            "life insurance",
            "health insurance",
            "pet insurance",
            "travel insurance",
            "renters insurance",
            "dental plan",
            "motorcycle insurance",
            "business liability insurance",
            "flood insurance",
            "disability insurance",
        ],
        "brand": [
            "Safeharbor",
            "Evergard",
            "Shieldmark",
            "Oakline Mutual",
            "Covera",
            "Truepath Assurance",
            "Bellweather",
            "Anchorwell",
        ],
        "attr": [
            "cheap",
            "full-coverage",
            "no-deductible",
            "term",
            "same-day",
            "low-premium",
            "comprehensive",
            "affordable",
            "flexible",
            "multi-policy",
        ],
        "who": [
            "young drivers",
            "families",
            "seniors",
            "renters",
            "homeowners",
            "small businesses",
            "dog owners",
            "freelancers",
        ],
        "query": [
            "{attr} {product} quotes",
            "best {product} for {who}",
            "how much is {product} per month",
            "does {product} cover {peril}",
            "compare {product} providers",
            "{product} for {who}",
            "how to claim {product} after {peril}",
            "is {brand} {product} reliable",
            "{attr} {product} online",
            "cancel my {product}",
        ],
        "ad": [
            "{brand} {product}: {attr} cover for {who}, quotes in {num} seconds.",
            "Protect what matters with {attr} {product} from {brand}.",
            "Switch to {brand} and save {num}% on {product}.",
            "{who}: {brand} {product} covers {peril}, {attr} plans.",
            "Get a {attr} {product} quote from {brand} today.",
            "{brand} bundles {product} with {attr2} discounts for {who}.",
            "Claims paid fast: {brand} {attr} {product}.",
            "Compare {attr} {product} plans at {brand}, no obligation.",
        ],
        "peril": [
            "theft",
            "water damage",
            "storms",
            "accidents",
            "fire",
            "vet bills",
            "trip cancellation",
            "hospital stays",
        ],
    },
    "gardening": {
        "product": [
            "tomato plants",
            "raised garden bed",
            "lawn seed",
            "compost bin",
            "rose bushes",
            "vegetable garden",
            "fruit trees",
            "garden hose",
            "potting soil",
            "herb garden",
            "lawn mower",
            "drip irrigation kit",
        ],
        "brand": [
            "Greenthumb Supply",
            "Rootwise",
            "Fernhollow",
            "Bloomfield Nursery",
            "Mossgate",
            "Sproutly",
            "Terra & Trowel",
            "Wildacre",
        ],
        "attr": [
            "organic",
            "drought-tolerant",
            "raised",
            "self-watering",
            "perennial",
            "shade-loving",
            "heirloom",
            "cordless",
            "balcony",
            "frost-hardy",
        ],
        "who": [
            "beginners",
            "small balconies",
            "clay soil",
            "shady yards",
            "busy gardeners",
            "kids",
            "cold climates",
            "renters",
        ],
        "query": [
            "when to plant {product}",
            "{attr} {product} for {who}",
            "how to grow {product}",
            "best {product} for {who}",
            "why are my {product} turning yellow",
            "{product} near me",
            "how often to water {product}",
            "{attr} {product} tips",
            "{product} in {season}",
            "pests on {product}",
        ],
        "ad": [
            "{brand}: {attr} {product}, delivered ready to plant.",
            "Grow more with {brand} {product}. {attr} and {attr2}.",
            "{brand} garden centre: {product} for {who}, {num}% off in {season}.",
            "{attr} {product} from {brand}, guaranteed to thrive.",
            "Start your {attr} garden: {brand} {product} kits for {who}.",
            "Shop {product} at {brand}. Free advice from our growers.",
            "{who}? Try {brand} {attr} {product}.",
            "Plant {product} this {season} with {brand} supplies.",
        ],
        "season": ["spring", "summer", "autumn", "early spring", "late summer"],
    },
}


def _fill(template: str, vocab: dict[str, list[str]], rng: np.random.Generator) -> str:
    """Fill a template's slots with draws from the vertical's vocabulary."""
    values = {
        key: vocab[key][rng.integers(len(vocab[key]))]
        for key in vocab
        if key not in ("query", "ad")
    }
    attrs = vocab["attr"]
    values["attr2"] = attrs[
        (attrs.index(values["attr"]) + 1 + rng.integers(len(attrs) - 1)) % len(attrs)
    ]
    values["num"] = str(
        int(rng.choice([10, 15, 20, 25, 30, 40, 50, 100, 200, 500, 800]))
    )
    text = template.format(**values)
    return text[0].upper() + text[1:]


def _unique_texts(
    templates: list[str],
    vocab: dict[str, list[str]],
    count: int,
    rng: np.random.Generator,
) -> list[str]:
    """``count`` distinct texts, cycling over templates in a seeded order."""
    out: list[str] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < count:
        tries += 1
        if tries > 100 * count:
            raise RuntimeError(f"could not compose {count} distinct texts")
        text = _fill(templates[rng.integers(len(templates))], vocab, rng)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def build(out_dir: Path, seed: int = SEED) -> tuple[int, int]:
    """Write ``queries.jsonl`` and ``candidates.jsonl`` to ``out_dir``; return sizes."""
    rng = np.random.default_rng(seed)
    queries, candidates = [], []
    for vertical, vocab in VERTICALS.items():
        for k, text in enumerate(
            _unique_texts(vocab["query"], vocab, QUERIES_PER_VERTICAL, rng)
        ):
            queries.append(
                {"id": f"q-{vertical}-{k:03d}", "text": text, "vertical": vertical}
            )
        for k, text in enumerate(
            _unique_texts(vocab["ad"], vocab, CANDIDATES_PER_VERTICAL, rng)
        ):
            candidates.append(
                {"id": f"c-{vertical}-{k:04d}", "text": text, "vertical": vertical}
            )
    for name, rows in (("queries.jsonl", queries), ("candidates.jsonl", candidates)):
        path = out_dir / name
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
        tmp.replace(path)
    return len(queries), len(candidates)


if __name__ == "__main__":
    n_q, n_c = build(Path(__file__).resolve().parent)
    print(f"wrote {n_q} queries and {n_c} candidates")
