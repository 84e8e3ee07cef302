"""Names, contacts and survey comments for the demo data generator (`storage/demo.py`)."""

from __future__ import annotations

import unicodedata
from random import Random

# (ISO country, weight, billing currency, share of French-speaking accounts, phone prefix, digits)
COUNTRIES: tuple[tuple[str, int, str, float, str, int], ...] = (
    ("US", 50, "USD", 0.03, "+1", 10),
    ("GB", 11, "GBP", 0.02, "+447700", 6),
    ("FR", 13, "EUR", 0.90, "+336", 8),
    ("CA", 6, "USD", 0.35, "+1", 10),
    ("DE", 5, "EUR", 0.02, "+49151", 8),
    ("BE", 3, "EUR", 0.70, "+32470", 6),
    ("NL", 3, "EUR", 0.00, "+316", 8),
    ("AU", 3, "USD", 0.00, "+614", 8),
    ("IE", 2, "EUR", 0.00, "+35385", 7),
    ("ES", 2, "EUR", 0.05, "+346", 8),
    ("CH", 2, "EUR", 0.60, "+4179", 7),
)

# North-American numbers use the fictional 555 exchange.
NANP_AREAS = ("212", "415", "646", "312", "617", "512", "206", "303", "416", "514", "604")

INDUSTRIES = (
    "software",
    "e-commerce",
    "healthcare",
    "fintech",
    "education",
    "logistics",
    "media",
    "manufacturing",
    "retail",
    "travel",
    "real-estate",
    "non-profit",
    "hospitality",
    "legal",
)

EN_HEADS = (
    "Blue", "North", "Bright", "Silver", "Red", "Green", "Iron", "Summit", "Harbor", "Maple",
    "Cedar", "Pine", "Oak", "River", "Stone", "Swift", "Clear", "True", "Bold", "Prime", "Nova",
    "Apex", "Atlas", "Beacon", "Vertex", "Pioneer", "Horizon", "Keystone", "Lumen", "Copper",
    "Falcon", "Granite", "Hudson", "Juniper", "Kestrel", "Lake", "Meadow", "Orbit", "Pacific",
    "Quarry", "Ridge", "Sky", "Tidal", "Upland", "Violet", "West", "Willow", "Zephyr", "Amber",
    "Birch", "Coral", "Delta", "Ember", "Fern", "Golden", "High", "Indigo", "Jade", "Signal",
    "Sun",
)  # fmt: skip
EN_TAILS = (
    "wind", "path", "field", "gate", "point", "bridge", "stone", "light", "wave", "brook",
    "crest", "forge", "haven", "line", "mark", "peak", "port", "spark", "stream", "view",
    "works", "yard", "bay", "leaf", "rock", "ward", "well", "wood", "dale", "shore",
)  # fmt: skip
EN_SECTORS = (
    "Analytics", "Logistics", "Health", "Systems", "Software", "Studio", "Foods", "Retail",
    "Media", "Capital", "Robotics", "Energy", "Supply", "Learning", "Travel", "Cloud", "Data",
    "Networks", "Partners", "Labs", "Consulting", "Insurance", "Pharma", "Design", "Security",
    "Outdoors", "Games", "Mobility", "Properties", "Legal",
)  # fmt: skip
EN_LEGAL = ("", "", "", " Inc", " LLC", " Ltd", " Co")

FR_HEADS = (
    "Atelier", "Maison", "Groupe", "Cabinet", "Société", "Éditions", "Laboratoires", "Comptoir",
    "Manufacture", "Agence", "Studio", "Domaine", "Brasserie", "Transports", "Librairie",
    "Fromagerie", "Compagnie", "Bureau", "Clinique", "Imprimerie",
)  # fmt: skip
FR_SECTORS = (
    "Conseil", "Numérique", "Logistique", "Santé", "Distribution", "Services", "Immobilier",
    "Formation", "Voyages", "Énergie", "Industrie", "Design", "Patrimoine", "Solutions",
)  # fmt: skip
FR_LEGAL = ("", "", " SAS", " SARL", " SA")

EN_FIRST = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Susan", "Richard", "Jessica", "Joseph", "Sarah", "Thomas", "Karen",
    "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Emily", "Mark", "Olivia", "Priya", "Wei",
    "Aisha", "Diego", "Hannah", "Lukas", "Sofia", "Noah", "Grace", "Ethan", "Chloe", "Ryan",
)  # fmt: skip
EN_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson",
    "Anderson", "Taylor", "Moore", "Jackson", "White", "Harris", "Clark", "Lewis", "Walker",
    "Young", "Allen", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Patel",
    "Chen", "Nguyen", "Murphy", "O'Brien", "Schmidt", "Müller", "Jansen", "Kelly", "Evans",
)  # fmt: skip
FR_FIRST = (
    "Camille", "Léa", "Manon", "Chloé", "Inès", "Jade", "Louise", "Zoé", "Juliette", "Alice",
    "Lucas", "Hugo", "Louis", "Gabriel", "Arthur", "Jules", "Théo", "Raphaël", "Nathan",
    "Mathis", "Élodie", "Sophie", "Nicolas", "Julien", "Émilie", "Antoine", "Mélanie", "Thomas",
    "Aurélie", "Guillaume", "Yasmine", "Karim", "Océane", "Maxime",
)  # fmt: skip
FR_LAST = (
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David", "Bertrand", "Roux",
    "Vincent", "Fournier", "Morel", "Girard", "André", "Mercier", "Dupont", "Lambert", "Bonnet",
    "François", "Martinez", "Legrand", "Garnier", "Faure", "Rousseau", "Blanc", "Guérin",
    "Chevalier", "Vernet", "Perrin", "Masson", "Gauthier",
)  # fmt: skip

# Domains no account uses: responses from them cannot be attributed.
UNKNOWN_DOMAINS = ("freemail.test", "webmail.test", "inbox.test", "gmail.test")

# Survey comments by kind of answer and language; "{days}" is filled with a small number.
COMMENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "nps-detractor": {
        "en": (
            "Support took {days} days to answer a blocking ticket.",
            "The CSV export has been broken since the last update.",
            "Too expensive for what we actually use.",
            "Dashboards are slow to load as soon as we filter by region.",
            "We lost data during the Salesforce sync, nobody followed up.",
            "The new pricing doubled our bill at renewal.",
            "Onboarding was confusing and half my team never logged in.",
            "SSO keeps logging us out every couple of hours.",
            "Missing basic permissions: everyone can see everything.",
            "Our account manager changed three times this year.",
        ),
        "fr": (
            "Le support a mis {days} jours à répondre à un ticket bloquant.",
            "L'export CSV ne marche plus depuis la mise à jour.",
            "Trop cher pour l'usage qu'on en a.",
            "Les tableaux de bord sont très lents dès qu'on filtre par région.",
            "La synchronisation avec HubSpot a créé des doublons partout.",
            "Augmentation de prix de 30 % au renouvellement, sans prévenir.",
            "L'interface n'est toujours pas traduite en français.",
            "On attend la facturation en euros avec TVA depuis des mois.",
            "Trop de bugs depuis la nouvelle version, l'équipe a décroché.",
        ),
    },
    "nps-passive": {
        "en": (
            "Does the job, but reporting could be more flexible.",
            "Good product, the mobile app needs work.",
            "Fine overall. Would love a proper API for custom fields.",
            "Solid, though the price keeps creeping up.",
            "Useful, but it took a while for the team to adopt it.",
            "OK. Search is hit and miss.",
        ),
        "fr": (
            "Fait le travail, mais les rapports manquent de souplesse.",
            "Bon produit, l'application mobile est à revoir.",
            "Correct dans l'ensemble, il manque une vraie API.",
            "Bien, mais le prix augmente chaque année.",
            "Utile, l'équipe a mis du temps à l'adopter.",
        ),
    },
    "nps-promoter": {
        "en": (
            "Our CSM is fantastic, always one step ahead.",
            "Saves my team hours every week.",
            "The Slack integration alone is worth it.",
            "Best onboarding we have had with any vendor.",
            "Reliable, fast, and support answers within the hour.",
            "We rolled it out to three more teams this quarter.",
            "Simple to use, the dashboards just make sense.",
        ),
        "fr": (
            "Notre CSM est top, toujours disponible.",
            "On gagne plusieurs heures par semaine.",
            "L'intégration Slack vaut à elle seule l'abonnement.",
            "Outil simple et efficace, toute l'équipe l'utilise.",
            "Support réactif et vraiment compétent.",
            "Le meilleur onboarding qu'on ait eu avec un éditeur.",
        ),
    },
    "csat-bad": {
        "en": (
            "Waited {days} days for a first answer.",
            "The agent closed my ticket without fixing anything.",
            "Had to explain the issue three times.",
            "The workaround does not work for us.",
        ),
        "fr": (
            "{days} jours pour avoir une première réponse.",
            "Ticket fermé sans que le problème soit résolu.",
            "J'ai dû réexpliquer le problème trois fois.",
            "Le contournement proposé ne fonctionne pas chez nous.",
        ),
    },
    "csat-ok": {
        "en": ("Solved eventually.", "Answer was correct but slow.", "Fine."),
        "fr": ("Résolu, mais lentement.", "Réponse correcte.", "Ça va."),
    },
    "csat-good": {
        "en": (
            "Quick and clear answer, thanks!",
            "Fixed in minutes.",
            "Great help from the support team.",
            "Very patient and helpful.",
        ),
        "fr": (
            "Réponse rapide et claire, merci !",
            "Corrigé en quelques minutes.",
            "Super accueil du support.",
            "Très patient et efficace.",
        ),
    },
}


def slug(value: str) -> str:
    """Return `value` as a lowercase ASCII slug: "Éditions Vernet" → "editions-vernet"."""
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode().lower()
    return "-".join("".join(ch if ch.isalnum() else " " for ch in folded if ch != "'").split())


def company(rng: Random, lang: str, used_slugs: set[str]) -> tuple[str, str]:
    """Return a company name and its domain, whose slug is new to `used_slugs` (then added)."""
    attempt = 0
    while True:
        attempt += 1
        if lang == "fr":
            surname, form = rng.choice(FR_LAST), rng.random()
            if form < 0.5:
                base = f"{rng.choice(FR_HEADS)} {surname}"
            elif form < 0.8:
                base = f"{surname} {rng.choice(FR_SECTORS)}"
            else:
                base = f"{rng.choice(FR_HEADS)} {surname} {rng.choice(FR_SECTORS)}"
            legal = rng.choice(FR_LEGAL)
        else:
            head, other = rng.sample(EN_HEADS, 2)
            if rng.random() < 0.6:
                base = f"{head}{rng.choice(EN_TAILS)} {rng.choice(EN_SECTORS)}"
            else:
                base = f"{head} {other} {rng.choice(EN_SECTORS)}"
            legal = rng.choice(EN_LEGAL)
        if attempt > 20:  # the word lists are running out: number the name
            base = f"{base} {attempt}"
        name_slug = slug(base)
        if name_slug not in used_slugs:
            used_slugs.add(name_slug)
            return base + legal, f"{name_slug}.example"


def person(rng: Random, lang: str) -> tuple[str, str]:
    """Return a person's display name and the local part of their work email."""
    first, last = (FR_FIRST, FR_LAST) if lang == "fr" else (EN_FIRST, EN_LAST)
    given, family = rng.choice(first), rng.choice(last)
    return f"{given} {family}", f"{slug(given)}.{slug(family).replace('-', '')}"


def phone(rng: Random, prefix: str, digits: int) -> str:
    """Return an E.164 number: North-American ones in the fictional 555-01xx range."""
    if prefix == "+1":
        return f"+1{rng.choice(NANP_AREAS)}55501{rng.randint(0, 99):02d}"
    return prefix + "".join(str(rng.randint(0, 9)) for _ in range(digits))


def comment(rng: Random, key: str, lang: str) -> str:
    """Return a survey comment of kind `key` (e.g. "nps-detractor") in `lang`."""
    return rng.choice(COMMENTS[key][lang]).format(days=rng.randint(2, 6))
