"""The expert directory's figures, without a homeserver: search, CSV import, cold start.

    python -m bench.experts [--profiles N] [--runs N]      # the three figures on their own
    python -m bench.experts --cold-start DB                # one cold-start sample (child)

`measure(size, workdir, runs, cold_starts)` does it all for one directory size:

1. generates `size` synthetic profiles (`generate`: German organisations, the 16 states, levels,
   1–5 of ~200 topics each, bios of 10–60 words; the same ones for the same seed), writes them
   as a CSV file in the import format to `workdir`;
2. imports that file into a new database file the way `nextbot import experts` does
   (`Storage.open`, `bot.importers.experts.import_experts`, `close`), timed: this builds the
   database that 3 and 4 use;
3. answers the fixed query mix `QUERIES` with `!experten …` through `commands.framework.dispatch`
   (parse, search, reply text), `runs` times each, taking turns; also the Matrix content the bot
   would send for each reply (`bot.matrix.render.paginate`);
4. starts a fresh interpreter per sample on that database and on an empty one: imports,
   `Storage.open` (the migrations check), catalog + registry + services, the first `!experten`
   reply.

Only the standard library is imported at module level: a cold-start child's import time is part
of what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SEED = 20261125
ROOM = "!bench:localhost"
SENDER = "@member:localhost"
FIRST_QUERY = "KI"  # what the cold start's first `!experten` asks

# -- the synthetic directory --------------------------------------------------------------------

# Per state: its weight (population, millions, rounded), capital, towns, districts.
GEOGRAPHY: dict[str, tuple[int, str, tuple[str, ...], tuple[str, ...]]] = {
    "Baden-Württemberg": (11, "Stuttgart", (
        "Stuttgart", "Mannheim", "Karlsruhe", "Freiburg im Breisgau", "Heidelberg", "Ulm",
        "Heilbronn", "Pforzheim", "Reutlingen", "Esslingen am Neckar", "Konstanz"), (
        "Ortenaukreis", "Rhein-Neckar-Kreis", "Landkreis Esslingen", "Landkreis Ludwigsburg",
        "Bodenseekreis", "Landkreis Tübingen")),
    "Bayern": (13, "München", (
        "München", "Nürnberg", "Augsburg", "Regensburg", "Ingolstadt", "Würzburg", "Fürth",
        "Erlangen", "Bamberg", "Bayreuth", "Landshut", "Passau", "Rosenheim"), (
        "Landkreis München", "Landkreis Rosenheim", "Landkreis Passau", "Landkreis Ansbach",
        "Landkreis Cham", "Landkreis Würzburg", "Landkreis Traunstein")),
    "Berlin": (4, "Berlin", (
        "Berlin", "Berlin-Mitte", "Berlin-Pankow", "Berlin-Neukölln",
        "Berlin-Charlottenburg-Wilmersdorf", "Berlin-Treptow-Köpenick"), ()),
    "Brandenburg": (3, "Potsdam", (
        "Potsdam", "Cottbus", "Brandenburg an der Havel", "Frankfurt (Oder)", "Eberswalde",
        "Oranienburg"), (
        "Landkreis Barnim", "Landkreis Uckermark", "Landkreis Oder-Spree",
        "Landkreis Potsdam-Mittelmark")),
    "Bremen": (1, "Bremen", ("Bremen", "Bremerhaven"), ()),
    "Hamburg": (2, "Hamburg", ("Hamburg", "Hamburg-Altona", "Hamburg-Harburg",
                               "Hamburg-Wandsbek"), ()),
    "Hessen": (6, "Wiesbaden", (
        "Frankfurt am Main", "Wiesbaden", "Kassel", "Darmstadt", "Offenbach am Main", "Gießen",
        "Marburg", "Fulda", "Hanau"), (
        "Main-Kinzig-Kreis", "Landkreis Darmstadt-Dieburg", "Wetteraukreis",
        "Landkreis Marburg-Biedenkopf", "Hochtaunuskreis")),
    "Mecklenburg-Vorpommern": (2, "Schwerin", (
        "Schwerin", "Rostock", "Neubrandenburg", "Stralsund", "Greifswald", "Wismar"), (
        "Landkreis Vorpommern-Greifswald", "Landkreis Rostock",
        "Landkreis Mecklenburgische Seenplatte")),
    "Niedersachsen": (8, "Hannover", (
        "Hannover", "Braunschweig", "Oldenburg", "Osnabrück", "Wolfsburg", "Göttingen",
        "Hildesheim", "Salzgitter", "Lüneburg", "Celle"), (
        "Region Hannover", "Landkreis Emsland", "Landkreis Osnabrück", "Landkreis Harburg",
        "Landkreis Cuxhaven", "Landkreis Göttingen")),
    "Nordrhein-Westfalen": (18, "Düsseldorf", (
        "Köln", "Düsseldorf", "Dortmund", "Essen", "Duisburg", "Bochum", "Wuppertal",
        "Bielefeld", "Bonn", "Münster", "Aachen", "Gelsenkirchen", "Mönchengladbach",
        "Paderborn", "Siegen"), (
        "Rhein-Sieg-Kreis", "Kreis Recklinghausen", "Städteregion Aachen", "Kreis Mettmann",
        "Rhein-Kreis Neuss", "Kreis Borken", "Märkischer Kreis", "Kreis Gütersloh")),
    "Rheinland-Pfalz": (4, "Mainz", (
        "Mainz", "Ludwigshafen am Rhein", "Koblenz", "Trier", "Kaiserslautern", "Worms",
        "Speyer"), (
        "Landkreis Mayen-Koblenz", "Rhein-Pfalz-Kreis", "Landkreis Bad Kreuznach",
        "Westerwaldkreis")),
    "Saarland": (1, "Saarbrücken", ("Saarbrücken", "Neunkirchen", "Homburg", "Völklingen"), (
        "Regionalverband Saarbrücken", "Landkreis Saarlouis")),
    "Sachsen": (4, "Dresden", (
        "Leipzig", "Dresden", "Chemnitz", "Zwickau", "Plauen", "Görlitz", "Freiberg"), (
        "Landkreis Leipzig", "Landkreis Bautzen", "Erzgebirgskreis", "Landkreis Görlitz",
        "Vogtlandkreis")),
    "Sachsen-Anhalt": (2, "Magdeburg", (
        "Magdeburg", "Halle (Saale)", "Dessau-Roßlau", "Wittenberg", "Stendal"), (
        "Landkreis Harz", "Saalekreis", "Burgenlandkreis", "Altmarkkreis Salzwedel")),
    "Schleswig-Holstein": (3, "Kiel", (
        "Kiel", "Lübeck", "Flensburg", "Neumünster", "Norderstedt", "Elmshorn"), (
        "Kreis Pinneberg", "Kreis Segeberg", "Kreis Nordfriesland", "Kreis Rendsburg-Eckernförde")),
    "Thüringen": (2, "Erfurt", (
        "Erfurt", "Jena", "Gera", "Weimar", "Gotha", "Eisenach", "Suhl"), (
        "Wartburgkreis", "Landkreis Gotha", "Saale-Holzland-Kreis", "Ilm-Kreis")),
}

STATE_BODIES = (
    "Ministerium des Innern", "Ministerium für Digitalisierung", "Staatskanzlei",
    "Landesamt für Statistik", "Landesbetrieb IT", "Finanzministerium", "Landesamt für Umwelt",
    "Landesamt für Geoinformation", "Landesverwaltungsamt", "Kultusministerium",
    "Landesamt für Steuern", "Polizeipräsidium", "Landesamt für Soziales",
)
FEDERAL_BODIES = (
    ("Bundesministerium des Innern und für Heimat", "Berlin"),
    ("Bundesamt für Sicherheit in der Informationstechnik", "Bonn"),
    ("Informationstechnikzentrum Bund", "Bonn"),
    ("Bundesverwaltungsamt", "Köln"),
    ("Statistisches Bundesamt", "Wiesbaden"),
    ("Bundesagentur für Arbeit", "Nürnberg"),
    ("Deutsche Rentenversicherung Bund", "Berlin"),
    ("Bundesamt für Migration und Flüchtlinge", "Nürnberg"),
    ("Bundesministerium der Finanzen", "Berlin"),
    ("Bundesministerium für Digitales und Verkehr", "Berlin"),
    ("Bundeszentralamt für Steuern", "Bonn"),
    ("DigitalService GmbH des Bundes", "Berlin"),
    ("Bundesamt für Kartographie und Geodäsie", "Frankfurt am Main"),
    ("Umweltbundesamt", "Dessau-Roßlau"),
    ("Kraftfahrt-Bundesamt", "Flensburg"),
)
OTHER_BODIES = (
    "Kommunales Rechenzentrum", "Zweckverband Digitale Kommunen", "Hochschule für öffentliche "
    "Verwaltung", "Kommunale Datenverarbeitung", "Verband kommunaler Unternehmen",
    "Landkreistag", "Städte- und Gemeindebund", "IT-Dienstleister der Kommunen",
    "Fraunhofer-Institut", "Studieninstitut für kommunale Verwaltung",
)
ROLES = (
    "Referentin Digitalisierung", "Referent Digitalisierung", "Chief Digital Officer",
    "IT-Leiterin", "IT-Leiter", "Sachbearbeiterin", "Sachbearbeiter", "Projektleiterin OZG",
    "Projektleiter OZG", "Informationssicherheitsbeauftragte", "Datenschutzbeauftragter",
    "Abteilungsleiterin", "Referatsleiter", "Fachbereichsleiterin Bürgerservice",
    "Amtsleiter Organisation", "Digitallotsin", "Prozessmanagerin", "Architekt",
    "Softwareentwicklerin", "Data Scientist", "Geoinformatiker", "Smart-City-Managerin",
    "Wirtschaftsförderer", "Bürgermeisterin", "Beigeordneter", "Personalrätin",
    "Innovationsmanager", "E-Government-Koordinatorin", "Teamleiter Service Desk",
    "Klimaschutzmanagerin", "Vergabestelle", "Pressesprecherin", "Stabsstelle Strategie",
)
FIRST_NAMES = (
    "Anna", "Lena", "Julia", "Sarah", "Laura", "Katharina", "Johanna", "Sophie", "Marie", "Lisa",
    "Hannah", "Lea", "Miriam", "Sabine", "Claudia", "Petra", "Andrea", "Susanne", "Birgit",
    "Monika", "Nicole", "Stefanie", "Christina", "Jana", "Franziska", "Carolin", "Anja",
    "Kerstin", "Heike", "Ute", "Ayşe", "Elif", "Zeynep", "Olga", "Natalia", "Agnieszka",
    "Thomas", "Michael", "Andreas", "Stefan", "Christian", "Markus", "Frank", "Jürgen",
    "Matthias", "Alexander", "Daniel", "Tobias", "Jan", "Florian", "Sebastian", "Jonas", "Lukas",
    "Felix", "Maximilian", "Paul", "Niklas", "Tim", "Philipp", "Martin", "Uwe", "Klaus", "Ralf",
    "Björn", "Sören", "Jörg", "Mehmet", "Emre", "Dimitri", "Piotr", "Ahmad", "Luca",
)
LAST_NAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
    "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
    "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt",
    "Werner", "Schmitz", "Krause", "Meier", "Lehmann", "Schmid", "Schulze", "Maier", "Köhler",
    "Herrmann", "König", "Walter", "Mayer", "Huber", "Kaiser", "Fuchs", "Peters", "Lang",
    "Scholz", "Möller", "Weiß", "Jung", "Hahn", "Schubert", "Vogel", "Friedrich", "Keller",
    "Günther", "Frank", "Berger", "Winkler", "Roth", "Beck", "Lorenz", "Baumann", "Franke",
    "Albrecht", "Schuster", "Simon", "Ludwig", "Böhm", "Winter", "Kraus", "Martin", "Schumacher",
    "Krämer", "Vogt", "Stein", "Jäger", "Otto", "Sommer", "Groß", "Seidel", "Heinrich", "Brandt",
    "Haas", "Schreiber", "Graf", "Dietrich", "Ziegler", "Kuhn", "Kühn", "Pohl", "Engel", "Horn",
    "Busch", "Bergmann", "Thomas", "Voigt", "Sauer", "Arnold", "Wolff", "Pfeiffer", "Yılmaz",
    "Kaya", "Demir", "Nowak", "Kowalski", "Popović", "Nguyen", "Öztürk", "Łukasik", "Ramírez",
)
# Roughly in order of how often they are named: the weights fall with the position.
TOPICS = (
    "Digitalisierung", "KI", "OZG", "Datenschutz", "E-Akte", "IT-Sicherheit", "Prozessmanagement",
    "Cloud", "Open Data", "E-Government", "Smart City", "Open Source", "Projektmanagement",
    "Künstliche Intelligenz", "Informationssicherheit", "Bürgerservice", "Registermodernisierung",
    "Barrierefreiheit", "GIS", "Change Management", "Wissensmanagement", "Agile Methoden",
    "Verwaltungsmodernisierung", "EfA", "Chatbots", "Low-Code", "Datenmanagement",
    "Digitale Souveränität", "Onlinezugangsgesetz", "Geodaten", "BIM", "Kommunikation",
    "Vergaberecht", "IT-Architektur", "Klimaschutz", "Personalentwicklung", "Nutzerzentrierung",
    "Service Design", "Innovationsmanagement", "Elektronische Rechnung", "Dokumentenmanagement",
    "Breitbandausbau", "Digitale Bildung", "Schul-IT", "Fachverfahren", "Identitätsmanagement",
    "BundID", "Elektronische Signatur", "Videokonferenzen", "Mobiles Arbeiten",
    "Informationsfreiheit", "Transparenz", "Bürgerbeteiligung", "Social Media",
    "Öffentlichkeitsarbeit", "Haushalt", "Doppik", "Controlling", "Beschaffung",
    "Vergabe", "Rechenzentrum", "Netzwerke", "Microsoft 365", "Linux", "Kubernetes",
    "Containerisierung", "DevOps", "Softwareentwicklung", "API", "Schnittstellen", "XÖV",
    "XRechnung", "FIT-Connect", "Portalverbund", "Nutzerkonto", "Servicekonto", "Formulare",
    "Antragsverfahren", "Workflow", "Robotic Process Automation", "Datenanalyse",
    "Data Science", "Statistik", "Dashboards", "Business Intelligence", "Data Governance",
    "Datenstrategie", "Urbane Datenplattform", "Sensorik", "LoRaWAN", "Internet der Dinge",
    "Digitaler Zwilling", "3D-Stadtmodell", "Vermessung", "Bauleitplanung", "Baugenehmigung",
    "Digitaler Bauantrag", "Stadtplanung", "Mobilität", "Verkehrsplanung", "ÖPNV", "Radverkehr",
    "Parkraummanagement", "Energiewende", "Energiemanagement", "Nachhaltigkeit",
    "Klimaanpassung", "Umweltinformation", "Katastrophenschutz", "Feuerwehr",
    "Bevölkerungsschutz", "Krisenmanagement", "Gesundheitsamt", "Digitales Gesundheitsamt",
    "Pflege", "Sozialverwaltung", "Jugendamt", "Kita-Verwaltung", "Schulverwaltung",
    "Ausländerbehörde", "Einwanderung", "Integration", "Meldewesen", "Personenstandswesen",
    "Kfz-Zulassung", "i-Kfz", "Führerscheinwesen", "Gewerbeamt", "Ordnungsamt",
    "Steuerverwaltung", "Grundsteuer", "Kassenwesen", "E-Payment", "Justiz", "E-Justiz",
    "Polizei-IT", "Wahlen", "Ratsinformationssystem", "Sitzungsdienst", "Archiv",
    "Digitale Archivierung", "Scannen", "Posteingang", "Ersetzendes Scannen", "Records Management",
    "Informationsmanagement", "Wissenstransfer", "Interkommunale Zusammenarbeit",
    "Shared Services", "Outsourcing", "IT-Konsolidierung", "IT-Governance", "IT-Strategie",
    "Enterprise Architecture", "ITIL", "Service Management", "IT-Service-Desk",
    "Arbeitsplatz-IT", "Hardware", "Lizenzmanagement", "Cybersicherheit", "Notfallmanagement",
    "BSI-Grundschutz", "ISMS", "Penetrationstests", "Verschlüsselung", "Zero Trust",
    "Digitale Identitäten", "eID", "Onlineausweis", "Once Only", "Datenaustausch",
    "Interoperabilität", "Standardisierung", "Normenkontrolle", "Gesetzgebung",
    "Digitalcheck", "Recht und Digitalisierung", "Ethik", "Algorithmen", "Sprachmodelle",
    "Maschinelles Lernen", "Automatisierung", "Texterkennung", "Übersetzung", "Leichte Sprache",
    "Inklusion", "Gleichstellung", "Diversität", "Nachwuchsgewinnung", "Ausbildung",
    "Fortbildung", "Digitale Kompetenzen", "Führung", "New Work", "Organisationsentwicklung",
    "Kulturwandel", "Design Thinking", "Scrum", "Kanban", "Reallabore", "Innovationslabor",
    "GovTech", "Start-ups", "Wirtschaftsförderung", "Tourismus", "Kultur", "Bibliotheken",
    "Museen", "Sport", "Friedhofswesen", "Abfallwirtschaft", "Wasserwirtschaft", "Forst",
    "Landwirtschaft", "Veterinärwesen", "Lebensmittelüberwachung", "Denkmalschutz",
)
HOBBIES = (
    "singe ich im Chor", "fahre ich gern Rad", "imkere ich", "spiele ich Handball",
    "koche ich für Freunde", "engagiere ich mich in der Freiwilligen Feuerwehr",
    "wandere ich im Mittelgebirge", "segle ich auf dem Baggersee", "lese ich Krimis",
    "trainiere ich eine Jugendmannschaft", "spiele ich Schach", "fotografiere ich Vögel",
)
DOMAINS = ("verwaltung.example", "kommune.example", "land.example", "bund.example",
           "matrix.example.org")

_OPENERS = (
    "Ich arbeite seit {years} Jahren in der öffentlichen Verwaltung.",
    "Seit {years} Jahren kümmere ich mich bei uns um {t1}.",
    "Ich bin {role} und beschäftige mich vor allem mit {t1}.",
    "Nach dem Studium der Verwaltungswissenschaften bin ich in {org} gelandet.",
    "Mein Weg führte über die Wirtschaft in die Verwaltung von {municipality}.",
)
_SENTENCES = (
    "Mein Schwerpunkt liegt auf {t1} und {t2}.",
    "Aktuell leite ich ein Projekt zu {t1}, das wir gemeinsam mit Nachbarkommunen umsetzen.",
    "Gern tausche ich mich über {t1} aus, besonders über Erfahrungen aus der Praxis.",
    "Wir haben bei uns {t1} eingeführt und dabei viel über Akzeptanz gelernt.",
    "Ich freue mich über Fragen zu {t2} und helfe gern bei den ersten Schritten.",
    "Besonders wichtig ist mir, dass Bürgerinnen und Bürger Leistungen einfach online finden.",
    "Vorher war ich einige Jahre im Rechenzentrum tätig.",
    "Ich vernetze mich gern mit Kolleginnen und Kollegen aus anderen Bundesländern.",
    "Unsere Erfahrungen mit {t1} teile ich gern, auch die Fehler, die wir gemacht haben.",
    "In Arbeitsgruppen des Landes vertrete ich die kommunale Sicht.",
    "Ich halte regelmäßig Vorträge und Workshops zu {t2}.",
    "Mich interessiert, wie Fachverfahren und Portale besser zusammenspielen.",
    "In meiner Freizeit {hobby}.",
)


def _weights(count: int, exponent: float) -> list[float]:
    return [1.0 / (rank + 1) ** exponent for rank in range(count)]


def _ascii(text: str) -> str:
    out = text.lower()
    for a, b in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss"), ("ş", "s"), ("ı", "i"),
                 ("ł", "l"), ("í", "i"), ("ć", "c")):
        out = out.replace(a, b)
    return "".join(c for c in out if c.isalnum())


def generate(count: int, seed: int = SEED, bio_max_length: int = 500) -> list[Any]:
    """`count` synthetic `storage.experts.Profile`s, the same for the same seed and count:
    level kommune 60 %, land 25 %, bund 10 %, other 5 %; the 16 states weighted by population;
    1–5 topics (falling popularity), bios of 10–60 words (fewer where 60 would pass
    `bio_max_length`), some fields left empty as members leave them."""
    from storage.experts import Profile

    rng = random.Random(seed)
    states = list(GEOGRAPHY)
    state_weights = [GEOGRAPHY[s][0] for s in states]
    topic_weights = _weights(len(TOPICS), 0.9)
    topic_cum = list(_accumulate(topic_weights))
    levels, level_weights = ("kommune", "land", "bund", "other"), (60, 25, 10, 5)
    profiles = []
    for index in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        title = "Dr. " if rng.random() < 0.08 else ""
        level = rng.choices(levels, level_weights)[0]
        state = rng.choices(states, state_weights)[0]
        _, capital, towns, districts = GEOGRAPHY[state]
        if level == "kommune":
            if districts and rng.random() < 0.35:
                organisation = municipality = rng.choice(districts)
            else:
                municipality = rng.choice(towns)
                kind = "Stadtverwaltung" if rng.random() < 0.15 else "Stadt"
                organisation = f"{kind} {municipality}"
        elif level == "land":
            organisation, municipality = f"{rng.choice(STATE_BODIES)} {state}", capital
        elif level == "bund":
            organisation, municipality = rng.choice(FEDERAL_BODIES)
        else:
            municipality = rng.choice(towns)
            organisation = f"{rng.choice(OTHER_BODIES)} {municipality}"
        if rng.random() < 0.05:
            municipality = None
        picked: list[str] = []
        for _ in range(rng.randint(1, 5)):
            topic = rng.choices(TOPICS, cum_weights=topic_cum)[0]
            if topic not in picked:
                picked.append(topic)
        role = rng.choice(ROLES) if rng.random() < 0.9 else None
        bio = _bio(rng, rng.randint(10, 60), picked, role or "in der Verwaltung tätig",
                   organisation, municipality or capital, bio_max_length)
        user_id = (f"@{_ascii(first)}.{_ascii(last)}{index}:"
                   f"{DOMAINS[index % len(DOMAINS)]}")
        profiles.append(Profile(
            user_id=user_id, display_name=f"{title}{first} {last}", organisation=organisation,
            level=level, municipality=municipality, state=state, topics=picked, role=role,
            bio=bio if rng.random() < 0.93 else None,
        ))
    return profiles


def _accumulate(values: list[float]) -> list[float]:
    total, out = 0.0, []
    for value in values:
        total += value
        out.append(total)
    return out


def _bio(rng: random.Random, words: int, topics: list[str], role: str, organisation: str,
         municipality: str, limit: int) -> str:
    fill = {
        "years": rng.randint(2, 30), "role": role, "org": organisation,
        "municipality": municipality, "hobby": rng.choice(HOBBIES),
        "t1": topics[0], "t2": topics[-1] if len(topics) > 1 else rng.choice(TOPICS[:40]),
    }
    parts = [rng.choice(_OPENERS).format(**fill)]
    while sum(len(p.split()) for p in parts) < words:
        parts.append(rng.choice(_SENTENCES).format(**fill))
    text = " ".join(" ".join(parts).split()[:words]).rstrip(",.") + "."
    while len(text) > limit:  # long words: fewer of them
        text = " ".join(text.split()[:-1]).rstrip(",.") + "."
    return text


def write_csv(profiles: list[Any], path: Path) -> int:
    """The profiles in `nextbot import experts`'s format (`bot.importers.experts.row_of`); bytes."""
    from bot.importers.experts import COLUMNS, row_of

    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(row_of(p) for p in profiles)
    return path.stat().st_size


# -- 2. import ----------------------------------------------------------------------------------


async def import_csv(csv_path: Path, database: Path) -> dict[str, Any]:
    """`nextbot import experts FILE` into a new database: open (migrations), import, close.

    Seconds; `upsert_s` is the part spent in `ExpertRepository.upsert_many` (the writing), the
    rest of `import_s` is reading and checking the file.
    """
    from bot.importers.experts import DEFAULT_BIO_MAX_LENGTH, import_experts
    from commands.features import open_storage

    began = time.perf_counter()
    storage = await open_storage(database)
    opened = time.perf_counter()
    upsert = storage.experts.upsert_many
    upsert_s = 0.0

    async def timed_upsert(profiles: list[Any]) -> tuple[int, int, int]:
        nonlocal upsert_s
        start = time.perf_counter()
        try:
            return await upsert(profiles)
        finally:
            upsert_s = time.perf_counter() - start

    storage.experts.upsert_many = timed_upsert  # type: ignore[method-assign]
    try:
        result = await import_experts(storage, csv_path, bio_max_length=DEFAULT_BIO_MAX_LENGTH,
                                      progress=False)
        imported = time.perf_counter()
    finally:
        await storage.close()
    closed = time.perf_counter()
    if not result.written or result.problems:
        raise RuntimeError(f"import refused: {result.summary()}; first problems: "
                           f"{[str(p) for p in result.problems[:3]]}")
    return {
        "rows": result.rows, "created": result.created, "updated": result.updated,
        "open_s": opened - began, "import_s": imported - opened, "upsert_s": upsert_s,
        "parse_check_s": imported - opened - upsert_s, "close_s": closed - imported,
        "total_s": closed - began,
        "database_bytes": await asyncio.to_thread(lambda: database.stat().st_size),
    }


async def build_directly(size: int, seed: int, database: Path) -> dict[str, Any]:
    """The same directory written with `ExpertRepository.upsert_many` alone, no CSV: so that the
    search and the cold start still get figures when the import fails. Seconds."""
    from datetime import UTC, datetime

    from commands.features import open_storage

    for leftover in (database, database.with_name(database.name + "-wal"),
                     database.with_name(database.name + "-shm")):
        leftover.unlink(missing_ok=True)
    now = datetime.now(UTC)
    profiles = [replace_consent(p, now) for p in await asyncio.to_thread(generate, size, seed)]
    began = time.perf_counter()
    storage = await open_storage(database)
    try:
        await storage.experts.upsert_many(profiles)
    finally:
        await storage.close()
    return {"upsert_many_s": time.perf_counter() - began}


def replace_consent(profile: Any, at: Any) -> Any:
    """A new profile gets the import time as its consent time, as `import_experts` does."""
    profile.consent_at = at
    return profile


# -- 1. search ----------------------------------------------------------------------------------

# (kind, what follows `!experten`). Kinds: topic (a whole topic word), prefix, synonym, words
# (several words, names, places, bio-only words), filter, none (no hit: suggestions looked for),
# page.
QUERIES: tuple[tuple[str, str], ...] = (
    ("topic", "Digitalisierung"),
    ("topic", "Datenschutz"),
    ("topic", "OZG"),
    ("topic", "Geodaten"),
    ("topic", "Vergaberecht"),
    ("topic", "Barrierefreiheit"),
    ("topic", "Denkmalschutz"),
    ("prefix", "Digi"),
    ("prefix", "Daten"),
    ("prefix", "Klima"),
    ("prefix", "Verwaltungsmod"),
    ("prefix", "Proz"),
    ("synonym", "KI"),
    ("synonym", "Künstliche Intelligenz"),
    ("synonym", "AI"),
    ("synonym", "elektronische Akte"),
    ("synonym", "DSGVO"),
    ("synonym", "Cybersicherheit"),
    ("synonym", "KI in der Verwaltung"),
    ("synonym", "Open Source"),
    ("words", "Smart City Sensorik"),
    ("words", "Müller"),
    ("words", "Leipzig"),
    ("words", "Chor"),
    ("words", "Projektleiterin OZG München"),
    ("filter", "KI state:Hessen"),
    ("filter", "Datenschutz level:kommune"),
    ("filter", 'org:"Stadt Köln"'),
    ("filter", "state:NRW level:land"),
    ("filter", "OZG org:Landkreis state:by"),
    ("filter", "state:Bayern"),
    ("filter", "Cloud level:bund"),
    ("filter", 'E-Akte org:"Landkreis Harz" level:kommune'),
    ("none", "Digitalsierung"),
    ("none", "Datenschtz"),
    ("none", "Onlinezugangsgestz"),
    ("none", "Quantencomputing"),
    ("none", "Xylophon"),
    ("page", "Digitalisierung --seite 2"),
    ("page", "KI --seite 5"),
    ("page", "Datenschutz --page 20"),
    ("page", "Cloud state:Berlin --seite 3"),
)


async def search_latency(database: Path, runs: int) -> dict[str, Any]:
    """Every query of QUERIES `runs` times (one warm-up round first), taking turns.

    Milliseconds: `dispatch` (parse, search, reply text) and `with_content` (plus the Matrix
    content: Markdown to sanitized HTML, `bot.matrix.render.paginate`); per query and per kind too.
    """
    from bench.inprocess import services_on, summary
    from bot.matrix.render import paginate
    from commands.framework import Level, Request, dispatch
    from commands.i18n import Text

    services = await services_on(database)
    internal = services.catalog.text("de", "errors.internal").plain

    async def member_level() -> Level:
        return Level.MEMBER

    def label(page: int, pages: int) -> Text:
        return services.catalog.text("de", "reply.page", page=page, pages=pages)

    requests = [(kind, query, Request("$bench", ROOM, SENDER, f"!experten {query}", "de",
                                      member_level)) for kind, query in QUERIES]
    dispatch_ms: dict[str, list[float]] = {query: [] for _, query in QUERIES}
    content_ms: dict[str, list[float]] = {query: [] for _, query in QUERIES}
    first_lines: dict[str, str] = {}
    try:
        for round_ in range(runs + 1):
            for _kind, query, request in requests:
                began = time.perf_counter_ns()
                replies = await dispatch(request, services)
                answered = time.perf_counter_ns()
                for reply in replies:
                    paginate(reply.text, label, "$bench")
                rendered = time.perf_counter_ns()
                if round_ == 0:  # the warm-up: check the answers once
                    if len(replies) != 1 or replies[0].text.plain == internal:
                        raise RuntimeError(f"!experten {query}: no or an internal-error reply")
                    first_lines[query] = replies[0].text.plain.split("\n", 1)[0][:120]
                    continue
                dispatch_ms[query].append((answered - began) / 1e6)
                content_ms[query].append((rendered - began) / 1e6)
    finally:
        await services.storage.close()
    every = [v for values in dispatch_ms.values() for v in values]
    every_content = [v for values in content_ms.values() for v in values]
    kinds = dict.fromkeys(kind for kind, _ in QUERIES)
    per_query = {query: {"kind": kind, "reply": first_lines[query]}
                 | _short(summary(dispatch_ms[query])) for kind, query in QUERIES}
    slowest = max(per_query, key=lambda q: per_query[q]["p50"])  # p95 of a few runs is noise
    return {
        "queries": len(QUERIES), "runs": runs,
        "dispatch_ms": summary(every),
        "with_content_ms": summary(every_content),
        "by_kind_ms": {kind: _short(summary([v for k, q in QUERIES if k == kind
                                              for v in dispatch_ms[q]])) for kind in kinds},
        "by_query_ms": per_query,
        "slowest_query": {"query": slowest} | per_query[slowest],
    }


def _short(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: stats[key] for key in ("p50", "p95", "max")}


# -- 3. cold start ------------------------------------------------------------------------------


async def _cold_start_child(database: Path, query: str) -> dict[str, float]:
    began = time.perf_counter()
    import bot.runtime  # noqa: F401 - timed: importing the whole bot
    from bot.features import FEATURES
    from commands.experts import ExpertConfig
    from commands.feature import routers
    from commands.features import open_storage
    from commands.framework import Level, Registry, Request, Services, dispatch
    from commands.i18n import Catalog

    imported = time.perf_counter()
    storage = await open_storage(database)
    opened = time.perf_counter()
    services = Services(storage=storage, catalog=Catalog.load(),
                        registry=Registry(routers(FEATURES)), clock=_BerlinClock(),
                        prefix="!", configs={"experts": ExpertConfig.default()})
    ready = time.perf_counter()

    async def member_level() -> Level:
        return Level.MEMBER

    replies = await dispatch(Request("$cold", ROOM, SENDER, f"!experten {query}", "de",
                                     member_level), services)
    answered = time.perf_counter()
    internal = services.catalog.text("de", "errors.internal").plain
    assert replies and replies[0].text.plain != internal, "the first search failed"
    profiles = await storage.experts.count()
    await storage.close()
    return {
        "imports_ms": (imported - began) * 1000,
        "storage_ms": (opened - imported) * 1000,
        "services_ms": (ready - opened) * 1000,
        "first_reply_ms": (answered - ready) * 1000,
        "profiles": profiles,
    }


class _BerlinClock:
    def now(self) -> Any:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        return datetime.now(ZoneInfo("Europe/Berlin"))


def cold_start(database: Path, samples: int, query: str = FIRST_QUERY,
               timeout: float = 120.0) -> dict[str, Any]:
    """Medians over `samples` fresh interpreters on `database` (opened, never changed), ms.

    `ready_ms`: imports + `Storage.open` + services; `to_first_reply_ms`: that plus the first
    `!experten` reply; `process_ms`: spawn to exit, as the parent sees it.
    """
    runs: list[dict[str, float]] = []
    for _ in range(samples):
        began = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "bench.experts", "--cold-start", str(database),
             "--query", query],
            capture_output=True, text=True, timeout=timeout, check=False,
            cwd=Path(__file__).resolve().parent.parent,
        )
        wall = (time.perf_counter() - began) * 1000
        if result.returncode != 0:
            raise RuntimeError(f"cold-start child failed:\n{result.stderr[-2000:]}")
        run = json.loads(result.stdout.strip().splitlines()[-1])
        run["process_ms"] = wall
        run["storage_services_ms"] = run["storage_ms"] + run["services_ms"]
        run["ready_ms"] = run["imports_ms"] + run["storage_services_ms"]
        run["to_first_reply_ms"] = run["ready_ms"] + run["first_reply_ms"]
        runs.append(run)
    medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    return medians | {"n": samples, "max_to_first_reply_ms": max(r["to_first_reply_ms"]
                                                                 for r in runs)}


async def empty_database(path: Path) -> Path:
    """A database with every migration applied and no profile: the comparison's baseline."""
    from commands.features import open_storage

    storage = await open_storage(path)
    await storage.close()
    return path


# -- all of it ----------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def measure(size: int, workdir: Path, runs: int, cold_starts: int,
                  seed: int = SEED) -> dict[str, Any]:
    """Generate, write, import (timed), search (timed), cold start (timed) for `size` profiles.

    The database the import builds is the one searched and started on. Each part that fails is
    reported in its place (`{"error": …}`); a failed import fails the rest too.
    """
    directory = workdir / f"experts-{size}"
    directory.mkdir(parents=True, exist_ok=True)
    csv_path, database = directory / "experts.csv", directory / "nextbot.db"
    began = time.perf_counter()
    profiles = await asyncio.to_thread(generate, size, seed)
    generated = time.perf_counter()
    csv_bytes = await asyncio.to_thread(write_csv, profiles, csv_path)
    del profiles
    written = time.perf_counter()
    results: dict[str, Any] = {
        "profiles": size, "seed": seed,
        "generate_s": generated - began, "write_csv_s": written - generated,
        "csv_bytes": csv_bytes,
    }
    say(f"experts, {size:,} profiles: importing the CSV ({csv_bytes / 1e6:.1f} MB) …")
    results["import"] = await _guarded(import_csv(csv_path, database))
    results["database_built_by"] = "import"
    if "error" in results["import"]:
        say(f"experts, {size:,} profiles: the import failed; writing the same profiles with "
            "upsert_many alone, for the search and the cold start …")
        built = await _guarded(build_directly(size, seed, database))
        if "error" in built:
            results["search"] = results["cold_start"] = {"error": "no database: the import "
                                                         "and upsert_many failed"}
            return results
        results["database_built_by"] = "upsert_many (the import failed)"
        results["direct_build"] = built
    say(f"experts, {size:,} profiles: {len(QUERIES)} queries × {runs} runs of !experten …")
    results["search"] = await _guarded(search_latency(database, runs))
    say(f"experts, {size:,} profiles: cold start × {cold_starts} …")
    results["cold_start"] = await _guarded(asyncio.to_thread(cold_start, database, cold_starts))
    return results


async def measure_empty(workdir: Path, cold_starts: int) -> dict[str, Any]:
    """The cold start on a migrated database without profiles: what the sizes compare with."""
    async def work() -> dict[str, Any]:
        database = await empty_database(workdir / "experts-0" / "nextbot.db")
        return await asyncio.to_thread(cold_start, database, cold_starts)

    return await _guarded(work())


async def measure_all(sizes: tuple[int, ...], workdir: Path, runs: int, cold_starts: int
                      ) -> dict[str, Any]:
    """Every size, then the empty database's cold start; the CSV and database files of a size
    are deleted once it is measured."""
    found: dict[str, Any] = {"queries": [{"kind": k, "query": q} for k, q in QUERIES],
                             "sizes": {}}
    for size in sizes:
        found["sizes"][str(size)] = await measure(size, workdir, runs, cold_starts)
        shutil.rmtree(workdir / f"experts-{size}", ignore_errors=True)
    say(f"experts, empty database: cold start × {cold_starts} …")
    found["empty_cold_start"] = await measure_empty(workdir, cold_starts)
    shutil.rmtree(workdir / "experts-0", ignore_errors=True)
    return found


async def _guarded(work: Any) -> Any:
    try:
        return await work
    except Exception as exc:  # one failed measurement must not end the run
        say(f"expert measurement failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {str(exc)[-500:]}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.experts",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--cold-start", metavar="DB", type=Path,
                        help="(child) one cold start on the database DB")
    parser.add_argument("--query", default=FIRST_QUERY, help="(child) the first search")
    parser.add_argument("--profiles", type=int, action="append",
                        help="directory size (repeatable; default 2000)")
    parser.add_argument("--runs", type=int, default=5, help="rounds of the query mix")
    parser.add_argument("--cold-starts", type=int, default=2)
    args = parser.parse_args(argv)
    if args.cold_start is not None:
        print(json.dumps(asyncio.run(_cold_start_child(args.cold_start, args.query))))
        return 0
    with tempfile.TemporaryDirectory(prefix="nextbot-bench-experts-") as tmp:
        found = asyncio.run(measure_all(tuple(args.profiles or [2000]), Path(tmp), args.runs,
                                        args.cold_starts))
    print(json.dumps(found, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
