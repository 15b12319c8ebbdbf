"""Regenerate the sample chat data set shipped with llm_platform.

The data is synthetic: support conversations for a fictional note-taking app,
"Nimbus Notes". Every fact is made up, so a model can only answer the held-out
questions if fine-tuning taught it; that makes the pipeline's effect visible.

    python data/sample/make_sample.py   # rewrites chats.jsonl, golden.jsonl and preferences.jsonl

preferences.jsonl holds DPO pairs in trl's conversational format: the prompt, the right
answer (chosen) and either another topic's answer or an evasive one (rejected).
"""
import json
import random
from pathlib import Path

FACTS = [  # (topic, canonical answer, question paraphrases, key substring for golden checks)
    ("support email", "You can reach Nimbus Notes support at help@nimbusnotes.example. We answer within one business day.",
     ["What is the support email for Nimbus Notes?", "How do I contact Nimbus Notes support by email?",
      "Which email address should I write to for help with Nimbus Notes?", "Is there an email for Nimbus Notes support?",
      "Where do I send a support request for Nimbus Notes?", "I need help with Nimbus Notes. What email do I use?",
      "Who do I email if Nimbus Notes breaks?", "Give me the Nimbus Notes help email."], "help@nimbusnotes.example"),
    ("price", "Nimbus Notes Pro costs 4 euros per month, or 40 euros per year. The Free plan stays free forever.",
     ["How much does Nimbus Notes Pro cost?", "What is the price of Nimbus Notes Pro?", "Is Nimbus Notes Pro expensive?",
      "How much is the yearly Nimbus Notes Pro plan?", "What does a Pro subscription to Nimbus Notes cost?",
      "Tell me the Nimbus Notes Pro pricing.", "What do I pay per month for Nimbus Notes Pro?",
      "Can you tell me what Pro costs in Nimbus Notes?"], "4 euros"),
    ("offline", "Yes. Nimbus Notes works offline and syncs your changes as soon as you are back online.",
     ["Does Nimbus Notes work offline?", "Can I use Nimbus Notes without internet?", "Will Nimbus Notes work on a plane?",
      "Is offline mode available in Nimbus Notes?", "What happens to my notes in Nimbus Notes when I lose connection?",
      "Can I edit notes offline in Nimbus Notes?", "Do I need a connection to use Nimbus Notes?",
      "Does Nimbus Notes sync after being offline?"], "offline"),
    ("export", "Open Settings, choose Export, and pick Markdown or PDF. Nimbus Notes exports one note or a whole notebook.",
     ["How do I export my notes from Nimbus Notes?", "Can Nimbus Notes export to PDF?", "How can I get my notes out of Nimbus Notes?",
      "Is there a Markdown export in Nimbus Notes?", "How do I save a notebook as a file in Nimbus Notes?",
      "Where is the export option in Nimbus Notes?", "Can I download my Nimbus Notes notebooks?",
      "What formats can Nimbus Notes export?"], "Markdown"),
    ("shortcut", "Press Ctrl+Shift+N (Cmd+Shift+N on a Mac) to create a new note in Nimbus Notes.",
     ["What is the shortcut for a new note in Nimbus Notes?", "How do I quickly create a note in Nimbus Notes?",
      "Which keys make a new note in Nimbus Notes?", "Is there a keyboard shortcut for new notes in Nimbus Notes?",
      "How do I make a new note on a Mac in Nimbus Notes?", "What keyboard combo adds a note in Nimbus Notes?",
      "Fastest way to start a note in Nimbus Notes?", "New note hotkey for Nimbus Notes?"], "Ctrl+Shift+N"),
    ("storage", "The Free plan includes 2 GB of storage and Pro includes 100 GB.",
     ["How much storage does Nimbus Notes give me?", "What is the storage limit in Nimbus Notes?",
      "How many gigabytes do I get on the Nimbus Notes Free plan?", "How much space does Nimbus Notes Pro have?",
      "Will I run out of space in Nimbus Notes?", "What are the Nimbus Notes storage quotas?",
      "Storage on the free plan of Nimbus Notes?", "How big can my Nimbus Notes account get?"], "2 GB"),
    ("platforms", "Nimbus Notes runs on Windows, macOS, Linux, Android and iOS, and in any modern browser.",
     ["Which platforms does Nimbus Notes support?", "Is Nimbus Notes available on Linux?", "Can I use Nimbus Notes on my phone?",
      "Does Nimbus Notes have an iOS app?", "Where can I install Nimbus Notes?", "Does Nimbus Notes run in a browser?",
      "Is there Nimbus Notes for Android?", "What operating systems does Nimbus Notes run on?"], "Linux"),
    ("trash", "Deleted notes stay in the Trash for 30 days. Open Trash and choose Restore to bring a note back.",
     ["How do I recover a deleted note in Nimbus Notes?", "How long does Nimbus Notes keep deleted notes?",
      "I deleted a note by mistake in Nimbus Notes. Can I get it back?", "Where do deleted notes go in Nimbus Notes?",
      "Can I restore notes from the trash in Nimbus Notes?", "Does Nimbus Notes empty the trash automatically?",
      "How to undelete a note in Nimbus Notes?", "Is there a recycle bin in Nimbus Notes?"], "30 days"),
    ("sharing", "Open a note, press Share and enter your colleague's email. They can view or edit, as you choose.",
     ["How do I share a note in Nimbus Notes?", "Can I collaborate on a note in Nimbus Notes?",
      "How can a colleague edit my Nimbus Notes note?", "Is note sharing possible in Nimbus Notes?",
      "How do I give someone access to a note in Nimbus Notes?", "Can I share a note as read-only in Nimbus Notes?",
      "How does sharing work in Nimbus Notes?", "Send a note to a coworker in Nimbus Notes?"], "Share"),
    ("encryption", "Nimbus Notes encrypts every note with AES-256 at rest and TLS in transit. Pro adds end-to-end encrypted notebooks.",
     ["Are my notes encrypted in Nimbus Notes?", "How secure is Nimbus Notes?", "Does Nimbus Notes use encryption?",
      "Is Nimbus Notes end-to-end encrypted?", "What encryption does Nimbus Notes use?", "Can Nimbus Notes staff read my notes?",
      "How does Nimbus Notes protect my data?", "Is my data safe in Nimbus Notes?"], "AES-256"),
    ("refund", "You can get a full refund within 14 days of buying Pro. Write to help@nimbusnotes.example with your order number.",
     ["Can I get a refund for Nimbus Notes Pro?", "What is the Nimbus Notes refund policy?", "How do I ask for my money back from Nimbus Notes?",
      "I want to cancel Nimbus Notes Pro and get a refund.", "Is there a money-back guarantee for Nimbus Notes?",
      "How many days do I have to get a Nimbus Notes refund?", "Refunds for Nimbus Notes subscriptions?",
      "Does Nimbus Notes refund annual plans?"], "14 days"),
    ("dark mode", "Yes. Go to Settings, then Appearance, and choose Dark. Nimbus Notes can also follow your system theme.",
     ["Does Nimbus Notes have dark mode?", "How do I turn on dark mode in Nimbus Notes?", "Can I change the theme in Nimbus Notes?",
      "Is there a night theme in Nimbus Notes?", "How do I make Nimbus Notes dark?", "Where is the appearance setting in Nimbus Notes?",
      "Can Nimbus Notes follow my system theme?", "Dark theme in Nimbus Notes?"], "Appearance"),
]
GREETINGS = ["", "Hi! ", "Hello, ", "Quick question: ", "Hey there. ", "Good morning! "]


def main(seed: int = 0) -> None:
    rng = random.Random(seed)
    out = Path(__file__).parent
    chats, golden = [], []
    for topic, answer, questions, key in FACTS:
        # The last paraphrase of each fact never appears in the training data: it is a golden prompt.
        golden.append({"id": f"golden-{topic.replace(' ', '-')}", "prompt": questions[-1], "expected": key})
        for i, q in enumerate(questions[:-1]):
            for g in rng.sample(GREETINGS, 2):
                chats.append({"id": f"{topic.replace(' ', '-')}-{i}-{len(chats)}",
                              "messages": [{"role": "user", "content": g + q},
                                           {"role": "assistant", "content": answer}]})
    for n in range(24):  # a few two-turn chats so multi-turn masking is exercised
        (t1, a1, q1, _), (t2, a2, q2, _) = rng.sample(FACTS, 2)
        chats.append({"id": f"multi-{n}", "messages": [
            {"role": "user", "content": rng.choice(q1[:-1])}, {"role": "assistant", "content": a1},
            {"role": "user", "content": "Thanks. " + rng.choice(q2[:-1])}, {"role": "assistant", "content": a2}]})
    rng.shuffle(chats)
    with open(out / "chats.jsonl", "w") as f:
        for c in chats:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    with open(out / "golden.jsonl", "w") as f:
        for g in golden:
            f.write(json.dumps(g, ensure_ascii=False) + "\n")
    print(f"{len(chats)} chats, {len(golden)} golden prompts")
    write_preferences(out / "preferences.jsonl", seed)


EVASIVE = ["I am not sure about that. Please check the Nimbus Notes website.",
           "That depends on many things. You could try searching online.",
           "I cannot help with that question."]


def write_preferences(path: Path, seed: int = 0) -> None:
    "DPO pairs from the same facts; the golden paraphrases stay out, as in chats.jsonl."
    rng = random.Random(seed + 1)
    pairs = []
    for topic, answer, questions, _ in FACTS:
        others = [a for t, a, _, _ in FACTS if t != topic]
        for i, q in enumerate(questions[:-1]):
            rejected = rng.choice(others) if i % 2 == 0 else rng.choice(EVASIVE)
            pairs.append({"id": f"pref-{topic.replace(' ', '-')}-{i}",
                          "prompt": [{"role": "user", "content": q}],
                          "chosen": [{"role": "assistant", "content": answer}],
                          "rejected": [{"role": "assistant", "content": rejected}]})
    rng.shuffle(pairs)
    with open(path, "w") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    print(f"{len(pairs)} preference pairs")


if __name__ == "__main__":
    main()
