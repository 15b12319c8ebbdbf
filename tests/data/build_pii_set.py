"""Build tests/data/pii_labelled.jsonl: chat-like texts with gold PII spans, and hard negatives.

Run: python tests/data/build_pii_set.py  (deterministic; the JSONL is committed, this documents how it was made).
Each line: {"id", "kind": "positive"|"negative"|"mixed", "text", "spans": [[start, end, ENTITY], ...]}; the cases
added for issue 13 also carry a "class" (phone_possible_no_cue, email_private_tld, name_rare_first,
name_read_as_place, hard_negative_13).
Values are synthetic: cards pass Luhn, IBANs pass mod-97, SSNs avoid invalid ranges, phone numbers use
real numbering plans (US/UK fictional ranges where they exist). Negatives are things that look like PII.
"""
import base64
import json
import random
import string
from pathlib import Path

R = random.Random(5)
OUT = Path(__file__).with_name("pii_labelled.jsonl")

FIRST = ["Maria", "James", "Priya", "Ahmed", "Olivia", "Chen", "Lucas", "Fatima", "Daniel", "Sofia", "Kenji", "Emma",
         "Mohammed", "Anna", "David", "Laura", "Thomas", "Aisha", "Robert", "Elena", "Michael", "Sarah", "Ivan", "Grace"]
LAST = ["Garcia", "Smith", "Sharma", "Hassan", "Brown", "Wei", "Martin", "Khan", "Miller", "Rossi", "Tanaka", "Wilson",
        "Ali", "Kowalski", "Johnson", "Schmidt", "Anderson", "Okafor", "Taylor", "Petrova", "Davis", "Lee", "Novak", "Moore"]
VN_NAMES = ["Nguyen Van An", "Tran Thi Mai", "Le Minh Tuan", "Pham Thu Ha", "Hoang Duc Anh", "Vu Thi Lan"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "corp.example.co.uk", "uni.example.edu"]


def digits(n):
    return "".join(R.choice(string.digits) for _ in range(n))


def luhn_digit(body):
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def card(valid=True):
    prefix, n = R.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16)])
    body = prefix + digits(n - len(prefix) - 1)
    check = luhn_digit(body)
    if not valid:
        check = str((int(check) + R.randint(1, 9)) % 10)
    num = body + check
    if n == 15:
        groups = [num[:4], num[4:10], num[10:]]
    else:
        groups = [num[i:i + 4] for i in range(0, 16, 4)]
    return R.choice([" ", "-", ""]).join(groups)


def ssn():
    area = R.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{R.randint(1, 99):02d}-{R.randint(1, 9999):04d}"


IBAN_SPEC = {"GB": ("alpha4", 14), "DE": ("", 18), "FR": ("", 23), "NL": ("alpha4", 10), "ES": ("", 20)}


def iban(valid=True):
    cc = R.choice(list(IBAN_SPEC))
    kind, n = IBAN_SPEC[cc]
    bban = ("".join(R.choice(string.ascii_uppercase) for _ in range(4)) if kind else "") + digits(n)
    moved = bban + cc + "00"
    num = int("".join(str(int(c, 36)) for c in moved))
    check = 98 - num % 97
    if not valid:
        check = (check + R.randint(1, 50)) % 97 + 2
    raw = f"{cc}{check:02d}{bban}"
    return " ".join(raw[i:i + 4] for i in range(0, len(raw), 4)) if R.random() < 0.6 else raw


def phone():
    return R.choice([
        lambda: f"({R.choice(['415', '212', '617', '312', '206'])}) 555-01{digits(2)}",
        lambda: f"{R.choice(['415', '212', '617', '303', '512'])}-555-01{digits(2)}",
        lambda: f"+1 {R.choice(['415', '646', '202', '305'])} 555 01{digits(2)}",
        lambda: f"+44 20 7946 0{digits(3)}",
        lambda: f"020 7946 0{digits(3)}",
        lambda: f"07700 900{digits(3)}",
        lambda: f"+44 7700 900{digits(3)}",
        lambda: f"+49 30 {R.randint(2, 9)}{digits(7)}",
        lambda: f"+33 1 {R.randint(40, 49)} {digits(2)} {digits(2)} {digits(2)}",
        lambda: f"+61 2 9{digits(3)} {digits(4)}",
        lambda: f"+81 3-{R.randint(3000, 6999)}-{digits(4)}",
        lambda: f"091{R.randint(0, 9)} {digits(3)} {digits(3)}",
        lambda: f"+84 9{R.choice('0134')}{R.randint(1, 9)} {digits(3)} {digits(3)}",
        lambda: f"09{R.choice('0134')} {R.randint(1, 9)}{digits(2)} {digits(4)}",
        lambda: f"028 38{digits(2)} {digits(4)}",
        lambda: f"+84 28 38{digits(2)} {digits(4)}",
    ])()


def ipv4():
    return ".".join(str(R.randint(1, 254)) for _ in range(4))


def ipv6():
    groups = [f"{R.randint(0, 0xffff):x}" for _ in range(8)]
    if R.random() < 0.5:
        return "2001:db8::" + ":".join(groups[:3])
    return ":".join(groups)


def b64(n):
    return "".join(R.choice(string.ascii_letters + string.digits) for _ in range(n))


def jwt():
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    return f"{enc({'alg': 'HS256', 'typ': 'JWT'})}.{enc({'sub': digits(6), 'iat': 1700000000})}.{b64(43)}"


def pem():
    kind = R.choice(["RSA ", "EC ", "", "OPENSSH "])
    body = "\n".join(b64(64) for _ in range(R.randint(2, 4)))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


def person():
    return R.choice(VN_NAMES) if R.random() < 0.15 else f"{R.choice(FIRST)} {R.choice(LAST)}"


VALUES = {
    "EMAIL_ADDRESS": lambda: f"{R.choice(FIRST).lower()}{R.choice(['.', '_', ''])}{R.choice(LAST).lower()}"
                             f"{R.choice(['', '+news', str(R.randint(1, 99))])}@{R.choice(DOMAINS)}",
    "PHONE_NUMBER": phone, "CREDIT_CARD": card, "US_SSN": ssn, "IBAN_CODE": iban,
    "IP_ADDRESS": lambda: ipv4() if R.random() < 0.6 else ipv6(),
    "AWS_ACCESS_KEY": lambda: R.choice(["AKIA", "ASIA"]) + "".join(R.choice(string.ascii_uppercase + "234567") for _ in range(16)),
    "GITHUB_TOKEN": lambda: R.choice([f"ghp_{b64(36)}", f"gho_{b64(36)}", f"ghs_{b64(36)}", f"github_pat_{b64(22)}_{b64(59)}"]),
    "BEARER_TOKEN": lambda: R.choice([b64(40), jwt(), b64(32) + "=="]),
    "PRIVATE_KEY": pem, "PERSON": person,
}
TEMPLATES = {
    "EMAIL_ADDRESS": ["You can reach me at {v} if the form fails.", "Please send the invoice to {v} by Friday.",
                      "My new address is {v}, the old one bounced.", "cc {v} on the thread please"],
    "PHONE_NUMBER": ["Call me on {v} after 6pm.", "My mobile number is {v}.", "The office line is {v}, ask for support.",
                     "Text {v} when you arrive.", "If it breaks again ring {v}."],
    "CREDIT_CARD": ["Charge it to my card {v}, expiry next year.", "The payment failed on {v} again.",
                    "card number: {v}", "I paid with {v} but got no receipt."],
    "US_SSN": ["My SSN is {v}.", "social security number {v} for the tax form", "SSN: {v}",
               "The form asks for the social security number, mine is {v}."],
    "IBAN_CODE": ["Wire it to IBAN {v} please.", "My bank account is {v}.", "Refund to {v}, not the card.",
                  "IBAN: {v}"],
    "IP_ADDRESS": ["The server at {v} stopped answering.", "Whitelist {v} in the firewall.",
                   "ssh fails from {v} since the upgrade.", "Our egress IP is {v}."],
    "AWS_ACCESS_KEY": ["aws_access_key_id = {v}", "I pasted {v} into the config by mistake.",
                       "export AWS_ACCESS_KEY_ID={v}", "the key {v} was rotated yesterday"],
    "GITHUB_TOKEN": ["git clone https://{v}@github.com/acme/repo.git fails", "GITHUB_TOKEN={v}",
                     "My token {v} stopped working.", "use token {v} for the CI job"],
    "BEARER_TOKEN": ["Authorization: Bearer {v}", "curl -H 'Authorization: Bearer {v}' https://api.example.com/v1/models",
                     "The header was bearer {v} and it returned 401."],
    "PRIVATE_KEY": ["Here is the key:\n{v}\nwhy does ssh reject it?", "{v}", "config:\n  key: |\n{v}"],
    "PERSON": ["My name is {v} and I need help with my account.", "Please forward this to {v}.",
               "Dear {v}, your order has shipped.", "{v} will join the call tomorrow.",
               "I spoke to {v} from billing yesterday.", "Thanks, {v}"],
}
NEGATIVES = [
    lambda: f"We released version {R.randint(1, 12)}.{R.randint(0, 30)}.{R.randint(0, 20)} on {2020 + R.randint(0, 6)}-{R.randint(1, 12):02d}-{R.randint(1, 28):02d}.",
    lambda: f"Upgrade to v{R.randint(1, 9)}.{R.randint(0, 9)}.{R.randint(0, 9)}.{R.randint(1, 200)} before the freeze.",
    lambda: f"Build {R.randint(1, 20)}.{R.randint(0, 9)}.{R.randint(0, 99)}.{R.randint(0, 255)} fixed the crash.",
    lambda: f"My order {R.choice(['#', 'no. ', 'number ', ''])}{digits(10)} has not arrived.",
    lambda: f"Order ID ORD-{2020 + R.randint(0, 6)}{R.randint(1, 12):02d}{R.randint(1, 28):02d}-{digits(4)} was cancelled.",
    lambda: f"Invoice INV-{2020 + R.randint(0, 6)}-{digits(5)} is overdue by {R.randint(2, 30)} days.",
    lambda: f"Ticket #{digits(6)} was reopened on {R.randint(1, 12)}/{R.randint(1, 28)}/{2020 + R.randint(0, 6)}.",
    lambda: f"The meeting is on {R.randint(1, 28):02d}.{R.randint(1, 12):02d}.{2020 + R.randint(0, 6)} at {R.randint(8, 17)}:{R.choice(['00', '30'])}.",
    lambda: f"Card {card(valid=False)} was declined, the number looks wrong.",
    lambda: f"The test account number {iban(valid=False)} fails validation.",
    lambda: f"Tracking number 1Z{b64(6).upper()}{digits(10)} shows delivered.",
    lambda: f"The total was ${R.randint(1, 9)},{digits(3)}.{digits(2)} including tax.",
    lambda: f"ISBN 978-{R.randint(0, 9)}-{digits(2)}-{digits(6)}-{R.randint(0, 9)} is out of print.",
    lambda: f"Reference {digits(3)}-{digits(2)}-{digits(4)}-X is our internal case code.",
    lambda: f"Error code 0x{b64(8).upper()} appeared after {digits(4)} requests.",
    lambda: f"It happened on {R.choice(['March', 'July', 'October'])} {R.randint(1, 28)}, {2020 + R.randint(0, 6)} around noon.",
    lambda: f"Set the timeout to {digits(5)} ms and retries to {R.randint(1, 9)}.",
    lambda: f"Python {R.choice(['3.11.9', '3.12.4', '3.10.14'])} and torch {R.choice(['2.13.0', '2.4.1'])} on Ubuntu 24.04.",
    lambda: f"The SKU {b64(3).upper()}-{digits(5)} is back in stock at {R.randint(2, 50)} units.",
    lambda: f"Port {R.randint(1024, 65535)} on localhost is busy; try {R.randint(1024, 65535)}.",
    lambda: f"{R.choice(['Kubernetes', 'Python', 'Docker', 'Excel', 'Slack'])} keeps crashing on {R.choice(['Monday', 'Tuesday', 'Friday'])} mornings.",
    lambda: f"Can you summarise the {R.choice(['Paris', 'Berlin', 'Tokyo'])} report for the {R.choice(['Q3', 'Q4'])} review?",
    lambda: f"The bearer of this letter may collect the parcel; token count was {digits(4)}.",
    lambda: f"Use the AKIA prefix check in the linter, not a regex on {R.randint(10, 99)} chars.",
    lambda: f"Hash {b64(12)} is just a commit prefix.",
]
# Product-support chat: UI names, units and product names that a small NER model reads as people.
UI_NEGATIVES = [
    lambda: f"Open {R.choice(['Settings', 'Preferences', 'Account'])}, choose {R.choice(['Export', 'Sync', 'Backup'])}, and pick {R.choice(['PDF', 'Markdown', 'HTML'])}.",
    lambda: f"Every plan includes {R.randint(2, 50)} GB of storage; Pro adds {R.choice([100, 200, 500])} GB.",
    lambda: f"{R.choice(['Nimbus Notes', 'Acme Drive', 'Orbit Mail'])} syncs your changes across devices.",
    lambda: f"Go to {R.choice(['Preferences', 'Settings'])} > {R.choice(['Sync', 'Privacy', 'Appearance'])} and toggle {R.choice(['Offline Mode', 'Dark Theme', 'Auto Backup'])}.",
    lambda: f"Click {R.choice(['Share', 'Invite', 'Publish'])}, then {R.choice(['Copy Link', 'Done', 'Send'])}.",
    lambda: f"The {R.choice(['Dashboard', 'Inbox', 'Archive'])} shows {R.choice(['Usage', 'Activity', 'History'])} by month.",
    lambda: f"Restart {R.choice(['Chrome', 'Firefox', 'Safari', 'Outlook'])} and sign in again.",
    lambda: f"Hi! How secure is {R.choice(['Nimbus Notes', 'Acme Vault'])}? It uses AES-256 and TLS {R.choice(['1.2', '1.3'])}.",
    lambda: f"Tap {R.choice(['Trash', 'Restore', 'Pin'])} to {R.choice(['move', 'recover', 'keep'])} the note.",
    lambda: f"Sure! {R.choice(['Tags', 'Folders', 'Templates'])} live under {R.choice(['Library', 'Workspace'])} in the sidebar.",
    lambda: f"{R.choice(['Hello', 'Hi'])}, {R.choice(['How do I', 'Can I', 'Where do I'])} {R.choice(['reset my password', 'export a note'])}?",
    lambda: f"Thanks. {R.choice(['Refunds', 'Where', 'Fastest way'])} {R.choice(['take a week?', 'is the export button?', 'to share a folder?'])}",
]
SINGLE_NAMES = ["Thanks, {v}!", "Ask {v} about the refund.", "Hi {v}, the fix is live.", "{v} from support called me."]


# Issue 13: classes a first outside run missed, written afresh (a second random stream, so the cases above stay
# byte-identical). Phone numbers that libphonenumber calls possible but not valid, with no phone word near them;
# e-mail on private top-level domains; full names whose first name the census list lacks; full names the small
# spaCy model reads as a place or organisation; and hard negatives around them.
R13 = random.Random(13)
UNASSIGNED_US = [230, 241, 247, 255, 258, 264, 275, 286, 293, 322, 328, 335, 348, 359, 362, 366]   # possible, not valid
UNUSED_LONDON = ["5", "6", "9"]                                       # 020 5xxx / 6xxx / 9xxx: not allocated
NO_CUE_PHONE = ["The courier has {v} on file.", "Her details for the delivery note: {v}.",
                "If the parcel is late, try {v} before noon.", "Put {v} on the booking form, not mine.",
                "Contact for the site visit: {v}", "{v} is the one in the CRM for that customer.",
                "The landlord left {v} on the fridge.", "Evenings only: {v}."]
PRIVATE_HOSTS = ["build01.internal", "printer.local", "hq.corp", "nas.lan", "router.home.arpa", "wiki.eng.internal",
                 "git.ops.corp", "files.home.lan", "mail.office.local", "ci.infra.internal"]
PRIVATE_EMAIL = ["Send the crash logs to {v} when it fails again.", "The nightly alert goes to {v}.",
                 "Add {v} to the allow list for the VPN.", "Reply to {v}, that inbox is watched."]
RARE_FIRST = ["Oluwaseun", "Siddharth", "Thandiwe", "Nkechi", "Ruairi", "Yevgenia", "Kwabena", "Saoirse", "Tadhg",
              "Leocadia", "Chiamaka", "Dragomir", "Zaneta", "Aoife", "Temitope", "Radomir", "Eirlys", "Folasade"]
CENSUS_LAST = ["Castillo", "Whitfield", "Navarro", "Fischer", "Harper", "Lindgren", "Okafor", "Moreno", "Brennan",
               "Sutton", "Vaughn", "Keller"]
PLACE_FIRST = ["Dallas", "Georgia", "Virginia", "Sierra", "Carolina", "Houston", "Savannah", "Austin", "Denver",
               "Florence", "Sydney", "Madison", "Brooklyn", "Camden", "Aurora", "Chelsea", "Paris", "Kendall"]
PLAIN_LAST = ["Holt", "Fleming", "Lowe", "Fuller", "Marsh", "Bishop", "Reed", "Hayes", "Warren", "Garrett", "Pruitt",
              "Dunn"]
PLAIN_NAME = ["Send the report to {v} before Friday.", "The keys are with {v} at the front desk.",
              "Loop {v} in on the contract review.", "We are still waiting on {v} for the figures.",
              "The refund was approved by {v} this morning.", "I had a call with {v} about the outage.",
              "Could {v} sign the delivery note?", "Our account manager is {v} now."]
NEGATIVES_13 = [
    lambda: f"Release {R13.randint(1, 9)}.{R13.randint(0, 20)}.{R13.randint(0, 9)}-rc{R13.randint(1, 4)} ships on Thursday.",
    lambda: f"Bumped the SDK from {R13.randint(1, 4)}.{R13.randint(0, 9)}.{R13.randint(0, 30)} to {R13.randint(5, 9)}.{R13.randint(0, 9)}.{R13.randint(0, 30)} without issues.",
    lambda: f"Order A-{R13.randint(1000, 9999)}-{R13.randint(1000, 9999)} left the depot this morning.",
    lambda: f"Your order no. {R13.randint(100, 999)}-{R13.randint(1000000, 9999999)} will arrive in two parts.",
    lambda: f"The lease ends on {R13.randint(2025, 2029)}-{R13.randint(1, 12):02d}-{R13.randint(1, 28):02d}, not before.",
    lambda: f"Payment is due by {R13.randint(1, 28):02d}/{R13.randint(1, 12):02d}/{R13.randint(2025, 2029)} at the latest.",
    lambda: f"The quote came to ${R13.randint(1, 99)},{R13.randint(100, 999)}.{R13.randint(10, 99)} with shipping.",
    lambda: f"It costs £{R13.randint(1, 9)},{R13.randint(100, 999)} a month, or €{R13.randint(10, 99)}.{R13.randint(10, 99)} a day.",
    lambda: f"We moved the office to {R13.choice(['Virginia Beach', 'Santa Monica', 'Fort Worth', 'Ann Arbor', 'Long Beach', 'Salt Lake City'])} last year.",
    lambda: f"Flights from {R13.choice(['Santa Clara', 'San Jose', 'Kansas City', 'New Haven', 'Palm Springs', 'Cape Town'])} were delayed again.",
    lambda: f"The {R13.choice(['Lincoln Park', 'Notting Hill', 'Camden Town', 'Beverly Hills', 'Jackson Heights', 'Hyde Park'])} branch closes early on Sundays.",
    lambda: f"Our team offsite is in {R13.choice(['Austin, Texas', 'Paris, France', 'Charlotte, North Carolina', 'Florence, Italy', 'Sydney, Australia', 'Denver, Colorado'])} this year.",
    lambda: f"The shipment cleared customs in {R13.choice(['Rotterdam', 'Hong Kong', 'Tel Aviv', 'Jackson Hole', 'Mount Vernon', 'Victoria Station'])} on time.",
    lambda: f"Room {R13.randint(100, 999)} on floor {R13.randint(2, 30)} is booked from {R13.randint(8, 11)}:00 to {R13.randint(12, 17)}:30.",
    lambda: f"Batch {R13.randint(10000, 99999)} failed QA; lot {R13.randint(1000, 9999)} passed.",
    lambda: f"Tracking ref {R13.choice(['JD', 'RR', 'LX'])}{R13.randint(100000000, 999999999)}GB is still in transit.",
    lambda: f"The serial number {R13.randint(200, 999)}-{R13.randint(200, 999)}-{R13.randint(1000, 9999)} is on the back of the unit.",
]


def place13(template, value, entity, cls):
    start = template.index("{v}")
    return {"text": template.replace("{v}", value), "spans": [[start, start + len(value), entity]], "class": cls}


def issue13_cases():
    cases = []
    for i in range(32):                                    # possible-but-not-valid numbers, no phone word
        if i % 2 == 0:
            a, x, y = R13.choice(UNASSIGNED_US), R13.randint(200, 999), R13.randint(1000, 9999)
            v = R13.choice([f"({a}) {x}-{y}", f"{a}-{x}-{y}", f"+1 {a} {x} {y}", f"{a}.{x}.{y}", f"+1-{a}-{x}-{y}"])
        else:
            d, x, y = R13.choice(UNUSED_LONDON), R13.randint(100, 999), R13.randint(1000, 9999)
            v = R13.choice([f"+44 20 {d}{x} {y}", f"020 {d}{x} {y}", f"(020) {d}{x} {y}", f"+44 (0)20 {d}{x} {y}"])
        cases.append({"kind": "positive", **place13(NO_CUE_PHONE[i % len(NO_CUE_PHONE)], v, "PHONE_NUMBER", "phone_possible_no_cue")})
    for i in range(20):                                    # private top-level domains
        user = R13.choice([f"{R13.choice(FIRST).lower()}.{R13.choice(LAST).lower()}", R13.choice(["ops", "oncall", "backup-admin", "svc_ci"]),
                           f"{R13.choice(FIRST)[0].lower()}{R13.choice(LAST).lower()}"])
        cases.append({"kind": "positive", **place13(PRIVATE_EMAIL[i % len(PRIVATE_EMAIL)],
                                                    f"{user}@{PRIVATE_HOSTS[i % len(PRIVATE_HOSTS)]}", "EMAIL_ADDRESS",
                                                    "email_private_tld")})
    for i in range(24):                                    # first name missing from the census list
        v = f"{RARE_FIRST[i % len(RARE_FIRST)]} {R13.choice(CENSUS_LAST)}"
        cases.append({"kind": "positive", **place13(PLAIN_NAME[i % len(PLAIN_NAME)], v, "PERSON", "name_rare_first")})
    for i in range(24):                                    # names the small model reads as a place or an organisation
        v = f"{PLACE_FIRST[i % len(PLACE_FIRST)]} {R13.choice(PLAIN_LAST)}"
        cases.append({"kind": "positive", **place13(PLAIN_NAME[(i + 3) % len(PLAIN_NAME)], v, "PERSON", "name_read_as_place")})
    for i in range(102):
        cases.append({"kind": "negative", "text": NEGATIVES_13[i % len(NEGATIVES_13)](), "spans": [],
                      "class": "hard_negative_13"})
    return cases


def place(template, entity):
    value = VALUES[entity]()
    start = template.index("{v}")
    text = template.replace("{v}", value)
    return text, [[start, start + len(value), entity]]


def main():
    cases = []
    for entity, templates in TEMPLATES.items():
        n = 30 if entity in ("PHONE_NUMBER", "PERSON") else 22
        for i in range(n):
            text, spans = place(templates[i % len(templates)], entity)
            cases.append({"kind": "positive", "text": text, "spans": spans})
    for i in range(140):
        cases.append({"kind": "negative", "text": NEGATIVES[i % len(NEGATIVES)](), "spans": []})
    for i in range(60):
        cases.append({"kind": "negative", "text": UI_NEGATIVES[i % len(UI_NEGATIVES)](), "spans": []})
    for i in range(16):                                    # a first name alone
        t = SINGLE_NAMES[i % len(SINGLE_NAMES)]
        name = R.choice(FIRST)
        cases.append({"kind": "positive", "text": t.replace("{v}", name),
                      "spans": [[t.index("{v}"), t.index("{v}") + len(name), "PERSON"]]})
    for _ in range(40):                                    # chats with two or three entities
        parts, spans, text = R.sample(list(TEMPLATES), R.randint(2, 3)), [], ""
        for entity in parts:
            t, sp = place(R.choice(TEMPLATES[entity]), entity)
            off = len(text) + (1 if text else 0)
            text = f"{text} {t}" if text else t
            spans += [[s + off, e + off, ent] for s, e, ent in sp]
        cases.append({"kind": "mixed", "text": text, "spans": spans})
    cases += issue13_cases()
    with OUT.open("w") as f:
        for i, c in enumerate(cases):
            f.write(json.dumps({"id": i, **c}) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
